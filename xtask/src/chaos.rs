//! `cargo xtask chaos --minutes 10 --seed S [--ha [--servers 3]]`: a bounded chaos run on the
//! local real cluster.
//!
//! Random faults (SIGKILL, SIGSTOP of a node's engine, a network partition of a node, kill -9
//! and restart of the server) interleaved with random valid API calls, all drawn from a
//! generator seeded with S, so a run can be repeated. With `--ha`, the documented HA setup
//! (`cargo xtask ha up`: servers on PostgreSQL behind HAProxy) takes the single server's place,
//! the calls go through HAProxy, and the server faults are kill -9 of the leader, SIGSTOP of
//! the leader beyond its lease's TTL, and kill -9 of a follower (each restarted or resumed
//! after the fault). After each fault is undone, a quiescence check waits for the cluster to
//! settle and checks the invariants:
//! - every deployment runs exactly its required replicas (capacity is never short here), and
//!   the store's deployments are exactly those the client made, at the counts it asked;
//! - every container of ours on the engines is a replica the store knows, on the node it
//!   names, running; no replica id has two containers (no duplicates, no unaccounted ones);
//! - no node over capacity: each node's used units are exactly the replicas on it;
//! - no container of a deleted deployment on any engine;
//! - exactly one server leads, and every other one names it (`--ha`);
//! - every API call was answered, and never with a 5xx (through HAProxy, a call whose server
//!   died under it is retried as a client of the documented setup would; how often is
//!   reported).
//!
//! Writes target/chaos/report.json; fails if any invariant was broken.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng as SeededRng;
use serde_json::{Value, json};

use crate::cluster::{self, Cluster};
use crate::{ha, sh};

