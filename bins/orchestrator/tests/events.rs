//! Events end to end: what the real server records as it works, followed live by
//! `orchestrator events --follow`.

mod server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use server::{ADMIN, READER, create, local_cluster, start_ready_server, wait_for};

#[tokio::test]
async fn events_follow_prints_a_deployment_being_placed_and_started_live() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let (server, client) = start_ready_server(&nodes[..3]).await;
    let mut follow = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["events", "--follow", "-o", "json", "--server", &server.url, "--token", READER])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(follow.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        let name = format!("ev{}", std::process::id());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen: Vec<(u64, String)> = Vec::new();
        for line in lines.lines() {
            let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
            if event["deployment"] == name.as_str() {
                seen.push((event["id"].as_u64().unwrap(), event["kind"].as_str().unwrap().to_string()));
            }
            let started = seen.iter().filter(|(_, k)| k == "replica.started").count();
            if started == 2 || Instant::now() > deadline {
                break;
            }
        }
        seen
    });
    // The stream is open before the change (it prints history first, then follows).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let name = format!("ev{}", std::process::id());
    create(
        &client,
        &server.url,
        &json!({"image": "local/busybox:1", "replicas": 2, "name": name, "command": ["sleep", "3600"]}),
    )
    .await;
    let seen = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    let kinds: Vec<&str> = seen.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds, ["deployment.created", "replica.placed", "replica.placed", "replica.started", "replica.started"]);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "ids grow: {seen:?}");

    // The same events are listed afterwards, and bad input is one line and a non-zero exit.
    let (_, listed) = server::get(&client, &format!("{}/v1/events?since={}", server.url, seen[0].0 - 1), READER).await;
    assert_eq!(listed[0]["kind"], "deployment.created");
    // Filtered by the server: this deployment's starts only, among everything that happened.
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["events", "--deployment", &name, "--kind", "replica.started", "-o", "json"])
        .args(["--limit", "1000", "--server", &server.url, "--token", READER])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let filtered: Value = serde_json::from_slice(&out.stdout).unwrap();
    let started: Vec<u64> = seen.iter().filter(|(_, k)| k == "replica.started").map(|(id, _)| *id).collect();
    let ids: Vec<u64> = filtered.as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, started, "{filtered}");
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["events", "--limit", "0", "--server", &server.url, "--token", READER])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--limit"), "{stderr}");

    let resp = client.delete(format!("{}/v1/deployments/{name}", server.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", Duration::from_secs(30), async || {
        server::try_containers_on_engines(&nodes[..3], &name)?.is_empty().then_some(())
    })
    .await;
}
