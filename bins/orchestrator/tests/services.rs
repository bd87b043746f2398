//! Real web services on real engines: busybox's httpd with an environment, a published port,
//! limits and a health check, reached from the host with HTTP; ports the engine picks,
//! reported by the endpoints route and answering; a fixed port never placed twice on a node.

mod server;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use server::{
    ADMIN, READER, converged, create, get, local_cluster, ready, start_ready_server, start_server_with,
    try_engine_containers, wait_for,
};

const CONVERGE: Duration = Duration::from_secs(60);

/// Serves `$GREETING` on port 8080.
fn web(name: &str, replicas: u32, greeting: &str, ports: Value) -> Value {
    json!({
        "name": name,
        "image": "local/busybox:1",
        "replicas": replicas,
        "command": ["sh", "-c", "mkdir -p /www && echo \"$GREETING\" > /www/index.html && exec httpd -f -p 8080 -h /www"],
        "env": {"GREETING": greeting},
        "ports": ports,
        "resources": {"memory": "64M", "cpus": 0.25},
        "healthcheck": {"test": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"],
                        "interval": "1s", "timeout": "1s", "retries": 3},
        "labels": {"team": "web"},
        "stop_grace_period": "3s"
    })
}

/// The endpoints once `n` of them are ready.
async fn ready_endpoints(client: &reqwest::Client, base: &str, name: &str, n: usize) -> Vec<Value> {
    wait_for(&format!("{n} ready endpoints of {name}"), CONVERGE, async || {
        let (code, list) = get(client, &format!("{base}/v1/deployments/{name}/endpoints"), READER).await;
        assert_eq!(code, 200, "{list}");
        let list = list.as_array()?.clone();
        (list.len() == n && list.iter().all(|e| e["ready"] == true)).then_some(list)
    })
    .await
}

/// What `http://address/` answers, once it answers.
async fn page(client: &reqwest::Client, address: &str) -> String {
    wait_for(&format!("an answer from {address}"), Duration::from_secs(20), async || {
        let resp = client.get(format!("http://{address}/")).send().await.ok()?;
        resp.status().is_success().then_some(())?;
        resp.text().await.ok()
    })
    .await
}

