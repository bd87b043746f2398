//! `cargo xtask demo`: the README's "run it" command. A 3-node local cluster, `orchestrator
//! serve` on the embedded SQLite default, 6 replicas, one node's engine killed, the replicas
//! moved (timed), the node back, exactly 6 again. Everything goes through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::{Cluster, state_dir};
use crate::{image, sh};

#[derive(clap::Args)]
pub struct Args {
    /// Leave the cluster and the server running afterwards, to try the CLI by hand.
    #[arg(long)]
    keep: bool,
    /// Port for the API.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Fail instead of installing missing system packages.
    #[arg(long)]
    no_install: bool,
}

const REPLICAS: usize = 6;
const VICTIM: &str = "node2";

fn say(text: &str) {
    println!("\n==> {text}");
}

struct Demo {
    binary: PathBuf,
    server: String,
    token: String,
}

impl Demo {
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args).env("ORCH_SERVER", &self.server).env("ORCH_TOKEN", &self.token);
        cmd
    }

    /// Runs a CLI command with its output shown to the user, echoing the command line.
    fn show(&self, args: &[&str]) -> Result<()> {
        println!("$ orchestrator {}", args.join(" "));
        let status = self.cli(args).status()?;
        if !status.success() {
            bail!("`orchestrator {}` failed", args.join(" "));
        }
        Ok(())
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let out = sh::output(self.cli(args).args(["-o", "json"]))?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Running replicas of `web`, and how many of them are on `avoid`.
    fn running(&self, avoid: &str) -> Result<(usize, usize)> {
        let web = self.json(&["deploy", "get", "web"])?;
        let running: Vec<&Value> =
            web["replicas"].as_array().into_iter().flatten().filter(|r| r["state"] == "running").collect();
        Ok((running.len(), running.iter().filter(|r| r["node"] == avoid).count()))
    }

    fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if done().unwrap_or(false) {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("timed out after {timeout:?} waiting for {what}")
    }
}

fn random_token() -> Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Containers of ours on each node, as the engines report them.
fn engine_counts(cluster_dir: &Path) -> Result<Vec<(String, usize)>> {
    let nodes = test_support::local_cluster::listing(cluster_dir).context("the cluster wrote no node list")?;
    Ok(nodes
        .into_iter()
        .map(|n| {
            let count = test_support::engines::containers(&n.tcp, Some("web")).map_or(0, |c| c.len());
            (n.name, count)
        })
        .collect())
}

pub fn run(args: Args) -> Result<()> {
    let root = sh::workspace_root();
    let cluster_dir = state_dir();
    let cluster = Cluster::new(cluster_dir.clone());
    let server_child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
    if !args.keep {
        let (child, dir) = (Arc::clone(&server_child), cluster_dir.clone());
        ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: tearing down");
            if let Some(mut c) = child.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = c.kill();
            }
            let _ = Cluster::new(dir.clone()).down();
            std::process::exit(130);
        })?;
    }
    let result = tour(&args, &root, &cluster, &cluster_dir, &server_child);
    if args.keep && result.is_ok() {
        let server = format!("http://127.0.0.1:{}", args.port);
        println!(
            "\nLeft running (--keep). Try:\n  export ORCH_SERVER={server} ORCH_TOKEN=$(cat target/demo/admin.token)"
        );
        println!(
            "  target/debug/orchestrator status\nStop with: kill {} && cargo xtask cluster down",
            server_child.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, Child::id)
        );
        return Ok(());
    }
    if let Some(mut c) = server_child.lock().unwrap_or_else(|p| p.into_inner()).take() {
        sh::quiet(Command::new("kill").args(["-TERM", &c.id().to_string()]));
        let _ = c.wait();
    }
    cluster.down()?;
    result
}

