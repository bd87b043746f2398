//! A deployment's life on real engines through the real binary: 30 replicas over 3 nodes match
//! `docker ps` exactly; scaling up and down and deleting add and remove exactly those
//! containers; a container that exits by itself is replaced.

mod server;

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use server::{
    ADMIN, READER, converged, create, get, local_cluster, start_ready_server, try_engine_containers, wait_for,
};

const CONVERGE: Duration = Duration::from_secs(60);

async fn scale(client: &reqwest::Client, base: &str, name: &str, replicas: usize) {
    let (_, d) = get(client, &format!("{base}/v1/deployments/{name}"), READER).await;
    let body = json!({"replicas": replicas, "version": d["version"]});
    let resp =
        client.patch(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "scale {name} to {replicas}");
}

#[tokio::test]
async fn thirty_replicas_match_the_engines_through_scale_up_scale_down_and_delete() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("life{}", std::process::id());
    create(
        &client,
        &base,
        &json!({"image": "local/busybox:1", "replicas": 30, "name": name, "command": ["sleep", "3600"]}),
    )
    .await;

    for n in [30, 42, 7] {
        if n != 30 {
            scale(&client, &base, &name, n).await;
        }
        wait_for(&format!("{n} replicas, /status == docker ps"), CONVERGE, async || {
            converged(&client, &base, nodes, &name, n).await
        })
        .await;
        let engines = try_engine_containers(nodes, &name).unwrap();
        let per_node: Vec<usize> =
            nodes.iter().map(|node| engines.iter().filter(|c| c.node == node.name).count()).collect();
        // Spread: no node holds more than its even share plus one.
        assert!(per_node.iter().all(|&k| k <= n.div_ceil(3) + 1), "{n} replicas spread as {per_node:?}");
    }

    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    // Delete answers once the store has it; the containers go right after, in the background.
    wait_for("no container left behind", Duration::from_secs(30), async || {
        try_engine_containers(nodes, &name)?.is_empty().then_some(())
    })
    .await;
    let (code, _) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_container_that_exits_by_itself_is_replaced() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("exits{}", std::process::id());
    create(
        &client,
        &base,
        &json!({"image": "local/busybox:1", "replicas": 3, "name": name, "command": ["sleep", "3600"]}),
    )
    .await;
    wait_for("3 running", CONVERGE, async || converged(&client, &base, nodes, &name, 3).await).await;

    let victim = try_engine_containers(nodes, &name).unwrap().remove(0);
    let node = nodes.iter().find(|n| n.name == victim.node).unwrap();
    // SIGKILL the container's process: it exits on its own, nobody asked the orchestrator.
    let out = Command::new("docker").args(["-H", &node.tcp, "kill", &victim.id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    wait_for("the exited replica replaced, 3 running again", CONVERGE, async || {
        converged(&client, &base, nodes, &name, 3).await?;
        // Replaced (a new container) or restarted in place: either way it runs again.
        let engines = try_engine_containers(nodes, &name)?;
        engines.iter().all(|c| c.running).then_some(())
    })
    .await;
    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
}
