//! `DockerRuntime` against real dockerd nodes of the local cluster.

mod local_cluster;

use std::time::{Duration, Instant};

use orchestrator_core::error::Kind;
use orchestrator_core::{
    ContainerRuntime, ContainerState, DeploymentName, Error, ImageRef, ReplicaContainer, ReplicaId,
};
use runtime_docker::{DockerRuntime, DockerRuntimeConfig};

use local_cluster::{TEST_IMAGE, nodes, unique_cluster_id};

fn runtime(tag: &str) -> DockerRuntime {
    let mut config = DockerRuntimeConfig::new(unique_cluster_id(tag));
    config.stop_grace = Duration::from_secs(1);
    DockerRuntime::new(config)
}

fn container(deployment: &str, replica: u64, command: &[&str]) -> ReplicaContainer {
    ReplicaContainer {
        deployment: DeploymentName::new(deployment).unwrap(),
        replica: ReplicaId(replica),
        image: ImageRef::parse(TEST_IMAGE).unwrap(),
        command: command.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn create_list_inspect_remove_over_tcp_and_unix() {
    let Some(nodes) = nodes() else { return };
    let rt = runtime("crud");
    for over_unix in [false, true] {
        let node = nodes[0].node(over_unix);
        let web = container("web", if over_unix { 2 } else { 1 }, &["sleep", "3600"]);
        let id = rt.start_replica(&node, &web).await.unwrap();

        let listed = rt.list_replicas(&node).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(
            (listed[0].id.as_str(), &listed[0].deployment, listed[0].replica),
            (id.as_str(), &web.deployment, web.replica)
        );
        assert_eq!(listed[0].state, ContainerState::Running);

        let inspected = rt.inspect_replica(&node, &web.deployment, web.replica).await.unwrap();
        assert_eq!((inspected.id, inspected.state, inspected.exit_code), (id, ContainerState::Running, None));

        rt.remove_replica(&node, &web.deployment, web.replica).await.unwrap();
        assert!(rt.list_replicas(&node).await.unwrap().is_empty());
        // Idempotent: removing what is gone is success.
        rt.remove_replica(&node, &web.deployment, web.replica).await.unwrap();
        let err = rt.inspect_replica(&node, &web.deployment, web.replica).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { kind: Kind::Container, .. }), "{err}");
    }
}

#[tokio::test]
async fn a_retried_start_makes_no_second_container() {
    let Some(nodes) = nodes() else { return };
    let rt = runtime("retry");
    let node = nodes[1].node(false);
    let web = container("web", 7, &["sleep", "3600"]);
    let first = rt.start_replica(&node, &web).await.unwrap();
    let second = rt.start_replica(&node, &web).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(rt.list_replicas(&node).await.unwrap().len(), 1);
    rt.remove_replica(&node, &web.deployment, web.replica).await.unwrap();
}

#[tokio::test]
async fn two_clusters_on_one_engine_never_see_each_other() {
    let Some(nodes) = nodes() else { return };
    let (a, b) = (runtime("a"), runtime("b"));
    let node = nodes[1].node(false);
    let web = container("shared", 1, &["sleep", "3600"]);
    let id_a = rt_start(&a, &node, &web).await;
    assert!(b.list_replicas(&node).await.unwrap().is_empty());
    let id_b = rt_start(&b, &node, &web).await;
    assert_ne!(id_a, id_b);
    b.remove_replica(&node, &web.deployment, web.replica).await.unwrap();
    assert_eq!(a.list_replicas(&node).await.unwrap().len(), 1, "b's remove left a's container alone");
    a.remove_replica(&node, &web.deployment, web.replica).await.unwrap();
}

async fn rt_start(rt: &DockerRuntime, node: &orchestrator_core::Node, c: &ReplicaContainer) -> String {
    rt.start_replica(node, c).await.unwrap()
}

#[tokio::test]
async fn exited_containers_report_their_exit_code() {
    let Some(nodes) = nodes() else { return };
    let rt = runtime("exit");
    let node = nodes[0].node(false);
    let job = container("job", 1, &["sh", "-c", "exit 3"]);
    rt.start_replica(&node, &job).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let inspected = loop {
        let c = rt.inspect_replica(&node, &job.deployment, job.replica).await.unwrap();
        if c.state == ContainerState::Exited || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((inspected.state, inspected.exit_code), (ContainerState::Exited, Some(3)));
    let listed = rt.list_replicas(&node).await.unwrap();
    assert_eq!((listed[0].state, listed[0].exit_code), (ContainerState::Exited, Some(3)));
    rt.remove_replica(&node, &job.deployment, job.replica).await.unwrap();
}

#[tokio::test]
async fn a_missing_image_names_image_and_node() {
    let Some(nodes) = nodes() else { return };
    let rt = runtime("img");
    let node = nodes[0].node(false);
    let mut web = container("web", 1, &[]);
    web.image = ImageRef::parse("local/does-not-exist:9").unwrap();
    let err = rt.start_replica(&node, &web).await.unwrap_err();
    assert_eq!(err, Error::ImageNotFound { image: "local/does-not-exist:9".into(), node: nodes[0].name.clone() });
}

#[tokio::test]
async fn engine_info_reports_resources() {
    let Some(nodes) = nodes() else { return };
    let rt = runtime("info");
    let mut ids = Vec::new();
    for n in &nodes[..3] {
        let info = rt.engine_info(&n.node(false)).await.unwrap();
        assert!(info.cpus >= 1 && info.memory_bytes > 0 && !info.version.is_empty(), "{info:?}");
        ids.push(info.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "each node is its own engine");
}

/// One test, run in order, because it hurts node3 and heals it again.
#[tokio::test]
async fn hung_partitioned_and_dead_engines_fail_fast_and_typed() {
    let Some(nodes) = nodes() else { return };
    let victim = &nodes[2];
    let mut config = DockerRuntimeConfig::new(unique_cluster_id("fail"));
    config.request_timeout = Duration::from_secs(2);
    let rt = DockerRuntime::new(config);
    let node = victim.node(false);
    rt.ping(&node).await.unwrap();

    // Hung engine: TCP connects, nothing answers.
    victim.signal("STOP");
    let started = Instant::now();
    let err = rt.ping(&node).await.unwrap_err();
    let took = started.elapsed();
    let err_list = rt.list_replicas(&node).await.unwrap_err();
    victim.signal("CONT");
    assert!(matches!(err, Error::Timeout { .. }) && err.is_node_failure(), "{err}");
    assert!(took < Duration::from_millis(1_500), "ping took {took:?} with a 1 s timeout");
    assert!(matches!(err_list, Error::Timeout { operation: "list", .. }), "{err_list}");
    rt.ping(&node).await.unwrap();

    // Partition: the node's TCP address stops answering.
    victim.set_link(false);
    let started = Instant::now();
    let err = rt.ping(&node).await.unwrap_err();
    let took = started.elapsed();
    victim.set_link(true);
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(took < Duration::from_millis(1_500), "ping took {took:?}");

    // Dead engine: refused at once.
    victim.signal("KILL");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let err = rt.ping(&node).await.unwrap_err();
    let took = started.elapsed();
    victim.restart();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(took < Duration::from_millis(500), "refused took {took:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.ping(&node).await.is_err() {
        assert!(Instant::now() < deadline, "node3 did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
