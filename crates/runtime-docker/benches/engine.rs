//! Real engines of the local cluster (`cargo xtask bench runtime` brings it up): create+start
//! latency of one container, and 50 creates with 10 in flight across 3 nodes. Removal happens
//! outside the timed part.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use orchestrator_core::{
    ContainerRuntime, ContainerTemplate, DeploymentName, ImageRef, Node, ReplicaContainer, ReplicaId,
};
use runtime_docker::{DockerRuntime, DockerRuntimeConfig};

fn cluster_nodes() -> Vec<Node> {
    let listing = test_support::local_cluster::listing(&test_support::local_cluster::cluster_dir())
        .expect("no local cluster: run `cargo xtask bench runtime` (it starts one)");
    listing.iter().map(|n| Node { capacity: 1_000, available: 1_000, ..n.node(false) }).collect()
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn container() -> ReplicaContainer {
    ReplicaContainer {
        deployment: DeploymentName::new("bench").unwrap(),
        replica: ReplicaId(NEXT.fetch_add(1, Ordering::Relaxed)),
        revision: 1,
        template: ContainerTemplate::new(ImageRef::parse("local/busybox:1").unwrap())
            .with_command(vec!["sleep".into(), "3600".into()]),
        image_digest: None,
    }
}

async fn remove_all(rt: &DockerRuntime, created: Vec<(Node, ReplicaContainer)>) {
    futures::stream::iter(created)
        .for_each_concurrent(10, |(node, c)| async move {
            rt.remove_replica(&node, &c.deployment, c.replica).await.unwrap();
        })
        .await;
}

fn engine(c: &mut Criterion) {
    let nodes = cluster_nodes();
    let rt_exec = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cluster_id = format!("bench{}", std::process::id());
    let mut config = DockerRuntimeConfig::new(cluster_id);
    config.stop_grace = Duration::ZERO;
    let rt = DockerRuntime::new(config);

    let mut group = c.benchmark_group("docker_engine");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("create_start_one", |b| {
        b.iter_custom(|iters| {
            rt_exec.block_on(async {
                let mut total = Duration::ZERO;
                let mut created = Vec::new();
                for _ in 0..iters {
                    let c = container();
                    let started = Instant::now();
                    rt.start_replica(&nodes[0], &c).await.unwrap();
                    total += started.elapsed();
                    created.push((nodes[0].clone(), c));
                }
                remove_all(&rt, created).await;
                total
            })
        })
    });
    group.throughput(Throughput::Elements(50));
    group.bench_function("create_start_50_across_3_nodes_10_in_flight", |b| {
        b.iter_custom(|iters| {
            rt_exec.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let work: Vec<(Node, ReplicaContainer)> =
                        (0..50).map(|i| (nodes[i % 3].clone(), container())).collect();
                    let started = Instant::now();
                    futures::stream::iter(work.iter())
                        .for_each_concurrent(10, |(node, c)| {
                            let rt = &rt;
                            async move {
                                rt.start_replica(node, c).await.unwrap();
                            }
                        })
                        .await;
                    total += started.elapsed();
                    remove_all(&rt, work).await;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
