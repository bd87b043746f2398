//! `cargo xtask bench [store|scheduler|runtime|all]`: the criterion benches, with the local
//! cluster started for (and stopped after) the ones that need real engines.

use anyhow::Result;
use clap::ValueEnum;

use crate::cluster::{Cluster, state_dir};
use crate::sh;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// SQLite placement throughput (store-diesel).
    Store,
    /// Placement at 1M/5k and a 5k-node heartbeat tick (scheduler).
    Scheduler,
    /// Container create+start on real engines (runtime-docker).
    Runtime,
    /// GET /status under load (hey) with 100 nodes and 10,000 replicas; idle RSS of serve.
    Api,
    /// Ours vs Docker Swarm vs the raw Docker API on 3 local engines: converge and failover.
    E2e,
    /// Rolling updates, ours vs Docker Swarm on 3 local engines: defaults, same settings, rollback.
    Update,
    /// Logs: 30 replicas x 1,000 lines/s followed for 60 s (lines, RSS, CPU); tail=10000 vs the engines.
    Logs,
    /// HA: takeover after kill -9 of the leader (median of 5) and requests through HAProxy.
    Ha,
    /// Hollow engines (crates/hollow-node): --nodes N --replicas R (default 500 / 50,000).
    Scale,
    All,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(value_enum, default_value_t = Suite::All)]
    suite: Suite,
    /// `scale`: hollow engines.
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    /// `scale`: replicas in all.
    #[arg(long, default_value_t = 50_000)]
    replicas: u64,
    /// `scale`: record the server with perf while it converges (target/bench/scale-perf.txt).
    #[arg(long)]
    perf: bool,
    /// `scale`: only the store-side figures (raw SQLite, placement), no server.
    #[arg(long)]
    store_only: bool,
}

pub fn run(args: Args) -> Result<()> {
    let wants = |s: Suite| args.suite == s || args.suite == Suite::All;
    if wants(Suite::Store) {
        sh::run(sh::cargo().args(["bench", "-p", "store-diesel", "--bench", "placement"]))?;
    }
    if wants(Suite::Scheduler) {
        sh::run(sh::cargo().args(["bench", "-p", "scheduler", "--bench", "scheduler"]))?;
    }
    if wants(Suite::Api) {
        crate::bench_api::run()?;
    }
    if wants(Suite::E2e) {
        crate::bench_e2e::run(false)?;
    }
    if wants(Suite::Update) {
        crate::bench_update::run(false)?;
    }
    if wants(Suite::Logs) {
        crate::bench_logs::run()?;
    }
    if wants(Suite::Ha) {
        crate::bench_ha::run()?;
    }
    if wants(Suite::Scale) {
        crate::bench_scale::run(crate::bench_scale::Args {
            nodes: args.nodes,
            replicas: args.replicas,
            perf: args.perf,
            store_only: args.store_only,
        })?;
    }
    if wants(Suite::Runtime) {
        let cluster = Cluster::new(state_dir());
        cluster.up(3, false)?;
        let result = sh::run(sh::cargo().args(["bench", "-p", "runtime-docker", "--bench", "engine"]));
        cluster.down()?;
        result?;
    }
    Ok(())
}
