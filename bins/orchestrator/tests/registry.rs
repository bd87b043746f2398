//! Images from a real private registry (`cargo xtask registry up`: Debian's docker-registry
//! with TLS from its own CA and htpasswd): without a login the engines' pulls are refused and
//! `deploy ps` says so; the login added through the API, the same deployment runs, its image
//! pulled by each engine; the password is in no answer, no log and not in the store's bytes.

mod server;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use server::{ADMIN, READER, create, local_cluster, start_server_logging, wait_for};

/// The registry `cargo xtask registry up` started, and its login; `None` (or, when the
/// cluster is required, a failure) when it is not up.
fn registry() -> Option<Value> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/registry/credentials.json");
    match std::fs::read_to_string(file) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(e) if local_cluster::required() => {
            panic!("the test registry is required but not up ({e}): cargo xtask registry up")
        }
        Err(_) => {
            eprintln!("skipping: no test registry (cargo xtask registry up)");
            None
        }
    }
}

#[tokio::test]
async fn a_private_image_runs_once_its_login_is_added_and_the_password_never_shows() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let Some(login) = registry() else { return };
    let nodes = &nodes[..2];
    let server_address = login["server"].as_str().unwrap();
    let password = login["password"].as_str().unwrap();
    let image = format!("{server_address}/app:1");
    // Every engine starts without the image (a pull must happen).
    for n in nodes {
        let _ = Command::new("docker").args(["-H", &n.tcp, "rmi", "-f", &image]).output();
    }
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("server.log");
    let server = start_server_logging(nodes, data.path(), &[], Some((&log, "trace")));
    let (server, client) = server::ready(server).await;
    let base = server.url.clone();
    let name = format!("private{}", std::process::id());
    create(&client, &base, &json!({"image": image, "replicas": 2, "name": name, "command": ["sleep", "3600"]})).await;

    // No login: each engine's pull is refused, and deploy ps says why.
    let refused = wait_for("a refused pull in deploy ps", Duration::from_secs(60), async || {
        let (_, list) =
            server::get(&client, &format!("{base}/v1/deployments/{name}/replicas?history=true"), READER).await;
        let row = list.as_array()?.iter().find(|r| r["state"] == "pull_failed")?.clone();
        row["reason"].as_str()?.contains("unauthorized").then_some(row)
    })
    .await;
    let why = refused["reason"].as_str().unwrap();
    assert!(why.starts_with(&format!("image not pulled: {image} on node")), "{refused}");

    // The login, through the API: the same deployment runs, pulled by each engine.
    let body = json!({"server": server_address, "username": login["username"], "password": password});
    let resp = client.post(format!("{base}/v1/registries")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let answer = resp.text().await.unwrap();
    assert!(!answer.contains(password), "{answer}");
    wait_for("2 replicas running from the registry", Duration::from_secs(120), async || {
        let (_, d) = server::get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
        (d["actual"] == 2).then_some(())
    })
    .await;
    for n in nodes {
        let out = Command::new("docker").args(["-H", &n.tcp, "image", "inspect", &image]).output().unwrap();
        assert!(out.status.success(), "{} pulled the image", n.name);
    }

    // Pull policies: `never` does not pull even with the login (app:2 is on no engine), `always`
    // pulls what the engine already has, before the start.
    let never = format!("never{}", std::process::id());
    let two = format!("{server_address}/app:2");
    for n in nodes {
        let _ = Command::new("docker").args(["-H", &n.tcp, "rmi", "-f", &two]).output();
    }
    create(
        &client,
        &base,
        &json!({"image": two, "replicas": 1, "name": never, "command": ["sleep", "3600"], "pull": "never"}),
    )
    .await;
    let not_pulled = wait_for("a start refused for the image it may not pull", Duration::from_secs(60), async || {
        let (_, list) =
            server::get(&client, &format!("{base}/v1/deployments/{never}/replicas?history=true"), READER).await;
        let row = list.as_array()?.iter().find(|r| r["state"] == "rejected")?.clone();
        Some(row["reason"].as_str()?.to_string())
    })
    .await;
    assert!(not_pulled.contains("not found on node"), "{not_pulled}");
    let since = unix_now();
    let always = format!("always{}", std::process::id());
    create(&client, &base, &json!({"image": image, "replicas": 1, "name": always, "command": ["sleep", "3600"], "pull": "always", "max_per_node": 1})).await;
    wait_for("the always-pulled replica running", Duration::from_secs(60), async || {
        let (_, d) = server::get(&client, &format!("{base}/v1/deployments/{always}"), READER).await;
        (d["actual"] == 1).then_some(())
    })
    .await;
    let pulls: usize = nodes
        .iter()
        .map(|n| {
            let out = Command::new("docker")
                .args(["-H", &n.tcp, "events", "--since", &since, "--until", &unix_now()])
                .args(["--filter", "type=image", "--filter", "event=pull", "--format", "{{.ID}}"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("app:1")).count()
        })
        .sum();
    assert!(pulls >= 1, "`always` pulled an image the engine had");
    for d in [&never, &always] {
        let resp = client.delete(format!("{base}/v1/deployments/{d}")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 204);
    }

    // Nowhere to be read: not in answers, not in the trace log, not in the store's bytes.
    let resp = client.get(format!("{base}/v1/registries")).bearer_auth(ADMIN).send().await.unwrap();
    let listed = resp.text().await.unwrap();
    assert!(listed.contains(server_address) && !listed.contains(password), "{listed}");
    let resp = client.get(format!("{base}/v1/audit?limit=1000")).bearer_auth(ADMIN).send().await.unwrap();
    assert!(!resp.text().await.unwrap().contains(password));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains(password), "the password is in the trace log");
    // Nor the header it travels in to the engine (base64 JSON with the password).
    assert!(!logged.to_ascii_lowercase().contains("x-registry-auth"), "the pull's auth header is in the trace log");
    let mut bytes = Vec::new();
    for file in ["orchestrator.db", "orchestrator.db-wal"] {
        bytes.extend(std::fs::read(data.path().join(file)).unwrap_or_default());
    }
    assert!(!bytes.windows(password.len()).any(|w| w == password.as_bytes()), "the password is in the store's bytes");

    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", Duration::from_secs(30), async || {
        server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
    })
    .await;
}

/// Now, in Unix seconds, as `docker events --since/--until` take it.
fn unix_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}
