//! `cargo xtask bench api`: `GET /status` at a fixed 1,000 requests/s (Debian's `hey`) against
//! the release binary, with a store seeded with 100 nodes and 10,000 running replicas, while a
//! client changes the cluster every 250 ms (a live cluster's heartbeats write every 500 ms, and
//! each change makes the server rebuild the document); and the resident memory of
//! `orchestrator serve` idle and after the load.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use orchestrator_core::{
    Change, ContainerTemplate, DeploymentName, DeploymentSpec, DeploymentStore, ImageRef, NewNode, NodeName,
    NodeStatus, NodeStore, Placement, ReplicaStore,
};
use store_diesel::DieselStore;

use crate::packages::{self, Need};
use crate::sh;

const NODES: usize = 100;
const DEPLOYMENTS: usize = 100;
const REPLICAS_EACH: usize = 100;
const PORT: u16 = 18_181;
const TOKEN: &str = "bench-api-token-0123456789abcdef0123456789";
/// A node with no replicas, drained over and over by the writer during the load.
const SPARE: &str = "spare";
const WRITE_EVERY: Duration = Duration::from_millis(250);

fn seed(path: &std::path::Path) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = DieselStore::open(path).await?;
        let mut nodes = Vec::new();
        for i in 0..NODES {
            // Port 1 on loopback refuses at once: pings fail fast, and no engine is involved.
            let name = format!("node-{i}");
            store.add_node(NewNode::new(&name, "tcp://127.0.0.1:1", 1_000)?).await?;
            let name = NodeName::new(name)?;
            store.set_node_status(&name, NodeStatus::Online, None).await?;
            nodes.push(name);
        }
        store.add_node(NewNode::new(SPARE, "tcp://127.0.0.1:1", 0)?).await?;
        for d in 0..DEPLOYMENTS {
            let template = ContainerTemplate::new(ImageRef::parse("local/busybox:1")?)
                .with_command(vec!["sleep".into(), "3600".into()]);
            let spec = DeploymentSpec::new(template, REPLICAS_EACH as u32);
            let deployment =
                store.create_deployment(&DeploymentName::new(format!("app-{d}"))?, spec, Change::default()).await?;
            let placements: Vec<Placement> = (0..REPLICAS_EACH)
                .map(|r| Placement {
                    deployment: deployment.name.clone(),
                    node: nodes[(d + r) % NODES].clone(),
                    units: 1,
                    revision: deployment.revision,
                    claim: Default::default(),
                })
                .collect();
            for replica in store.place_replicas(&placements).await? {
                store.mark_running(replica.id, &format!("{:064x}", replica.id.0)).await?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })
}

pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

pub fn run() -> Result<()> {
    packages::ensure(&[Need { program: "hey", package: "hey" }], false)?;
    sh::run(sh::cargo().args(["build", "--release", "-p", "orchestrator"]))?;
    let root = sh::workspace_root();
    let dir = root.join("target/bench-api");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    seed(&dir.join("orchestrator.db"))?;
    println!(
        "seeded {NODES} nodes, {} replicas in {:.1}s",
        DEPLOYMENTS * REPLICAS_EACH,
        started.elapsed().as_secs_f64()
    );

    let mut server = Command::new(root.join("target/release/orchestrator"))
        .args(["serve", "--listen", &format!("127.0.0.1:{PORT}"), "--heartbeat-misses", "1000000000"])
        .arg("--data-dir")
        .arg(&dir)
        .env("ORCH_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    let result = measure(server.id());
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn measure(pid: u32) -> Result<()> {
    let url = format!("http://127.0.0.1:{PORT}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sh::quiet(Command::new("hey").args(["-n", "1", "-c", "1", &format!("{url}/healthz")])) {
        if Instant::now() > deadline {
            bail!("server did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let idle = rss_kib(pid)?;
    let auth = format!("Authorization: Bearer {TOKEN}");
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU32::new(0));
    let writer = {
        let (stop, writes) = (Arc::clone(&stop), Arc::clone(&writes));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match drain_spare() {
                    Ok(()) => writes.fetch_add(1, Ordering::Relaxed),
                    Err(e) => return Err(e),
                };
                std::thread::sleep(WRITE_EVERY);
            }
            Ok(())
        })
    };
    // gzip as browsers and most HTTP clients ask for it. hey passes the compressed bytes through
    // when the header is set by hand, so the load tool does not spend this 2-core machine's CPU
    // inflating them; identity is reported too.
    let passes = [("gzip", "Accept-Encoding: gzip"), ("identity", "Accept-Encoding: identity")];
    let mut reports = Vec::new();
    for (label, accept) in passes {
        // 10 workers x 100 requests/s each = 1,000 requests/s for 15 s.
        let report = sh::output(Command::new("hey").args([
            "-z",
            "15s",
            "-c",
            "10",
            "-q",
            "100",
            "-H",
            &auth,
            "-H",
            accept,
            &format!("{url}/status"),
        ]));
        reports.push((label, report));
    }
    let loaded = rss_kib(pid)?;
    stop.store(true, Ordering::Relaxed);
    writer.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    println!(
        "GET /status, 100 nodes, 10,000 replicas, 1,000 req/s offered for 15 s per pass (hey -z 15s -c 10 -q 100), \
         {} cluster changes over both passes:",
        writes.load(Ordering::Relaxed)
    );
    for (label, report) in reports {
        let report = report?;
        let pick =
            |prefix: &str| report.lines().find(|l| l.trim_start().starts_with(prefix)).map(|l| l.trim().to_string());
        println!(" {label}:");
        for prefix in ["Requests/sec", "Size/request", "50% in", "90% in", "99% in", "[200]"] {
            println!("  {}", pick(prefix).unwrap_or_else(|| format!("{prefix}: (not reported)")));
        }
        let non_200: Vec<&str> =
            report.lines().filter(|l| l.trim_start().starts_with('[') && !l.contains("[200]")).collect();
        if !non_200.is_empty() {
            println!("  other answers: {non_200:?}");
        }
    }
    println!(
        "RSS of orchestrator serve: idle {:.1} MiB, after load {:.1} MiB",
        idle as f64 / 1024.0,
        loaded as f64 / 1024.0
    );
    Ok(())
}

/// `POST /v1/nodes/spare/drain`: a real write (node status, audit record) through the API.
fn drain_spare() -> Result<()> {
    ureq::post(format!("http://127.0.0.1:{PORT}/v1/nodes/{SPARE}/drain"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_empty()
        .context("drain of the spare node failed")?;
    Ok(())
}
