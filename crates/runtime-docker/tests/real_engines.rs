//! `DockerRuntime` against real engines: the dockerd nodes of the local cluster, and the same
//! tests against hollow engines (crates/hollow-node), which the scale benchmark stands in for
//! dockerd with: whatever the runtime relies on, both must answer alike.

use std::time::{Duration, Instant};

use hollow_node::HollowCluster;
use orchestrator_core::error::Kind;
use orchestrator_core::{
    ContainerRuntime, ContainerState, ContainerTemplate, DeploymentName, EngineAddress, Error, ImageRef, Node,
    NodeName, ReplicaContainer, ReplicaId,
};
use runtime_docker::{DockerRuntime, DockerRuntimeConfig};

use test_support::local_cluster::{ClusterNode, TEST_IMAGE, unique_cluster_id};

/// What the tests need from a set of engines, whichever kind they are.
trait Engines: Sync {
    /// Engine `i` over TCP.
    fn node(&self, i: usize) -> Node;
    /// Engine `i` over its unix socket, where it has one.
    fn unix_node(&self, i: usize) -> Option<Node>;
    /// Stop answering (SIGSTOP) or answer again.
    fn hang(&self, i: usize, hung: bool);
    /// Cut the engine off the network, or connect it again (a hollow engine: it stops answering).
    fn partition(&self, i: usize, cut: bool);
    /// Die (SIGKILL: connections refused).
    fn kill(&self, i: usize);
    fn restart(&self, i: usize);
}

struct Dockerd(Vec<ClusterNode>);

impl Engines for Dockerd {
    fn node(&self, i: usize) -> Node {
        self.0[i].node(false)
    }
    fn unix_node(&self, i: usize) -> Option<Node> {
        Some(self.0[i].node(true))
    }
    fn hang(&self, i: usize, hung: bool) {
        self.0[i].signal(if hung { "STOP" } else { "CONT" });
    }
    fn partition(&self, i: usize, cut: bool) {
        self.0[i].set_link(!cut);
    }
    fn kill(&self, i: usize) {
        self.0[i].signal("KILL");
    }
    fn restart(&self, i: usize) {
        self.0[i].restart();
    }
}

struct Hollow(HollowCluster);

impl Hollow {
    async fn start() -> Self {
        let cluster = HollowCluster::start(3).await.unwrap();
        for i in 0..3 {
            cluster.with_engine(i, |e| e.missing_images.push(MISSING_IMAGE.into())).unwrap();
        }
        Self(cluster)
    }
}

impl Engines for Hollow {
    fn node(&self, i: usize) -> Node {
        Node::online(
            NodeName::new(format!("hollow{}", i + 1)).unwrap(),
            EngineAddress::parse(&self.0.address(i).unwrap()).unwrap(),
            100,
        )
    }
    fn unix_node(&self, _: usize) -> Option<Node> {
        None
    }
    fn hang(&self, i: usize, hung: bool) {
        self.0.set_hung(i, hung).unwrap();
    }
    fn partition(&self, i: usize, cut: bool) {
        self.0.set_hung(i, cut).unwrap();
    }
    fn kill(&self, i: usize) {
        self.0.kill(i).unwrap();
    }
    fn restart(&self, i: usize) {
        self.0.revive(i).unwrap();
    }
}

const MISSING_IMAGE: &str = "local/does-not-exist:9";

fn runtime(tag: &str) -> DockerRuntime {
    let mut config = DockerRuntimeConfig::new(unique_cluster_id(tag));
    config.stop_grace = Duration::from_secs(1);
    DockerRuntime::new(config)
}

fn container(deployment: &str, replica: u64, command: &[&str]) -> ReplicaContainer {
    ReplicaContainer {
        deployment: DeploymentName::new(deployment).unwrap(),
        replica: ReplicaId(replica),
        revision: 1,
        template: ContainerTemplate::new(ImageRef::parse(TEST_IMAGE).unwrap())
            .with_command(command.iter().map(|s| s.to_string()).collect()),
        image_digest: None,
    }
}

