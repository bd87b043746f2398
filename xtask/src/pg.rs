//! `cargo xtask pg up|down`: a throwaway PostgreSQL for tests and the HA setup, from Debian's
//! `postgresql` package but not its system service: `initdb` and `pg_ctl` on a data dir of our
//! own (under the system's temp dir, which the `postgres` user can reach whatever the
//! permissions of the checkout's parents; one per checkout), listening on a free loopback port only (so a server left by another
//! checkout never collides), trust authentication on loopback, fsync off (test data). The URL
//! is written to target/pg/url for tests to find.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::net::free_port;
use crate::packages::{self, Need};
use crate::sh;

#[derive(clap::Subcommand)]
pub enum PgCommand {
    /// Start a fresh server (removing any earlier one of ours).
    Up {
        /// Fail instead of installing missing system packages.
        #[arg(long)]
        no_install: bool,
    },
    /// Stop it and remove its data.
    Down,
}

pub fn run(command: PgCommand) -> Result<()> {
    match command {
        PgCommand::Up { no_install } => up(no_install),
        PgCommand::Down => down(),
    }
}

fn state_dir() -> PathBuf {
    sh::workspace_root().join("target/pg")
}

/// Outside the checkout: PostgreSQL runs as `postgres`, which may not traverse the checkout's
/// parents (a clone under /root). Named after the checkout so `down` finds its own.
fn data_dir() -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    sh::workspace_root().hash(&mut hasher);
    std::env::temp_dir().join(format!("orchestrator-pg-{:016x}", hasher.finish()))
}

/// Debian installs the server programs under /usr/lib/postgresql/VERSION/bin, off the PATH.
fn bin(program: &str) -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (Debian package postgresql)")?
        .flatten()
        .map(|e| e.path().join("bin").join(program))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop().with_context(|| format!("no {program} under /usr/lib/postgresql"))
}

/// Runs a server program as the `postgres` user: PostgreSQL refuses to run as root.
fn as_postgres(program: &str) -> Result<Command> {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(bin(program)?);
    Ok(cmd)
}

fn url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

pub fn up(no_install: bool) -> Result<()> {
    packages::ensure(
        &[
            Need { program: "/usr/lib/postgresql", package: "postgresql" },
            Need { program: "runuser", package: "util-linux" },
        ],
        no_install,
    )?;
    down()?;
    let data = data_dir();
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(state_dir())?;
    sh::run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&data))?;
    sh::output(as_postgres("initdb")?.args(["--auth=trust", "--username=postgres", "--no-sync", "-D"]).arg(&data))
        .context("initdb failed")?;
    let port = free_port()?;
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        data.display()
    );
    sh::run(
        as_postgres("pg_ctl")?
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-w", "-l"])
            .arg(data.join("log"))
            .arg("start"),
    )
    .with_context(|| format!("pg_ctl start failed (see {})", data.join("log").display()))?;
    std::fs::write(state_dir().join("url"), url(port))?;
    println!("PostgreSQL up at {}", url(port));
    Ok(())
}

pub fn down() -> Result<()> {
    let data = data_dir();
    let _ = std::fs::remove_file(state_dir().join("url"));
    if data.join("postmaster.pid").exists() {
        let stopped = sh::quiet(as_postgres("pg_ctl")?.arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"]));
        if !stopped {
            bail!("pg_ctl stop failed for {}", data.display());
        }
        println!("PostgreSQL stopped");
    }
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    Ok(())
}
