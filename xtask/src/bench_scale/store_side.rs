//! The figures that need no server: the raw SQLite batched-insert rate (the physical reference
//! for what the store could ever persist on this machine) and placements decided and persisted
//! per second by the real scheduler on the real store, with the runtime mocked out (placement
//! starts no container; the mock fails the run if anything calls an engine).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use orchestrator_core::{
    Change, ContainerTemplate, DeploymentName, DeploymentSpec, DeploymentStore, EngineFacts, ImageRef,
    MockContainerRuntime, NewNode, NodeName, NodeStatus, NodeStore, NodeUpdate, PortSpec, Resources,
};
use scheduler::{Scheduler, SchedulerConfig};
use store_diesel::DieselStore;

/// Rows per INSERT statement and per transaction in the raw reference: what the store itself
/// uses for a batch of placements (1,000 rows per statement).
const ROWS_PER_INSERT: u64 = 1_000;
const INSERTS_PER_TRANSACTION: u64 = 10;

/// Inserts `rows` replica-shaped rows (the replicas table's columns and indexes) into a fresh
/// SQLite file with the store writer's settings (WAL, synchronous=NORMAL,
/// `store_diesel::SQLITE_WRITER_PRAGMAS`), 1,000 per statement, 10,000 per transaction. Rows per
/// second.
pub fn raw_sqlite_inserts(dir: &std::path::Path, rows: u64) -> Result<f64> {
    let path = dir.join("raw-reference.db");
    let _ = std::fs::remove_file(&path);
    let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
    conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    conn.batch_execute(store_diesel::SQLITE_WRITER_PRAGMAS)?;
    conn.batch_execute(
        "CREATE TABLE replicas (
             id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, deployment TEXT NOT NULL, node TEXT NOT NULL,
             units BIGINT NOT NULL, container_id TEXT, state TEXT NOT NULL, created_at_ms BIGINT NOT NULL);
         CREATE INDEX replicas_by_deployment ON replicas (deployment);
         CREATE INDEX replicas_by_node ON replicas (node);",
    )?;
    let started = Instant::now();
    let mut written = 0;
    while written < rows {
        let mut sql = String::from("BEGIN IMMEDIATE;");
        for _ in 0..INSERTS_PER_TRANSACTION {
            if written >= rows {
                break;
            }
            let n = ROWS_PER_INSERT.min(rows - written);
            sql.push_str("INSERT INTO replicas (deployment, node, units, state, created_at_ms) VALUES ");
            for i in 0..n {
                let r = written + i;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("('scale-{}','hollow{}',1,'pending',1764000000000)", r / 1_000, r % 5_000 + 1));
            }
            sql.push(';');
            written += n;
        }
        sql.push_str("COMMIT;");
        conn.batch_execute(&sql)?;
    }
    let took = started.elapsed();
    drop(conn);
    let _ = std::fs::remove_file(&path);
    Ok(rows as f64 / took.as_secs_f64())
}

pub struct Placed {
    pub placements: u64,
    pub took: Duration,
    pub deployments: u64,
}

/// `nodes` online nodes and deployments of `per_deployment` until `replicas`, in a store file
/// as the server keeps it; then the scheduler's placement step (`Scheduler::place_missing`:
/// read nodes and replicas, decide, reserve and record in one transaction) for each
/// deployment, one after another as placements are decided (each on the capacity the one
/// before left). Only that step is timed.
///
/// `claims`: every replica also claims memory and CPUs (nodes know their engine's size) and a
/// fixed host port of its deployment's own, so each placement also reserves those and holds a
/// port row; a deployment then has at most one replica a node (`per_deployment` is capped at
/// `nodes`).
pub async fn placements(
    dir: &std::path::Path,
    nodes: usize,
    replicas: u64,
    per_deployment: u64,
    claims: bool,
) -> Result<Placed> {
    let per_deployment = if claims { per_deployment.min(nodes as u64) } else { per_deployment };
    let path = dir.join("placement.db");
    let _ = std::fs::remove_file(&path);
    let store = Arc::new(DieselStore::open(&path).await?);
    let capacity = i64::try_from((replicas * 2).div_ceil(nodes as u64).max(1))?;
    for i in 0..nodes {
        let name = format!("hollow{}", i + 1);
        store.add_node(NewNode::new(&name, &format!("tcp://127.0.0.1:{}", 20_000 + i), capacity)?).await?;
        let name = NodeName::new(name)?;
        store.set_node_status(&name, NodeStatus::Online, None).await?;
        if claims {
            let engine = EngineFacts { cpus: 1_024, memory_bytes: 1 << 50 };
            store.update_node(&name, NodeUpdate { engine: Some(engine), ..NodeUpdate::default() }).await?;
        }
    }
    let deployments = replicas.div_ceil(per_deployment);
    let mut names = Vec::new();
    for d in 0..deployments {
        let count = per_deployment.min(replicas - d * per_deployment);
        let name = format!("scale-{d}");
        let mut template = ContainerTemplate::new(ImageRef::parse("local/busybox:1")?)
            .with_command(vec!["sleep".into(), "3600".into()]);
        if claims {
            template.resources = Resources { memory_bytes: Some(64 << 20), nano_cpus: Some(10_000_000) };
            let published = u16::try_from(10_000 + d % 50_000)?;
            template.ports = vec![PortSpec::tcp(8080, Some(published)), PortSpec::tcp(9090, None)];
        }
        let name = DeploymentName::new(name)?;
        store.create_deployment(&name, DeploymentSpec::new(template, u32::try_from(count)?), Change::default()).await?;
        names.push(name);
    }
    // No expectations: any engine call panics and fails the benchmark.
    let runtime = Arc::new(MockContainerRuntime::new());
    let scheduler = Scheduler::new(store, runtime, SchedulerConfig::default());
    let started = Instant::now();
    let mut placements = 0;
    for name in &names {
        let (placed, unplaced) = scheduler.place_missing(name).await?;
        ensure!(unplaced == 0, "{name}: {unplaced} replicas found no room");
        placements += placed.len() as u64;
    }
    let took = started.elapsed();
    ensure!(placements == replicas, "placed {placements} of {replicas}");
    drop(scheduler);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("placement.db{suffix}")));
    }
    Ok(Placed { placements, took, deployments })
}