fn tour(
    args: &Args,
    root: &Path,
    cluster: &Cluster,
    cluster_dir: &Path,
    server_child: &Arc<Mutex<Option<Child>>>,
) -> Result<()> {
    say("Starting 3 Docker engines, each in its own network namespace (cargo xtask cluster up)");
    cluster.up(3, args.no_install)?;

    say("Building the orchestrator");
    sh::run(sh::cargo().args(["build", "--quiet", "-p", "orchestrator"]))?;
    let binary = root.join("target/debug/orchestrator");

    let data_dir = root.join("target/demo");
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let token = random_token()?;
    std::fs::write(data_dir.join("admin.token"), format!("{token}\n"))?;
    let nodes = test_support::local_cluster::listing(cluster_dir).context("the cluster wrote no node list")?;
    let mut serve = Command::new(&binary);
    serve
        .args(["serve", "--listen", &format!("127.0.0.1:{}", args.port)])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("ORCH_ADMIN_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data_dir.join("server.log"))?);
    for node in &nodes {
        serve.arg("--node").arg(format!("{}={}", node.name, node.tcp));
    }
    say(&format!(
        "Starting `orchestrator serve` on http://127.0.0.1:{} with SQLite at target/demo/orchestrator.db",
        args.port
    ));
    *server_child.lock().unwrap_or_else(|p| p.into_inner()) = Some(serve.spawn().context("start orchestrator serve")?);
    let demo = Demo { binary, server: format!("http://127.0.0.1:{}", args.port), token };
    demo.wait("the 3 nodes to come online", Duration::from_secs(20), || {
        let nodes = demo.json(&["node", "ls"])?;
        Ok(nodes.as_array().is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["status"] == "online")))
    })
    .context("see target/demo/server.log")?;

    say(&format!("Creating {REPLICAS} replicas of {} (sleep 3600)", image::TEST_IMAGE));
    demo.show(&[
        "deploy",
        "create",
        image::TEST_IMAGE,
        "--replicas",
        &REPLICAS.to_string(),
        "--name",
        "web",
        "--wait",
        "--",
        "sleep",
        "3600",
    ])?;
    demo.show(&["status"])?;

    say(&format!("Killing {VICTIM}'s Docker engine (SIGKILL)"));
    let killed = Instant::now();
    sh::run(
        Command::new("kill")
            .args(["-KILL", std::fs::read_to_string(cluster_dir.join(VICTIM).join("docker.pid"))?.trim()]),
    )?;
    demo.wait(&format!("{VICTIM} to be marked offline"), Duration::from_secs(10), || {
        let node = demo.json(&["node", "ls"])?;
        Ok(node.as_array().into_iter().flatten().any(|n| n["name"] == VICTIM && n["status"] == "offline"))
    })?;
    let offline_after = killed.elapsed();
    demo.wait("all replicas running on the surviving nodes", Duration::from_secs(30), || {
        let (running, on_victim) = demo.running(VICTIM)?;
        Ok(running == REPLICAS && on_victim == 0)
    })?;
    let moved_after = killed.elapsed();
    println!(
        "{VICTIM} marked offline after {:.2}s; all {REPLICAS} replicas running elsewhere after {:.2}s",
        offline_after.as_secs_f64(),
        moved_after.as_secs_f64()
    );
    demo.show(&["status"])?;

    say(&format!("Restarting {VICTIM}'s engine; its stale copies must go, leaving exactly {REPLICAS}"));
    sh::run(Command::new("sh").arg(cluster_dir.join(VICTIM).join("start.sh")))?;
    demo.wait(&format!("{VICTIM} online with exactly {REPLICAS} containers in all"), Duration::from_secs(60), || {
        let nodes = demo.json(&["node", "ls"])?;
        let online = nodes.as_array().into_iter().flatten().all(|n| n["status"] == "online");
        let total: usize = engine_counts(cluster_dir)?.iter().map(|(_, c)| c).sum();
        Ok(online && total == REPLICAS && demo.running("")?.0 == REPLICAS)
    })?;
    demo.show(&["status"])?;
    let counts = engine_counts(cluster_dir)?;
    println!(
        "\nContainers of `web` per engine (asked of Docker directly): {}",
        counts.iter().map(|(n, c)| format!("{n}={c}")).collect::<Vec<_>>().join(" ")
    );
    say("Done: created, failed over, healed, exactly 6 again.");
    Ok(())
}
