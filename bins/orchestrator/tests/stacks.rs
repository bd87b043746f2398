//! A Compose file applied as a stack on real engines with the CLI (`orchestrator apply -f`):
//! every service runs as the file says, as Docker reports it (env, ports, command, limits,
//! labels, constraints); the same file again changes nothing; one env changed rolls out that
//! service only; a service removed from the file stays until `--prune`; a file with a key the
//! subset does not take is refused at its line, with nothing applied.

mod server;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use server::{ADMIN, READER, get, local_cluster, ready, start_server_with, try_engine_containers, wait_for};

const COMPOSE: &str = r#"name: shop
services:
  web:
    image: local/busybox:${TAG:-1}
    command: sh -c 'mkdir -p /www && echo "$$GREETING" > /www/index.html && exec httpd -f -p 8080 -h /www'
    environment:
      GREETING: ${GREETING:?set GREETING}
    ports:
      - "18091:8080"
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/
      interval: 1s
      timeout: 1s
      retries: 3
    labels:
      team: web
    stop_grace_period: 2s
    deploy:
      replicas: 2
      resources:
        limits: {cpus: "0.25", memory: 64M}
      update_config: {parallelism: 1, monitor: 1s, order: start-first}
  worker:
    image: local/busybox:1
    command: ["sleep", "3600"]
    env_file: worker.env
  zoned:
    image: local/busybox:1
    command: ["sleep", "3600"]
    deploy:
      replicas: 2
      placement:
        constraints: ["node.labels.zone == a"]
        max_replicas_per_node: 1
"#;

