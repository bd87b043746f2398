//! `cargo xtask ci`: what CI runs, and what a contributor runs before pushing.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{Result, bail};

use crate::packages::Need;
use crate::{cluster, packages, pg, sh};

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
    packages::ensure_build_deps(args.no_install)?;
    // The HA tests: HAProxy in front of servers on a PostgreSQL database they make with psql;
    // the dashboard's browser test: Debian's chromium driven through chromedriver.
    packages::ensure(
        &[
            Need { program: "haproxy", package: "haproxy" },
            Need { program: "psql", package: "postgresql-client" },
            Need { program: "/usr/bin/chromium", package: "chromium" },
            Need { program: "/usr/bin/chromedriver", package: "chromium-driver" },
            Need { program: "/usr/bin/docker-registry", package: "docker-registry" },
        ],
        args.no_install,
    )?;
    sh::run(sh::cargo().args(["fmt", "--all", "--check"]))?;
    crate::tidy::run()?;
    sh::run(sh::cargo().args(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
    let cluster = cluster::Cluster::new(cluster::state_dir());
    // Four: most tests use three, one adds the fourth at runtime.
    cluster.up(4, args.no_install)?;
    // The store suite and the HA tests run on a real PostgreSQL too; pulls from a real private
    // registry (TLS, htpasswd) on the cluster's bridge.
    let tests = pg::up(args.no_install).and_then(|()| crate::registry::up(args.no_install)).and_then(|()| run_tests());
    let _ = crate::registry::down();
    // Short chaos runs on the same cluster (their own servers and deployments), seeds fixed so
    // a failure can be replayed: `cargo xtask chaos --ha --minutes 2 --seed 1` (three servers
    // on that PostgreSQL behind HAProxy), then `cargo xtask chaos --minutes 2 --seed 1`.
    let chaos = |ha: bool| crate::chaos::run(crate::chaos::Args { minutes: 2.0, seed: 1, ha, servers: 3 });
    let chaos_ha = if tests.is_ok() { chaos(true) } else { Ok(()) };
    let _ = pg::down();
    let chaos = if tests.is_ok() && chaos_ha.is_ok() { chaos(false) } else { Ok(()) };
    // Fuzzing the API against its own OpenAPI document (schemathesis, from PyPI into a venv).
    let fuzz = if tests.is_ok() { crate::fuzz::run(crate::fuzz::Args { seconds: 45, seed: 1 }) } else { Ok(()) };
    if !args.keep_cluster {
        cluster.down()?;
    }
    let (passed, failed) = tests?;
    chaos_ha?;
    chaos?;
    fuzz?;
    // One closing line for the whole workspace: cargo's own last line is that of the last
    // (often empty) doc-test run, which says nothing about the run as a whole.
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} tests failed");
    }
    Ok(())
}

/// Runs every test (engines required), streaming cargo's output and adding up its results.
fn run_tests() -> Result<(u64, u64)> {
    let mut cmd = sh::cargo();
    cmd.args(["test", "--workspace", "--all-features", "--no-fail-fast"])
        .env("ORCH_REQUIRE_DOCKER", "1")
        .stdout(Stdio::piped());
    eprintln!("$ {}", sh::display(&cmd));
    let mut child = cmd.spawn()?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(summary) = line.strip_prefix("test result: ") {
            passed += count(summary, " passed");
            failed += count(summary, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed with {status}");
    }
    Ok((passed, failed))
}

/// `ok. 12 passed; 0 failed; ...` -> the number before `what`.
fn count(summary: &str, what: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(what.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn reads_cargo_test_summaries() {
        let ok = "ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!((count(ok, " passed"), count(ok, " failed")), (12, 0));
        let bad = "FAILED. 6 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 67.74s";
        assert_eq!((count(bad, " passed"), count(bad, " failed")), (6, 1));
    }
}
