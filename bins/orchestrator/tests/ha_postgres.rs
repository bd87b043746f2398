//! The HA setup for real: servers sharing a PostgreSQL store (the local server of `cargo xtask
//! pg up`), and HAProxy in front with the documented config (docs/ha/haproxy.cfg).
//!
//! - a leader paused (SIGSTOP) for twice the lease TTL does not lead again when it resumes,
//!   nothing it still had in flight lands, and the cluster stays exactly as the new leader
//!   keeps it;
//! - a client creating and scaling through HAProxy with a simple retry policy while the
//!   leader is killed loses nothing and duplicates nothing;
//! - a rollout under way when the leader is killed finishes on the new leader where it was,
//!   within its bounds.

mod server;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use test_support::workspace_root;

use server::{ADMIN, READER, Server, converged, local_cluster, start_server_with, wait_for};

const TTL: Duration = Duration::from_secs(5); // the default

/// A new, empty database on the local PostgreSQL; `None` (after saying why) when there is none
/// and the test may be skipped; a panic under CI, where `cargo xtask ci` starts it.
fn fresh_database() -> Option<String> {
    let Ok(server) = std::fs::read_to_string(workspace_root().join("target/pg/url")) else {
        assert!(!local_cluster::required(), "no local PostgreSQL (target/pg/url): `cargo xtask pg up` starts one");
        eprintln!("skipping: no local PostgreSQL (run `cargo xtask pg up`)");
        return None;
    };
    let server = server.trim();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("ha{}x{nanos:x}", std::process::id());
    let out = Command::new("psql")
        .args([server, "-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql (Debian postgresql-client) runs");
    assert!(out.status.success(), "CREATE DATABASE failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(format!("{}/{name}", server.rsplit_once('/').unwrap().0))
}

fn start(nodes: &[local_cluster::ClusterNode], store: &str, id: &str, dir: &Path) -> Server {
    let data = dir.join(id);
    std::fs::create_dir_all(&data).unwrap();
    start_server_with(nodes, &data, &["--store", store, "--server-id", id], Some(&dir.join(format!("{id}.log"))))
}

async fn readyz(client: &reqwest::Client, server: &Server) -> Option<(u16, Value)> {
    let resp = client.get(format!("{}/readyz", server.url)).send().await.ok()?;
    Some((resp.status().as_u16(), resp.json().await.ok()?))
}

async fn role(client: &reqwest::Client, server: &Server) -> Option<String> {
    readyz(client, server).await?.1["role"].as_str().map(str::to_string)
}

async fn all_ready(client: &reqwest::Client, servers: &[&Server]) {
    for s in servers {
        wait_for("a ready server", Duration::from_secs(20), async || (readyz(client, s).await?.0 == 200).then_some(()))
            .await;
    }
}

fn signal(server: &Server, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(server.child.id().to_string()).status().unwrap();
    assert!(ok.success());
}

/// Resumes a stopped server even when the test fails half-way (later tests share the engines).
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

#[tokio::test]
async fn a_paused_leader_does_not_lead_again_and_nothing_it_had_in_flight_lands() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let Some(store) = fresh_database() else { return };
    let nodes = &nodes[..3];
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(2)).build().unwrap();
    let a = start(nodes, &store, "pa", dir.path());
    let b = start(nodes, &store, "pb", dir.path());
    all_ready(&client, &[&a, &b]).await;
    let (leader, follower, leader_id, follower_id) =
        if role(&client, &a).await.as_deref() == Some("leader") { (a, b, "pa", "pb") } else { (b, a, "pb", "pa") };
    let name = format!("paused{}", std::process::id());

    // Ask the leader for 20 replicas and pause it at once: its convergence is in flight
    // (replicas placed, containers being started, records being written).
    let resp = client
        .post(format!("{}/v1/deployments", leader.url))
        .bearer_auth(ADMIN)
        .json(&json!({"image": "local/busybox:1", "replicas": 20, "name": name, "command": ["sleep", "3600"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    signal(&leader, "STOP");
    let resume = Resume(leader.child.id());
    let stopped = Instant::now();

    // The follower takes over once the lease runs out, and finishes the job.
    wait_for("the follower to lead", TTL + Duration::from_secs(2), async || {
        (role(&client, &follower).await? == "leader").then_some(())
    })
    .await;
    eprintln!("takeover {:?} after SIGSTOP", stopped.elapsed());
    wait_for("20 running under the new leader", Duration::from_secs(60), async || {
        converged(&client, &follower.url, nodes, &name, 20).await
    })
    .await;
    // Twice the TTL in all, then SIGCONT.
    tokio::time::sleep((2 * TTL).saturating_sub(stopped.elapsed())).await;
    signal(&leader, "CONT");
    drop(resume);

    // It comes back as a follower of the new leader, and never leads again.
    wait_for("the old leader to follow", Duration::from_secs(3), async || {
        let (_, body) = readyz(&client, &leader).await?;
        (body["role"] == "follower" && body["leader"] == follower_id).then_some(())
    })
    .await;
    // For a while after it resumed, the cluster stays exactly as the new leader keeps it: the
    // same 20 containers (none removed, none added by the old leader), every node online.
    let (_, settled) = server::get(&client, &format!("{}/status", follower.url), READER).await;
    let before = server::containers_on_engines(nodes, &name);
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        assert_eq!(role(&client, &leader).await.as_deref(), Some("follower"), "the paused leader led again");
        assert_eq!(
            server::containers_on_engines(nodes, &name),
            before,
            "containers changed after the old leader resumed"
        );
        let (_, status) = server::get(&client, &format!("{}/status", follower.url), READER).await;
        assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "online"), "{status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(converged(&client, &follower.url, nodes, &name, 20).await.is_some());
    let (_, status) = server::get(&client, &format!("{}/status", follower.url), READER).await;
    assert_eq!(status["deployments"], settled["deployments"], "the store changed after the old leader resumed");

    let log = std::fs::read_to_string(dir.path().join(format!("{leader_id}.log"))).unwrap();
    assert_eq!(log.matches("scheduler::election: leading").count(), 1, "led once only:\n{log}");
    let refused = log.matches("stale leader").count() + log.matches("not the leader").count();
    eprintln!("the resumed leader's refused writes and engine calls: {refused}");

    let resp =
        client.delete(format!("{}/v1/deployments/{name}", follower.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", Duration::from_secs(30), async || {
        server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
    })
    .await;
    drop(leader);
}

/// `deployment/replica` of every container, running or not, whose deployment's name starts
/// with `prefix`, on all engines (one listing each); `None` while an engine does not answer.
fn containers_with_prefix(nodes: &[local_cluster::ClusterNode], prefix: &str) -> Option<Vec<String>> {
    let mut found = Vec::new();
    for n in nodes {
        let out = Command::new("docker")
            .args(["-H", &n.tcp, "ps", "-a", "--filter", "label=io.orchestrator.deployment", "--format"])
            .arg("{{.Label \"io.orchestrator.deployment\"}}/{{.Label \"io.orchestrator.replica\"}}")
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        found
            .extend(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with(prefix)).map(str::to_string));
    }
    Some(found)
}

// ----- HAProxy -----

struct Haproxy {
    child: Child,
    url: String,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// docs/ha/haproxy.cfg in front of `servers`, as `cargo xtask ha up` writes it.
fn haproxy_config(listen: u16, servers: &[&Server]) -> String {
    let template = std::fs::read_to_string(workspace_root().join("docs/ha/haproxy.cfg")).unwrap();
    let servers: Vec<String> = servers.iter().map(|s| s.url.trim_start_matches("http://").to_string()).collect();
    test_support::haproxy::config(&template, listen, &servers)
}

fn start_haproxy(dir: &Path, servers: &[&Server]) -> Option<Haproxy> {
    let Some(binary) = test_support::haproxy::binary() else {
        assert!(!local_cluster::required(), "HAProxy is not installed (Debian package haproxy)");
        eprintln!("skipping: HAProxy is not installed");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(port, servers)).unwrap();
    // -db: in the foreground, so the test owns the process.
    let child = Command::new(binary).arg("-db").arg("-f").arg(&config).stdout(Stdio::null()).spawn().unwrap();
    Some(Haproxy { child, url: format!("http://127.0.0.1:{port}") })
}

/// What the client's retry policy saw.
#[derive(Default, Debug)]
struct Tally {
    requests: u32,
    retries: u32,
}

/// Creates by name until it is there: a 201, or a 200 (it was made by an earlier attempt whose
/// answer was lost). Any other answer or no answer: wait and try again.
async fn create_with_retry(client: &reqwest::Client, proxy: &str, body: &Value, tally: &mut Tally) -> bool {
    for attempt in 0..20 {
        tally.requests += 1;
        if attempt > 0 {
            tally.retries += 1;
        }
        let sent = client.post(format!("{proxy}/v1/deployments")).bearer_auth(ADMIN).json(body).send().await;
        if let Ok(resp) = sent
            && matches!(resp.status().as_u16(), 200 | 201)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// Scales with the version just read; a 409 means someone (maybe our own lost attempt) got
/// there first: done if the count is ours, else read again and retry.
async fn scale_with_retry(client: &reqwest::Client, proxy: &str, name: &str, replicas: u32, tally: &mut Tally) -> bool {
    let url = format!("{proxy}/v1/deployments/{name}");
    for attempt in 0..20 {
        tally.requests += 1;
        if attempt > 0 {
            tally.retries += 1;
        }
        let read = async {
            let resp = client.get(&url).bearer_auth(READER).send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            resp.json::<Value>().await.ok()
        };
        if let Some(d) = read.await {
            if d["required"] == replicas {
                return true;
            }
            let body = json!({"replicas": replicas, "version": d["version"]});
            if let Ok(resp) = client.patch(&url).bearer_auth(ADMIN).json(&body).send().await
                && resp.status().as_u16() == 200
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

#[tokio::test]
async fn creates_and_scales_through_haproxy_lose_nothing_and_duplicate_nothing_when_the_leader_dies() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let Some(store) = fresh_database() else { return };
    let nodes = &nodes[..3];
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut servers: Vec<Server> =
        ["ha1", "ha2", "ha3"].iter().map(|id| start(nodes, &store, id, dir.path())).collect();
    all_ready(&client, &servers.iter().collect::<Vec<_>>()).await;
    let Some(proxy) = start_haproxy(dir.path(), &servers.iter().collect::<Vec<_>>()) else { return };
    wait_for("HAProxy to pass requests", Duration::from_secs(10), async || {
        client.get(format!("{}/readyz", proxy.url)).send().await.ok()?.status().is_success().then_some(())
    })
    .await;
    let mut leader = None;
    for (i, s) in servers.iter().enumerate() {
        if role(&client, s).await.as_deref() == Some("leader") {
            leader = Some(i);
        }
    }
    let leader = leader.expect("a leader");

    let prefix = format!("hp{}", std::process::id());
    let scaled = format!("{prefix}-scaled");
    let mut tally = Tally::default();
    assert!(
        create_with_retry(
            &client,
            &proxy.url,
            &json!({"image": "local/busybox:1", "replicas": 1, "name": scaled, "command": ["sleep", "3600"]}),
            &mut tally
        )
        .await
    );
    // 24 creates of one replica and a scale step after every fourth, 300 ms apart; the leader
    // is killed (kill -9) after the fourth create, so the rest span the takeover (TTL 5 s).
    let mut wanted_scale = 1;
    let mut killed_at = None;
    for i in 0..24 {
        if i == 4 {
            servers[leader].child.kill().unwrap();
            servers[leader].child.wait().unwrap();
            killed_at = Some(Instant::now());
        }
        let body = json!({"image": "local/busybox:1", "replicas": 1, "name": format!("{prefix}-{i}"), "command": ["sleep", "3600"]});
        assert!(create_with_retry(&client, &proxy.url, &body, &mut tally).await, "create {i} lost");
        if i % 4 == 3 {
            wanted_scale += 1;
            assert!(scale_with_retry(&client, &proxy.url, &scaled, wanted_scale, &mut tally).await, "scale {i} lost");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "{} requests, {} retried; the last {:?} after the leader was killed",
        tally.requests,
        tally.retries,
        killed_at.unwrap().elapsed()
    );

    // Nothing lost: every deployment is there with what was asked; nothing duplicated: each
    // runs exactly its count, one container per replica, on the engines.
    let (_, list) = server::get(&client, &format!("{}/v1/deployments", proxy.url), READER).await;
    let mut names: Vec<&str> =
        list.as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).filter(|n| n.starts_with(&prefix)).collect();
    names.sort_unstable();
    let mut expected: Vec<String> = (0..24).map(|i| format!("{prefix}-{i}")).chain([scaled.clone()]).collect();
    expected.sort();
    assert_eq!(names, expected);
    let survivor = servers.iter().enumerate().find(|(i, _)| *i != leader).unwrap().1.url.clone();
    for i in 0..24 {
        let name = format!("{prefix}-{i}");
        wait_for(&format!("{name} running once"), Duration::from_secs(90), async || {
            converged(&client, &survivor, nodes, &name, 1).await
        })
        .await;
    }
    wait_for("the scaled deployment's count", Duration::from_secs(60), async || {
        converged(&client, &survivor, nodes, &scaled, wanted_scale as usize).await
    })
    .await;

    // Deleted through HAProxy, so about half on the follower (an intent the leader carries out
    // in its reconcile sweep): every container gone within two reconcile intervals (2 s each)
    // of the last delete, with room for a loaded machine. Before the sweep was kept apart
    // from the converges, the new leader rested 4x its first, backlog-converging pass (~40 s).
    for name in &expected {
        let resp =
            client.delete(format!("{}/v1/deployments/{name}", proxy.url)).bearer_auth(ADMIN).send().await.unwrap();
        assert!(matches!(resp.status().as_u16(), 204 | 404), "{}", resp.status());
    }
    let deleted = Instant::now();
    wait_for("containers of the deleted deployments removed", Duration::from_secs(12), async || {
        containers_with_prefix(nodes, &prefix)?.is_empty().then_some(())
    })
    .await;
    eprintln!("every container of the 25 deleted deployments gone {:?} after the last delete", deleted.elapsed());
    drop(proxy);
}

#[tokio::test]
async fn a_rollout_carries_on_where_it_was_on_the_new_leader_when_the_leader_is_killed() {
    use server::rolling::{ROLLOUT, Sampler, ended, web};
    let Some(nodes) = local_cluster::nodes() else { return };
    let Some(store) = fresh_database() else { return };
    let nodes = &nodes[..3];
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut servers: Vec<Server> = ["ro1", "ro2"].iter().map(|id| start(nodes, &store, id, dir.path())).collect();
    all_ready(&client, &servers.iter().collect::<Vec<_>>()).await;
    let mut leader = None;
    for (i, s) in servers.iter().enumerate() {
        if role(&client, s).await.as_deref() == Some("leader") {
            leader = Some(i);
        }
    }
    let leader = leader.expect("a leader");
    let survivor = servers[1 - leader].url.clone();
    let base = servers[leader].url.clone();
    let name = format!("haroll{}", std::process::id());
    let url = format!("{base}/v1/deployments/{name}");
    let resp = client
        .post(format!("{base}/v1/deployments"))
        .bearer_auth(ADMIN)
        .json(&web(&name, 4, "v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    wait_for("4 replicas converged", Duration::from_secs(60), async || {
        converged(&client, &base, nodes, &name, 4).await
    })
    .await;
    wait_for("4 ready", Duration::from_secs(60), async || {
        let (_, d) = server::get(&client, &url, READER).await;
        (d["actual"] == 4).then_some(())
    })
    .await;

    let sampler = Sampler::start(nodes, &name);
    let (_, d) = server::get(&client, &url, READER).await;
    let body = json!({"version": d["version"], "env": {"GREETING": "v2"}});
    let resp = client.patch(&url).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let updated: Value = resp.json().await.unwrap();
    let id = updated["rollout"]["id"].as_u64().unwrap();
    // Killed once the first replica is replaced (updated and watched for its monitor).
    let updated_before = wait_for("one replica replaced", ROLLOUT, async || {
        let (_, d) = server::get(&client, &url, READER).await;
        let replicas = d["replicas"].as_array()?;
        let new: Vec<u64> = replicas.iter().filter(|r| r["revision"] == 2).filter_map(|r| r["id"].as_u64()).collect();
        (new.len() >= 2 && replicas.len() <= 5).then_some(new)
    })
    .await;
    servers[leader].child.kill().unwrap();
    servers[leader].child.wait().unwrap();

    let done = ended(&client, &survivor, &name, id).await;
    let samples = sampler.finish();
    assert_eq!(done["state"], "succeeded", "the same rollout finished: {done}");
    let (_, rollouts) = server::get(&client, &format!("{survivor}/v1/deployments/{name}/rollouts"), READER).await;
    assert_eq!(rollouts.as_array().unwrap().len(), 1, "not started over: {rollouts}");
    let (_, d) = server::get(&client, &format!("{survivor}/v1/deployments/{name}"), READER).await;
    let now: Vec<u64> = d["replicas"].as_array().unwrap().iter().filter_map(|r| r["id"].as_u64()).collect();
    assert!(
        updated_before.iter().all(|r| now.contains(r)),
        "replicas updated before the kill kept: {updated_before:?} {now:?}"
    );
    assert!(d["replicas"].as_array().unwrap().iter().all(|r| r["revision"] == 2), "{d}");
    let most = samples.iter().map(|s| s.0).max().unwrap();
    let fewest_healthy = samples.iter().map(|s| s.1).min().unwrap();
    assert!(most <= 5 && fewest_healthy >= 4, "within its bounds across the takeover: {samples:?}");
    wait_for("converged on the new leader", Duration::from_secs(60), async || {
        converged(&client, &survivor, nodes, &name, 4).await
    })
    .await;

    let resp = client.delete(format!("{survivor}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", Duration::from_secs(60), async || {
        server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
    })
    .await;
}
