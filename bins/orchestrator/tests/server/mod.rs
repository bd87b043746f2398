//! Starting the real binary against the local cluster, and asking the engines directly.

#![allow(dead_code)]

pub use test_support::local_cluster;

pub mod rolling;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "seed-flow-admin-token-0123456789abcdef";
pub const READER: &str = "seed-flow-reader-token-0123456789abcdef";

pub struct Server {
    pub child: Child,
    pub url: String,
    _data: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(nodes: &[local_cluster::ClusterNode]) -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_server_in(nodes, data.path());
    server._data = Some(data);
    server
}

/// A server on a data dir (and SQLite file) the caller keeps, e.g. to restart on it.
pub fn start_server_in(nodes: &[local_cluster::ClusterNode], data: &std::path::Path) -> Server {
    start_server_with(nodes, data, &[], None)
}

/// A server with extra `serve` arguments; its log (at info) goes to `log` when given.
pub fn start_server_with(
    nodes: &[local_cluster::ClusterNode],
    data: &std::path::Path,
    extra: &[&str],
    log: Option<&std::path::Path>,
) -> Server {
    start_server_logging(nodes, data, extra, log.map(|l| (l, "info")))
}

/// As `start_server_with`, logging to a file at the given `RUST_LOG` filter.
pub fn start_server_logging(
    nodes: &[local_cluster::ClusterNode],
    data: &std::path::Path,
    extra: &[&str],
    log: Option<(&std::path::Path, &str)>,
) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    if let Some((log, filter)) = log {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        cmd.env("RUST_LOG", filter).stderr(file);
    }
    // Default heartbeat settings: what the failover tests promise is what users get.
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--stop-grace", "1s"])
        .arg("--data-dir")
        .arg(data)
        .args(["--admin-token", ADMIN, "--reader-token", READER])
        .stdout(Stdio::piped());
    if log.is_none() {
        cmd.env("RUST_LOG", "warn").stderr(Stdio::inherit());
    }
    for n in nodes {
        cmd.arg("--node").arg(format!("{}={}", n.name, n.tcp));
    }
    cmd.args(extra);
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "unexpected first line: {line:?}");
    Server { child, url, _data: None }
}

pub async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let resp = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Container ids of a deployment, running or not, as the engines themselves report them,
/// sorted; `None` while an engine does not answer.
pub fn try_containers_on_engines(nodes: &[local_cluster::ClusterNode], deployment: &str) -> Option<Vec<String>> {
    let mut ids: Vec<String> = try_engine_containers(nodes, deployment)?.into_iter().map(|c| c.id).collect();
    ids.sort();
    Some(ids)
}

pub fn containers_on_engines(nodes: &[local_cluster::ClusterNode], deployment: &str) -> Vec<String> {
    try_containers_on_engines(nodes, deployment).expect("every engine answers docker ps")
}

pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the server and waits until `/readyz` says it is ready (first heartbeat done).
pub async fn start_ready_server(nodes: &[local_cluster::ClusterNode]) -> (Server, reqwest::Client) {
    ready(start_server(nodes)).await
}

pub async fn ready(server: Server) -> (Server, reqwest::Client) {
    // Idle connections are dropped before the server's keep-alive (5 s) can close them under
    // a request reusing one (a test that waits out a failover leaves its pool idle that long).
    let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(2)).build().unwrap();
    let base = server.url.clone();
    wait_for("readiness", Duration::from_secs(10), async || {
        client.get(format!("{base}/readyz")).send().await.ok()?.status().is_success().then_some(())
    })
    .await;
    (server, client)
}

/// One container of ours as an engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EngineContainer {
    pub node: String,
    pub id: String,
    /// The replica id label: one container per replica, ever.
    pub replica: String,
    pub running: bool,
}

/// Every container of a deployment on every node, sorted; `None` while an engine does not answer.
pub fn try_engine_containers(nodes: &[local_cluster::ClusterNode], deployment: &str) -> Option<Vec<EngineContainer>> {
    let mut all = Vec::new();
    for n in nodes {
        for c in test_support::engines::containers(&n.tcp, Some(deployment))? {
            all.push(EngineContainer { node: n.name.clone(), running: c.running(), id: c.id, replica: c.replica });
        }
    }
    all.sort();
    Some(all)
}

/// A deployment's replicas as `GET /status` reports them: (node, container id, state), sorted.
pub async fn status_replicas(
    client: &reqwest::Client,
    base: &str,
    deployment: &str,
) -> Option<Vec<(String, String, String)>> {
    let (_, status) = get(client, &format!("{base}/status"), READER).await;
    let d = status["deployments"].as_array()?.iter().find(|d| d["name"] == deployment)?;
    let mut replicas: Vec<(String, String, String)> = d["replicas"]
        .as_array()?
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (field("node"), field("container_id"), field("state"))
        })
        .collect();
    replicas.sort();
    Some(replicas)
}

/// The store and the engines agree exactly on a deployment: `n` replicas, all running, each
/// backed by exactly one running container on the node the store names, and no other
/// container of the deployment anywhere (no orphan, no duplicate).
pub async fn converged(
    client: &reqwest::Client,
    base: &str,
    nodes: &[local_cluster::ClusterNode],
    deployment: &str,
    n: usize,
) -> Option<()> {
    let engines = try_engine_containers(nodes, deployment)?;
    let stored = status_replicas(client, base, deployment).await?;
    let mut on_engines: Vec<(String, String, String)> =
        engines.iter().filter(|c| c.running).map(|c| (c.node.clone(), c.id.clone(), "running".to_string())).collect();
    on_engines.sort();
    let mut replica_labels: Vec<&str> = engines.iter().map(|c| c.replica.as_str()).collect();
    replica_labels.sort_unstable();
    replica_labels.dedup();
    (engines.len() == n && on_engines == stored && replica_labels.len() == n).then_some(())
}

pub async fn create(client: &reqwest::Client, base: &str, body: &Value) -> Value {
    let resp = client.post(format!("{base}/v1/deployments")).bearer_auth(ADMIN).json(body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    resp.json().await.unwrap()
}
