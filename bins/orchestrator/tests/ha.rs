//! Several servers on one store: exactly one leads (runs the loops), all serve the API, and
//! when the leader is killed another takes over within the lease TTL + 1 s, its loops resume,
//! and the replicas stay exactly N.

mod server;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use server::{ADMIN, READER, Server, converged, create, local_cluster, ready, start_server_in, wait_for};

const TTL: Duration = Duration::from_secs(5); // the default

async fn readyz(client: &reqwest::Client, server: &Server) -> Option<Value> {
    client.get(format!("{}/readyz", server.url)).send().await.ok()?.json().await.ok()
}

async fn role(client: &reqwest::Client, server: &Server) -> Option<String> {
    readyz(client, server).await?["role"].as_str().map(str::to_string)
}

#[tokio::test]
async fn one_leader_among_servers_sharing_a_store_and_a_fast_takeover() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let data = tempfile::tempdir().unwrap();
    let (a, client) = ready(start_server_in(nodes, data.path())).await;
    let (b, _) = ready(start_server_in(nodes, data.path())).await;

    // Exactly one leader, and both say which.
    let roles = [role(&client, &a).await.unwrap(), role(&client, &b).await.unwrap()];
    let mut sorted = roles.clone();
    sorted.sort();
    assert_eq!(sorted, ["follower", "leader"], "{roles:?}");
    let leader_id = readyz(&client, &a).await.unwrap()["leader"].clone();
    assert_eq!(readyz(&client, &b).await.unwrap()["leader"], leader_id);
    let (_, status) = server::get(&client, &format!("{}/status", b.url), READER).await;
    assert_eq!(status["leader"], leader_id);
    let (mut leader, follower) = if roles[0] == "leader" { (a, b) } else { (b, a) };

    // Through the follower: the leader's loops converge it.
    let name = format!("ha{}", std::process::id());
    create(
        &client,
        &follower.url,
        &json!({"image": "local/busybox:1", "replicas": 6, "name": name, "command": ["sleep", "3600"]}),
    )
    .await;
    wait_for("6 running", Duration::from_secs(60), async || converged(&client, &follower.url, nodes, &name, 6).await)
        .await;

    // The same PATCH, with the same version, through both servers at once: exactly one wins.
    let (_, d) = server::get(&client, &format!("{}/v1/deployments/{name}", follower.url), READER).await;
    let patch = |url: String, replicas: u32| {
        let body = json!({"replicas": replicas, "version": d["version"]});
        let (client, url) = (client.clone(), format!("{url}/v1/deployments/{name}"));
        async move { client.patch(url).bearer_auth(ADMIN).json(&body).send().await.unwrap() }
    };
    let (one, other) = tokio::join!(patch(leader.url.clone(), 7), patch(follower.url.clone(), 5));
    let mut codes = [one.status().as_u16(), other.status().as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [200, 409], "two servers, one version: one scale wins");
    let (_, d) = server::get(&client, &format!("{}/v1/deployments/{name}", follower.url), READER).await;
    let winner = if one.status().is_success() { 7 } else { 5 };
    assert_eq!(d["required"], winner);
    wait_for("the winner's count running", Duration::from_secs(60), async || {
        converged(&client, &follower.url, nodes, &name, winner).await
    })
    .await;

    // kill -9 the leader: the follower leads within TTL + 1 s.
    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    let killed = Instant::now();
    wait_for("the follower to lead", TTL + Duration::from_secs(1), async || {
        (role(&client, &follower).await? == "leader").then_some(())
    })
    .await;
    let took = killed.elapsed();
    eprintln!("takeover after {took:?}");

    // Its loops run: a scale through it converges, and nothing was lost or doubled.
    wait_for("the new leader ready", Duration::from_secs(5), async || {
        client.get(format!("{}/readyz", follower.url)).send().await.ok()?.status().is_success().then_some(())
    })
    .await;
    let (_, d) = server::get(&client, &format!("{}/v1/deployments/{name}", follower.url), READER).await;
    let body = json!({"replicas": 9, "version": d["version"]});
    let resp = client
        .patch(format!("{}/v1/deployments/{name}", follower.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    wait_for("9 running", Duration::from_secs(60), async || converged(&client, &follower.url, nodes, &name, 9).await)
        .await;
    let resp =
        client.delete(format!("{}/v1/deployments/{name}", follower.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
}
