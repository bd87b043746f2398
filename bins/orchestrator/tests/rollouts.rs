//! Rolling updates on real engines: busybox httpd serving its revision's `$GREETING`, updated
//! one replica at a time within its bounds (sampled from Docker while it runs), a failing
//! update rolled back by itself (and `deploy update --wait` exiting non-zero with why), a
//! rollback two revisions back, and a dry run that changes nothing.

mod server;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use server::rolling::{ROLLOUT, Sampler, ended, web};
use server::{ADMIN, READER, converged, create, get, local_cluster, start_ready_server, wait_for};

const CONVERGE: Duration = Duration::from_secs(60);

async fn patch(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = client.patch(url).bearer_auth(ADMIN).json(body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// Every ready endpoint's page, once `n` are ready and all answer.
async fn pages(client: &reqwest::Client, base: &str, name: &str, n: usize) -> Vec<String> {
    wait_for(&format!("{n} answering endpoints of {name}"), CONVERGE, async || {
        let (_, list) = get(client, &format!("{base}/v1/deployments/{name}/endpoints"), READER).await;
        let list = list.as_array()?.clone();
        if list.len() != n || list.iter().any(|e| e["ready"] != true) {
            return None;
        }
        let mut answers = Vec::new();
        for e in &list {
            let resp = client.get(format!("http://{}/", e["address"].as_str()?)).send().await.ok()?;
            answers.push(resp.text().await.ok()?.trim().to_string());
        }
        Some(answers)
    })
    .await
}

#[tokio::test]
async fn updates_roll_out_within_bounds_roll_back_by_themselves_and_on_demand() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("roll{}", std::process::id());
    let url = format!("{base}/v1/deployments/{name}");
    create(&client, &base, &web(&name, 4, "v1")).await;
    wait_for("4 replicas converged", CONVERGE, async || converged(&client, &base, nodes, &name, 4).await).await;
    assert_eq!(pages(&client, &base, &name, 4).await, ["v1"; 4]);

    // A dry run plans every replica and changes nothing.
    let (_, d) = get(&client, &url, READER).await;
    let (code, plan) =
        patch(&client, &format!("{url}?dry_run=true"), &json!({"version": d["version"], "env": {"GREETING": "v2"}}))
            .await;
    assert_eq!(code, 200, "{plan}");
    let actions: Vec<&str> = plan["plan"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["start", "stop", "start", "stop", "start", "stop", "start", "stop"], "{plan}");
    let (_, after) = get(&client, &url, READER).await;
    assert_eq!((after["version"].clone(), after["revision"].as_u64()), (d["version"].clone(), Some(1)));

    // The update, sampled from Docker while it runs: never more than 4 + 1 containers,
    // never fewer than 4 healthy.
    let sampler = Sampler::start(nodes, &name);
    let (code, updated) =
        patch(&client, &url, &json!({"version": d["version"], "env": {"GREETING": "v2"}, "cause": "v2"})).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["revision"].as_u64(), Some(2));
    let done = ended(&client, &base, &name, updated["rollout"]["id"].as_u64().unwrap()).await;
    let samples = sampler.finish();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!((done["updated"].as_u64(), done["healthy"].as_u64()), (Some(4), Some(4)));
    assert!(samples.len() > 20, "sampled while it ran: {samples:?}");
    let most = samples.iter().map(|s| s.0).max().unwrap();
    let fewest_healthy = samples.iter().map(|s| s.1).min().unwrap();
    assert!(most <= 5, "at most replicas + max_surge containers: {samples:?}");
    assert!(fewest_healthy >= 4, "never fewer than replicas - max_unavailable healthy: {samples:?}");
    assert_eq!(pages(&client, &base, &name, 4).await, ["v2"; 4]);

    // A template whose check never passes: the rollout fails on the first unhealthy replica
    // and rolls back by itself; `deploy update --wait` exits non-zero and says why.
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["deploy", "update", &name, "-e", "GREETING=v3", "--health-cmd", "exit 1", "--health-interval", "1s"])
        .args(["--health-retries", "1", "--wait", "--timeout", "120s", "--server", &base, "--token", ADMIN])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a rolled-back update is no success: {stderr}");
    assert!(stderr.contains("rolled back") && stderr.contains("unhealthy"), "{stderr}");
    let back = wait_for("the automatic rollback to end", ROLLOUT, async || {
        let (_, d) = get(&client, &url, READER).await;
        d["rollout"].is_null().then_some(d)
    })
    .await;
    assert_eq!((back["revision"].as_u64(), back["env"]["GREETING"].as_str()), (Some(4), Some("v2")), "{back}");
    let (_, rollouts) = get(&client, &format!("{url}/rollouts"), READER).await;
    let states: Vec<&str> = rollouts.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["succeeded", "rolled_back", "succeeded"], "{rollouts}");
    assert_eq!(rollouts[0]["restores"].as_u64(), Some(2));
    assert_eq!(pages(&client, &base, &name, 4).await, ["v2"; 4], "back on revision 2's template, all ready");
    let (_, events) = get(&client, &format!("{base}/v1/events?limit=1000"), READER).await;
    let told: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["deployment"] == name.as_str())
        .filter_map(|e| e["kind"].as_str().filter(|k| k.starts_with("rollout.") && *k != "rollout.progressed"))
        .collect();
    assert_eq!(
        told,
        [
            "rollout.started",
            "rollout.succeeded",
            "rollout.started",
            "rollout.rolled_back",
            "rollout.started",
            "rollout.succeeded"
        ]
    );

    // History, and a rollback two revisions back, on demand.
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["deploy", "history", &name, "--server", &base, "--token", READER])
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(history.contains("restores revision 2"), "{history}");
    let resp = client
        .post(format!("{url}/rollback"))
        .bearer_auth(ADMIN)
        .json(&json!({"version": back["version"], "to_revision": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let rolled: Value = resp.json().await.unwrap();
    assert_eq!(ended(&client, &base, &name, rolled["rollout"]["id"].as_u64().unwrap()).await["state"], "succeeded");
    assert_eq!(pages(&client, &base, &name, 4).await, ["v1"; 4]);

    let resp = client.delete(&url).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", CONVERGE, async || {
        server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
    })
    .await;
}

