//! Images from a real private registry (`cargo xtask registry up`: Debian's docker-registry
//! with TLS from its own CA and htpasswd): without a login the engines' pulls are refused and
//! `deploy ps` says so; the login added through the API, the same deployment runs, its image
//! pulled by each engine at the digest its tag named; the password is in no answer, no log and
//! not in the store's bytes. A rollout pulls on every node before it stops anything, runs the
//! digest it pinned wherever the tag moves later, and one whose registry is gone rolls back
//! with every old replica still serving. The tests take turns: they move tags and stop the
//! registry.

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

/// One test at a time: they pull, tag and push the same images and stop the registry.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_private_image_runs_once_its_login_is_added_and_the_password_never_shows() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let Some(login) = registry() else { return };
    let _turn = SERIAL.lock().await;
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
    // Pinned: each engine pulled the digest the tag named, and runs it.
    let (_, d) = server::get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    let digest = d["image_digest"].as_str().expect("pinned to a digest").to_string();
    let pinned = format!("{server_address}/app@{digest}");
    for n in nodes {
        let out = Command::new("docker").args(["-H", &n.tcp, "image", "inspect", &pinned]).output().unwrap();
        assert!(out.status.success(), "{} pulled {pinned}", n.name);
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

#[tokio::test]
async fn a_rollout_pulls_before_it_stops_keeps_its_digest_and_rolls_back_without_its_registry() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let Some(login) = registry() else { return };
    let _turn = SERIAL.lock().await;
    let nodes = &nodes[..2];
    let server_address = login["server"].as_str().unwrap();
    let repository = format!("{server_address}/app");
    // No reference to the app on any engine, by tag or digest: every pull below is a real
    // one. References only: app:1 is the busybox image other tests run as local/busybox:1.
    for n in nodes {
        let out = Command::new("docker")
            .args(["-H", &n.tcp, "images", "--digests", "--format", "{{.Tag}} {{.Digest}}", &repository])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let (tag, digest) = line.split_once(' ').unwrap_or((line, "<none>"));
            let references = [
                (tag != "<none>").then(|| format!("{repository}:{tag}")),
                (digest != "<none>").then(|| format!("{repository}@{digest}")),
            ];
            for reference in references.into_iter().flatten() {
                let _ = Command::new("docker").args(["-H", &n.tcp, "rmi", &reference]).output();
            }
        }
    }
    let data = tempfile::tempdir().unwrap();
    let (server, client) = server::ready(server::start_server_in(nodes, data.path())).await;
    let base = server.url.clone();
    let body = json!({"server": server_address, "username": login["username"], "password": login["password"]});
    let resp = client.post(format!("{base}/v1/registries")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let name = format!("pinned{}", std::process::id());
    create(
        &client,
        &base,
        &json!({"image": format!("{repository}:1"), "replicas": 2, "name": name, "command": ["sleep", "3600"],
                "max_per_node": 1, "update": {"monitor": "1s"}, "rollback": {"monitor": "1s"}}),
    )
    .await;
    let one = wait_for("2 replicas of app:1", Duration::from_secs(120), async || {
        let (_, d) = server::get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
        (d["actual"] == 2).then_some(d)
    })
    .await;
    let first_digest = one["image_digest"].as_str().expect("app:1 pinned").to_string();

    // app:1 -> app:2: pulled on both nodes before the first old replica stops.
    let since = unix_now();
    let resp = client
        .patch(format!("{base}/v1/deployments/{name}"))
        .bearer_auth(ADMIN)
        .json(&json!({"version": one["version"], "image": format!("{repository}:2")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().await.unwrap();
    let rollout = answer["rollout"]["id"].as_u64().expect("a rollout");
    let done = server::rolling::ended(&client, &base, &name, rollout).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let (_, two) = server::get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    let second_digest = two["image_digest"].as_str().expect("app:2 pinned").to_string();
    assert_ne!(first_digest, second_digest, "app:2's content differs");
    let pinned = format!("{repository}@{second_digest}");
    let until = unix_now();
    let mut last_pull = 0u128;
    let mut first_stop = u128::MAX;
    for n in nodes {
        let (pulls, stops) = pulls_and_stops(&n.tcp, &name, &since, &until);
        let pull = pulls
            .iter()
            .find(|(image, _)| *image == pinned)
            .unwrap_or_else(|| panic!("{} pulled {pinned}: {pulls:?}", n.name));
        last_pull = last_pull.max(pull.1);
        first_stop = first_stop.min(stops.iter().copied().min().unwrap_or(u128::MAX));
    }
    assert!(first_stop != u128::MAX, "the old replicas were stopped");
    assert!(last_pull < first_stop, "every node pulled ({last_pull}) before the first stop ({first_stop})");
    let (_, events) =
        server::get(&client, &format!("{base}/v1/events?deployment={name}&kind=image&limit=100"), READER).await;
    let pulled = events.as_array().cloned().unwrap_or_default();
    for n in nodes {
        assert!(
            pulled.iter().any(|e| e["kind"] == "image.pulled" && e["node"] == n.name.as_str()),
            "an image.pulled event for {}: {events}",
            n.name
        );
    }
    let (_, rows) = server::get(&client, &format!("{base}/v1/deployments/{name}/replicas"), READER).await;
    let rows = rows.as_array().unwrap().clone();
    assert!(rows.len() == 2 && rows.iter().all(|r| r["image"] == pinned.as_str()), "deploy ps: {rows:?}");
    assert_eq!(engine_images(nodes, &name), vec![pinned.clone(); 2]);

    // The tag moves to app:1's content; a replacement still runs what revision 2 pinned.
    move_tag(&nodes[0].tcp, &login, &format!("{repository}:1"), &format!("{repository}:2"));
    let before = server::containers_on_engines(nodes, &name);
    let gone = before[0].clone();
    let owner = nodes.iter().find(|n| server::containers_on_engines(std::slice::from_ref(n), &name).contains(&gone));
    let _ = Command::new("docker").args(["-H", &owner.unwrap().tcp, "rm", "-f", &gone]).output().unwrap();
    wait_for("the removed replica replaced", Duration::from_secs(60), async || {
        let now = server::try_containers_on_engines(nodes, &name)?;
        let (_, d) = server::get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
        (now.len() == 2 && !now.contains(&gone) && d["actual"] == 2).then_some(())
    })
    .await;
    assert!(server::containers_on_engines(nodes, &name).contains(&before[1]), "the other replica was left alone");
    assert_eq!(engine_images(nodes, &name), vec![pinned.clone(); 2], "still the pinned digest");
    // Put the tag back where `registry up` left it, for whatever runs next.
    move_tag(&nodes[0].tcp, &login, &pinned, &format!("{repository}:2"));

    // The registry gone: an update that needs it fails before anything stops, and rolls back.
    let kept = server::containers_on_engines(nodes, &name);
    let registry = StoppedRegistry::kill();
    let (_, d) = server::get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
    let resp = client
        .patch(format!("{base}/v1/deployments/{name}"))
        .bearer_auth(ADMIN)
        .json(&json!({"version": d["version"], "image": format!("{repository}:1")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().await.unwrap();
    let failed = answer["rollout"]["id"].as_u64().expect("a rollout");
    let failed = server::rolling::ended(&client, &base, &name, failed).await;
    assert_eq!(failed["state"], "rolled_back", "{failed}");
    assert!(failed["reason"].as_str().unwrap_or("").contains("registry unreachable"), "{failed}");
    let back = wait_for("the rollback to end", Duration::from_secs(60), async || {
        let (_, d) = server::get(&client, &format!("{base}/v1/deployments/{name}"), READER).await;
        d["rollout"].is_null().then_some(d)
    })
    .await;
    assert_eq!(back["image_digest"], second_digest.as_str(), "back on revision 2's digest: {back}");
    assert_eq!(back["actual"], 2);
    assert_eq!(server::containers_on_engines(nodes, &name), kept, "no old replica was stopped");
    drop(registry);

    let resp = client.delete(format!("{base}/v1/deployments/{name}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", Duration::from_secs(30), async || {
        server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
    })
    .await;
}

/// The registry stopped with SIGKILL; dropped, it is started again on the same data.
struct StoppedRegistry;

impl StoppedRegistry {
    fn dir() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/registry"))
    }

    fn kill() -> Self {
        let pid = std::fs::read_to_string(Self::dir().join("pid")).unwrap();
        let pid = pid.trim();
        assert!(Command::new("kill").args(["-KILL", pid]).status().unwrap().success());
        let address: std::net::SocketAddr = "10.123.0.1:5000".parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "the registry still answers");
            std::thread::sleep(Duration::from_millis(50));
        }
        StoppedRegistry
    }
}

impl Drop for StoppedRegistry {
    // Not waited for: the registry outlives this test, as the one `cargo xtask registry up`
    // started would; `registry down` stops it by the pid written here.
    #[allow(clippy::zombie_processes)]
    fn drop(&mut self) {
        let dir = Self::dir();
        let log = std::fs::OpenOptions::new().append(true).create(true).open(dir.join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(dir.join("pid"), child.id().to_string()).unwrap();
        let address: std::net::SocketAddr = "10.123.0.1:5000".parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the registry did not come back");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What an engine pulled (the reference, with the time in ns) and when it sent a stop to a
/// revision-1 container of the deployment, between `since` and `until`.
fn pulls_and_stops(engine: &str, deployment: &str, since: &str, until: &str) -> (Vec<(String, u128)>, Vec<u128>) {
    let out = Command::new("docker")
        .args(["-H", engine, "events", "--since", since, "--until", until, "--format", "{{json .}}"])
        .output()
        .unwrap();
    let (mut pulls, mut stops) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        let at = e["timeNano"].as_u64().map(u128::from).unwrap_or_default();
        let attributes = &e["Actor"]["Attributes"];
        match (e["Type"].as_str(), e["Action"].as_str()) {
            (Some("image"), Some("pull")) => pulls.push((e["Actor"]["ID"].as_str().unwrap_or("").to_string(), at)),
            (Some("container"), Some(action))
                if (action == "kill" || action == "stop" || action == "die")
                    && attributes["io.orchestrator.deployment"] == deployment
                    && attributes["io.orchestrator.revision"] == "1" =>
            {
                stops.push(at)
            }
            _ => {}
        }
    }
    (pulls, stops)
}

/// The image reference each container of the deployment was created with, sorted.
fn engine_images(nodes: &[local_cluster::ClusterNode], deployment: &str) -> Vec<String> {
    let mut images = Vec::new();
    for n in nodes {
        for id in server::containers_on_engines(std::slice::from_ref(n), deployment) {
            let out = Command::new("docker")
                .args(["-H", &n.tcp, "inspect", "--format", "{{.Config.Image}}", &id])
                .output()
                .unwrap();
            images.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
    }
    images.sort();
    images
}

/// Points the tag `to` at what `from` (a tag or a digest reference) names now, pushed through
/// `engine` with the test login.
fn move_tag(engine: &str, login: &Value, from: &str, to: &str) {
    let config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| {
        let out =
            Command::new("docker").arg("--config").arg(config.path()).args(["-H", engine]).args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(config.path())
        .args(["-H", engine, "login", login["server"].as_str().unwrap(), "-u", login["username"].as_str().unwrap()])
        .arg("--password-stdin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), login["password"].as_str().unwrap().as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "docker login");
    docker(&["pull", from]);
    docker(&["tag", from, to]);
    docker(&["push", to]);
    // Untagged again where it can be (a replica may run the image by its digest).
    let _ = Command::new("docker").arg("--config").arg(config.path()).args(["-H", engine, "rmi", to]).output();
}

/// Now, in Unix seconds, as `docker events --since/--until` take it.
fn unix_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}