fn inspect(node: &local_cluster::ClusterNode, container: &str, format: &str) -> String {
    let out =
        Command::new("docker").args(["-H", &node.tcp, "inspect", "--format", format, container]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Deletes the deployment and waits until the engines hold none of its containers: they go in
/// the background, and the server must live until they have.
async fn delete_and_wait(client: &reqwest::Client, base: &str, nodes: &[local_cluster::ClusterNode], name: &str) {
    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", CONVERGE, async || {
        server::try_containers_on_engines(nodes, name)?.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_web_service_with_env_and_a_published_port_answers_on_every_node() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("web{}", std::process::id());
    let greeting = format!("hello from {name}");
    let published = 18081;
    create(&client, &base, &web(&name, 3, &greeting, json!([{"target": 8080, "published": published}]))).await;
    wait_for("3 replicas converged", CONVERGE, async || converged(&client, &base, nodes, &name, 3).await).await;

    let endpoints = ready_endpoints(&client, &base, &name, 3).await;
    let on: BTreeSet<&str> = endpoints.iter().map(|e| e["node"].as_str().unwrap()).collect();
    assert_eq!(on.len(), 3, "one replica a node: {endpoints:?}");
    for e in &endpoints {
        let node = nodes.iter().find(|n| n.name == e["node"]).unwrap();
        let host = node.tcp.trim_start_matches("tcp://").rsplit_once(':').unwrap().0;
        assert_eq!(e["address"], format!("{host}:{published}"));
        assert_eq!((e["target"].as_u64(), e["protocol"].as_str()), (Some(8080), Some("tcp")));
        assert_eq!(page(&client, e["address"].as_str().unwrap()).await, format!("{greeting}\n"));
    }

    // What the engine was given: the limits, the check, the labels, the stop timeout.
    let (_, d) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    assert_eq!(d["resources"], json!({"memory": "64M", "cpus": 0.25}), "{d}");
    assert_eq!(d["healthcheck"]["interval"], "1s");
    let replica = &d["replicas"][0];
    let node = nodes.iter().find(|n| n.name == replica["node"]).unwrap();
    let container = replica["container_id"].as_str().unwrap();
    let given = "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.Config.StopTimeout}} {{index .Config.Labels \"team\"}} {{.State.Health.Status}}";
    assert_eq!(inspect(node, container, given), "67108864 250000000 3 web healthy");
    let limit = Command::new("docker")
        .args(["-H", &node.tcp, "exec", container, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&limit.stdout).trim(), "67108864", "the engine enforces the memory limit");

    // The store learns the engines' verdicts: 3 ready, each healthy.
    let d = wait_for("3 ready in the store", CONVERGE, async || {
        let (_, d) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
        (d["actual"] == 3).then_some(d)
    })
    .await;
    assert!(d["replicas"].as_array().unwrap().iter().all(|r| r["health"] == "healthy"), "{d}");

    // A 4th replica of a fixed port has no node left: it is not placed.
    let body = json!({"replicas": 4, "version": d["version"]});
    let resp =
        client.patch(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, d) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    assert_eq!((d["required"].as_u64(), d["actual"].as_u64()), (Some(4), Some(3)), "{d}");
    assert_eq!(d["replicas"].as_array().unwrap().len(), 3, "nothing placed for the 4th: {d}");
    assert_eq!(d["unplaced"], json!({"count": 1, "reason": "no online node has tcp/18081 free"}), "{d}");
    let (_, events) = get(&client, &format!("{base}/v1/events?limit=1000"), READER).await;
    let told = events.as_array().unwrap().iter().any(|e| {
        e["kind"] == "deployment.unplaced"
            && e["message"].as_str().unwrap().contains("no online node has tcp/18081 free")
    });
    assert!(told, "an event says why: {events}");
    assert_eq!(ready_endpoints(&client, &base, &name, 3).await.len(), 3);

    delete_and_wait(&client, &base, nodes, &name).await;
}

#[tokio::test]
async fn ports_the_engines_pick_are_the_ones_reported_and_each_answers() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("picked{}", std::process::id());
    create(&client, &base, &web(&name, 6, &name, json!([{"target": 8080}]))).await;
    wait_for("6 replicas converged", CONVERGE, async || converged(&client, &base, nodes, &name, 6).await).await;

    let endpoints = ready_endpoints(&client, &base, &name, 6).await;
    let addresses: BTreeSet<&str> = endpoints.iter().map(|e| e["address"].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), 6, "six distinct host ports: {endpoints:?}");
    for address in addresses {
        assert_eq!(page(&client, address).await, format!("{name}\n"));
    }

    delete_and_wait(&client, &base, nodes, &name).await;
}

