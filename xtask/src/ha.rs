//! `cargo xtask ha up|down|status`: the HA setup on one machine. A local PostgreSQL (`pg up`,
//! unless one of ours already runs), N `orchestrator serve` processes on loopback ports sharing
//! it, and HAProxy in front with the ready config of docs/ha/haproxy.cfg (only its ports
//! changed). The Docker nodes are those of the local cluster, started if it is not up.
//! `down` stops exactly what `up` started: a PostgreSQL or a cluster that was already running
//! is left running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{self, Cluster};
use crate::net::{free_port, http_get};
use crate::packages::{self, Need};
use crate::{pg, sh};

pub const TEMPLATE: &str = "docs/ha/haproxy.cfg";
const DEFAULT_NODES: usize = 3;

#[derive(clap::Subcommand)]
pub enum HaCommand {
    /// Start PostgreSQL, N servers and HAProxy (and the local cluster if it is not up).
    Up {
        #[arg(long, default_value_t = 3)]
        servers: usize,
        /// Where HAProxy listens for clients (127.0.0.1).
        #[arg(long, default_value_t = 18_080)]
        port: u16,
        /// Build and run the release binary.
        #[arg(long)]
        release: bool,
        /// Fail instead of installing missing system packages.
        #[arg(long)]
        no_install: bool,
    },
    /// Stop what `up` started.
    Down,
    /// Each server's role and the leader, as the servers say.
    Status,
}

pub fn run(command: HaCommand) -> Result<()> {
    match command {
        HaCommand::Up { servers, port, release, no_install } => {
            let setup = up(&Options { servers, port, release, no_install, max_nodes: None, server_args: Vec::new() })?;
            println!("HA setup up: {} servers behind HAProxy at {}", setup.servers.len(), setup.url);
            println!("admin token in {}", setup.dir.join("admin-token").display());
            println!(
                "  ORCH_SERVER={} ORCH_TOKEN=$(cat {}) orchestrator status",
                setup.url,
                setup.token_file().display()
            );
            status(&setup)
        }
        HaCommand::Down => down(),
        HaCommand::Status => status(&Setup::load()?),
    }
}

pub struct Options {
    pub servers: usize,
    pub port: u16,
    pub release: bool,
    pub no_install: bool,
    /// Use at most this many of the local cluster's nodes (all of them when `None`).
    pub max_nodes: Option<usize>,
    /// Passed to every `orchestrator serve` besides the setup's own.
    pub server_args: Vec<String>,
}

/// The id server `index` runs with (`--server-id`), as `/readyz` names it.
pub fn server_id(index: usize) -> String {
    format!("s{}", index + 1)
}

/// A running HA setup, as recorded in target/ha.
pub struct Setup {
    pub dir: PathBuf,
    /// HAProxy's address for clients.
    pub url: String,
    /// Each server's own address, in start order.
    pub servers: Vec<String>,
    pub binary: PathBuf,
    pub store: String,
    pub nodes: Vec<(String, String)>,
    pub server_args: Vec<String>,
}

pub fn state_dir() -> PathBuf {
    sh::workspace_root().join("target/ha")
}

/// `template` with its client bind line and its server lines replaced.
pub fn haproxy_config(template: &str, listen: u16, servers: &[u16]) -> String {
    let servers: Vec<String> = servers.iter().map(|port| format!("127.0.0.1:{port}")).collect();
    test_support::haproxy::config(template, listen, &servers)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn signal(pid: u32, sig: &str) {
    sh::quiet(Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()));
}

