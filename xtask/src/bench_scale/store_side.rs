//! The figures that need no server: the raw SQLite batched-insert rate (the physical reference
//! for what the store could ever persist on this machine) and placements decided and persisted
//! per second by the real scheduler on the real store, with the runtime mocked out (placement
//! starts no container; the mock fails the run if anything calls an engine).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use futures::StreamExt;
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

/// A fresh SQLite file at `path` with the store writer's settings (WAL, synchronous=NORMAL,
/// `store_diesel::SQLITE_WRITER_PRAGMAS`) and a table of the replicas' columns and indexes.
fn replicas_table(path: &std::path::Path) -> Result<SqliteConnection> {
    let _ = std::fs::remove_file(path);
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
    Ok(conn)
}

/// Inserts `rows` replica-shaped rows (the replicas table's columns and indexes) into a fresh
/// SQLite file with the store writer's settings (WAL, synchronous=NORMAL,
/// `store_diesel::SQLITE_WRITER_PRAGMAS`), 1,000 per statement, 10,000 per transaction. Rows per
/// second.
pub fn raw_sqlite_inserts(dir: &std::path::Path, rows: u64) -> Result<f64> {
    let path = dir.join("raw-reference.db");
    let mut conn = replicas_table(&path)?;
    let per_s = timed_batches(&mut conn, rows, |range| insert_replicas(range, |r| r % 5_000 + 1))?;
    drop(conn);
    remove_db(&path);
    Ok(per_s)
}

/// The least a placement must write, in plain SQL at the raw reference's batching and on its
/// connection settings: per replica its row (as in `raw_sqlite_inserts`), its event (the events
/// API gives one per replica placed) and its node's reservation (what keeps a node from being
/// oversubscribed), with `nodes` nodes and each statement of 1,000 replicas spread one a node
/// (one multi-row INSERT each for the replicas and the events, one UPDATE of the 1,000 nodes).
/// No reading, no deciding, no constraint and no check: a floor, not a placement. Replicas per
/// second.
pub fn raw_sqlite_placement_floor(dir: &std::path::Path, nodes: usize, rows: u64) -> Result<f64> {
    let path = dir.join("raw-floor.db");
    let mut conn = replicas_table(&path)?;
    conn.batch_execute(
        "CREATE TABLE events (
             id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, at_ms BIGINT NOT NULL, kind TEXT NOT NULL,
             node TEXT, deployment TEXT, replica BIGINT, message TEXT NOT NULL);
         CREATE TABLE nodes (name TEXT PRIMARY KEY NOT NULL, capacity BIGINT NOT NULL, available BIGINT NOT NULL);",
    )?;
    let mut sql = String::from("BEGIN;");
    for n in 1..=nodes {
        sql.push_str(&format!("INSERT INTO nodes VALUES ('hollow{n}', 1000000, 1000000);"));
    }
    sql.push_str("COMMIT;");
    conn.batch_execute(&sql)?;
    let node = |r: u64| r % nodes as u64 + 1;
    let per_s = timed_batches(&mut conn, rows, |range| {
        let events: Vec<String> = range
            .clone()
            .map(|r| {
                format!(
                    "(1764000000000,'replica_placed','hollow{0}','scale-{1}',{2},'replica {2} placed on hollow{0}')",
                    node(r),
                    r / 1_000,
                    r + 1
                )
            })
            .collect();
        let names: Vec<String> = range.clone().map(|r| format!("'hollow{}'", node(r))).collect();
        format!(
            "{}INSERT INTO events (at_ms, kind, node, deployment, replica, message) VALUES {};\
             UPDATE nodes SET available = available - 1 WHERE name IN ({});",
            insert_replicas(range, node),
            events.join(","),
            names.join(",")
        )
    })?;
    drop(conn);
    remove_db(&path);
    Ok(per_s)
}

/// Runs `statements` for `rows` rows, `ROWS_PER_INSERT` rows a call and
/// `INSERTS_PER_TRANSACTION` calls a transaction; rows per second.
fn timed_batches(
    conn: &mut SqliteConnection,
    rows: u64,
    mut statements: impl FnMut(std::ops::Range<u64>) -> String,
) -> Result<f64> {
    let started = Instant::now();
    let mut written = 0;
    while written < rows {
        let mut sql = String::from("BEGIN IMMEDIATE;");
        for _ in 0..INSERTS_PER_TRANSACTION {
            if written >= rows {
                break;
            }
            let n = ROWS_PER_INSERT.min(rows - written);
            sql.push_str(&statements(written..written + n));
            written += n;
        }
        sql.push_str("COMMIT;");
        conn.batch_execute(&sql)?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// One multi-row INSERT of the replicas `range`, replica `r` on node `hollow{node(r)}`.
fn insert_replicas(range: std::ops::Range<u64>, node: impl Fn(u64) -> u64) -> String {
    let values: Vec<String> =
        range.map(|r| format!("('scale-{}','hollow{}',1,'pending',1764000000000)", r / 1_000, node(r))).collect();
    format!("INSERT INTO replicas (deployment, node, units, state, created_at_ms) VALUES {};", values.join(","))
}

fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

pub struct Placed {
    pub placements: u64,
    pub took: Duration,
    pub deployments: u64,
}

/// `nodes` online nodes and deployments of `per_deployment` until `replicas`, in a store file
/// as the server keeps it; then the scheduler's placement step (`Scheduler::place_missing`:
/// read nodes and replicas, decide, reserve and record) for every deployment, as many at once
/// as the server converges (`SchedulerConfig::converge_concurrency`): the placer decides them
/// one after another, each on the capacity the ones before left, and records those that
/// waited together. Only that step is timed.
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
    let config = SchedulerConfig::default();
    let at_once = config.converge_concurrency;
    let scheduler = Scheduler::new(store, runtime, config);
    let started = Instant::now();
    let mut placements = 0;
    let mut placing = futures::stream::iter(&names)
        .map(|name| {
            let scheduler = &scheduler;
            async move { (name, scheduler.place_missing(name).await) }
        })
        .buffer_unordered(at_once);
    while let Some((name, outcome)) = placing.next().await {
        let (placed, unplaced) = outcome?;
        ensure!(unplaced == 0, "{name}: {unplaced} replicas found no room");
        placements += placed.len() as u64;
    }
    drop(placing);
    let took = started.elapsed();
    ensure!(placements == replicas, "placed {placements} of {replicas}");
    drop(scheduler);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("placement.db{suffix}")));
    }
    Ok(Placed { placements, took, deployments })
}
