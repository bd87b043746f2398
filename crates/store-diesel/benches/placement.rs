//! Placement throughput on a real SQLite file: one placement per transaction (what a single
//! `/create` of one replica costs) and batches of 1,000 in one transaction (what the scheduler
//! does for a large deployment or a rebalance).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use orchestrator_core::{
    Change, DeploymentName, DeploymentSpec, DeploymentStore, NewNode, NodeName, NodeStatus, NodeStore, Placement,
    ReplicaStore,
};
use store_diesel::DieselStore;

const NODES: usize = 100;

fn setup(rt: &tokio::runtime::Runtime, dir: &tempfile::TempDir) -> (DieselStore, Vec<Placement>) {
    rt.block_on(async {
        let store = DieselStore::open(&dir.path().join("bench.db")).await.unwrap();
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let name = format!("node-{i}");
            store.add_node(NewNode::new(&name, "tcp://127.0.0.1:2375", i64::from(u32::MAX)).unwrap()).await.unwrap();
            let name = NodeName::new(name).unwrap();
            store.set_node_status(&name, NodeStatus::Online, None).await.unwrap();
            nodes.push(name);
        }
        let deployment = DeploymentName::new("bench").unwrap();
        let spec = DeploymentSpec::of("local/busybox:1", 10_000).unwrap();
        store.create_deployment(&deployment, spec, Change::default()).await.unwrap();
        let placements = (0..1_000)
            .map(|i| Placement {
                deployment: deployment.clone(),
                node: nodes[i % NODES].clone(),
                units: 1,
                revision: 1,
                claim: Default::default(),
            })
            .collect();
        (store, placements)
    })
}

fn placement(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, placements) = setup(&rt, &dir);

    let mut group = c.benchmark_group("sqlite_placement");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_row", |b| {
        let one = &placements[..1];
        b.to_async(&rt).iter(|| async { store.place_replicas(one).await.unwrap() });
    });
    for batch in [100, 1_000] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batched", batch), &batch, |b, &batch| {
            let many = &placements[..batch];
            b.to_async(&rt).iter(|| async { store.place_replicas(many).await.unwrap() });
        });
    }
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);
