//! Sixteen clients creating, scaling and deleting at once against the real server and engines
//! (3 nodes of 6 units: asking for more than fits is part of the test). Afterwards the store's
//! invariants hold: no node over capacity, each node's used units equal to the replicas on it,
//! exactly min(asked, room) replicas running, each backed by exactly one container on the node
//! the store names, and nothing left of deleted deployments.

mod server;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use server::{ADMIN, READER, converged, local_cluster, start_server_with, wait_for};

const CLIENTS: u64 = 16;
const CAPACITY: u64 = 6;

/// A small deterministic generator: the same run every time.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

async fn client_run(
    client: reqwest::Client,
    base: String,
    i: u64,
    prefix: String,
) -> Result<Option<(String, u64)>, String> {
    let mut rng = Lcg(i + 1);
    let name = format!("{prefix}-{i}");
    let url = format!("{base}/v1/deployments/{name}");
    let mut replicas = rng.below(4);
    let body = json!({"image": "local/busybox:1", "replicas": replicas, "name": name, "command": ["sleep", "3600"]});
    let resp = client
        .post(format!("{base}/v1/deployments"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().as_u16() != 201 {
        return Err(format!("create {name}: {}", resp.status()));
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        let d: Value = client
            .get(&url)
            .bearer_auth(READER)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        replicas = rng.below(4);
        let resp = client
            .patch(&url)
            .bearer_auth(ADMIN)
            .json(&json!({"replicas": replicas, "version": d["version"]}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().as_u16() != 200 {
            return Err(format!("scale {name}: {}", resp.status()));
        }
    }
    // Every other client deletes its deployment at the end.
    if i % 2 == 1 {
        let resp = client.delete(&url).bearer_auth(ADMIN).send().await.map_err(|e| e.to_string())?;
        if resp.status().as_u16() != 204 {
            return Err(format!("delete {name}: {}", resp.status()));
        }
        return Ok(None);
    }
    Ok(Some((name, replicas)))
}

#[tokio::test]
async fn sixteen_concurrent_clients_leave_the_store_and_the_engines_consistent() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let data = tempfile::tempdir().unwrap();
    let (server, client) = server::ready(start_server_with(nodes, data.path(), &["--node-capacity", "6"], None)).await;
    let prefix = format!("cc{}", std::process::id());
    let tasks: Vec<_> =
        (0..CLIENTS).map(|i| tokio::spawn(client_run(client.clone(), server.url.clone(), i, prefix.clone()))).collect();
    let mut kept: HashMap<String, u64> = HashMap::new();
    for task in tasks {
        if let Some((name, replicas)) = task.await.unwrap().expect("every request of every client answered as expected")
        {
            kept.insert(name, replicas);
        }
    }
    let asked: u64 = kept.values().sum();
    let room = CAPACITY * nodes.len() as u64;
    eprintln!("kept {} deployments asking for {asked} replicas; room for {room}", kept.len());

    // Converged: min(asked, room) running in all, the store and Docker agreeing on each.
    let status = wait_for("convergence", Duration::from_secs(120), async || {
        let (_, status) = server::get(&client, &format!("{}/status", server.url), READER).await;
        let ours: Vec<&Value> = status["deployments"]
            .as_array()?
            .iter()
            .filter(|d| d["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
            .collect();
        let running: u64 = ours.iter().map(|d| d["actual"].as_u64().unwrap_or(0)).sum();
        (ours.len() == kept.len() && running == asked.min(room)).then_some(status)
    })
    .await;
    for d in status["deployments"].as_array().unwrap() {
        let name = d["name"].as_str().unwrap();
        let actual = d["actual"].as_u64().unwrap();
        assert!(actual <= kept[name], "{name} runs more than asked");
        wait_for(&format!("{name} to match Docker"), Duration::from_secs(30), async || {
            converged(&client, &server.url, nodes, name, actual as usize).await
        })
        .await;
    }
    // Capacity: never over, and each node's used units are exactly the replicas on it.
    let mut on_node: HashMap<&str, u64> = HashMap::new();
    for d in status["deployments"].as_array().unwrap() {
        for r in d["replicas"].as_array().unwrap() {
            *on_node.entry(r["node"].as_str().unwrap()).or_default() += 1;
        }
    }
    for n in status["nodes"].as_array().unwrap() {
        let (capacity, available) = (n["capacity"].as_u64().unwrap(), n["available"].as_u64().unwrap());
        assert!(available <= capacity);
        let used = on_node.get(n["name"].as_str().unwrap()).copied().unwrap_or(0);
        assert_eq!(capacity - available, used, "{n}");
    }
    // Nothing of the deleted ones on any engine.
    for i in (1..CLIENTS).step_by(2) {
        let name = format!("{prefix}-{i}");
        wait_for(&format!("{name} gone from the engines"), Duration::from_secs(30), async || {
            server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
        })
        .await;
    }
    for name in kept.keys() {
        let resp =
            client.delete(format!("{}/v1/deployments/{name}", server.url)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 204);
    }
    for name in kept.keys() {
        wait_for("cleanup", Duration::from_secs(60), async || {
            server::try_containers_on_engines(nodes, name)?.is_empty().then_some(())
        })
        .await;
    }
}
