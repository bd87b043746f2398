//! `cargo xtask bench scale [--nodes 500] [--replicas 50000]`: the release server against hollow
//! engines (crates/hollow-node, served from this process): nodes registered through the API,
//! deployments of 1,000 replicas created until the total is reached. Reports replicas running
//! per second end to end, the heartbeat tick over all nodes, the server's RSS idle and loaded,
//! `GET /status` latency and size at that size, and the time to detect and re-place the replicas
//! of killed hollow nodes (5 % of them). First version: the figures issue 8 asks for that need
//! no instrumentation inside the server. Writes target/bench/scale.json.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::sh;

const TOKEN: &str = "bench-scale-token-0123456789abcdef0123456789";
const PER_DEPLOYMENT: u64 = 1_000;

pub struct Args {
    pub nodes: usize,
    pub replicas: u64,
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn get_json(url: &str) -> Result<(Value, usize, Duration)> {
    let started = Instant::now();
    let mut resp = agent().get(url).header("Authorization", &format!("Bearer {TOKEN}")).call()?;
    let body = resp.body_mut().with_config().limit(1 << 30).read_to_string()?;
    let took = started.elapsed();
    Ok((serde_json::from_str(&body)?, body.len(), took))
}

/// (running, required) over every deployment.
fn totals(url: &str) -> Result<(u64, u64)> {
    let (list, _, _) = get_json(&format!("{url}/v1/deployments"))?;
    let arr = list.as_array().context("deployments")?;
    Ok(arr
        .iter()
        .fold((0, 0), |(a, r), d| (a + d["actual"].as_u64().unwrap_or(0), r + d["required"].as_u64().unwrap_or(0))))
}

fn metric(url: &str, name: &str) -> Option<f64> {
    let mut resp =
        agent().get(format!("{url}/metrics")).header("Authorization", &format!("Bearer {TOKEN}")).call().ok()?;
    let text = resp.body_mut().read_to_string().ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

pub fn run(args: Args) -> Result<()> {
    if args.nodes == 0 || args.replicas == 0 {
        bail!("--nodes and --replicas must be positive");
    }
    sh::run(sh::cargo().args(["build", "--release", "-p", "orchestrator"]))?;
    let root = sh::workspace_root();
    let dir = root.join("target/bench-scale");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let cluster = runtime.block_on(hollow_node::HollowCluster::start(args.nodes))?;
    println!("{} hollow engines listening", cluster.len());

    let port = crate::net::free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let server = Server(
        Command::new(root.join("target/release/orchestrator"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&dir)
            .env("ORCH_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log"))?)
            .spawn()?,
    );
    let pid = server.0.id();
    let started = Instant::now();
    while crate::net::http_get(&format!("{url}/healthz")).is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the server did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let idle_rss = rss_mib(pid);

    // Nodes, with room for twice the replicas.
    let capacity = (args.replicas * 2).div_ceil(args.nodes as u64).max(1);
    let started = Instant::now();
    for i in 0..args.nodes {
        let body = json!({"name": format!("hollow{}", i + 1), "address": cluster.address(i)?, "capacity": capacity});
        let resp = agent()
            .post(format!("{url}/v1/nodes"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(&body)?;
        if !resp.status().is_success() {
            bail!("adding node {}: {}", i + 1, resp.status());
        }
    }
    let registered = started.elapsed();
    // Wait for the heartbeat to see them all online.
    let started = Instant::now();
    loop {
        let (nodes, _, _) = get_json(&format!("{url}/v1/nodes"))?;
        if nodes.as_array().is_some_and(|n| n.iter().all(|n| n["status"] == "online")) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("nodes did not come online");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let tick_ms = metric(&url, "orchestrator_heartbeat_tick_seconds").map(|s| s * 1000.0);

    // Deployments of 1,000 until the total.
    let deployments = args.replicas.div_ceil(PER_DEPLOYMENT);
    let started = Instant::now();
    for d in 0..deployments {
        let replicas = PER_DEPLOYMENT.min(args.replicas - d * PER_DEPLOYMENT);
        let body = json!({"name": format!("scale-{d}"), "image": "local/busybox:1", "replicas": replicas, "command": ["sleep", "3600"]});
        agent()
            .post(format!("{url}/v1/deployments"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(&body)?;
    }
    let mut last_print = Instant::now();
    let converged = loop {
        let (running, required) = totals(&url)?;
        if running >= required && required == args.replicas {
            break started.elapsed();
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            println!("  {running} of {required} running after {:.0} s", started.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(1_800) {
            bail!("not converged after 30 minutes ({running} of {required})");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let loaded_rss = rss_mib(pid);
    let tick_loaded_ms = metric(&url, "orchestrator_heartbeat_tick_seconds").map(|s| s * 1000.0);

    // GET /status at that size.
    let mut latencies = Vec::new();
    let mut size = 0;
    for _ in 0..20 {
        let (_, bytes, took) = get_json(&format!("{url}/status"))?;
        size = bytes;
        latencies.push(took.as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    // Kill 5 % of the hollow engines: time until every replica runs again elsewhere.
    let victims = (args.nodes / 20).max(1);
    let killed = Instant::now();
    for i in 0..victims {
        cluster.kill(i)?;
    }
    let detected = loop {
        let (nodes, _, _) = get_json(&format!("{url}/v1/nodes"))?;
        let offline = nodes.as_array().map_or(0, |n| n.iter().filter(|n| n["status"] == "offline").count());
        if offline >= victims {
            break killed.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let victim_names: Vec<String> = (0..victims).map(|i| format!("hollow{}", i + 1)).collect();
    let replaced = loop {
        // Every replica running, none of them on a killed node.
        let (status, _, _) = get_json(&format!("{url}/status"))?;
        let deployments = status["deployments"].as_array().context("deployments")?;
        let all_running = deployments.iter().all(|d| d["actual"] == d["required"]);
        let on_victims = deployments
            .iter()
            .flat_map(|d| d["replicas"].as_array().into_iter().flatten())
            .filter(|r| r["state"] == "running" && victim_names.iter().any(|v| r["node"] == v.as_str()))
            .count();
        if all_running && on_victims == 0 {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(600) {
            bail!("replicas of the killed nodes not replaced in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(server);

    let report = json!({
        "nodes": args.nodes,
        "replicas": args.replicas,
        "nodes_registered_s": registered.as_secs_f64(),
        "converged_s": converged.as_secs_f64(),
        "replicas_running_per_s": args.replicas as f64 / converged.as_secs_f64(),
        "heartbeat_tick_ms_idle": tick_ms,
        "heartbeat_tick_ms_loaded": tick_loaded_ms,
        "rss_mib_idle": idle_rss,
        "rss_mib_loaded": loaded_rss,
        "status_p50_ms": latencies[latencies.len() / 2],
        "status_p99_ms": latencies[latencies.len() - 1],
        "status_bytes": size,
        "killed_nodes": victims,
        "detected_s": detected.as_secs_f64(),
        "replaced_s": replaced.as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("scale.json"), serde_json::to_string_pretty(&report)?)?;
    println!("written to target/bench/scale.json");
    drop(cluster);
    Ok(())
}
