//! Nodes joining and leaving a running cluster: a 4th node added at runtime takes new replicas;
//! a node deleted through the API is drained first, and at no moment do fewer replicas run than
//! required minus the ones that node held.

mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use server::{
    ADMIN, READER, converged, create, get, local_cluster, start_ready_server, try_engine_containers, wait_for,
};

const CONVERGE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_fourth_node_joins_and_a_deleted_node_is_drained_first() {
    let Some(all) = local_cluster::nodes() else { return };
    assert!(all.len() >= 4, "this test needs a 4-node local cluster (cargo xtask cluster up --nodes 4)");
    let (server, client) = start_ready_server(&all[..3]).await;
    let base = server.url.clone();
    let name = format!("members{}", std::process::id());
    create(
        &client,
        &base,
        &json!({"image": "local/busybox:1", "replicas": 12, "name": name, "command": ["sleep", "3600"]}),
    )
    .await;
    wait_for("12 on 3 nodes", CONVERGE, async || converged(&client, &base, &all[..3], &name, 12).await).await;

    // Join: the 4th engine, added through the API, is online after its first heartbeat.
    let fourth = &all[3];
    let body = json!({"name": fourth.name, "address": fourth.tcp, "capacity": 100});
    let resp = client.post(format!("{base}/v1/nodes")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    wait_for("the 4th node online", Duration::from_secs(10), async || {
        let (_, n) = get(&client, &format!("{base}/v1/nodes/{}", fourth.name), READER).await;
        (n["status"] == "online").then_some(())
    })
    .await;
    // New replicas go to the emptiest node first: the newcomer.
    let (_, d) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    let body = json!({"replicas": 18, "version": d["version"]});
    let resp =
        client.patch(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    wait_for("18 on 4 nodes", CONVERGE, async || converged(&client, &base, &all[..4], &name, 18).await).await;
    let on_fourth = try_engine_containers(&all[..4], &name).unwrap().iter().filter(|c| c.node == fourth.name).count();
    assert!(on_fourth >= 4, "the new node got {on_fourth} of the 6 new replicas");

    // Leave: DELETE drains node2 first. Watch the engines the whole time.
    let leaving = all[1].name.clone();
    let before = try_engine_containers(&all[..4], &name).unwrap();
    let held = before.iter().filter(|c| c.node == leaving).count();
    assert!(held > 0);
    let floor = 18 - held;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, nodes, name) = (Arc::clone(&done), all[..4].to_vec(), name.clone());
        std::thread::spawn(move || {
            let (mut lowest, mut samples) = (usize::MAX, 0);
            while !done.load(Ordering::Relaxed) {
                if let Some(cs) = try_engine_containers(&nodes, &name) {
                    lowest = lowest.min(cs.iter().filter(|c| c.running).count());
                    samples += 1;
                }
            }
            (lowest, samples)
        })
    };
    let resp = client.delete(format!("{base}/v1/nodes/{leaving}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let remaining = [all[0].clone(), all[2].clone(), all[3].clone()];
    wait_for("18 on the 3 remaining nodes", CONVERGE, async || converged(&client, &base, &remaining, &name, 18).await)
        .await;
    done.store(true, Ordering::Relaxed);
    let (lowest, samples) = watcher.join().unwrap();
    eprintln!("drain of {leaving}: {samples} samples of the engines, at worst {lowest} of 18 running");
    assert!(samples > 1, "the engines were not sampled during the drain");
    assert!(
        lowest >= floor,
        "{lowest} running at the worst moment; at least {floor} (18 - {held} on {leaving}) required"
    );
    assert!(
        try_engine_containers(&all[1..2], &name).unwrap().is_empty(),
        "the removed node keeps no container of ours"
    );
    let (code, _) = get(&client, &format!("{base}/v1/nodes/{leaving}"), READER).await;
    assert_eq!(code, 404);

    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
}