const TOKEN: &str = "chaos-admin-token-0123456789abcdef0123456789";
const NODES: usize = 3;
const MAX_DEPLOYMENTS: usize = 4;
const MAX_REPLICAS: u64 = 4;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The lease's TTL (the servers' default): a paused leader is held past it.
const LEASE_TTL: Duration = Duration::from_secs(5);
/// Retries of a call through HAProxy whose server died under it.
const HA_RETRIES: u32 = 8;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Several servers on PostgreSQL behind HAProxy, with leader and follower faults.
    #[arg(long)]
    pub ha: bool,
    /// How many servers with `--ha`.
    #[arg(long, default_value_t = 3)]
    pub servers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    EngineKill,
    EnginePause,
    Partition,
    ServerKill,
    LeaderKill,
    LeaderPause,
    FollowerKill,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::EngineKill => "engine SIGKILL",
            Fault::EnginePause => "engine SIGSTOP",
            Fault::Partition => "network partition",
            Fault::ServerKill => "server kill -9",
            Fault::LeaderKill => "leader kill -9",
            Fault::LeaderPause => "leader SIGSTOP past the lease",
            Fault::FollowerKill => "follower kill -9",
        }
    }

    fn on_engine(self) -> bool {
        matches!(self, Fault::EngineKill | Fault::EnginePause | Fault::Partition)
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
    token: String,
    /// Through HAProxy: a call whose server died under it (no answer, 502, 504) is retried.
    retry: bool,
    retries: u64,
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

/// An answer that says the server went away under the call, not what the API decided.
fn server_gone(answer: &Result<u16, ureq::Error>) -> bool {
    matches!(answer, Err(_) | Ok(502 | 504))
}

impl Client {
    fn new(token: String, retry: bool) -> Self {
        Self { token, retry, ..Self::default() }
    }

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

    /// Sends `call` and, through HAProxy, sends it again while its server went away under it.
    fn send(&mut self, mut call: impl FnMut() -> Result<u16, ureq::Error>) -> Result<u16, ureq::Error> {
        let mut answer = call();
        let mut tries = 0;
        while self.retry && server_gone(&answer) && tries < HA_RETRIES {
            tries += 1;
            self.retries += 1;
            std::thread::sleep(Duration::from_millis(500));
            answer = call();
        }
        answer
    }

    /// The deployment's required count as the API reads it now: `Ok(None)` when it is gone.
    fn read(&mut self, url: &str, name: &str) -> Result<Option<(u64, Value)>, Result<u16, ureq::Error>> {
        let auth = format!("Bearer {}", self.token);
        let mut body = None;
        let answer = self.send(|| {
            let mut r = agent().get(format!("{url}/v1/deployments/{name}")).header("Authorization", &auth).call()?;
            let code = r.status().as_u16();
            if code == 200 {
                body = r.body_mut().read_json::<Value>().ok();
            }
            Ok(code)
        });
        match (answer, body) {
            (Ok(200), Some(d)) => Ok(Some((d["required"].as_u64().unwrap_or(u64::MAX), d["version"].clone()))),
            (Ok(404), _) => Ok(None),
            (other, _) => Err(other),
        }
    }

    /// One random valid call: create, scale or delete.
    fn random_call(&mut self, rng: &mut SeededRng, url: &str) {
        let auth = format!("Bearer {}", self.token);
        let choice = rng.random_range(0..10);
        self.sent = Some(Instant::now());
        if self.wanted.is_empty() || (choice < 3 && self.wanted.len() < MAX_DEPLOYMENTS) {
            self.next += 1;
            let name = format!("chaos-{}", self.next);
            let replicas = rng.random_range(1..=MAX_REPLICAS);
            let body =
                json!({"name": name, "image": "local/busybox:1", "replicas": replicas, "command": ["sleep", "3600"]});
            let answer = self.send(|| {
                Ok(agent()
                    .post(format!("{url}/v1/deployments"))
                    .header("Authorization", &auth)
                    .send_json(&body)?
                    .status()
                    .as_u16())
            });
            // 200: the same spec exists already (an earlier attempt of this very call landed).
            if matches!(self.record(&format!("create {name}"), answer), Some(200 | 201)) {
                self.wanted.insert(name, replicas);
            }
            return;
        }
        let names: Vec<String> = self.wanted.keys().cloned().collect();
        let name = names[rng.random_range(0..names.len())].clone();
        if choice < 8 {
            let replicas = rng.random_range(0..=MAX_REPLICAS);
            let version = match self.read(url, &name) {
                Ok(Some((_, version))) => version,
                Ok(None) => {
                    self.failures.push(format!("get {name}: 404 for a deployment the client made"));
                    return;
                }
                Err(answer) => {
                    self.record(&format!("get {name}"), answer);
                    return;
                }
            };
            let body = json!({"replicas": replicas, "version": version});
            let answer = self.send(|| {
                Ok(agent()
                    .patch(format!("{url}/v1/deployments/{name}"))
                    .header("Authorization", &auth)
                    .send_json(&body)?
                    .status()
                    .as_u16())
            });
            match self.record(&format!("scale {name}"), answer) {
                Some(200) => {
                    self.wanted.insert(name, replicas);
                }
                // A retried scale whose first attempt landed: the version moved, by us.
                Some(409) if self.retry && matches!(self.read(url, &name), Ok(Some((r, _))) if r == replicas) => {
                    self.wanted.insert(name, replicas);
                }
                _ => {}
            }
        } else {
            let answer = self.send(|| {
                Ok(agent()
                    .delete(format!("{url}/v1/deployments/{name}"))
                    .header("Authorization", &auth)
                    .call()?
                    .status()
                    .as_u16())
            });
            // 404 after a retry: the first attempt deleted it.
            match self.record(&format!("delete {name}"), answer) {
                Some(204) => {
                    self.wanted.remove(&name);
                }
                Some(404) if self.retry => {
                    self.wanted.remove(&name);
                }
                _ => {}
            }
        }
    }
}

/// Our containers on one engine: (deployment, replica id, container id, running).
fn engine_containers(address: &str) -> Option<Vec<(String, String, String, bool)>> {
    let containers = test_support::engines::containers(address, None)?;
    Some(
        containers
            .into_iter()
            .filter(|c| c.deployment.starts_with("chaos-"))
            .map(|c| {
                let running = c.running();
                (c.deployment, c.replica, c.id, running)
            })
            .collect(),
    )
}

/// The invariants, once: `Ok(())` or what is wrong now.
fn check(url: &str, nodes: &[(String, String)], client: &Client) -> Result<(), String> {
    let (code, body) =
        crate::net::http_get_auth(&format!("{url}/status"), &client.token).ok_or("no answer from /status")?;
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
            if !client.wanted.contains_key(&deployment) {
                return Err(format!(
                    "container {id} of the deleted deployment {deployment} (replica {replica}) on {node}"
                ));
            }
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

/// Exactly one server leads and every other one names it as the leader.
fn check_leadership(setup: &ha::Setup) -> Result<(), String> {
    let roles: Vec<Option<(String, Option<String>)>> = (0..setup.servers.len()).map(|i| setup.readyz(i)).collect();
    let leaders: Vec<String> = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_ref().is_some_and(|(role, _)| role == "leader"))
        .map(|(i, _)| ha::server_id(i))
        .collect();
    let [leader] = leaders.as_slice() else {
        return Err(format!("{} servers say they lead: {leaders:?}", leaders.len()));
    };
    for (i, role) in roles.iter().enumerate() {
        match role {
            None => return Err(format!("{} does not answer /readyz", ha::server_id(i))),
            Some((role, named)) if role != "leader" && named.as_deref() != Some(leader.as_str()) => {
                return Err(format!("{} is {role} and names {named:?} as the leader, not {leader}", ha::server_id(i)));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What the faults are played against: one server on SQLite, or the HA setup.
enum Servers {
    One(Server),
    Ha(ha::Setup),
}

impl Servers {
    /// Where the client sends its calls.
    fn url(&self) -> &str {
        match self {
            Servers::One(server) => &server.url,
            Servers::Ha(setup) => &setup.url,
        }
    }

    fn faults(&self) -> &'static [Fault] {
        match self {
            Servers::One(_) => &[Fault::EngineKill, Fault::EnginePause, Fault::Partition, Fault::ServerKill],
            Servers::Ha(_) => &[
                Fault::EngineKill,
                Fault::EnginePause,
                Fault::Partition,
                Fault::LeaderKill,
                Fault::LeaderPause,
                Fault::FollowerKill,
            ],
        }
    }

    fn setup(&self) -> Result<&ha::Setup> {
        match self {
            Servers::Ha(setup) => Ok(setup),
            Servers::One(_) => bail!("a fault of several servers without --ha"),
        }
    }

    fn leader(&self) -> Result<usize> {
        self.setup()?.leader().context("no server leads")
    }

    /// Any server but the leader, drawn from `rng`.
    fn follower(&self, rng: &mut SeededRng) -> Result<usize> {
        let leader = self.leader()?;
        let others: Vec<usize> = (0..self.setup()?.servers.len()).filter(|i| *i != leader).collect();
        others.get(rng.random_range(0..others.len().max(1))).copied().context("no follower (--servers 1)")
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.ha && !(2..=9).contains(&args.servers) {
        bail!("--servers must be 2..=9 with --ha");
    }
    let cluster = Cluster::new(cluster::state_dir());
    let started_cluster = cluster.listed_nodes().len() < NODES;
    if started_cluster {
        cluster.up(NODES, false)?;
    }
    let result = chaos(&args, &cluster);
    if started_cluster {
        cluster.down()?;
    }
    result
}

/// The single server on SQLite, as `serve` runs by default.
fn one_server(dir: &std::path::Path, nodes: &[(String, String)]) -> Result<Server> {
    sh::run(sh::cargo().args(["build", "-p", "orchestrator"]))?;
    let port = crate::net::free_port()?;
    let mut server_args: Vec<String> =
        vec!["serve".into(), "--listen".into(), format!("127.0.0.1:{port}"), "--data-dir".into()];
    server_args.push(dir.join("data").to_string_lossy().into_owned());
    server_args.extend(["--stop-grace".into(), "1s".into()]);
    for (name, address) in nodes {
        server_args.extend(["--node".into(), format!("{name}={address}")]);
    }
    Server::start(&sh::workspace_root().join("target/debug/orchestrator"), server_args, dir.join("server.log"))
}

fn cluster_nodes() -> Result<Vec<(String, String)>> {
    let listing =
        test_support::local_cluster::listing(&cluster::state_dir()).context("the cluster wrote no node list")?;
    Ok(listing.into_iter().take(NODES).map(|n| (n.name, n.tcp)).collect())
}

fn chaos(args: &Args, cluster: &Cluster) -> Result<()> {
    let root = sh::workspace_root();
    let dir = root.join("target/chaos");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let nodes = cluster_nodes()?;
    let mut servers = if args.ha {
        let options = ha::Options {
            servers: args.servers,
            port: crate::net::free_port()?,
            release: false,
            no_install: false,
            max_nodes: Some(NODES),
            server_args: vec!["--stop-grace".into(), "1s".into()],
        };
        match ha::up(&options) {
            Ok(setup) => Servers::Ha(setup),
            Err(e) => {
                let _ = ha::down();
                return Err(e);
            }
        }
    } else {
        Servers::One(one_server(&dir, &nodes)?)
    };
    let result = play(args, cluster, &nodes, &mut servers, &dir);
    if let Servers::Ha(_) = servers {
        ha::down()?;
    }
    drop(servers);
    // Leave the engines clean for whatever runs next.
    for (_, address) in &nodes {
        if let Some(containers) = engine_containers(address) {
            let ids: Vec<String> = containers.into_iter().map(|(_, _, id, _)| id).collect();
            if !ids.is_empty() {
                sh::quiet(Command::new("docker").args(["-H", address, "rm", "-f"]).args(&ids));
            }
        }
    }
    result
}

/// A server fault under way: what undoes it.
enum Undo {
    Nothing,
    Restart(usize),
    Resume(u32),
}

fn play(
    args: &Args,
    cluster: &Cluster,
    nodes: &[(String, String)],
    servers: &mut Servers,
    dir: &std::path::Path,
) -> Result<()> {
    let mut rng = SeededRng::seed_from_u64(args.seed);
    let token = match servers {
        Servers::One(_) => TOKEN.to_string(),
        Servers::Ha(setup) => setup.token()?,
    };
    let mut client = Client::new(token, args.ha);
    let url = servers.url().to_string();
    let mut faults: Vec<Value> = Vec::new();
    let mut violations: Vec<String> = Vec::new();
    let mut checks = 0;
    let deadline = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let run_started = Instant::now();
    for _ in 0..3 {
        client.random_call(&mut rng, &url);
    }
    while Instant::now() < deadline {
        let kinds = servers.faults();
        let fault = kinds[rng.random_range(0..kinds.len())];
        let (node_name, _) = nodes[rng.random_range(0..nodes.len())].clone();
        let mut hold = Duration::from_millis(rng.random_range(1_000..6_000));
        if fault == Fault::LeaderPause {
            // Past the lease: another server takes over while this one sleeps.
            hold = LEASE_TTL + Duration::from_millis(rng.random_range(1_000..3_000));
        }
        let at = run_started.elapsed().as_secs_f64();
        let node = cluster.node(&node_name)?;
        let mut target = if fault.on_engine() { node_name.clone() } else { String::new() };
        let undo = match fault {
            Fault::EngineKill => {
                node.signal("KILL")?;
                Undo::Nothing
            }
            Fault::EnginePause => {
                node.signal("STOP")?;
                Undo::Nothing
            }
            Fault::Partition => {
                sh::run(Command::new("ip").args(["link", "set", &node.veth(), "down"]))?;
                Undo::Nothing
            }
            Fault::ServerKill => {
                let Servers::One(server) = servers else { bail!("server kill -9 is the single server's fault") };
                server.kill_and_restart()?;
                Undo::Nothing
            }
            Fault::LeaderKill | Fault::FollowerKill => {
                let index = if fault == Fault::LeaderKill { servers.leader()? } else { servers.follower(&mut rng)? };
                target = ha::server_id(index);
                let pid = servers.setup()?.server_pid(index).context("the server is not running")?;
                sh::run(Command::new("kill").args(["-KILL", &pid.to_string()]))?;
                Undo::Restart(index)
            }
            Fault::LeaderPause => {
                let index = servers.leader()?;
                target = ha::server_id(index);
                let pid = servers.setup()?.server_pid(index).context("the leader is not running")?;
                sh::run(Command::new("kill").args(["-STOP", &pid.to_string()]))?;
                Undo::Resume(pid)
            }
        };
        println!("[{at:6.1}s] {} {target} for {:.1}s", fault.name(), hold.as_secs_f64());
        // API calls while the fault lasts (the single server is back already after a kill -9).
        let calls_until = Instant::now() + hold;
        while Instant::now() < calls_until {
            client.random_call(&mut rng, &url);
            std::thread::sleep(Duration::from_millis(rng.random_range(100..800)));
        }
        match fault {
            Fault::EngineKill => {
                node.start()?;
                node.wait_ready()?;
            }
            Fault::EnginePause => node.signal("CONT")?,
            Fault::Partition => sh::run(Command::new("ip").args(["link", "set", &node.veth(), "up"]))?,
            _ => {}
        }
        match undo {
            Undo::Nothing => {}
            Undo::Restart(index) => {
                let setup = servers.setup()?;
                // A killed process is reaped by its parent, which may be another xtask: wait
                // until the port is free before binding it again.
                let started = Instant::now();
                while setup.server_pid(index).is_some() && started.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                setup.start_server(index)?;
            }
            Undo::Resume(pid) => sh::run(Command::new("kill").args(["-CONT", &pid.to_string()]))?,
        }
        // Quiescence: the invariants must all hold within the settle timeout.
        let healed = Instant::now();
        let mut last = Err(String::from("not checked"));
        while healed.elapsed() < SETTLE_TIMEOUT {
            last = check(&url, nodes, &client);
            if last.is_ok()
                && let Servers::Ha(setup) = &*servers
            {
                last = check_leadership(setup);
            }
            if last.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        checks += 1;
        let settled = healed.elapsed().as_secs_f64();
        if let Err(why) = &last {
            println!("  VIOLATION after {settled:.1}s: {why}");
            violations.push(format!("after {} on {target} at {at:.1}s: {why}", fault.name()));
        } else {
            println!("  settled in {settled:.1}s: {} deployments, invariants hold", client.wanted.len());
        }
        faults.push(json!({"at_s": at, "fault": fault.name(), "target": target, "held_s": hold.as_secs_f64(), "settled_s": settled, "ok": last.is_ok()}));
        for _ in 0..rng.random_range(1..4) {
            client.random_call(&mut rng, &url);
        }
    }
    violations.extend(client.failures.iter().map(|f| format!("API: {f}")));
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &faults {
        *by_kind.entry(f["fault"].as_str().unwrap_or("?")).or_default() += 1;
    }
    let mut invariants = vec![
        "required replicas running",
        "store matches the client",
        "no unaccounted container",
        "no container of a deleted deployment",
        "no duplicate replica",
        "no node over capacity",
        "nodes online",
        "every call answered, no 5xx",
    ];
    if args.ha {
        invariants.push("exactly one leader");
    }
    let report = json!({
        "seed": args.seed,
        "minutes": args.minutes,
        "servers": if args.ha { args.servers } else { 1 },
        "faults_injected": faults.len(),
        "faults_by_kind": by_kind,
        "quiescence_checks": checks,
        "invariants_per_check": invariants,
        "api_calls": client.calls,
        "api_calls_retried": client.retries,
        "api_answers_by_status": client.by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "violations": violations,
        "faults": faults,
    });
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    let retried = if args.ha { format!(" ({} retried through HAProxy)", client.retries) } else { String::new() };
    println!(
        "chaos{}: seed {}, {} faults ({by_kind:?}), {checks} quiescence checks, {} API calls{retried}, {} violations; report in target/chaos/report.json",
        if args.ha { " --ha" } else { "" },
        args.seed,
        faults.len(),
        client.calls,
        violations.len()
    );
    if !violations.is_empty() {
        bail!("{} invariant violations (see target/chaos/report.json)", violations.len());
    }
    Ok(())
}
