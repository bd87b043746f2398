//! The real binary, on an ephemeral port with a fresh SQLite file, against the local cluster's
//! real engines: the seed's flow end to end over HTTP.

mod server;

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use server::{ADMIN, READER, containers_on_engines, get, local_cluster, start_ready_server, wait_for};

#[tokio::test]
async fn create_status_and_delete_through_the_real_binary() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();

    // Readiness means the first heartbeat has run: every answering node is online by now.
    let (_, listed) = get(&client, &format!("{base}/v1/nodes"), READER).await;
    let online = listed.as_array().unwrap().iter().filter(|n| n["status"] == "online").count();
    assert_eq!(online, 3, "nodes after readiness: {listed}");

    let name = format!("seed{}", std::process::id());
    let body = json!({"image": "local/busybox:1", "replicas": 4, "name": name, "command": ["sleep", "3600"]});
    let resp = client.post(format!("{base}/create")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);

    let status = wait_for("4 running replicas", Duration::from_secs(30), async || {
        let (_, status) = get(&client, &format!("{base}/status"), READER).await;
        let d = status["deployments"].as_array()?.iter().find(|d| d["name"] == name.as_str())?.clone();
        (d["actual"] == 4).then_some(status)
    })
    .await;
    let d = status["deployments"].as_array().unwrap().iter().find(|d| d["name"] == name.as_str()).unwrap();
    let mut from_status: Vec<String> =
        d["replicas"].as_array().unwrap().iter().map(|r| r["container_id"].as_str().unwrap().to_string()).collect();
    from_status.sort();
    assert_eq!(from_status, containers_on_engines(nodes, &name), "/status matches what the engines run");
    let used: Vec<&str> = d["replicas"].as_array().unwrap().iter().map(|r| r["node"].as_str().unwrap()).collect();
    assert!(nodes.iter().all(|n| used.contains(&n.name.as_str())), "spread over all nodes: {used:?}");

    let resp = client.post(format!("{base}/create")).bearer_auth(READER).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403, "a reader cannot create");

    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", Duration::from_secs(30), async || {
        containers_on_engines(nodes, &name).is_empty().then_some(())
    })
    .await;
    let (code, _) = get(&client, &format!("{base}/v1/deployments/{name}"), ADMIN).await;
    assert_eq!(code, 404);
}

#[test]
fn bad_flags_fail_with_one_line_and_non_zero_exit() {
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["serve", "--node", "node1=ftp://nowhere:1", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("address"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["status", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: cannot reach"));
}