async fn create_list_inspect_remove_over_tcp_and_unix(engines: &dyn Engines) {
    let rt = runtime("crud");
    for over_unix in [false, true] {
        let node = if over_unix { engines.unix_node(0) } else { Some(engines.node(0)) };
        let Some(node) = node else { continue };
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

async fn a_retried_start_makes_no_second_container(engines: &dyn Engines) {
    let rt = runtime("retry");
    let node = engines.node(1);
    let web = container("web", 7, &["sleep", "3600"]);
    let first = rt.start_replica(&node, &web).await.unwrap();
    let second = rt.start_replica(&node, &web).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(rt.list_replicas(&node).await.unwrap().len(), 1);
    rt.remove_replica(&node, &web.deployment, web.replica).await.unwrap();
}

async fn two_clusters_on_one_engine_never_see_each_other(engines: &dyn Engines) {
    let (a, b) = (runtime("a"), runtime("b"));
    let node = engines.node(1);
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

async fn exited_containers_report_their_exit_code(engines: &dyn Engines) {
    let rt = runtime("exit");
    let node = engines.node(0);
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

/// A container that exits 137 (what SIGKILL gives) under a memory limit is not called OOM-killed
/// unless its engine says so: the late-OOM lookup (the engine's `oom` events) finds none.
async fn an_exit_137_under_a_memory_limit_is_no_oom_kill_by_itself(engines: &dyn Engines) {
    let rt = runtime("oom");
    let node = engines.node(0);
    let mut job = container("job", 1, &["sh", "-c", "exit 137"]);
    job.template.resources.memory_bytes = Some(64 << 20);
    rt.start_replica(&node, &job).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let end = loop {
        let end = rt.replica_end(&node, &job.deployment, job.replica).await.unwrap();
        if end.exit_code.is_some() || Instant::now() > deadline {
            break end;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((end.exit_code, end.oom_killed), (Some(137), false));
    rt.remove_replica(&node, &job.deployment, job.replica).await.unwrap();
}

async fn a_missing_image_names_image_and_node(engines: &dyn Engines) {
    let rt = runtime("img");
    let node = engines.node(0);
    let mut web = container("web", 1, &[]);
    web.template.image = ImageRef::parse(MISSING_IMAGE).unwrap();
    let err = rt.start_replica(&node, &web).await.unwrap_err();
    assert_eq!(err, Error::ImageNotFound { image: MISSING_IMAGE.into(), node: node.name.to_string() });
}

async fn engine_info_reports_resources(engines: &dyn Engines) {
    let rt = runtime("info");
    let mut ids = Vec::new();
    for i in 0..3 {
        let info = rt.engine_info(&engines.node(i)).await.unwrap();
        assert!(info.cpus >= 1 && info.memory_bytes > 0 && !info.version.is_empty(), "{info:?}");
        ids.push(info.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "each node is its own engine");
}

/// One test, run in order, because it hurts the third engine and heals it again.
async fn hung_partitioned_and_dead_engines_fail_fast_and_typed(engines: &dyn Engines) {
    let victim = 2;
    let mut config = DockerRuntimeConfig::new(unique_cluster_id("fail"));
    config.request_timeout = Duration::from_secs(2);
    let rt = std::sync::Arc::new(DockerRuntime::new(config));
    let node = engines.node(victim);
    rt.ping(&node).await.unwrap();
    // Watched from here: a hung or cut-off engine keeps the watch (nothing closes it), a
    // killed one ends it at once.
    let watch = |node: Node| {
        let rt = std::sync::Arc::clone(&rt);
        tokio::spawn(async move { rt.watch(&node).await })
    };
    let watches = [Some(watch(node.clone())), engines.unix_node(victim).map(watch)];

    // Hung engine: TCP connects, nothing answers.
    engines.hang(victim, true);
    let started = Instant::now();
    let err = rt.ping(&node).await.unwrap_err();
    let took = started.elapsed();
    let err_list = rt.list_replicas(&node).await.unwrap_err();
    engines.hang(victim, false);
    assert!(matches!(err, Error::Timeout { .. }) && err.is_node_failure(), "{err}");
    assert!(took < Duration::from_millis(1_500), "ping took {took:?} with a 1 s timeout");
    assert!(matches!(err_list, Error::Timeout { operation: "list", .. }), "{err_list}");
    rt.ping(&node).await.unwrap();

    // Partition: the node's TCP address stops answering.
    engines.partition(victim, true);
    let started = Instant::now();
    let err = rt.ping(&node).await.unwrap_err();
    let took = started.elapsed();
    engines.partition(victim, false);
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(took < Duration::from_millis(1_500), "ping took {took:?}");

    for watch in watches.iter().flatten() {
        assert!(!watch.is_finished(), "the watch outlived a hang and a partition (and the 2 s request timeout)");
    }

    // Dead engine: the watch ends, and calls are refused at once.
    engines.kill(victim);
    let killed = Instant::now();
    for watch in watches.into_iter().flatten() {
        tokio::time::timeout(Duration::from_secs(2), watch)
            .await
            .expect("the watch ended with the engine")
            .unwrap()
            .ok();
        assert!(killed.elapsed() < Duration::from_millis(500), "the watch ended after {:?}", killed.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let err = rt.ping(&node).await.unwrap_err();
    let took = started.elapsed();
    engines.restart(victim);
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(took < Duration::from_millis(500), "refused took {took:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.ping(&node).await.is_err() {
        assert!(Instant::now() < deadline, "the engine did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each test above, once against the local cluster's dockerd nodes and once against hollow
/// engines started by the test.
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        mod dockerd {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(nodes) = test_support::local_cluster::nodes() else { return };
                    super::$test(&super::Dockerd(nodes)).await;
                }
            )*
        }
        mod hollow {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Hollow::start().await).await;
                }
            )*
        }
    };
}

on_both_engines!(
    create_list_inspect_remove_over_tcp_and_unix,
    a_retried_start_makes_no_second_container,
    two_clusters_on_one_engine_never_see_each_other,
    exited_containers_report_their_exit_code,
    an_exit_137_under_a_memory_limit_is_no_oom_kill_by_itself,
    a_missing_image_names_image_and_node,
    engine_info_reports_resources,
    hung_partitioned_and_dead_engines_fail_fast_and_typed,
);

/// A runtime's pooled connections are driven on the tokio runtime that opened them: runtime
/// values on other tokio runtimes (each `#[tokio::test]` has its own) must never be handed a
/// connection whose driver may end under them. With one process-wide pool, two threads doing
/// this at once got `SendRequest` errors from connections the other's ended runtime no longer
/// drove.
#[test]
fn runtimes_on_tokio_runtimes_that_come_and_go_never_share_a_dead_connection() {
    let Some(nodes) = test_support::local_cluster::nodes() else { return };
    let node = nodes[0].node(false);
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let node = node.clone();
            std::thread::spawn(move || {
                for round in 0..40 {
                    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    tokio.block_on(async {
                        let rt = runtime("pools");
                        for _ in 0..3 {
                            rt.ping(&node).await.unwrap_or_else(|e| panic!("worker {worker} round {round}: {e}"));
                            rt.list_replicas(&node)
                                .await
                                .unwrap_or_else(|e| panic!("worker {worker} round {round}: {e}"));
                        }
                    });
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}
