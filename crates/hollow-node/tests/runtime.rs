//! The orchestrator's real Docker runtime (bollard) against hollow engines: the same calls,
//! answers and error classes as against dockerd (see runtime-docker's real_engines.rs).

use std::time::{Duration, Instant};

use hollow_node::HollowCluster;
use orchestrator_core::{
    ContainerRuntime, ContainerState, ContainerTemplate, DeploymentName, EngineAddress, Error, ImageRef, Node,
    NodeName, ReplicaContainer, ReplicaId,
};
use runtime_docker::{DockerRuntime, DockerRuntimeConfig};

fn node(cluster: &HollowCluster, i: usize) -> Node {
    Node::online(
        NodeName::new(format!("hollow{}", i + 1)).unwrap(),
        EngineAddress::parse(&cluster.address(i).unwrap()).unwrap(),
        100,
    )
}

fn runtime(cluster_id: &str) -> DockerRuntime {
    let mut config = DockerRuntimeConfig::new(cluster_id);
    config.ping_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(2);
    config.stop_grace = Duration::from_secs(1);
    DockerRuntime::new(config)
}

fn replica(deployment: &str, id: u64) -> ReplicaContainer {
    ReplicaContainer {
        deployment: DeploymentName::new(deployment).unwrap(),
        replica: ReplicaId(id),
        revision: 1,
        template: ContainerTemplate::new(ImageRef::parse("local/busybox:1").unwrap())
            .with_command(vec!["sleep".into(), "3600".into()]),
        image_digest: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_drives_hollow_engines_as_it_drives_dockerd() {
    let cluster = HollowCluster::start(2).await.unwrap();
    let (n1, n2) = (node(&cluster, 0), node(&cluster, 1));
    let rt = runtime("hollowtest1");
    rt.ping(&n1).await.unwrap();
    let info = rt.engine_info(&n1).await.unwrap();
    assert!(info.version.contains("hollow"), "{info:?}");

    // Create + start, idempotent by name; listed by our labels only.
    let web1 = replica("web", 1);
    let id = rt.start_replica(&n1, &web1).await.unwrap();
    assert_eq!(rt.start_replica(&n1, &web1).await.unwrap(), id, "a retried start finds the first container");
    rt.start_replica(&n1, &replica("web", 2)).await.unwrap();
    let other = runtime("hollowtest2");
    other.start_replica(&n1, &replica("web", 1)).await.unwrap();
    let listed = rt.list_replicas(&n1).await.unwrap();
    assert_eq!(listed.len(), 2, "only this cluster's containers: {listed:?}");
    assert!(listed.iter().all(|c| c.state == ContainerState::Running));
    assert!(rt.list_replicas(&n2).await.unwrap().is_empty());

    // A container that exits is seen exited, with its code.
    assert!(cluster.with_engine(0, |e| e.exit(&id, 7)).unwrap());
    let inspected = rt.inspect_replica(&n1, &web1.deployment, web1.replica).await.unwrap();
    assert_eq!((inspected.state, inspected.exit_code), (ContainerState::Exited, Some(7)));

    // Removal, idempotent; a missing one is NotFound on inspect.
    rt.remove_replica(&n1, &web1.deployment, web1.replica).await.unwrap();
    rt.remove_replica(&n1, &web1.deployment, web1.replica).await.unwrap();
    assert!(matches!(rt.inspect_replica(&n1, &web1.deployment, web1.replica).await, Err(Error::NotFound { .. })));

    // A missing image is ImageNotFound naming the image and the node.
    cluster.with_engine(1, |e| e.missing_images.push("local/busybox:1".into())).unwrap();
    let missing = rt.start_replica(&n2, &replica("api", 1)).await.unwrap_err();
    assert!(matches!(&missing, Error::ImageNotFound { node, .. } if node == "hollow2"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_hung_failing_and_revived_engines_fail_as_dockerd_does() {
    let cluster = HollowCluster::start(1).await.unwrap();
    let n1 = node(&cluster, 0);
    let rt = runtime("hollowfail");
    rt.start_replica(&n1, &replica("web", 1)).await.unwrap();

    // Killed: refused at once (Unreachable), like a SIGKILLed dockerd.
    cluster.kill(0).unwrap();
    let started = Instant::now();
    let dead = rt.ping(&n1).await.unwrap_err();
    assert!(matches!(dead, Error::Unreachable { .. }), "{dead}");
    assert!(started.elapsed() < Duration::from_millis(400));

    // Revived on the same port, with its containers.
    cluster.revive(0).unwrap();
    rt.ping(&n1).await.unwrap();
    assert_eq!(rt.list_replicas(&n1).await.unwrap().len(), 1);

    // Hung: a Timeout after the ping timeout, like a SIGSTOPped dockerd.
    cluster.set_hung(0, true).unwrap();
    let started = Instant::now();
    let hung = rt.ping(&n1).await.unwrap_err();
    assert!(matches!(hung, Error::Timeout { .. }), "{hung}");
    assert!(started.elapsed() >= Duration::from_millis(450) && started.elapsed() < Duration::from_secs(2));
    cluster.set_hung(0, false).unwrap();

    // Failing: 500s are engine errors; latency is added to every answer.
    cluster.set_failure_rate(0, 1.0).unwrap();
    assert!(matches!(rt.list_replicas(&n1).await, Err(Error::Engine { .. })));
    cluster.set_failure_rate(0, 0.0).unwrap();
    cluster.set_latency(0, Duration::from_millis(200)).unwrap();
    let started = Instant::now();
    rt.list_replicas(&n1).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
}

/// A watch stays open past every timeout of the runtime while the engine lives, ends the
/// moment it is killed, and a killed engine's watch is refused (Unreachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_lasts_while_the_engine_lives_and_ends_when_it_is_killed() {
    let cluster = HollowCluster::start(1).await.unwrap();
    let n1 = node(&cluster, 0);
    let rt = runtime("hollowwatch");
    let watch = rt.watch(&n1);
    tokio::pin!(watch);
    // Past the request timeout (2 s): the timeout bounds opening the stream, not its life.
    assert!(tokio::time::timeout(Duration::from_millis(2_500), watch.as_mut()).await.is_err(), "still watching");
    cluster.kill(0).unwrap();
    let killed = Instant::now();
    tokio::time::timeout(Duration::from_secs(1), watch).await.expect("ended with the engine").ok();
    assert!(killed.elapsed() < Duration::from_millis(500), "{:?}", killed.elapsed());
    let refused = rt.watch(&n1).await.unwrap_err();
    assert!(matches!(refused, Error::Unreachable { .. }), "{refused}");
}

/// One process serves hundreds of engines; a heartbeat-like round of pings reaches them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_engines_in_one_process_answer_a_round_of_pings() {
    let cluster = HollowCluster::start(500).await.unwrap();
    let rt = runtime("hollowmany");
    let nodes: Vec<Node> = (0..cluster.len()).map(|i| node(&cluster, i)).collect();
    for round in 0..2 {
        let started = Instant::now();
        let pings = futures::future::join_all(nodes.iter().map(|n| rt.ping(n))).await;
        assert!(pings.iter().all(Result::is_ok), "round {round}: {:?}", pings.iter().find(|p| p.is_err()));
        eprintln!("round {round}: 500 pings in {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_engines_bind_ports_refuse_a_taken_one_and_report_health() {
    use orchestrator_core::{Health, HealthCheck, HealthCommand, PortSpec, Protocol};
    let cluster = HollowCluster::start(1).await.unwrap();
    let n1 = node(&cluster, 0);
    let rt = runtime("hollowports");
    let served = |id: u64, published: Option<u16>| {
        let mut c = replica("web", id);
        c.template.ports = vec![PortSpec::tcp(8080, published)];
        c.template.healthcheck = HealthCheck::Command(HealthCommand {
            test: vec!["CMD".into(), "true".into()],
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        });
        c
    };
    rt.start_replica(&n1, &served(1, Some(18081))).await.unwrap();
    rt.start_replica(&n1, &served(2, None)).await.unwrap();
    let taken = rt.start_replica(&n1, &served(3, Some(18081))).await.unwrap_err();
    assert!(taken.to_string().contains("port is already allocated"), "{taken}");

    let mut listed = rt.list_replicas(&n1).await.unwrap();
    listed.sort_by_key(|c| c.replica);
    let bound: Vec<(u64, u16, Option<Health>)> = listed
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .map(|c| (c.replica.0, c.ports[0].published, c.health))
        .collect();
    assert_eq!(bound, [(1, 18081, Some(Health::Healthy)), (2, 32768, Some(Health::Healthy))]);
    assert_eq!(listed[0].ports[0].protocol, Protocol::Tcp);

    // Told to, a container reports unhealthy, in the list and in inspect.
    let web = DeploymentName::new("web").unwrap();
    let name = runtime_docker::container_name("hollowports", &web, ReplicaId(2));
    assert!(cluster.with_engine(0, |e| e.set_health(&name, "unhealthy")).unwrap());
    let inspected = rt.inspect_replica(&n1, &web, ReplicaId(2)).await.unwrap();
    assert_eq!((inspected.health, inspected.ports[0].published), (Some(Health::Unhealthy), 32768));
    // Removed, its port is free again.
    rt.remove_replica(&n1, &web, ReplicaId(1)).await.unwrap();
    rt.remove_replica(&n1, &web, ReplicaId(3)).await.unwrap();
    rt.start_replica(&n1, &served(3, Some(18081))).await.unwrap();
}
