//! No false downs: while the engines are busy with a burst of 100 container creates (their
//! answers to pings slow down), no node is ever marked offline.

mod server;

use std::time::Duration;

use serde_json::json;

use server::{ADMIN, READER, converged, create, get, local_cluster, start_ready_server, wait_for};

#[tokio::test]
async fn a_burst_of_100_creates_marks_no_node_offline() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let names: Vec<String> = (0..10).map(|i| format!("burst{}x{i}", std::process::id())).collect();
    // Ten deployments of ten at once: 100 creates queued on three engines.
    futures::future::join_all(names.iter().map(|name| {
        let body = json!({"image": "local/busybox:1", "replicas": 10, "name": name, "command": ["sleep", "3600"]});
        let (client, base) = (client.clone(), base.clone());
        async move { create(&client, &base, &body).await }
    }))
    .await;

    let mut samples = 0;
    wait_for("100 running, no node ever offline", Duration::from_secs(120), async || {
        let (_, listed) = get(&client, &format!("{base}/v1/nodes"), READER).await;
        samples += 1;
        let not_online: Vec<&serde_json::Value> =
            listed.as_array().unwrap().iter().filter(|n| n["status"] != "online").collect();
        assert!(not_online.is_empty(), "a node left online during the burst (sample {samples}): {not_online:?}");
        let (_, status) = get(&client, &format!("{base}/status"), READER).await;
        let running: u64 = status["deployments"].as_array()?.iter().filter_map(|d| d["actual"].as_u64()).sum();
        (running == 100).then_some(())
    })
    .await;
    eprintln!("{samples} samples of node status during the burst, all online");
    for name in &names {
        assert!(converged(&client, &base, nodes, name, 10).await.is_some(), "{name}");
        let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 204);
    }
}