/// SIGTERM, then SIGKILL if it has not gone within `grace`.
fn stop_pid(pid: u32, grace: Duration) {
    signal(pid, "TERM");
    let started = Instant::now();
    while alive(pid) && started.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        signal(pid, "KILL");
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if done() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

impl Setup {
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("admin-token")
    }

    pub fn token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.token_file())?.trim().to_string())
    }

    fn load() -> Result<Self> {
        let dir = state_dir();
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map(|s| s.trim().to_string())
                .with_context(|| format!("no HA setup (target/ha/{name} missing): run `cargo xtask ha up`"))
        };
        let servers = read("servers")?.lines().map(str::to_string).collect();
        let nodes = read("nodes")?
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect();
        let server_args = std::fs::read_to_string(dir.join("server-args")).unwrap_or_default();
        let server_args = server_args.lines().map(str::to_string).collect();
        Ok(Self {
            url: read("url")?,
            servers,
            binary: read("binary")?.into(),
            store: read("store")?,
            nodes,
            server_args,
            dir,
        })
    }

    fn server_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("server{}", index + 1))
    }

    /// Starts server `index` (again) on its recorded port, detached, logging to its dir.
    pub fn start_server(&self, index: usize) -> Result<u32> {
        let dir = self.server_dir(index);
        std::fs::create_dir_all(&dir)?;
        let listen = self.servers[index].trim_start_matches("http://").to_string();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log"))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(["serve", "--listen", &listen, "--server-id", &server_id(index)])
            .args(&self.server_args)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--admin-token-file")
            .arg(self.token_file())
            // One key for every server: a registry login sealed by one opens on the others.
            .arg("--registry-key-file")
            .arg(self.dir.join("registry.key"))
            .env("ORCH_STORE", &self.store)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (name, address) in &self.nodes {
            cmd.arg("--node").arg(format!("{name}={address}"));
        }
        // Its own process group: not stopped by a Ctrl-C meant for xtask.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("cannot start {}", self.binary.display()))?;
        std::fs::write(dir.join("pid"), child.id().to_string())?;
        Ok(child.id())
    }

    pub fn server_pid(&self, index: usize) -> Option<u32> {
        read_pid(&self.server_dir(index).join("pid")).filter(|p| alive(*p))
    }

    /// What the server's /readyz says: (role, leader), or None when it does not answer.
    pub fn readyz(&self, index: usize) -> Option<(String, Option<String>)> {
        let (_, body) = http_get(&format!("{}/readyz", self.servers[index]))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some((v["role"].as_str()?.to_string(), v["leader"].as_str().map(str::to_string)))
    }

    /// The index of the server that says it leads.
    pub fn leader(&self) -> Option<usize> {
        (0..self.servers.len()).find(|&i| self.readyz(i).is_some_and(|(role, _)| role == "leader"))
    }
}