fn cli(base: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(args)
        .current_dir(dir)
        .env("ORCH_SERVER", base)
        .env("ORCH_TOKEN", ADMIN)
        .env_remove("GREETING")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A container's field as `docker inspect --format` prints it.
fn inspect(node: &local_cluster::ClusterNode, id: &str, format: &str) -> String {
    let out = Command::new("docker").args(["-H", &node.tcp, "inspect", "--format", format, id]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Container ids of a deployment, sorted, once it runs `n` ready replicas and the engines
/// agree.
async fn running(
    client: &reqwest::Client,
    base: &str,
    nodes: &[local_cluster::ClusterNode],
    name: &str,
    n: usize,
) -> Vec<String> {
    wait_for(&format!("{n} ready replicas of {name}"), Duration::from_secs(90), async || {
        let (_, d) = get(client, &format!("{base}/v1/deployments/{name}"), READER).await;
        if d["actual"] != n || !d["rollout"].is_null() {
            return None;
        }
        let containers = try_engine_containers(nodes, name)?;
        (containers.len() == n && containers.iter().all(|c| c.running))
            .then(|| containers.into_iter().map(|c| c.id).collect())
    })
    .await
}

#[tokio::test]
async fn a_compose_file_runs_as_it_reads_applies_idempotently_and_prunes_only_when_asked() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let _turn = SERIAL.lock().await;
    let nodes = &nodes[..3];
    let data = tempfile::tempdir().unwrap();
    let labels = ["--node-label", "node1:zone=a", "--node-label", "node2:zone=a"];
    let (server, client) = ready(start_server_with(nodes, data.path(), &labels, None)).await;
    let base = server.url.clone();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), COMPOSE).unwrap();
    std::fs::write(dir.path().join("worker.env"), "QUEUE=orders\n").unwrap();
    std::fs::write(dir.path().join(".env"), "GREETING=from-dot-env\n").unwrap();

    let out = cli(&base, dir.path(), &["apply", "-f", "compose.yaml", "--wait"], &[("GREETING", "hello")]);
    assert!(out.status.success(), "{}", said(&out));
    let web = running(&client, &base, nodes, "shop_web", 2).await;
    let worker = running(&client, &base, nodes, "shop_worker", 1).await;
    let zoned = running(&client, &base, nodes, "shop_zoned", 2).await;

    // As the file says, as Docker reports it.
    let all = try_engine_containers(nodes, "shop_web").unwrap();
    for c in &all {
        let node = nodes.iter().find(|n| n.name == c.node).unwrap();
        let env = inspect(node, &c.id, "{{json .Config.Env}}");
        assert!(env.contains("\"GREETING=hello\""), "the environment over .env: {env}");
        assert_eq!(
            inspect(node, &c.id, "{{json .Config.Cmd}}"),
            r#"["sh","-c","mkdir -p /www && echo \"$GREETING\" > /www/index.html && exec httpd -f -p 8080 -h /www"]"#
        );
        assert_eq!(inspect(node, &c.id, "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"), "67108864 250000000");
        assert_eq!(inspect(node, &c.id, "{{index .Config.Labels \"team\"}}"), "web");
        assert_eq!(inspect(node, &c.id, "{{index .Config.Labels \"com.docker.stack.namespace\"}}"), "shop");
        assert_eq!(
            inspect(node, &c.id, "{{(index (index .HostConfig.PortBindings \"8080/tcp\") 0).HostPort}}"),
            "18091"
        );
        let address = node.tcp.trim_start_matches("tcp://").split(':').next().unwrap().to_string();
        let page = wait_for("the web page", Duration::from_secs(20), async || {
            let resp = client.get(format!("http://{address}:18091/")).send().await.ok()?;
            resp.text().await.ok()
        })
        .await;
        assert_eq!(page.trim(), "hello");
    }
    let w = &try_engine_containers(nodes, "shop_worker").unwrap()[0];
    let wnode = nodes.iter().find(|n| n.name == w.node).unwrap();
    assert!(inspect(wnode, &w.id, "{{json .Config.Env}}").contains("\"QUEUE=orders\""), "env_file read");
    for c in try_engine_containers(nodes, "shop_zoned").unwrap() {
        assert!(c.node == "node1" || c.node == "node2", "zone a only: {c:?}");
    }
    let zoned_nodes: std::collections::BTreeSet<String> =
        try_engine_containers(nodes, "shop_zoned").unwrap().into_iter().map(|c| c.node).collect();
    assert_eq!(zoned_nodes.len(), 2, "max_replicas_per_node 1");

    // The same file again: nothing changes, no container restarted.
    let out = cli(&base, dir.path(), &["apply", "-f", "compose.yaml"], &[("GREETING", "hello")]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(said(&out).matches("unchanged").count(), 3, "{}", said(&out));
    let (_, d) = get(&client, &format!("{base}/v1/deployments/shop_web"), READER).await;
    assert_eq!(d["revision"], 1);

    // One env changed: that service rolls out, the others keep their containers.
    let out = cli(&base, dir.path(), &["diff", "-f", "compose.yaml"], &[("GREETING", "bonjour")]);
    assert!(out.status.success() && said(&out).contains("update") && said(&out).contains("env"), "{}", said(&out));
    assert_eq!(
        get(&client, &format!("{base}/v1/deployments/shop_web"), READER).await.1["revision"],
        1,
        "diff changes nothing"
    );
    let out = cli(&base, dir.path(), &["apply", "-f", "compose.yaml", "--wait"], &[("GREETING", "bonjour")]);
    assert!(out.status.success(), "{}", said(&out));
    let web2 = running(&client, &base, nodes, "shop_web", 2).await;
    assert!(web2.iter().all(|id| !web.contains(id)), "web rolled out: {web:?} -> {web2:?}");
    assert_eq!(running(&client, &base, nodes, "shop_worker", 1).await, worker);
    assert_eq!(running(&client, &base, nodes, "shop_zoned", 2).await, zoned);

    // A bad key: refused at its line, nothing applied.
    let broken = COMPOSE.replace("  worker:\n", "  worker:\n    networks: [front]\n");
    std::fs::write(dir.path().join("broken.yaml"), &broken).unwrap();
    let out = cli(&base, dir.path(), &["apply", "-f", "broken.yaml"], &[("GREETING", "changed")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let line = broken.lines().position(|l| l.contains("networks")).unwrap() + 1;
    assert!(err.contains(&format!("broken.yaml:{line}: services.worker.networks: not supported here")), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (_, d) = get(&client, &format!("{base}/v1/deployments/shop_web"), READER).await;
    assert_eq!(d["env"]["GREETING"], "bonjour", "nothing applied");

    // A service gone from the file stays; with --prune it goes.
    let without = COMPOSE.split("  zoned:\n").next().unwrap().to_string();
    std::fs::write(dir.path().join("compose.yaml"), without).unwrap();
    let out = cli(&base, dir.path(), &["apply", "-f", "compose.yaml"], &[("GREETING", "bonjour")]);
    assert!(out.status.success() && said(&out).contains("keep"), "{}", said(&out));
    assert_eq!(running(&client, &base, nodes, "shop_zoned", 2).await, zoned);
    let out = cli(&base, dir.path(), &["apply", "-f", "compose.yaml", "--prune"], &[("GREETING", "bonjour")]);
    assert!(out.status.success() && said(&out).contains("delete"), "{}", said(&out));
    wait_for("shop_zoned's containers removed", Duration::from_secs(30), async || {
        try_engine_containers(nodes, "shop_zoned")?.is_empty().then_some(())
    })
    .await;
    let out = cli(&base, dir.path(), &["stack", "ls"], &[]);
    assert!(said(&out).contains("shop") && said(&out).contains("shop_web,shop_worker"), "{}", said(&out));

    // --wait fails naming the service that does not come up, and only it, and why: its
    // failures, not the clock (the wait is long enough for a service that stays up to pass).
    let failing = "services:\n  broken:\n    image: local/busybox:1\n    command: [\"sh\", \"-c\", \"exit 3\"]\n";
    std::fs::write(dir.path().join("failing.yaml"), failing).unwrap();
    let out =
        cli(&base, dir.path(), &["apply", "-f", "failing.yaml", "--stack", "bad", "--wait", "--timeout", "15s"], &[]);
    assert!(!out.status.success(), "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("stack bad: not every service came up: broken ("), "{err}");
    assert!(err.contains("its replicas keep failing"), "{err}");
    let out = cli(&base, dir.path(), &["stack", "rm", "bad"], &[]);
    assert!(out.status.success(), "{}", said(&out));

    let out = cli(&base, dir.path(), &["stack", "rm", "shop"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    wait_for("the stack's containers removed", Duration::from_secs(30), async || {
        let left: usize =
            ["shop_web", "shop_worker"].iter().map(|d| try_engine_containers(nodes, d).map_or(1, |c| c.len())).sum();
        (left == 0).then_some(())
    })
    .await;
}

/// One test at a time: the Swarm test turns the engines into a swarm for a while.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The file both run: what the two can both do (host-mode ports: there is no overlay network
/// for Swarm's routing mesh on these engines).
const SIDE_BY_SIDE: &str = r#"services:
  web:
    image: local/busybox:1
    command: sh -c 'mkdir -p /www && echo "$$GREETING" > /www/index.html && exec httpd -f -p 8080 -h /www'
    environment:
      GREETING: side-by-side
      MODE: compare
    ports:
      - {target: 8080, published: 18093, protocol: tcp, mode: host}
    labels:
      team: web
    deploy:
      replicas: 2
      resources:
        limits: {cpus: "0.5", memory: 32M}
  worker:
    image: local/busybox:1
    command: ["sleep", "3600"]
    environment: ["QUEUE=orders"]
    deploy:
      replicas: 1
"#;

/// What Docker says a stack's containers of `service` run, as both orchestrators should agree
/// on it: per container (env, command, published ports, memory, CPUs, the user's labels and
/// the stack's), sorted.
fn as_docker_reports(nodes: &[local_cluster::ClusterNode], filter: &str) -> Vec<String> {
    let format = concat!(
        "{{json .Config.Env}} {{json .Config.Cmd}} {{json .HostConfig.PortBindings}} ",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{index .Config.Labels \"team\"}} ",
        "{{index .Config.Labels \"com.docker.stack.namespace\"}}"
    );
    let mut seen = Vec::new();
    for n in nodes {
        let ids = Command::new("docker").args(["-H", &n.tcp, "ps", "-q", "--filter", filter]).output().unwrap();
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            // Read the ports as port numbers only (an empty host address either way), and no
            // ports as none (Swarm writes `{}`, the engine's default is `null`).
            let line = inspect(n, id, format).replace("\"HostIp\":\"\",", "").replace(" {} ", " null ");
            seen.push(line);
        }
    }
    seen.sort();
    seen
}

/// Leaves the swarm on every node when dropped, whatever happened.
struct Swarm<'a>(&'a [local_cluster::ClusterNode]);

impl Drop for Swarm<'_> {
    fn drop(&mut self) {
        for n in self.0.iter().rev() {
            let _ = Command::new("docker").args(["-H", &n.tcp, "swarm", "leave", "--force"]).output();
            // The bridge a swarm makes stays after it: the engines as they were found.
            let _ = Command::new("docker").args(["-H", &n.tcp, "network", "rm", "docker_gwbridge"]).output();
        }
    }
}

fn docker(node: &local_cluster::ClusterNode, args: &[&str]) -> String {
    let out = Command::new("docker").args(["-H", &node.tcp]).args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_same_file_runs_alike_under_docker_stack_deploy_and_apply() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let _turn = SERIAL.lock().await;
    let nodes = &nodes[..3];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), SIDE_BY_SIDE).unwrap();

    // Swarm first, on a swarm of the same engines.
    let swarm = {
        let guard = Swarm(nodes);
        let ip =
            |n: &local_cluster::ClusterNode| n.tcp.trim_start_matches("tcp://").split(':').next().unwrap().to_string();
        docker(&nodes[0], &["swarm", "init", "--advertise-addr", &ip(&nodes[0])]);
        let token = docker(&nodes[0], &["swarm", "join-token", "-q", "worker"]);
        for n in &nodes[1..] {
            docker(n, &["swarm", "join", "--token", &token, &format!("{}:2377", ip(&nodes[0]))]);
        }
        let file = dir.path().join("compose.yaml");
        docker(&nodes[0], &["stack", "deploy", "--resolve-image", "never", "-c", file.to_str().unwrap(), "cmp"]);
        let mut seen = Vec::new();
        for (service, n) in [("web", 2), ("worker", 1)] {
            let filter = format!("label=com.docker.swarm.service.name=cmp_{service}");
            seen.push(
                wait_for(&format!("Swarm's {n} of cmp_{service}"), Duration::from_secs(90), async || {
                    let now = as_docker_reports(nodes, &filter);
                    (now.len() == n).then_some(now)
                })
                .await,
            );
        }
        docker(&nodes[0], &["stack", "rm", "cmp"]);
        wait_for("Swarm's containers gone", Duration::from_secs(60), async || {
            let left: usize = nodes
                .iter()
                .map(|n| docker(n, &["ps", "-aq", "--filter", "label=com.docker.stack.namespace=cmp"]).lines().count())
                .sum();
            (left == 0).then_some(())
        })
        .await;
        drop(guard);
        seen
    };

    // Then ours, the same file.
    let data = tempfile::tempdir().unwrap();
    let (server, client) = ready(start_server_with(nodes, data.path(), &[], None)).await;
    let base = server.url.clone();
    let out = cli(&base, dir.path(), &["apply", "-f", "compose.yaml", "--stack", "cmp", "--wait"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    let ours: Vec<Vec<String>> = [("web", 2), ("worker", 1)]
        .iter()
        .map(|(service, n)| {
            let filter = format!("label=io.orchestrator.deployment=cmp_{service}");
            let now = as_docker_reports(nodes, &filter);
            assert_eq!(now.len(), *n, "{now:?}");
            now
        })
        .collect();
    for (theirs, ours) in swarm.iter().zip(&ours) {
        assert_eq!(theirs, ours, "Swarm and apply run the file alike, as Docker reports it");
    }
    let out = cli(&base, dir.path(), &["stack", "rm", "cmp"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    wait_for("our containers gone", Duration::from_secs(30), async || {
        let left: usize =
            ["cmp_web", "cmp_worker"].iter().map(|d| try_engine_containers(nodes, d).map_or(1, |c| c.len())).sum();
        (left == 0).then_some(())
    })
    .await;
    drop(client);
}
