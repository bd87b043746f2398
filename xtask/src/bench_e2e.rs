//! `cargo xtask bench e2e`: the orchestrator side by side with Docker Swarm and with the raw
//! Docker API, on the same 3 local engines in the same run.
//!
//! - converge: time from asking for 50 replicas to all 50 running (ours: `POST /v1/deployments`
//!   until `actual == 50`; Swarm: `docker service create --replicas 50` until `50/50`; raw: the
//!   create+start calls themselves at the best parallelism found);
//! - failover: 100 replicas, SIGKILL of the engine of a node holding about a third of them;
//!   time to detection (node offline / Down) and until 100 run on the survivors.
//!
//! Each phase gets a freshly started cluster. Prints a table and writes target/bench/e2e.json.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cluster::{Cluster, state_dir};
use crate::{image, sh};

const CONVERGE_REPLICAS: usize = 50;
const FAILOVER_REPLICAS: usize = 100;
/// A worker in Swarm (node1 is its manager); the same node for ours.
const VICTIM: &str = "node3";
pub(crate) const PORT: u16 = 18_282;
pub(crate) const TOKEN: &str = "bench-e2e-token-0123456789abcdef0123456789";
const POLL: Duration = Duration::from_millis(25);

#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) tcp: String,
}

pub(crate) fn nodes() -> Result<Vec<Node>> {
    let listing = test_support::local_cluster::listing(&state_dir()).context("no cluster node list")?;
    Ok(listing.into_iter().map(|n| Node { name: n.name, tcp: n.tcp }).collect())
}

pub(crate) fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if done().unwrap_or(false) {
            return Ok(started.elapsed());
        }
        std::thread::sleep(POLL);
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

fn kill_engine(node: &str) -> Result<()> {
    let pid = std::fs::read_to_string(state_dir().join(node).join("docker.pid"))?;
    sh::run(Command::new("kill").args(["-KILL", pid.trim()]))
}

pub(crate) fn docker(node: &Node, args: &[&str]) -> Result<String> {
    sh::output(Command::new("docker").arg("-H").arg(&node.tcp).args(args))
}

/// Containers running on a node with a label, as its engine reports them.
fn running_with_label(node: &Node, label: &str) -> Result<usize> {
    Ok(docker(node, &["ps", "-q", "--filter", &format!("label={label}")])?.lines().count())
}

#[derive(Debug, Default)]
struct Figures {
    converge: Option<Duration>,
    detect: Option<Duration>,
    failover: Option<Duration>,
    moved: usize,
    /// Ours: each engine's adaptive limit of calls at once after the converge and the failover.
    limits_after_converge: Vec<(String, u32)>,
    limits_after_failover: Vec<(String, u32)>,
}

pub fn run(no_install: bool) -> Result<()> {
    sh::run(sh::cargo().args(["build", "--release", "-p", "orchestrator"]))?;
    let cluster = Cluster::new(state_dir());
    let result = (|| {
        cluster.up(3, no_install)?;
        let ours = ours().context("orchestrator phase")?;
        cluster.up(3, no_install)?;
        let raw = raw_api(ours.moved).context("raw API phase")?;
        cluster.up(3, no_install)?;
        let swarm = swarm().context("Swarm phase")?;
        report(&ours, &raw, &swarm)
    })();
    cluster.down()?;
    result
}

// ---- ours -------------------------------------------------------------------------------

pub(crate) fn api(method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let url = format!("http://127.0.0.1:{PORT}{path}");
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json");
    let mut response = match body {
        Some(body) => ureq::run(request.body(serde_json::to_vec(&body)?)?)?,
        None => ureq::run(request.body(())?)?,
    };
    if response.status().as_u16() == 204 {
        return Ok(Value::Null);
    }
    Ok(response.body_mut().read_json()?)
}

