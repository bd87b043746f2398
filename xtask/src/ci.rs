//! `cargo xtask ci`: what CI runs, and what a contributor runs before pushing.

use anyhow::Result;

use crate::{cluster, sh};

#[derive(clap::Args)]
pub struct Args {
    /// Fail instead of installing missing system packages.
    #[arg(long)]
    no_install: bool,
    /// Keep the local cluster running afterwards.
    #[arg(long)]
    keep_cluster: bool,
}

pub fn run(args: Args) -> Result<()> {
    sh::run(sh::cargo().args(["fmt", "--all", "--check"]))?;
    sh::run(sh::cargo().args(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
    let cluster = cluster::Cluster::new(cluster::state_dir());
    cluster.up(3, args.no_install)?;
    let tests = sh::run(sh::cargo().args(["test", "--workspace", "--all-features"]).env("ORCH_REQUIRE_DOCKER", "1"));
    if !args.keep_cluster {
        cluster.down()?;
    }
    tests
}
