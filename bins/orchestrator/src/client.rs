//! The CLI as an HTTP client of the API: tables for people, `-o json` for scripts, one-line
//! errors with the server's message.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How to reach the server.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// The server's URL.
    #[arg(long, env = "ORCH_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// Bearer token (admin, or reader for read-only commands).
    #[arg(long, env = "ORCH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args, Clone)]
pub struct WaitArgs {
    /// Wait until the deployment runs its required replicas, showing progress.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub(crate) async fn call(c: &ClientArgs, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    let url = format!("{}{path}", c.server.trim_end_matches('/'));
    let mut request = crate::http::client().request(method, &url).timeout(crate::http::CALL_TIMEOUT);
    if let Some(token) = &c.token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {}", c.server))?;
    let status = response.status();
    if status == StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let error = &body["error"];
        return Err(ApiFailure {
            status,
            message: error["message"].as_str().unwrap_or("no details").to_string(),
            field: error["field"].as_str().map(str::to_string),
        }
        .into());
    }
    Ok(body)
}

/// The server's refusal, as `call` returns it (within an `anyhow::Error`, to downcast): a
/// caller that knows where a field came from (a Compose file's line) can say so.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiFailure {}

/// The parts of a deployment the CLI's waits and changes read: a field the server's answer
/// lacks is an error naming it, not a zero that keeps a wait going.
#[derive(Debug, Deserialize)]
pub(crate) struct DeploymentView {
    pub actual: u64,
    pub required: u64,
    pub version: u64,
    #[serde(default)]
    pub rollout: Option<RolloutRef>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RolloutRef {
    pub id: u64,
}

/// The parts of a rollout `--wait` follows.
#[derive(Debug, Deserialize)]
pub(crate) struct RolloutView {
    pub state: String,
    pub updated: u64,
    pub healthy: u64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET path`, read as `T`.
pub(crate) async fn get_as<T: DeserializeOwned>(c: &ClientArgs, path: &str) -> Result<T> {
    let answer = call(c, Method::GET, path, None).await?;
    serde_json::from_value(answer).with_context(|| format!("an answer to GET {path} this CLI cannot read"))
}

pub(crate) async fn deployment_view(c: &ClientArgs, name: &str) -> Result<DeploymentView> {
    get_as(c, &format!("/v1/deployments/{name}")).await
}

/// Leaves out the column `name` when no row has anything in it (`-`): a DIGEST column is
/// news only where an image is pinned.
pub(crate) fn drop_blank_column(headers: &mut Vec<&str>, rows: &mut [Vec<String>], name: &str) {
    let Some(i) = headers.iter().position(|h| *h == name) else { return };
    if rows.iter().all(|r| r.get(i).is_none_or(|c| c == "-")) {
        headers.remove(i);
        for r in rows.iter_mut() {
            if i < r.len() {
                r.remove(i);
            }
        }
    }
}

pub(crate) fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(crate) fn show(c: &ClientArgs, value: &Value, table: impl FnOnce(&Value)) {
    match c.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Table => table(value),
    }
}

const NODE_HEADERS: [&str; 5] = ["NODE", "STATUS", "FREE/CAPACITY", "ADDRESS", "LABELS"];

fn node_rows(nodes: &Value) -> Vec<Vec<String>> {
    nodes
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                text(&n["name"]),
                text(&n["status"]),
                format!("{}/{}", text(&n["available"]), text(&n["capacity"])),
                text(&n["address"]),
                n["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", text(v)))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect()
}

fn deployment_rows(deployments: &Value) -> Vec<Vec<String>> {
    deployments
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let degraded = d["actual"].as_u64() < d["required"].as_u64();
            vec![
                text(&d["name"]),
                text(&d["image"]),
                format!("{}/{}{}", text(&d["actual"]), text(&d["required"]), if degraded { " (degraded)" } else { "" }),
                text(&d["version"]),
            ]
        })
        .collect()
}

pub async fn status(c: &ClientArgs) -> Result<()> {
    let status = call(c, Method::GET, "/status", None).await?;
    show(c, &status, |s| {
        print_table(&NODE_HEADERS, node_rows(&s["nodes"]));
        println!();
        print_table(&["DEPLOYMENT", "IMAGE", "RUNNING/REQUIRED", "VERSION"], deployment_rows(&s["deployments"]));
        let replicas: Vec<Vec<String>> = s["deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|d| {
                d["replicas"].as_array().into_iter().flatten().map(move |r| {
                    let container = text(&r["container_id"]);
                    vec![
                        text(&d["name"]),
                        text(&r["id"]),
                        text(&r["node"]),
                        text(&r["state"]),
                        container.chars().take(12).collect(),
                    ]
                })
            })
            .collect();
        if !replicas.is_empty() {
            println!();
            print_table(&["DEPLOYMENT", "REPLICA", "NODE", "STATE", "CONTAINER"], replicas);
        }
    });
    Ok(())
}

/// `body` is a create request (`POST /v1/deployments`).
pub async fn create(c: &ClientArgs, body: Value, wait: &WaitArgs) -> Result<()> {
    let created = call(c, Method::POST, "/v1/deployments", Some(body)).await?;
    let name = text(&created["name"]);
    show(c, &created, |d| {
        println!("deployment {} created ({} replicas of {})", text(&d["name"]), text(&d["required"]), text(&d["image"]))
    });
    if wait.wait {
        wait_ready(c, &name, wait).await?;
    }
    Ok(())
}

pub async fn ps(c: &ClientArgs, name: &str, no_trunc: bool, history: bool) -> Result<()> {
    let list = call(c, Method::GET, &format!("/v1/deployments/{name}/replicas?history={history}"), None).await?;
    let cut = |s: String, n: usize| {
        if no_trunc || s.chars().count() <= n { s } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
    };
    show(c, &list, |l| {
        let mut rows: Vec<Vec<String>> = l
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let state = match r["health"].as_str() {
                    Some(health) => format!("{} ({health})", text(&r["state"])),
                    None => text(&r["state"]),
                };
                let at = |field: &str| {
                    r[field].as_u64().map_or_else(
                        || "-".to_string(),
                        |ms| {
                            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                            humantime::format_rfc3339_seconds(at).to_string()
                        },
                    )
                };
                // The digest its revision is pinned to (`-`: it runs the tag).
                let digest =
                    r["image"].as_str().and_then(|i| i.split_once('@')).map_or("-".to_string(), |(_, d)| d.into());
                vec![
                    text(&r["replica"]),
                    text(&r["node"]),
                    text(&r["revision"]),
                    cut(digest, 19),
                    state,
                    cut(text(&r["container_id"]), 12),
                    at("started_at_ms"),
                    at("ended_at_ms"),
                    cut(text(&r["reason"]), 96),
                ]
            })
            .collect();
        let mut header =
            vec!["REPLICA", "NODE", "REVISION", "DIGEST", "STATE", "CONTAINER", "STARTED", "ENDED", "REASON"];
        drop_blank_column(&mut header, &mut rows, "DIGEST");
        print_table(&header, rows);
    });
    Ok(())
}

pub async fn endpoints(c: &ClientArgs, name: &str) -> Result<()> {
    let list = call(c, Method::GET, &format!("/v1/deployments/{name}/endpoints"), None).await?;
    show(c, &list, |l| {
        let rows = l
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let ready = if e["ready"].as_bool() == Some(true) { "yes" } else { "no" };
                let target = format!("{}/{}", text(&e["target"]), text(&e["protocol"]));
                vec![text(&e["replica"]), text(&e["node"]), text(&e["address"]), target, ready.to_string()]
            })
            .collect();
        print_table(&["REPLICA", "NODE", "ADDRESS", "TARGET", "READY"], rows);
    });
    Ok(())
}

pub async fn deployments(c: &ClientArgs) -> Result<()> {
    let list = call(c, Method::GET, "/v1/deployments", None).await?;
    show(c, &list, |l| print_table(&["DEPLOYMENT", "IMAGE", "RUNNING/REQUIRED", "VERSION"], deployment_rows(l)));
    Ok(())
}

pub async fn deployment(c: &ClientArgs, name: &str) -> Result<()> {
    let d = call(c, Method::GET, &format!("/v1/deployments/{name}"), None).await?;
    show(c, &d, |d| {
        print_table(&["DEPLOYMENT", "IMAGE", "RUNNING/REQUIRED", "VERSION"], deployment_rows(&json!([d])));
        if let Some(digest) = d["image_digest"].as_str() {
            println!("image pinned to {digest} (revision {})", text(&d["revision"]));
        }
        if let Some(crash) = d["crash_looping"].as_object() {
            println!(
                "crash_looping: {} failures in a row, last exit code {}{}",
                text(&crash["restarts"]),
                text(&crash["last_exit_code"]),
                crash.get("last_failure").and_then(Value::as_str).map(|w| format!("; last: {w}")).unwrap_or_default()
            );
        }
        if let Some(r) = d["rollout"].as_object() {
            println!(
                "rollout {}: revision {} -> {}, {}: {} updated, {} healthy, {} failed{}",
                text(&r["id"]),
                text(&r["from_revision"]),
                text(&r["to_revision"]),
                text(&r["state"]).replace('_', " "),
                text(&r["updated"]),
                text(&r["healthy"]),
                text(&r["failed"]),
                r.get("reason").and_then(Value::as_str).map(|w| format!(" ({w})")).unwrap_or_default()
            );
        }
        if let Some(unplaced) = d["unplaced"].as_object() {
            println!("unplaced: {} ({})", text(&unplaced["count"]), text(&unplaced["reason"]));
        }
        println!();
        let rows = d["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let health = r["health"].as_str().unwrap_or("-").to_string();
                vec![
                    text(&r["id"]),
                    text(&r["node"]),
                    text(&r["state"]),
                    health,
                    text(&r["revision"]),
                    text(&r["container_id"]).chars().take(12).collect(),
                ]
            })
            .collect();
        print_table(&["REPLICA", "NODE", "STATE", "HEALTH", "REVISION", "CONTAINER"], rows);
    });
    Ok(())
}

pub async fn scale(c: &ClientArgs, name: &str, replicas: i64, wait: &WaitArgs) -> Result<()> {
    let current = deployment_view(c, name).await?;
    let body = json!({ "replicas": replicas, "version": current.version });
    let scaled = call(c, Method::PATCH, &format!("/v1/deployments/{name}"), Some(body)).await?;
    show(c, &scaled, |d| {
        println!("deployment {} scaled to {} (version {})", text(&d["name"]), text(&d["required"]), text(&d["version"]))
    });
    if wait.wait {
        wait_ready(c, name, wait).await?;
    }
    Ok(())
}

pub async fn delete(c: &ClientArgs, name: &str) -> Result<()> {
    call(c, Method::DELETE, &format!("/v1/deployments/{name}"), None).await?;
    if c.output == Output::Table {
        println!("deployment {name} deleted");
    }
    Ok(())
}

pub async fn rebalance(c: &ClientArgs, name: &str) -> Result<()> {
    let result = call(c, Method::POST, &format!("/v1/deployments/{name}/rebalance"), None).await?;
    show(c, &result, |r| println!("deployment {name}: {} replicas moved", text(&r["moved"])));
    Ok(())
}

pub async fn create_token(c: &ClientArgs, role: &str) -> Result<()> {
    let made = call(c, Method::POST, "/v1/tokens", Some(json!({ "role": role }))).await?;
    show(c, &made, |t| {
        println!("token {} ({}), shown only now:\n{}", text(&t["id"]), text(&t["role"]), text(&t["token"]))
    });
    Ok(())
}

pub async fn audit(c: &ClientArgs, limit: u32) -> Result<()> {
    let log = call(c, Method::GET, &format!("/v1/audit?limit={limit}"), None).await?;
    show(c, &log, |l| {
        let rows = l
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| vec![text(&e["at_ms"]), text(&e["token_id"]), text(&e["action"]), text(&e["status"])])
            .collect();
        print_table(&["AT_MS", "TOKEN", "ACTION", "STATUS"], rows);
    });
    Ok(())
}

fn event_row(e: &Value) -> Vec<String> {
    let at = e["at_ms"].as_u64().map_or_else(
        || "-".to_string(),
        |ms| humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string(),
    );
    vec![text(&e["id"]), at, text(&e["kind"]), text(&e["message"])]
}

const EVENT_HEADERS: [&str; 4] = ["ID", "AT", "KIND", "MESSAGE"];

/// One event as it arrives: a line of JSON, or a row of the table (whose header was printed once).
fn print_event(c: &ClientArgs, e: &Value) {
    match c.output {
        Output::Json => println!("{e}"),
        Output::Table => println!("{}", event_row(e).join("  ")),
    }
}

/// Which events `events` shows (the server filters).
#[derive(clap::Args, Debug, Default)]
pub struct EventFilterArgs {
    /// Only events about this deployment.
    #[arg(long)]
    pub deployment: Option<String>,
    /// Only events about this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only these kinds, comma-separated: `replica.exited` or a family such as `rollout`.
    #[arg(long)]
    pub kind: Option<String>,
}

impl EventFilterArgs {
    /// `&deployment=...` and the like, escaped, for a query that has a `?` already.
    fn query(&self) -> String {
        let pairs: Vec<(&str, &str)> = [("deployment", &self.deployment), ("node", &self.node), ("kind", &self.kind)]
            .into_iter()
            .filter_map(|(key, value)| Some((key, value.as_deref()?)))
            .collect();
        match serde_urlencoded::to_string(pairs) {
            Ok(query) if !query.is_empty() => format!("&{query}"),
            _ => String::new(),
        }
    }
}

pub async fn events(c: &ClientArgs, since: u64, limit: u32, follow: bool, filter: &EventFilterArgs) -> Result<()> {
    if !(1..=1000).contains(&limit) {
        bail!("--limit must be 1..=1000");
    }
    let filters = filter.query();
    let past = call(c, Method::GET, &format!("/v1/events?since={since}&limit={limit}{filters}"), None).await?;
    if !follow {
        show(c, &past, |l| print_table(&EVENT_HEADERS, l.as_array().into_iter().flatten().map(event_row).collect()));
        return Ok(());
    }
    if c.output == Output::Table {
        println!("{}", EVENT_HEADERS.join("  "));
    }
    let mut last = since;
    for e in past.as_array().into_iter().flatten() {
        print_event(c, e);
        last = e["id"].as_u64().unwrap_or(last);
    }
    crate::event_follow::follow(c, last, &filters, |e| print_event(c, e)).await
}

pub async fn nodes(c: &ClientArgs) -> Result<()> {
    let list = call(c, Method::GET, "/v1/nodes", None).await?;
    show(c, &list, |l| print_table(&NODE_HEADERS, node_rows(l)));
    Ok(())
}

/// `body` is an add request (`POST /v1/nodes`).
pub async fn add_node(c: &ClientArgs, body: Value) -> Result<()> {
    let node = call(c, Method::POST, "/v1/nodes", Some(body)).await?;
    show(c, &node, |n| println!("node {} added ({})", text(&n["name"]), text(&n["status"])));
    Ok(())
}

/// `KEY=VALUE` sets a label, `KEY-` removes one, as `kubectl label` does.
pub fn relabel(labels: &mut serde_json::Map<String, Value>, changes: &[String]) -> Result<()> {
    for change in changes {
        // `-KEY` as the issue and `docker node update --label-rm` users write it; `KEY-` as
        // kubectl does.
        if let Some(key) = change.strip_prefix('-').or_else(|| change.strip_suffix('-')).filter(|k| !k.contains('=')) {
            labels.remove(key);
        } else if let Some((key, value)) = change.split_once('=') {
            labels.insert(key.to_string(), json!(value));
        } else {
            anyhow::bail!("{change:?}: expected KEY=VALUE, -KEY or KEY-");
        }
    }
    Ok(())
}

pub async fn label_node(c: &ClientArgs, name: &str, changes: &[String]) -> Result<()> {
    let node = call(c, Method::GET, &format!("/v1/nodes/{name}"), None).await?;
    let mut labels = node["labels"].as_object().cloned().unwrap_or_default();
    relabel(&mut labels, changes)?;
    let updated = call(c, Method::PATCH, &format!("/v1/nodes/{name}"), Some(json!({ "labels": labels }))).await?;
    show(c, &updated, |n| {
        let labels = n["labels"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", text(v)));
        println!("node {} labels: {}", text(&n["name"]), labels.collect::<Vec<_>>().join(", "));
    });
    Ok(())
}

pub async fn remove_node(c: &ClientArgs, name: &str) -> Result<()> {
    call(c, Method::DELETE, &format!("/v1/nodes/{name}"), None).await?;
    if c.output == Output::Table {
        println!("node {name} drained and removed");
    }
    Ok(())
}

pub async fn drain_node(c: &ClientArgs, name: &str) -> Result<()> {
    let result = call(c, Method::POST, &format!("/v1/nodes/{name}/drain"), None).await?;
    show(c, &result, |r| println!("node {name} draining; {} replicas left on it", text(&r["remaining"])));
    Ok(())
}

/// Polls until actual == required, with a progress bar; a clear error on timeout.
pub(crate) async fn wait_ready(c: &ClientArgs, name: &str, wait: &WaitArgs) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} running")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(name.to_string());
    let started = Instant::now();
    loop {
        let DeploymentView { actual, required, .. } = deployment_view(c, name).await?;
        bar.set_length(required);
        bar.set_position(actual.min(required));
        if actual == required {
            bar.finish();
            return Ok(());
        }
        if started.elapsed() > wait.timeout {
            bar.abandon();
            bail!("timed out after {:?}: {name} runs {actual} of {required} replicas", wait.timeout);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_column_with_nothing_in_it_is_left_out_and_one_with_something_kept() {
        let row = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let mut header = vec!["REPLICA", "DIGEST", "STATE"];
        let mut rows = vec![row(&["1", "-", "running"]), row(&["2", "-", "running"])];
        super::drop_blank_column(&mut header, &mut rows, "DIGEST");
        assert_eq!((header, rows[1].clone()), (vec!["REPLICA", "STATE"], row(&["2", "running"])));
        let mut header = vec!["REPLICA", "DIGEST", "STATE"];
        let mut rows = vec![row(&["1", "-", "failed"]), row(&["2", "sha256:ab", "running"])];
        super::drop_blank_column(&mut header, &mut rows, "DIGEST");
        assert_eq!((header.len(), rows[0].len()), (3, 3));
    }

    use super::*;

    #[test]
    fn an_answer_without_a_field_a_wait_reads_is_an_error_naming_it() {
        let d: DeploymentView =
            serde_json::from_value(json!({"actual": 2, "required": 3, "version": 4, "rollout": {"id": 9}})).unwrap();
        assert_eq!((d.actual, d.required, d.version, d.rollout.map(|r| r.id)), (2, 3, 4, Some(9)));
        let e = serde_json::from_value::<DeploymentView>(json!({"required": 3, "version": 4})).unwrap_err();
        assert!(e.to_string().contains("missing field `actual`"), "{e}");
    }

    #[test]
    fn labels_are_set_with_key_value_and_removed_with_key_dash() {
        let mut labels = json!({"zone": "a", "disk": "hdd"}).as_object().unwrap().clone();
        relabel(&mut labels, &["disk-".into(), "zone=b".into(), "rack=3".into()]).unwrap();
        assert_eq!(Value::Object(labels.clone()), json!({"zone": "b", "rack": "3"}));
        relabel(&mut labels, &["-rack".into(), "tier=a-".into()]).unwrap();
        assert_eq!(Value::Object(labels.clone()), json!({"zone": "b", "tier": "a-"}));
        assert!(relabel(&mut labels, &["nonsense".into()]).is_err());
    }
}