/// Each engine's limit of container calls at once, as the server's `/metrics` reports it.
fn engine_call_limits() -> Result<Vec<(String, u32)>> {
    let text = ureq::get(format!("http://127.0.0.1:{PORT}/metrics"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()?
        .body_mut()
        .read_to_string()?;
    let mut limits = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("orchestrator_engine_call_limit{node=\"") else { continue };
        let (node, value) = rest.split_once("\"} ").context("a labelled gauge")?;
        limits.push((node.to_string(), value.parse()?));
    }
    Ok(limits)
}

/// The release server on the cluster's nodes at `PORT`, its data in target/`data`, ready.
pub(crate) fn serve(data: &str) -> Result<sh::KillOnDrop> {
    let nodes = nodes()?;
    let data = sh::workspace_root().join("target").join(data);
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let mut serve = Command::new(sh::workspace_root().join("target/release/orchestrator"));
    serve
        .args(["serve", "--listen", &format!("127.0.0.1:{PORT}")])
        .arg("--data-dir")
        .arg(&data)
        .env("ORCH_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join("server.log"))?);
    for n in &nodes {
        serve.arg("--node").arg(format!("{}={}", n.name, n.tcp));
    }
    let server = sh::KillOnDrop(serve.spawn()?);
    until("the server ready", Duration::from_secs(20), || {
        Ok(ureq::get(format!("http://127.0.0.1:{PORT}/readyz")).call().is_ok())
    })?;
    Ok(server)
}

fn ours() -> Result<Figures> {
    let _server = serve("bench-e2e")?;
    let mut figures = Figures::default();

    let body = json!({"image": image::TEST_IMAGE, "replicas": CONVERGE_REPLICAS, "name": "converge", "command": ["sleep", "3600"]});
    let started = Instant::now();
    api("POST", "/v1/deployments", Some(body))?;
    until("50 running", Duration::from_secs(120), || {
        Ok(api("GET", "/v1/deployments/converge", None)?["actual"] == CONVERGE_REPLICAS)
    })?;
    figures.converge = Some(started.elapsed());
    println!("ours: {CONVERGE_REPLICAS} replicas running after {:.2}s", started.elapsed().as_secs_f64());
    figures.limits_after_converge = engine_call_limits()?;
    println!("ours: engine call limits after it: {:?}", figures.limits_after_converge);
    api("DELETE", "/v1/deployments/converge", None)?;

    let body = json!({"image": image::TEST_IMAGE, "replicas": FAILOVER_REPLICAS, "name": "failover", "command": ["sleep", "3600"]});
    api("POST", "/v1/deployments", Some(body))?;
    until("100 running", Duration::from_secs(180), || {
        Ok(api("GET", "/v1/deployments/failover", None)?["actual"] == FAILOVER_REPLICAS)
    })?;
    let on_victim = |d: &Value| {
        d["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["node"] == VICTIM && r["state"] == "running")
            .count()
    };
    figures.moved = on_victim(&api("GET", "/v1/deployments/failover", None)?);
    kill_engine(VICTIM)?;
    let killed = Instant::now();
    let mut detected = None;
    until("the lost replicas running elsewhere", Duration::from_secs(60), || {
        if detected.is_none() && api("GET", &format!("/v1/nodes/{VICTIM}"), None)?["status"] != "online" {
            detected = Some(killed.elapsed());
        }
        let d = api("GET", "/v1/deployments/failover", None)?;
        let running = d["replicas"].as_array().into_iter().flatten().filter(|r| r["state"] == "running").count();
        Ok(running == FAILOVER_REPLICAS && on_victim(&d) == 0)
    })?;
    figures.failover = Some(killed.elapsed());
    figures.detect = detected;
    figures.limits_after_failover = engine_call_limits()?;
    println!(
        "ours: {VICTIM} (held {}) offline after {:.2}s, all {FAILOVER_REPLICAS} running elsewhere after {:.2}s",
        figures.moved,
        detected.unwrap_or_default().as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    println!("ours: engine call limits after it: {:?}", figures.limits_after_failover);
    Ok(figures)
}

// ---- raw Docker API ---------------------------------------------------------------------

/// create+start of 50 containers spread over the nodes, `in_flight` calls at a time, straight
/// to the engines with bollard; returns the wall time, after removing them again (untimed).
/// What the raw references do per container: create `name` (the test image, sleeping) and
/// start it, nothing more.
pub(crate) async fn create_and_start(docker: &bollard::Docker, name: &str) -> Result<(), bollard::errors::Error> {
    create(docker, name).await?;
    docker.start_container(name, None).await
}

async fn create(docker: &bollard::Docker, name: &str) -> Result<(), bollard::errors::Error> {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::CreateContainerOptionsBuilder;

    let body = ContainerCreateBody {
        image: Some(image::TEST_IMAGE.into()),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        ..Default::default()
    };
    docker.create_container(Some(CreateContainerOptionsBuilder::new().name(name).build()), body).await?;
    Ok(())
}

/// What a raw round times per container.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Calls {
    CreateAndStart,
    /// The containers are created before the clock starts: what a warm standby (created, not
    /// started, kept on other nodes) would leave a failover to do.
    StartOnly,
}

async fn raw_round(nodes: &[Node], count: usize, in_flight: usize, round: usize, calls: Calls) -> Result<Duration> {
    use bollard::Docker;
    use bollard::query_parameters::RemoveContainerOptionsBuilder;
    use futures::StreamExt;

    let clients: Vec<Docker> = nodes
        .iter()
        .map(|n| Docker::connect_with_http(&n.tcp.replace("tcp://", "http://"), 60, bollard::API_DEFAULT_VERSION))
        .collect::<Result<_, _>>()?;
    let name = |i: usize| format!("raw-{round}-{i}");
    if calls == Calls::StartOnly {
        let created: Vec<Result<(), bollard::errors::Error>> = futures::stream::iter(0..count)
            .map(|i| {
                let docker = clients[i % clients.len()].clone();
                async move { create(&docker, &name(i)).await }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await;
        created.into_iter().collect::<Result<(), _>>()?;
    }
    let started = Instant::now();
    let results: Vec<Result<(), bollard::errors::Error>> = futures::stream::iter(0..count)
        .map(|i| {
            let docker = clients[i % clients.len()].clone();
            async move {
                match calls {
                    Calls::CreateAndStart => create_and_start(&docker, &name(i)).await,
                    Calls::StartOnly => docker.start_container(&name(i), None).await,
                }
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let took = started.elapsed();
    for r in results {
        r?;
    }
    futures::stream::iter(0..count)
        .for_each_concurrent(12, |i| {
            let docker = clients[i % clients.len()].clone();
            async move {
                let options = RemoveContainerOptionsBuilder::new().force(true).build();
                let _ = docker.remove_container(&name(i), Some(options)).await;
            }
        })
        .await;
    Ok(took)
}

/// The raw limit for converging 50 (best parallelism), and for the replacement part of a
/// failover: as many containers as the failed node held, on the surviving nodes.
fn raw_api(replaced: usize) -> Result<Raw> {
    let nodes = nodes()?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut best: Option<(usize, Duration)> = None;
    for (round, in_flight) in [3, 6, 12, 24, 48].into_iter().enumerate() {
        let took = rt.block_on(raw_round(&nodes, CONVERGE_REPLICAS, in_flight, round, Calls::CreateAndStart))?;
        println!("raw API: {CONVERGE_REPLICAS} create+start, {in_flight} in flight: {:.2}s", took.as_secs_f64());
        if best.is_none_or(|(_, b)| took < b) {
            best = Some((in_flight, took));
        }
    }
    let (in_flight, converge) = best.context("no raw round ran")?;
    let survivors: Vec<Node> = nodes.iter().filter(|n| n.name != VICTIM).cloned().collect();
    let replace = rt.block_on(raw_round(&survivors, replaced, in_flight, 99, Calls::CreateAndStart))?;
    println!("raw API: {replaced} create+start on the {} survivors: {:.2}s", survivors.len(), replace.as_secs_f64());
    let start_only = rt.block_on(raw_round(&survivors, replaced, in_flight, 98, Calls::StartOnly))?;
    println!("raw API: {replaced} start of created containers on the survivors: {:.2}s", start_only.as_secs_f64());
    Ok(Raw { in_flight, converge, replace, start_only })
}

struct Raw {
    in_flight: usize,
    converge: Duration,
    replace: Duration,
    /// The replacement with the containers already created: the most a warm standby saves.
    start_only: Duration,
}

// ---- Docker Swarm -----------------------------------------------------------------------

/// A swarm of the cluster's nodes, node1 its manager; the nodes, the manager first.
pub(crate) fn swarm_init() -> Result<Vec<Node>> {
    let nodes = nodes()?;
    let manager = &nodes[0];
    let ip = |n: &Node| n.tcp.trim_start_matches("tcp://").split(':').next().unwrap_or_default().to_string();
    docker(manager, &["swarm", "init", "--advertise-addr", &ip(manager)])?;
    let token = docker(manager, &["swarm", "join-token", "-q", "worker"])?;
    for worker in &nodes[1..] {
        docker(worker, &["swarm", "join", "--token", token.trim(), &format!("{}:2377", ip(manager))])?;
    }
    until("3 swarm nodes ready", Duration::from_secs(30), || {
        let ls = docker(manager, &["node", "ls", "--format", "{{.Status}}"])?;
        Ok(ls.lines().filter(|s| *s == "Ready").count() == nodes.len())
    })?;
    Ok(nodes)
}

fn swarm() -> Result<Figures> {
    let nodes = swarm_init()?;
    let manager = &nodes[0];
    let mut figures = Figures::default();
    let service = |name: &str, replicas: usize| {
        docker(
            manager,
            &[
                "service",
                "create",
                "--detach",
                "--no-resolve-image",
                "--name",
                name,
                "--replicas",
                &replicas.to_string(),
                image::TEST_IMAGE,
                "sleep",
                "3600",
            ],
        )
    };
    let replicas = |name: &str| {
        docker(manager, &["service", "ls", "--filter", &format!("name={name}"), "--format", "{{.Replicas}}"])
    };

    let started = Instant::now();
    service("converge", CONVERGE_REPLICAS)?;
    until("50/50", Duration::from_secs(120), || {
        Ok(replicas("converge")?.trim() == format!("{CONVERGE_REPLICAS}/{CONVERGE_REPLICAS}"))
    })?;
    figures.converge = Some(started.elapsed());
    println!("swarm: {CONVERGE_REPLICAS} replicas running after {:.2}s", started.elapsed().as_secs_f64());
    docker(manager, &["service", "rm", "converge"])?;
    until("the converge service gone", Duration::from_secs(60), || {
        let mut left = 0;
        for n in &nodes {
            left += running_with_label(n, "com.docker.swarm.service.name=converge")?;
        }
        Ok(left == 0)
    })?;

    service("failover", FAILOVER_REPLICAS)?;
    let full = format!("{FAILOVER_REPLICAS}/{FAILOVER_REPLICAS}");
    until("100/100", Duration::from_secs(180), || Ok(replicas("failover")?.trim() == full))?;
    let victim = nodes.iter().find(|n| n.name == VICTIM).context("no victim node")?;
    figures.moved = running_with_label(victim, "com.docker.swarm.service.name=failover")?;
    kill_engine(VICTIM)?;
    let killed = Instant::now();
    let mut detected = None;
    until("100 running on the survivors", Duration::from_secs(120), || {
        if detected.is_none() {
            let ls = docker(manager, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"])?;
            if ls.lines().any(|l| l == format!("{VICTIM} Down")) {
                detected = Some(killed.elapsed());
            }
        }
        let mut running = 0;
        for n in nodes.iter().filter(|n| n.name != VICTIM) {
            running += running_with_label(n, "com.docker.swarm.service.name=failover")?;
        }
        Ok(running == FAILOVER_REPLICAS)
    })?;
    figures.failover = Some(killed.elapsed());
    figures.detect = detected;
    println!(
        "swarm: {VICTIM} (held {}) Down after {:.2}s, all {FAILOVER_REPLICAS} running elsewhere after {:.2}s",
        figures.moved,
        detected.unwrap_or_default().as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    Ok(figures)
}

// ---- report -------------------------------------------------------------------------------

fn secs(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64())
}

fn report(ours: &Figures, raw: &Raw, swarm: &Figures) -> Result<()> {
    let (raw_in_flight, raw_time) = (raw.in_flight, raw.converge);
    let rows = [
        ("converge 50 replicas (s)", secs(ours.converge), secs(swarm.converge), secs(Some(raw_time))),
        ("failover: detection (s)", secs(ours.detect), secs(swarm.detect), f64::NAN),
        // Raw: no detection at all, only re-creating the lost containers on the survivors.
        ("failover: all 100 running (s)", secs(ours.failover), secs(swarm.failover), secs(Some(raw.replace))),
    ];
    let standby_saves = 1.0 - raw.start_only.as_secs_f64() / raw.replace.as_secs_f64();
    println!("\n{:<32} {:>8} {:>8} {:>8} {:>12} {:>10}", "", "ours", "swarm", "raw API", "swarm/ours", "ours/raw");
    for (label, o, s, r) in rows {
        let fmt = |v: f64| if v.is_nan() { "-".to_string() } else { format!("{v:.2}") };
        println!("{label:<32} {:>8} {:>8} {:>8} {:>12} {:>10}", fmt(o), fmt(s), fmt(r), fmt(s / o), fmt(o / r));
    }
    println!(
        "(raw API best at {raw_in_flight} calls in flight; the failed node held {} of ours and {} of Swarm's replicas)",
        ours.moved, swarm.moved
    );
    println!(
        "(raw API starting {} already-created containers: {:.2}s, {:.0}% less than creating them too: \
         the most a warm standby could save)",
        ours.moved,
        raw.start_only.as_secs_f64(),
        standby_saves * 100.0
    );
    let out = json!({
        "converge_replicas": CONVERGE_REPLICAS,
        "failover_replicas": FAILOVER_REPLICAS,
        "ours": {
            "converge_s": secs(ours.converge),
            "detect_s": secs(ours.detect),
            "failover_s": secs(ours.failover),
            "moved": ours.moved,
            "engine_call_limits_after_converge": ours.limits_after_converge,
            "engine_call_limits_after_failover": ours.limits_after_failover,
        },
        "swarm": {"converge_s": secs(swarm.converge), "detect_s": secs(swarm.detect), "failover_s": secs(swarm.failover), "moved": swarm.moved},
        "raw_api": {
            "converge_s": raw_time.as_secs_f64(),
            "replace_s": raw.replace.as_secs_f64(),
            "replace_start_only_s": raw.start_only.as_secs_f64(),
            "in_flight": raw_in_flight,
        },
        "ratios": {
            "converge_swarm_over_ours": secs(swarm.converge) / secs(ours.converge),
            "converge_ours_over_raw": secs(ours.converge) / raw_time.as_secs_f64(),
            "failover_swarm_over_ours": secs(swarm.failover) / secs(ours.failover),
            "failover_ours_over_raw": secs(ours.failover) / raw.replace.as_secs_f64(),
            "standby_saves_of_raw_replace": standby_saves,
        },
    });
    let dir = sh::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("e2e.json"), serde_json::to_string_pretty(&out)?)?;
    println!("written to target/bench/e2e.json");
    Ok(())
}