#[tokio::test]
async fn bad_workload_fields_are_refused_naming_the_path_and_nothing_is_stored() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let (server, client) = start_ready_server(&nodes[..1]).await;
    let base = server.url.clone();
    let name = format!("bad{}", std::process::id());
    for (patch, field) in [
        (json!({"ports": [{"target": 8080}, {"target": 80, "published": 70000}]}), "ports[1].published"),
        (json!({"env": {"1BAD": "x"}}), "env.1BAD"),
        (json!({"resources": {"memory": "lots"}}), "resources.memory"),
        (json!({"healthcheck": {"test": ["CMD", "true"], "interval": "soon"}}), "healthcheck.interval"),
        (json!({"constraints": ["zone = a"]}), "constraints[0]"),
    ] {
        let mut body = json!({"name": name, "image": "local/busybox:1", "replicas": 1});
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        let resp = client.post(format!("{base}/v1/deployments")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{field}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let (code, _) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    assert_eq!(code, 404, "nothing was stored");
}

/// Running containers of `name` per node, as the engines report them.
fn per_node(nodes: &[local_cluster::ClusterNode], name: &str) -> Option<Vec<(String, usize)>> {
    let running = try_engine_containers(nodes, name)?;
    Some(
        nodes
            .iter()
            .map(|n| (n.name.clone(), running.iter().filter(|c| c.node == n.name && c.running).count()))
            .collect(),
    )
}

async fn send(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = client.request(method, url).bearer_auth(ADMIN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn constraints_keep_replicas_on_labelled_nodes_through_relabels_and_drains() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let data = tempfile::tempdir().unwrap();
    let labels = ["--node-label", "node1:zone=a", "--node-label", "node2:zone=a"];
    let (server, client) = ready(start_server_with(nodes, data.path(), &labels, None)).await;
    let base = server.url.clone();
    let name = format!("zoned{}", std::process::id());
    let body = json!({"name": name, "image": "local/busybox:1", "replicas": 4, "command": ["sleep", "3600"],
                      "constraints": ["node.labels.zone == a"], "stop_grace_period": "1s"});
    create(&client, &base, &body).await;
    let spread = wait_for("4 replicas on the zone=a nodes", CONVERGE, async || {
        let counts = per_node(nodes, &name)?;
        (counts.iter().map(|(_, n)| n).sum::<usize>() == 4).then_some(counts)
    })
    .await;
    assert_eq!(spread, [("node1".to_string(), 2), ("node2".to_string(), 2), ("node3".to_string(), 0)]);

    // Another zone on node3: nothing moves.
    let (code, node3) =
        send(&client, reqwest::Method::PATCH, format!("{base}/v1/nodes/node3"), Some(json!({"labels": {"zone": "b"}})))
            .await;
    assert_eq!((code, &node3["labels"]), (200, &json!({"zone": "b"})), "{node3}");
    let before = try_engine_containers(nodes, &name).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(try_engine_containers(nodes, &name).unwrap(), before, "a relabel moves nothing");

    // Draining node1 moves its replicas to the one other node of zone a.
    let (code, _) = send(&client, reqwest::Method::POST, format!("{base}/v1/nodes/node1/drain"), None).await;
    assert_eq!(code, 200);
    let drained = wait_for("all 4 on node2", CONVERGE, async || {
        let counts = per_node(nodes, &name)?;
        (counts[1].1 == 4 && counts[0].1 == 0).then_some(counts)
    })
    .await;
    assert_eq!(drained[2].1, 0, "node3 is not in zone a: {drained:?}");

    // node3 joins zone a: still nothing moves, until a rebalance is asked for.
    let (code, _) =
        send(&client, reqwest::Method::PATCH, format!("{base}/v1/nodes/node3"), Some(json!({"labels": {"zone": "a"}})))
            .await;
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(per_node(nodes, &name).unwrap()[2].1, 0, "no surprise move onto node3");
    let (code, moved) =
        send(&client, reqwest::Method::POST, format!("{base}/v1/deployments/{name}/rebalance"), None).await;
    assert_eq!(code, 200, "{moved}");
    assert!(moved["moved"].as_u64().unwrap() >= 1, "{moved}");
    wait_for("replicas on node3", CONVERGE, async || (per_node(nodes, &name)?[2].1 >= 1).then_some(())).await;

    delete_and_wait(&client, &base, nodes, &name).await;
}

#[tokio::test]
async fn a_replica_whose_health_check_starts_failing_is_replaced() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("sick{}", std::process::id());
    let mut body = web(&name, 2, &name, json!([{"target": 8080}]));
    body["healthcheck"]["retries"] = json!(2);
    create(&client, &base, &body).await;
    let endpoints = ready_endpoints(&client, &base, &name, 2).await;
    let (_, d) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    let sick = &d["replicas"][0];
    let (sick_id, sick_container) = (sick["id"].as_u64().unwrap(), sick["container_id"].as_str().unwrap().to_string());
    let node = nodes.iter().find(|n| n.name == sick["node"]).unwrap();
    assert_eq!(endpoints.len(), 2);

    // The page goes: httpd answers 404, wget fails, the engine turns the container unhealthy.
    let out = Command::new("docker")
        .args(["-H", &node.tcp, "exec", &sick_container, "rm", "/www/index.html"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the unhealthy replica replaced and 2 ready again", CONVERGE, async || {
        let (_, list) = get(&client, &format!("{base}/v1/deployments/{name}/endpoints"), READER).await;
        let list = list.as_array()?.clone();
        let fresh = list.len() == 2 && list.iter().all(|e| e["ready"] == true && e["replica"] != sick_id);
        fresh.then_some(())
    })
    .await;
    let gone = server::try_engine_containers(nodes, &name).unwrap();
    assert!(gone.iter().all(|c| c.id != sick_container), "the unhealthy container is removed: {gone:?}");

    delete_and_wait(&client, &base, nodes, &name).await;
}

/// `docker run` on one engine, outside the orchestrator.
fn run_by_hand(node: &local_cluster::ClusterNode, args: &[&str]) -> String {
    let out = Command::new("docker").args(["-H", &node.tcp, "run", "-d"]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn unplaced(client: &reqwest::Client, base: &str, name: &str) -> Value {
    let (_, d) = get(client, &format!("{base}/v1/deployments/{name}"), READER).await;
    d["unplaced"].clone()
}

#[tokio::test]
async fn a_host_port_is_held_for_one_replica_a_node_across_deployments_and_engines() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let pid = std::process::id();
    // Something the orchestrator does not know holds the port on the first node.
    let foreign = format!("foreign{pid}");
    run_by_hand(&nodes[0], &["--name", &foreign, "-p", "18086:8080", "local/busybox:1", "sleep", "3600"]);

    let (first, second) = (format!("holds{pid}"), format!("wants{pid}"));
    create(&client, &base, &web(&first, 3, &first, json!([{"target": 8080, "published": 18086}]))).await;
    let why = json!({"count": 1, "reason": "no online node has tcp/18086 free"});
    wait_for("2 placed, 1 waiting for the port", CONVERGE, async || {
        let running = per_node(nodes, &first)?;
        (running.iter().map(|(_, n)| n).sum::<usize>() == 2 && unplaced(&client, &base, &first).await == why)
            .then_some(())
    })
    .await;
    assert_eq!(per_node(nodes, &first).unwrap()[0].1, 0, "not on the engine that refused it");
    let (_, list) = get(&client, &format!("{base}/v1/deployments/{first}/replicas?history=true"), READER).await;
    let refused = format!("did not start: port tcp/18086 taken on {}", nodes[0].name);
    assert!(
        list.as_array().unwrap().iter().any(|r| r["state"] == "rejected" && r["reason"] == refused.as_str()),
        "the refusal is kept, in words: {list}"
    );

    // The holder goes: the deployment gets the node once the engine's refusal is old.
    let removed = Command::new("docker").args(["-H", &nodes[0].tcp, "rm", "-f", &foreign]).output().unwrap();
    assert!(removed.status.success());
    wait_for("3 replicas once the port is free", Duration::from_secs(90), async || {
        let running = per_node(nodes, &first)?;
        (running.iter().all(|(_, n)| *n == 1) && unplaced(&client, &base, &first).await.is_null()).then_some(())
    })
    .await;

    // Another deployment asking for the port finds none: the store holds it on every node.
    create(&client, &base, &web(&second, 1, &second, json!([{"target": 8080, "published": 18086}]))).await;
    wait_for("the second deployment waits", CONVERGE, async || {
        (unplaced(&client, &base, &second).await == why).then_some(())
    })
    .await;
    let (_, listed) = get(&client, &format!("{base}/v1/nodes"), READER).await;
    let held = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["reserved"]["ports"].as_array().is_some_and(|p| p.contains(&json!("tcp/18086"))))
        .count();
    assert_eq!(held, 3, "{listed}");
    // Deleted, the first gives the port back: the second one is placed.
    delete_and_wait(&client, &base, nodes, &first).await;
    wait_for("the second deployment placed", CONVERGE, async || converged(&client, &base, nodes, &second, 1).await)
        .await;
    delete_and_wait(&client, &base, nodes, &second).await;
}

#[tokio::test]
async fn memory_limits_are_counted_against_each_node_and_the_rest_waits() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..2];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("mem{}", std::process::id());
    let (_, listed) = get(&client, &format!("{base}/v1/nodes"), READER).await;
    let memory = wait_for("engine facts", CONVERGE, async || {
        let (_, listed) = get(&client, &format!("{base}/v1/nodes"), READER).await;
        listed.as_array()?.iter().map(|n| n["engine"]["memory_bytes"].as_u64()).collect::<Option<Vec<u64>>>()
    })
    .await;
    assert_eq!(memory.len(), 2, "{listed}");
    // Each replica claims two fifths of a node's memory: two a node fit, a fifth replica waits.
    let each = memory.iter().min().unwrap() * 2 / 5;
    let body = json!({"name": name, "image": "local/busybox:1", "replicas": 5, "command": ["sleep", "3600"],
                      "resources": {"memory": each.to_string()}, "stop_grace_period": "1s"});
    create(&client, &base, &body).await;
    wait_for("4 running, 1 waiting for memory", CONVERGE, async || {
        let running: usize = per_node(nodes, &name)?.iter().map(|(_, n)| n).sum();
        let waiting = unplaced(&client, &base, &name).await;
        (running == 4 && waiting["count"] == 1).then_some(())
    })
    .await;
    let reason = unplaced(&client, &base, &name).await["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("no online node has ") && reason.ends_with(" of memory free"), "{reason}");
    let (_, listed) = get(&client, &format!("{base}/v1/nodes"), READER).await;
    for n in listed.as_array().unwrap().iter().filter(|n| nodes.iter().any(|c| c.name == n["name"])) {
        assert_eq!(n["reserved"]["memory_bytes"].as_u64(), Some(2 * each), "{n}");
    }
    // Scaled down, the memory comes back and nothing waits.
    let (_, d) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    let (code, _) = send(
        &client,
        reqwest::Method::PATCH,
        format!("{base}/v1/deployments/{name}"),
        Some(json!({"replicas": 3, "version": d["version"]})),
    )
    .await;
    assert_eq!(code, 200);
    wait_for("3 running, none waiting", CONVERGE, async || {
        let running: usize = per_node(nodes, &name)?.iter().map(|(_, n)| n).sum();
        (running == 3 && unplaced(&client, &base, &name).await.is_null()).then_some(())
    })
    .await;
    delete_and_wait(&client, &base, nodes, &name).await;
    let (_, listed) = get(&client, &format!("{base}/v1/nodes"), READER).await;
    for n in listed.as_array().unwrap().iter().filter(|n| nodes.iter().any(|c| c.name == n["name"])) {
        assert!(n["reserved"].is_null(), "all given back: {n}");
    }
}