pub fn up(options: &Options) -> Result<Setup> {
    if !(1..=9).contains(&options.servers) {
        bail!("--servers must be 1..=9");
    }
    let dir = state_dir();
    if dir.join("haproxy.pid").exists() {
        bail!("an HA setup is already up (target/ha): `cargo xtask ha down` first");
    }
    packages::ensure(&[Need { program: "haproxy", package: "haproxy" }], options.no_install)?;
    packages::ensure_build_deps(options.no_install)?;
    let mut build = sh::cargo();
    build.args(["build", "-p", "orchestrator", "--features", "postgres"]);
    if options.release {
        build.arg("--release");
    }
    sh::run(&mut build)?;
    let binary =
        sh::workspace_root().join(if options.release { "target/release" } else { "target/debug" }).join("orchestrator");
    std::fs::create_dir_all(&dir)?;

    // Record what we start as we go, so `down` can undo a half-finished `up`.
    let pg_url = sh::workspace_root().join("target/pg/url");
    if !pg_url.exists() {
        pg::up(options.no_install)?;
        std::fs::write(dir.join("started-pg"), "")?;
    }
    let server_url = std::fs::read_to_string(&pg_url)?.trim().to_string();
    // A fresh database for this setup on that server.
    let database = "orchestrator_ha";
    for sql in [format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"), format!("CREATE DATABASE {database}")] {
        sh::output(Command::new("psql").args([&server_url, "-v", "ON_ERROR_STOP=1", "-qc", &sql]))?;
    }
    let store = format!("{}/{database}", server_url.rsplit_once('/').expect("a URL with a database").0);

    let cluster_dir = cluster::state_dir();
    if !cluster_dir.join("nodes").exists() {
        Cluster::new(cluster_dir.clone()).up(DEFAULT_NODES, options.no_install)?;
        std::fs::write(dir.join("started-cluster"), "")?;
    }
    let nodes: Vec<(String, String)> = test_support::local_cluster::listing(&cluster_dir)
        .context("the cluster wrote no node list")?
        .into_iter()
        .map(|n| (n.name, n.tcp))
        .take(options.max_nodes.unwrap_or(usize::MAX))
        .collect();

    let ports: Vec<u16> = (0..options.servers).map(|_| free_port()).collect::<Result<_>>()?;
    let servers: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let token = format!("ha-{:032x}", rand_u128());
    write_private(&dir.join("admin-token"), &token)?;
    write_private(&dir.join("registry.key"), &format!("{:032x}{:032x}", rand_u128(), rand_u128()))?;
    let setup = Setup {
        url: format!("http://127.0.0.1:{}", options.port),
        servers,
        binary,
        store,
        nodes,
        server_args: options.server_args.clone(),
        dir,
    };
    std::fs::write(setup.dir.join("server-args"), setup.server_args.join("\n"))?;
    std::fs::write(setup.dir.join("servers"), setup.servers.join("\n"))?;
    std::fs::write(setup.dir.join("url"), &setup.url)?;
    std::fs::write(setup.dir.join("binary"), setup.binary.to_string_lossy().as_bytes())?;
    std::fs::write(setup.dir.join("store"), &setup.store)?;
    let listing: Vec<String> = setup.nodes.iter().map(|(n, a)| format!("{n} {a}")).collect();
    std::fs::write(setup.dir.join("nodes"), listing.join("\n"))?;
    for i in 0..options.servers {
        setup.start_server(i)?;
    }
    for (i, server) in setup.servers.iter().enumerate() {
        wait_until(&format!("server {} to answer", i + 1), Duration::from_secs(30), || {
            http_get(&format!("{server}/healthz")).is_some()
        })?;
    }

    let template = std::fs::read_to_string(sh::workspace_root().join(TEMPLATE))?;
    let config = setup.dir.join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(&template, options.port, &ports))?;
    sh::run(Command::new("haproxy").arg("-f").arg(&config).arg("-p").arg(setup.dir.join("haproxy.pid")).arg("-D"))?;
    wait_until("a ready server behind HAProxy", Duration::from_secs(30), || {
        http_get(&format!("{}/readyz", setup.url)).is_some_and(|(code, _)| code == 200)
    })?;
    Ok(setup)
}

pub fn down() -> Result<()> {
    let dir = state_dir();
    if let Some(pid) = read_pid(&dir.join("haproxy.pid")) {
        stop_pid(pid, Duration::from_secs(5));
        println!("HAProxy stopped");
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("server")
            && let Some(pid) = read_pid(&entry.path().join("pid"))
            && alive(pid)
        {
            // Graceful: the leader hands its lease over.
            stop_pid(pid, Duration::from_secs(15));
            println!("{} stopped", entry.file_name().to_string_lossy());
        }
    }
    if dir.join("started-cluster").exists() {
        Cluster::new(cluster::state_dir()).down()?;
    }
    if dir.join("started-pg").exists() {
        pg::down()?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

fn status(setup: &Setup) -> Result<()> {
    for (i, server) in setup.servers.iter().enumerate() {
        match setup.readyz(i) {
            Some((role, leader)) => {
                println!("s{} {server}: {role} (leader: {})", i + 1, leader.as_deref().unwrap_or("none"));
            }
            None => println!("s{} {server}: not answering", i + 1),
        }
    }
    Ok(())
}

/// The token file: readable by its owner only.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Randomness for a throwaway local token, from the kernel.
fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    u128::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_config_is_what_ha_up_renders_for_its_ports() {
        let template = std::fs::read_to_string(sh::workspace_root().join(TEMPLATE)).unwrap();
        assert_eq!(haproxy_config(&template, 8080, &[8081, 8082, 8083]), template);
        let two = haproxy_config(&template, 9000, &[9001, 9002]);
        assert!(two.contains("    bind 127.0.0.1:9000\n"));
        assert!(two.contains("    server s1 127.0.0.1:9001 check\n    server s2 127.0.0.1:9002 check\n"));
        assert!(!two.contains("127.0.0.1:8083"));
    }
}
