//! `cargo xtask chaos --minutes 10 --seed S`: a bounded chaos run on the local real cluster.
//!
//! Random faults (SIGKILL, SIGSTOP of a node's engine, a network partition of a node, kill -9
//! and restart of the server) interleaved with random valid API calls, all drawn from a
//! generator seeded with S, so a run can be repeated. After each fault is undone, a
//! quiescence check waits for the cluster to settle and checks the invariants:
//! - every deployment runs exactly its required replicas (capacity is never short here), and
//!   the store's deployments are exactly those the client made, at the counts it asked;
//! - every container of ours on the engines is a replica the store knows, on the node it
//!   names, running; no replica id has two containers (no duplicates, no unaccounted ones);
//! - no node over capacity: each node's used units are exactly the replicas on it;
//! - every API call was answered, and never with a 5xx.
//!
//! Writes target/chaos/report.json; fails if any invariant was broken.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::cluster::{self, Cluster};
use crate::sh;

const TOKEN: &str = "chaos-admin-token-0123456789abcdef0123456789";
const NODES: usize = 3;
const MAX_DEPLOYMENTS: usize = 4;
const MAX_REPLICAS: u64 = 4;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    EngineKill,
    EnginePause,
    Partition,
    ServerKill,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::EngineKill => "engine SIGKILL",
            Fault::EnginePause => "engine SIGSTOP",
            Fault::Partition => "network partition",
            Fault::ServerKill => "server kill -9",
        }
    }
}

struct Server {
    child: Child,
    url: String,
    binary: std::path::PathBuf,
    args: Vec<String>,
    log: std::path::PathBuf,
}

