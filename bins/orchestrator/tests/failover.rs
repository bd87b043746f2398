//! Failures of real engines under the real binary, with default settings: a killed engine and
//! a hung engine lose their replicas to the other nodes within 5 s, `GET /status` stays fast
//! during the hang, and when the node returns each deployment is back to exactly its count
//! with no container of ours unaccounted for.

mod server;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use server::{
    ADMIN, READER, containers_on_engines, get, local_cluster, start_ready_server, try_containers_on_engines, wait_for,
};

const REPLICAS: usize = 9;
/// The shortest time the server waits on a hung engine: the heartbeat counts a ping as missed
/// after its 500 ms interval (the runtime's own ping timeout is 1 s, other calls 30 s).
const SHORTEST_ENGINE_WAIT: Duration = Duration::from_millis(500);

async fn deployment(client: &reqwest::Client, base: &str, name: &str) -> Value {
    get(client, &format!("{base}/v1/deployments/{name}"), READER).await.1
}

/// Running replicas and how many of them are on `node`.
fn running_on(d: &Value, node: &str) -> (usize, usize) {
    let running: Vec<&Value> =
        d["replicas"].as_array().into_iter().flatten().filter(|r| r["state"] == "running").collect();
    (running.len(), running.iter().filter(|r| r["node"] == node).count())
}

async fn node_status(client: &reqwest::Client, base: &str, node: &str) -> String {
    let (_, n) = get(client, &format!("{base}/v1/nodes/{node}"), READER).await;
    n["status"].as_str().unwrap_or_default().to_string()
}

/// Undoes a SIGKILL (restart) or SIGSTOP (SIGCONT) of an engine when dropped.
struct Revive<'a> {
    node: &'a local_cluster::ClusterNode,
    signal: &'static str,
}

impl Drop for Revive<'_> {
    fn drop(&mut self) {
        if self.signal == "KILL" {
            self.node.restart();
        } else {
            self.node.signal("CONT");
        }
    }
}

#[tokio::test]
async fn killed_and_hung_engines_fail_over_and_come_back_to_exactly_n() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();

    let name = format!("failover{}", std::process::id());
    let body = json!({"image": "local/busybox:1", "replicas": REPLICAS, "name": name, "command": ["sleep", "3600"]});
    let resp = client.post(format!("{base}/v1/deployments")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    wait_for("all replicas running", Duration::from_secs(30), async || {
        (running_on(&deployment(&client, &base, &name).await, "").0 == REPLICAS).then_some(())
    })
    .await;

    for (victim, signal) in [(&nodes[2], "KILL"), (&nodes[1], "STOP")] {
        let before = running_on(&deployment(&client, &base, &name).await, &victim.name).1;
        assert!(before > 0, "{} runs some replicas before the failure", victim.name);
        victim.signal(signal);
        // Should an assertion below fail, bring the engine back anyway: later tests share it.
        let revive = Revive { node: victim, signal };
        let failed_at = Instant::now();

        // While the engine is gone, /status answers from the store: fast.
        let mut latencies = Vec::new();
        let moved = loop {
            let started = Instant::now();
            let d = deployment(&client, &base, &name).await;
            latencies.push(started.elapsed());
            let (running, on_victim) = running_on(&d, &victim.name);
            if running == REPLICAS && on_victim == 0 {
                break failed_at.elapsed();
            }
            assert!(
                failed_at.elapsed() < Duration::from_secs(5),
                "SIG{signal} {}: not replaced within 5 s: {d}",
                victim.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for _ in 0..50 {
            let started = Instant::now();
            let (code, _) = get(&client, &format!("{base}/status"), READER).await;
            assert_eq!(code, 200);
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let p99 = latencies[latencies.len() * 99 / 100];
        let slowest = latencies[latencies.len() - 1];
        eprintln!(
            "SIG{signal} {}: replicas replaced after {moved:?}; status p99 {p99:?}, slowest {slowest:?}",
            victim.name
        );
        // The hang is where a store-only /status matters: a call that waited on the hung engine
        // would take at least the shortest wait on an engine, so no answer may take that long.
        // How fast the answers are is the benchmarks' business (`cargo xtask bench api`): a
        // bound of 50 ms here measured a debug build on a shared machine and failed at 52 ms.
        // (A killed engine refuses at once; not asserted there.)
        if signal == "STOP" {
            assert!(
                slowest < SHORTEST_ENGINE_WAIT,
                "an answer took {slowest:?} during SIG{signal}: it waited on the engine"
            );
        }

        // The node comes back: its stale copies go, exactly N remain, all of them known.
        drop(revive);
        wait_for("the node online and exactly N containers", Duration::from_secs(60), async || {
            let online = node_status(&client, &base, &victim.name).await == "online";
            let engines = try_containers_on_engines(nodes, &name)?;
            let d = deployment(&client, &base, &name).await;
            let mut known: Vec<String> = d["replicas"]
                .as_array()?
                .iter()
                .filter_map(|r| r["container_id"].as_str().map(str::to_string))
                .collect();
            known.sort();
            (online && engines.len() == REPLICAS && engines == known).then_some(())
        })
        .await;
    }

    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("no container left", Duration::from_secs(30), async || {
        containers_on_engines(nodes, &name).is_empty().then_some(())
    })
    .await;
}
