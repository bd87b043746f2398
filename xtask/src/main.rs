//! `cargo xtask ...`: the project's build system in Rust (see docs/ARCHITECTURE.md).

mod bench;
mod bench_api;
mod bench_e2e;
mod bench_ha;
mod bench_logs;
mod bench_scale;
mod bench_update;
mod chaos;
mod ci;
mod cluster;
mod demo;
mod fuzz;
mod ha;
mod image;
mod load;
mod net;
mod packages;
mod pg;
mod registry;
mod sh;
mod tidy;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Developer automation for the orchestrator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Format check, clippy, and every test (against a real local cluster).
    Ci(ci::Args),
    /// A local multi-node Docker cluster: one dockerd per network namespace.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// A throwaway local PostgreSQL (tests, HA): initdb + pg_ctl, loopback only.
    #[command(subcommand)]
    Pg(pg::PgCommand),
    /// A private registry (TLS + htpasswd) on the cluster's bridge, with the test images pushed.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// The HA setup: PostgreSQL, N servers and HAProxy in front, on this machine.
    #[command(subcommand)]
    Ha(ha::HaCommand),
    /// Criterion benchmarks (starts the local cluster for the runtime suite).
    Bench(bench::Args),
    /// A bounded, seeded chaos run on the local cluster with invariant checks after each fault.
    Chaos(chaos::Args),
    /// schemathesis against the server's own OpenAPI document (with and without a token).
    Fuzz(fuzz::Args),
    /// wrk against the release binary: GET /status, then mixed read/write traffic; no error allowed.
    Load(load::Args),
    /// The guided tour: 3 nodes, 6 replicas, a node dies, replicas move, the node returns.
    Demo(demo::Args),
    /// Mechanical checks that the docs and conventions hold (module docs, unsafe, labels).
    Tidy,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Ci(args) => ci::run(args),
        Command::Cluster(command) => cluster::run(command),
        Command::Pg(command) => pg::run(command),
        Command::Registry(command) => registry::run(command),
        Command::Ha(command) => ha::run(command),
        Command::Demo(args) => demo::run(args),
        Command::Load(args) => load::run(args),
        Command::Chaos(args) => chaos::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Tidy => tidy::run(),
    }
}