fn spawn(binary: &std::path::Path, args: &[String], log: &std::path::Path) -> Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    Ok(Command::new(binary)
        .args(args)
        .env("ORCH_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()?)
}

impl Server {
    fn start(binary: &std::path::Path, args: Vec<String>, log: std::path::PathBuf) -> Result<Self> {
        let child = spawn(binary, &args, &log)?;
        let listen = args.iter().skip_while(|a| *a != "--listen").nth(1).context("--listen")?;
        let server = Self { child, url: format!("http://{listen}"), binary: binary.to_path_buf(), args, log };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<()> {
        crate::net::wait_for_ok(&format!("{}/readyz", self.url), Duration::from_secs(30))
            .with_context(|| format!("the server did not become ready (see {})", self.log.display()))
    }

    fn kill_and_restart(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.child = spawn(&self.binary, &self.args, &self.log)?;
        self.wait_ready()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client's side: what it asked for, and how the API answered.
#[derive(Default)]
struct Client {
    wanted: BTreeMap<String, u64>,
    next: u64,
    calls: u64,
    by_status: BTreeMap<u16, u64>,
    failures: Vec<String>,
    /// When the call being recorded was started.
    sent: Option<Instant>,
}

/// Longer than the engine timeout (30 s): an answer may wait for an engine that hangs.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(45)))
        .http_status_as_error(false)
        .build()
        .into()
}

impl Client {
    fn record(&mut self, what: &str, answer: Result<u16, ureq::Error>) -> Option<u16> {
        self.calls += 1;
        if let Some(since) = self.sent.take()
            && since.elapsed() > Duration::from_secs(2)
        {
            println!("  slow answer: {what} took {:.1}s", since.elapsed().as_secs_f64());
        }
        match answer {
            Ok(code) => {
                *self.by_status.entry(code).or_default() += 1;
                if code >= 500 {
                    self.failures.push(format!("{what}: HTTP {code}"));
                }
                Some(code)
            }
            Err(e) => {
                self.failures.push(format!("{what}: no answer: {e}"));
                None
            }
        }
    }

    /// One random valid call: create, scale or delete.
    fn random_call(&mut self, rng: &mut StdRng, url: &str) {
        let agent = agent();
        let auth = format!("Bearer {TOKEN}");
        let choice = rng.random_range(0..10);
        self.sent = Some(Instant::now());
        if self.wanted.is_empty() || (choice < 3 && self.wanted.len() < MAX_DEPLOYMENTS) {
            self.next += 1;
            let name = format!("chaos-{}", self.next);
            let replicas = rng.random_range(1..=MAX_REPLICAS);
            let body =
                json!({"name": name, "image": "local/busybox:1", "replicas": replicas, "command": ["sleep", "3600"]});
            let answer = agent.post(format!("{url}/v1/deployments")).header("Authorization", &auth).send_json(&body);
            if self.record(&format!("create {name}"), answer.map(|r| r.status().as_u16())) == Some(201) {
                self.wanted.insert(name, replicas);
            }
            return;
        }
        let names: Vec<String> = self.wanted.keys().cloned().collect();
        let name = names[rng.random_range(0..names.len())].clone();
        if choice < 8 {
            let replicas = rng.random_range(0..=MAX_REPLICAS);
            let read = agent.get(format!("{url}/v1/deployments/{name}")).header("Authorization", &auth).call();
            let version = match read {
                Ok(mut r) if r.status().is_success() => {
                    r.body_mut().read_json::<Value>().ok().map(|d| d["version"].clone())
                }
                other => {
                    self.record(&format!("get {name}"), other.map(|r| r.status().as_u16()));
                    return;
                }
            };
            let body = json!({"replicas": replicas, "version": version});
            let answer =
                agent.patch(format!("{url}/v1/deployments/{name}")).header("Authorization", &auth).send_json(&body);
            if self.record(&format!("scale {name}"), answer.map(|r| r.status().as_u16())) == Some(200) {
                self.wanted.insert(name, replicas);
            }
        } else {
            let answer = agent.delete(format!("{url}/v1/deployments/{name}")).header("Authorization", &auth).call();
            if self.record(&format!("delete {name}"), answer.map(|r| r.status().as_u16())) == Some(204) {
                self.wanted.remove(&name);
            }
        }
    }
}

/// Our containers on one engine: (deployment, replica id, container id, running).
fn engine_containers(address: &str) -> Option<Vec<(String, String, String, bool)>> {
    let out = Command::new("docker")
        .args(["-H", address, "ps", "-a", "--no-trunc", "--filter", "label=io.orchestrator.deployment"])
        .args([
            "--format",
            "{{.Label \"io.orchestrator.deployment\"}} {{.Label \"io.orchestrator.replica\"}} {{.ID}} {{.State}}",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut p = l.split_whitespace();
                Some((p.next()?.to_string(), p.next()?.to_string(), p.next()?.to_string(), p.next()? == "running"))
            })
            .filter(|(d, ..)| d.starts_with("chaos-"))
            .collect(),
    )
}

/// The invariants, once: `Ok(())` or what is wrong now.
fn check(url: &str, nodes: &[(String, String)], client: &Client) -> Result<(), String> {
    let (code, body) = crate::net::http_get_auth(&format!("{url}/status"), TOKEN).ok_or("no answer from /status")?;
    if code != 200 {
        return Err(format!("/status answered {code}"));
    }
    let status: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let nodes_view = status["nodes"].as_array().ok_or("no nodes")?;
    if let Some(n) = nodes_view.iter().find(|n| n["status"] != "online") {
        return Err(format!("node {} is {}", n["name"], n["status"]));
    }
    let deployments = status["deployments"].as_array().ok_or("no deployments")?;
    let stored: BTreeMap<String, u64> = deployments
        .iter()
        .filter_map(|d| Some((d["name"].as_str()?.to_string(), d["required"].as_u64()?)))
        .filter(|(n, _)| n.starts_with("chaos-"))
        .collect();
    if stored != client.wanted {
        return Err(format!("the store holds {stored:?}, the client asked for {:?}", client.wanted));
    }
    // (node, container id) of every replica the store has running.
    let mut known: HashMap<(String, String), (String, String)> = HashMap::new();
    let mut used: HashMap<String, u64> = HashMap::new();
    for d in deployments {
        let (name, required, actual) = (d["name"].as_str().unwrap_or(""), d["required"].as_u64(), d["actual"].as_u64());
        if actual != required {
            return Err(format!("{name}: {actual:?} running of {required:?}"));
        }
        for r in d["replicas"].as_array().into_iter().flatten() {
            let node = r["node"].as_str().unwrap_or("").to_string();
            *used.entry(node.clone()).or_default() += 1;
            if r["state"] != "running" {
                return Err(format!("{name} replica {} is {}", r["id"], r["state"]));
            }
            let container = r["container_id"].as_str().unwrap_or("").to_string();
            known.insert((node, container), (name.to_string(), r["id"].to_string()));
        }
    }
    for n in nodes_view {
        let name = n["name"].as_str().unwrap_or("");
        let (capacity, available) = (n["capacity"].as_u64().unwrap_or(0), n["available"].as_u64().unwrap_or(0));
        let on = used.get(name).copied().unwrap_or(0);
        if available > capacity || capacity - available != on {
            return Err(format!("{name}: capacity {capacity}, available {available}, {on} replicas on it"));
        }
    }
    let mut replica_ids: HashMap<String, u32> = HashMap::new();
    let mut seen = 0;
    for (node, address) in nodes {
        let containers = engine_containers(address).ok_or(format!("{node}'s engine does not answer"))?;
        for (deployment, replica, id, running) in containers {
            *replica_ids.entry(format!("{deployment}/{replica}")).or_default() += 1;
            match known.get(&(node.clone(), id.clone())) {
                Some((d, r)) if *d == deployment && *r == replica && running => seen += 1,
                _ => {
                    return Err(format!(
                        "container {id} ({deployment} replica {replica}) on {node} is unaccounted for"
                    ));
                }
            }
        }
    }
    if let Some((replica, n)) = replica_ids.iter().find(|(_, n)| **n > 1) {
        return Err(format!("replica {replica} has {n} containers"));
    }
    if seen != known.len() {
        return Err(format!("{} replicas in the store, {seen} containers on the engines", known.len()));
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let cluster = Cluster::new(cluster::state_dir());
    let listing = std::fs::read_to_string(cluster::state_dir().join("nodes")).unwrap_or_default();
    let started_cluster = listing.lines().count() < NODES;
    if started_cluster {
        cluster.up(NODES, false)?;
    }
    let result = chaos(&args, &cluster);
    if started_cluster {
        cluster.down()?;
    }
    result
}

fn chaos(args: &Args, cluster: &Cluster) -> Result<()> {
    sh::run(sh::cargo().args(["build", "-p", "orchestrator"]))?;
    let root = sh::workspace_root();
    let dir = root.join("target/chaos");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let nodes: Vec<(String, String)> = std::fs::read_to_string(cluster::state_dir().join("nodes"))?
        .lines()
        .take(NODES)
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect();
    let port = crate::net::free_port()?;
    let mut server_args: Vec<String> =
        vec!["serve".into(), "--listen".into(), format!("127.0.0.1:{port}"), "--data-dir".into()];
    server_args.push(dir.join("data").to_string_lossy().into_owned());
    server_args.extend(["--stop-grace".into(), "1s".into()]);
    for (name, address) in &nodes {
        server_args.extend(["--node".into(), format!("{name}={address}")]);
    }
    let mut server = Server::start(&root.join("target/debug/orchestrator"), server_args, dir.join("server.log"))?;

    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut client = Client::default();
    let mut faults: Vec<Value> = Vec::new();
    let mut violations: Vec<String> = Vec::new();
    let mut checks = 0;
    let deadline = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let run_started = Instant::now();
    for _ in 0..3 {
        client.random_call(&mut rng, &server.url);
    }
    while Instant::now() < deadline {
        let fault =
            [Fault::EngineKill, Fault::EnginePause, Fault::Partition, Fault::ServerKill][rng.random_range(0..4)];
        let (node_name, _) = nodes[rng.random_range(0..nodes.len())].clone();
        let hold = Duration::from_millis(rng.random_range(1_000..6_000));
        let at = run_started.elapsed().as_secs_f64();
        println!(
            "[{at:6.1}s] {} {} for {:.1}s",
            fault.name(),
            if fault == Fault::ServerKill { "" } else { &node_name },
            hold.as_secs_f64()
        );
        let node = cluster.node(&node_name)?;
        match fault {
            Fault::EngineKill => node.signal("KILL")?,
            Fault::EnginePause => node.signal("STOP")?,
            Fault::Partition => sh::run(Command::new("ip").args(["link", "set", &node.veth(), "down"]))?,
            Fault::ServerKill => server.kill_and_restart()?,
        }
        // API calls while the fault lasts (the server is back already after a kill -9).
        let calls_until = Instant::now() + hold;
        while Instant::now() < calls_until {
            client.random_call(&mut rng, &server.url);
            std::thread::sleep(Duration::from_millis(rng.random_range(100..800)));
        }
        match fault {
            Fault::EngineKill => {
                node.start()?;
                node.wait_ready()?;
            }
            Fault::EnginePause => node.signal("CONT")?,
            Fault::Partition => sh::run(Command::new("ip").args(["link", "set", &node.veth(), "up"]))?,
            Fault::ServerKill => {}
        }
        // Quiescence: the invariants must all hold within the settle timeout.
        let healed = Instant::now();
        let mut last = Err(String::from("not checked"));
        while healed.elapsed() < SETTLE_TIMEOUT {
            last = check(&server.url, &nodes, &client);
            if last.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        checks += 1;
        let settled = healed.elapsed().as_secs_f64();
        if let Err(why) = &last {
            println!("  VIOLATION after {settled:.1}s: {why}");
            violations.push(format!("after {} on {node_name} at {at:.1}s: {why}", fault.name()));
        } else {
            println!("  settled in {settled:.1}s: {} deployments, invariants hold", client.wanted.len());
        }
        faults.push(json!({"at_s": at, "fault": fault.name(), "node": node_name, "held_s": hold.as_secs_f64(), "settled_s": settled, "ok": last.is_ok()}));
        for _ in 0..rng.random_range(1..4) {
            client.random_call(&mut rng, &server.url);
        }
    }
    violations.extend(client.failures.iter().map(|f| format!("API: {f}")));
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &faults {
        *by_kind.entry(f["fault"].as_str().unwrap_or("?")).or_default() += 1;
    }
    let report = json!({
        "seed": args.seed,
        "minutes": args.minutes,
        "faults_injected": faults.len(),
        "faults_by_kind": by_kind,
        "quiescence_checks": checks,
        "invariants_per_check": ["required replicas running", "store matches the client", "no unaccounted container", "no duplicate replica", "no node over capacity", "nodes online"],
        "api_calls": client.calls,
        "api_answers_by_status": client.by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "violations": violations,
        "faults": faults,
    });
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    println!(
        "chaos: seed {}, {} faults ({by_kind:?}), {checks} quiescence checks, {} API calls, {} violations; report in target/chaos/report.json",
        args.seed,
        faults.len(),
        client.calls,
        violations.len()
    );
    drop(server);
    // Leave the engines clean for whatever runs next.
    for (_, address) in &nodes {
        if let Some(containers) = engine_containers(address) {
            let ids: Vec<String> = containers.into_iter().map(|(_, _, id, _)| id).collect();
            if !ids.is_empty() {
                sh::quiet(Command::new("docker").args(["-H", address, "rm", "-f"]).args(&ids));
            }
        }
    }
    if !violations.is_empty() {
        bail!("{} invariant violations (see target/chaos/report.json)", violations.len());
    }
    Ok(())
}
