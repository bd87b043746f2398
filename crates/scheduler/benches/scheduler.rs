//! Placement of 1,000,000 replicas over 5,000 nodes (target >= 500,000 decisions/s), and one
//! heartbeat tick over 5,000 nodes with a mocked runtime and the in-memory store.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orchestrator_core::memory::MemoryStore;
use orchestrator_core::{MockContainerRuntime, NewNode, NodeName, NodeStatus, NodeStore};
use scheduler::{Candidate, Heartbeat, Scheduler, SchedulerConfig, Strategy, handoff, placement};
use tokio::sync::Notify;

const NODES: usize = 5_000;
const REPLICAS: u32 = 1_000_000;

fn candidates() -> Vec<Candidate> {
    (0..NODES).map(|i| Candidate::new(NodeName::new(format!("node-{i}")).unwrap(), 250, 0)).collect()
}

fn placement_bench(c: &mut Criterion) {
    let nodes = candidates();
    let mut group = c.benchmark_group("placement_1m_over_5k_nodes");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(REPLICAS)));
    for (name, strategy) in [("spread", Strategy::Spread), ("binpack", Strategy::Binpack)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let plan = placement::place(strategy, &nodes, 1, REPLICAS);
                assert_eq!(plan.unplaced, 0);
                plan
            })
        });
    }
    group.finish();
}

fn heartbeat_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let store = Arc::new(MemoryStore::new());
    rt.block_on(async {
        for i in 0..NODES {
            let name = format!("node-{i}");
            store.add_node(NewNode::new(&name, "tcp://127.0.0.1:2375", 100).unwrap()).await.unwrap();
            store.set_node_status(&NodeName::new(name).unwrap(), NodeStatus::Online, None).await.unwrap();
        }
    });
    let mut runtime = MockContainerRuntime::new();
    runtime.expect_ping().returning(|_| Ok(()));
    let scheduler = Arc::new(Scheduler::new(store, Arc::new(runtime), SchedulerConfig::default()));
    let (down, _events) = handoff();
    let mut heartbeat = Heartbeat::new(scheduler, down, Arc::new(Notify::new()));

    let mut group = c.benchmark_group("heartbeat_tick");
    group.throughput(Throughput::Elements(NODES as u64));
    group.bench_function("5000_nodes", |b| {
        b.iter(|| rt.block_on(async { heartbeat.tick().await.unwrap() }));
    });
    group.finish();
}

criterion_group!(benches, placement_bench, heartbeat_bench);
criterion_main!(benches);
