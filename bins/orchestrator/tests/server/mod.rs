//! Starting the real binary against the local cluster, and asking the engines directly.

#![allow(dead_code)]

#[path = "../../../../crates/runtime-docker/tests/local_cluster/mod.rs"]
pub mod local_cluster;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "seed-flow-admin-token-0123456789abcdef";
pub const READER: &str = "seed-flow-reader-token-0123456789abcdef";

pub struct Server {
    pub child: Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(nodes: &[local_cluster::ClusterNode]) -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    // Default heartbeat settings: what the failover tests promise is what users get.
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--stop-grace", "1s"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--admin-token", ADMIN, "--reader-token", READER])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for n in nodes {
        cmd.arg("--node").arg(format!("{}={}", n.name, n.tcp));
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "unexpected first line: {line:?}");
    Server { child, url, _data: data }
}

pub async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let resp = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Container ids of a deployment, running or not, as the engines themselves report them;
/// `None` while an engine does not answer.
pub fn try_containers_on_engines(nodes: &[local_cluster::ClusterNode], deployment: &str) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    for n in nodes {
        let out = Command::new("docker")
            .args(["-H", &n.tcp, "ps", "-aq", "--no-trunc", "--filter"])
            .arg(format!("label=io.orchestrator.deployment={deployment}"))
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        ids.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string));
    }
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
    let server = start_server(nodes);
    let client = reqwest::Client::new();
    let base = server.url.clone();
    wait_for("readiness", Duration::from_secs(10), async || {
        client.get(format!("{base}/readyz")).send().await.ok()?.status().is_success().then_some(())
    })
    .await;
    (server, client)
}
