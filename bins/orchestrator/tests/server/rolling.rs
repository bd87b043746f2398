//! What the rollout tests share: the httpd service whose page is its revision's greeting,
//! a census of its containers from Docker sampled while a rollout runs, and waiting for a
//! rollout to end.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{READER, get, local_cluster, wait_for};

pub const ROLLOUT: Duration = Duration::from_secs(120);

/// Serves `$GREETING` on port 8080 (a port the engine picks), checked every second; updates
/// and rollbacks watch each new replica for 1 s.
pub fn web(name: &str, replicas: u32, greeting: &str) -> Value {
    json!({
        "name": name,
        "image": "local/busybox:1",
        "replicas": replicas,
        "command": ["sh", "-c", "mkdir -p /www && echo \"$GREETING\" > /www/index.html && exec httpd -f -p 8080 -h /www"],
        "env": {"GREETING": greeting},
        "ports": [{"target": 8080}],
        "healthcheck": {"test": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"],
                        "interval": "1s", "timeout": "1s", "retries": 3},
        "stop_grace_period": "2s",
        "update": {"monitor": "1s"},
        "rollback": {"monitor": "1s"}
    })
}

/// (containers not exited, of which healthy) of a deployment, as the engines say now.
pub fn census(nodes: &[local_cluster::ClusterNode], deployment: &str) -> Option<(usize, usize)> {
    let filter = format!("label=io.orchestrator.deployment={deployment}");
    let listings: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (tcp, filter) = (n.tcp.clone(), filter.clone());
            std::thread::spawn(move || {
                Command::new("docker")
                    .args(["-H", &tcp, "ps", "--filter", &filter, "--format", "{{.Status}}"])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            })
        })
        .collect();
    let mut counts = (0, 0);
    for listing in listings {
        for status in listing.join().ok()??.lines() {
            counts.0 += 1;
            counts.1 += usize::from(status.contains("(healthy)"));
        }
    }
    Some(counts)
}

/// Samples `census` every 100 ms until dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(usize, usize)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(nodes: &[local_cluster::ClusterNode], deployment: &str) -> Sampler {
        let (stop, samples) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (nodes, deployment) = (nodes.to_vec(), deployment.to_string());
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(c) = census(&nodes, &deployment) {
                    out.lock().unwrap().push(c);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler { stop, samples, thread: Some(thread) }
    }

    pub fn finish(mut self) -> Vec<(usize, usize)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.samples.lock().unwrap().clone()
    }
}

/// The rollout once it has ended.
pub async fn ended(client: &reqwest::Client, base: &str, name: &str, id: u64) -> Value {
    wait_for(&format!("rollout {id} of {name} to end"), ROLLOUT, async || {
        let (_, r) = get(client, &format!("{base}/v1/deployments/{name}/rollouts/{id}"), READER).await;
        (r["state"] != "in_progress").then_some(r)
    })
    .await
}