#[tokio::test]
async fn a_replica_that_keeps_exiting_is_restarted_with_a_growing_wait_and_shown_crash_looping() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let nodes = &nodes[..1];
    let (server, client) = start_ready_server(nodes).await;
    let base = server.url.clone();
    let name = format!("crash{}", std::process::id());
    let body = json!({"name": name, "image": "local/busybox:1", "replicas": 1,
                      "command": ["sh", "-c", "sleep 0.2; exit 3"], "stop_grace_period": "1s"});
    create(&client, &base, &body).await;
    let crash = wait_for("three failures in a row", CONVERGE, async || {
        let (_, d) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
        let crash = d["crash_looping"].clone();
        (crash["restarts"].as_u64()? >= 3).then_some(crash)
    })
    .await;
    assert_eq!(crash["last_exit_code"], 3, "{crash}");
    let wait = crash["retry_at_ms"].as_u64().unwrap() - crash["last_failure_ms"].as_u64().unwrap();
    assert_eq!(wait, 1_000 << (crash["restarts"].as_u64().unwrap() - 1), "the wait doubles: {crash}");
    // However long it runs, the starts are counted in seconds of backoff, not reconcile passes:
    // in 1+2+4+8 s at most 5 starts (a pass every 2 s without the backoff would make 8 and more).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (_, events) = get(&client, &format!("{base}/v1/events?limit=1000"), READER).await;
    let placed = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "replica.placed" && e["deployment"] == name.as_str())
        .count();
    let (_, d) = get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    let restarts = d["crash_looping"]["restarts"].as_u64().unwrap() as usize;
    assert!(placed <= restarts + 1, "one start a failure, each after its wait: {placed} starts, {restarts} failures");
    assert!(restarts <= 5, "the waits grow: {restarts} failures in about 15 s");
    delete_and_wait(&client, &base, nodes, &name).await;
}
