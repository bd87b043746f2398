//! `kill -9` of the server while it is creating 60 replicas, then a restart on the same SQLite
//! file: it converges to exactly 60, with no orphan container and no duplicate.

mod server;

use std::time::Duration;

use serde_json::json;

use server::{converged, create, local_cluster, ready, start_server_in, try_engine_containers, wait_for};

const REPLICAS: usize = 60;

#[tokio::test]
async fn a_server_killed_mid_create_converges_to_exactly_n_after_restart() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let data = tempfile::tempdir().unwrap();
    let (mut server, client) = ready(start_server_in(nodes, data.path())).await;
    let name = format!("crash{}", std::process::id());
    let body = json!({"image": "local/busybox:1", "replicas": REPLICAS, "name": name, "command": ["sleep", "3600"]});
    create(&client, &server.url, &body).await;

    // Some containers exist, most are still to come: the middle of the work.
    let started = wait_for("the first containers", Duration::from_secs(30), async || {
        let n = try_engine_containers(nodes, &name)?.len();
        (n >= 5).then_some(n)
    })
    .await;
    server.child.kill().unwrap(); // SIGKILL: no shutdown path runs.
    server.child.wait().unwrap();
    let at_kill = try_engine_containers(nodes, &name).unwrap().len();
    eprintln!("killed with {started}..{at_kill} of {REPLICAS} containers created");
    assert!(at_kill < REPLICAS, "the kill came too late to test anything ({at_kill} containers)");

    let (server, client) = ready(start_server_in(nodes, data.path())).await;
    wait_for("exactly 60, store == engines", Duration::from_secs(90), async || {
        converged(&client, &server.url, nodes, &name, REPLICAS).await
    })
    .await;
    // And it stays that way: no late duplicate from work the dead server had in flight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(converged(&client, &server.url, nodes, &name, REPLICAS).await.is_some(), "drifted after converging");

    let resp =
        client.delete(format!("{}/v1/deployments/{name}", server.url)).bearer_auth(server::ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("no container left behind", Duration::from_secs(30), async || {
        try_engine_containers(nodes, &name)?.is_empty().then_some(())
    })
    .await;
}