/// HAProxy in front of a deployment, its servers following the deployment's ready endpoints
/// through the runtime API (no reloads): what an operator's load balancer does.
struct Balancer {
    child: std::process::Child,
    socket: std::path::PathBuf,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SLOTS: usize = 8;

impl Balancer {
    fn start() -> Option<Balancer> {
        let Some(binary) = test_support::haproxy::binary() else {
            assert!(!local_cluster::required(), "HAProxy is not installed (Debian package haproxy)");
            eprintln!("skipping: HAProxy is not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // No retries: every refused or cut connection is a failed request the client sees.
        let mut config = format!(
            "global\n    stats socket {} mode 600 level admin\n\ndefaults\n    mode http\n    retries 0\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\nfrontend web\n    bind 127.0.0.1:{port}\n    default_backend app\n\nbackend app\n",
            socket.display()
        );
        for slot in 1..=SLOTS {
            config.push_str(&format!("    server s{slot} 127.0.0.1:9 disabled\n"));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary)
            .args(["-db", "-q"])
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let balancer = Balancer { child, socket, url: format!("http://127.0.0.1:{port}/"), _dir: dir };
        for _ in 0..100 {
            if balancer.socket.exists() {
                return Some(balancer);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("HAProxy did not start");
    }

    /// One runtime API command; its answer.
    fn command(socket: &std::path::Path, line: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }
}

/// Keeps HAProxy's servers equal to the deployment's ready endpoints, polling every 100 ms,
/// until `stop`.
async fn follow_endpoints(base: String, name: String, socket: std::path::PathBuf, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    let mut slots: Vec<Option<String>> = vec![None; SLOTS];
    while !stop.load(Ordering::Relaxed) {
        let (code, list) = get(&client, &format!("{base}/v1/deployments/{name}/endpoints"), READER).await;
        if code == 200 {
            let ready: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["ready"] == true)
                .filter_map(|e| e["address"].as_str().map(String::from))
                .collect();
            for (i, slot) in slots.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(|a| !ready.contains(a)) {
                    Balancer::command(&socket, &format!("set server app/s{} state maint", i + 1));
                    *slot = None;
                }
            }
            let fresh: Vec<&String> = ready.iter().filter(|a| !slots.contains(&Some((*a).clone()))).collect();
            for address in fresh {
                let Some(i) = slots.iter().position(Option::is_none) else { break };
                let (host, port) = address.rsplit_once(':').unwrap();
                Balancer::command(&socket, &format!("set server app/s{} addr {host} port {port}", i + 1));
                Balancer::command(&socket, &format!("set server app/s{} state ready", i + 1));
                slots[i] = Some(address.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests through the balancer every 20 ms until `stop`: (failed, sent, each answer in the
/// order first seen).
async fn hammer(url: String, stop: Arc<AtomicBool>) -> (u32, u32, Vec<String>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let (mut failed, mut sent, mut answers) = (0, 0, Vec::<String>::new());
    while !stop.load(Ordering::Relaxed) {
        sent += 1;
        match client.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => {
                let page = resp.text().await.unwrap_or_default().trim().to_string();
                if !answers.contains(&page) {
                    answers.push(page);
                }
            }
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (failed, sent, answers)
}

/// One update of `env` with `order`, behind the balancer: (failed requests, sent, answers seen).
async fn update_behind(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    balancer: &Balancer,
    greeting: &str,
    order: &str,
) -> (u32, u32, Vec<String>) {
    let url = format!("{base}/v1/deployments/{name}");
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(hammer(balancer.url.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, d) = get(client, &url, READER).await;
    let body = json!({"version": d["version"], "env": {"GREETING": greeting}, "update": {"order": order}});
    let (code, updated) = patch(client, &url, &body).await;
    assert_eq!(code, 200, "{updated}");
    let done = ended(client, base, name, updated["rollout"]["id"].as_u64().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    // The last old replicas leave the balancer a moment after the rollout ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap()
}

#[tokio::test]
async fn an_update_behind_a_load_balancer_that_follows_the_endpoints_fails_no_request() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let Some(balancer) = Balancer::start() else { return };
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("lb{}", std::process::id());
    create(&client, &base, &web(&name, 6, "v1")).await;
    wait_for("6 replicas converged", CONVERGE, async || converged(&client, &base, nodes, &name, 6).await).await;
    assert_eq!(pages(&client, &base, &name, 6).await, ["v1"; 6]);
    let stop = Arc::new(AtomicBool::new(false));
    let follower = tokio::spawn(follow_endpoints(base.clone(), name.clone(), balancer.socket.clone(), stop.clone()));
    wait_for("the balancer to answer", CONVERGE, async || {
        let resp = client.get(&balancer.url).send().await.ok()?;
        resp.status().is_success().then_some(())
    })
    .await;

    let (failed, sent, answers) = update_behind(&client, &base, &name, &balancer, "v2", "start-first").await;
    eprintln!("start-first: {failed} of {sent} requests failed; answers {answers:?}");
    assert_eq!(failed, 0, "start-first with endpoints first: no request fails ({sent} sent)");
    assert!(sent > 200, "the load ran through the update: {sent}");
    assert_eq!(answers, ["v1", "v2"], "from the old answer to the new");

    // The same with stop-first, for contrast (one replica down at a time; endpoints first still).
    let (failed, sent, answers) = update_behind(&client, &base, &name, &balancer, "v3", "stop-first").await;
    eprintln!("stop-first: {failed} of {sent} requests failed; answers {answers:?}");
    assert_eq!(answers, ["v2", "v3"]);

    stop.store(true, Ordering::Relaxed);
    follower.await.unwrap();
    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", CONVERGE, async || {
        server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
    })
    .await;
}
