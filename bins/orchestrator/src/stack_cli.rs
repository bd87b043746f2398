//! `apply -f compose.yaml`, `diff -f compose.yaml` and `stack ls | ps | rm`: a Compose file
//! read here (lines, interpolation, env files) and applied by the server as one stack.

use std::path::PathBuf;

use anyhow::{Result, bail};
use reqwest::Method;
use serde_json::Value;

use crate::client::{ApiFailure, ClientArgs, Output, WaitArgs, call, print_table, show, text, wait_ready};
use crate::compose::{self, ComposeFile};

#[derive(clap::Args)]
pub struct FileArgs {
    /// The Compose file.
    #[arg(short = 'f', long = "file", default_value = "compose.yaml")]
    pub file: PathBuf,
    /// The stack's name; else the file's `name`, else its directory's.
    #[arg(long)]
    pub stack: Option<String>,
    /// Delete the stack's deployments whose service the file no longer has.
    #[arg(long)]
    pub prune: bool,
}

/// Sends the file; `dry_run`: only what would change. With `wait`, follows every rollout and
/// creation it started and fails naming each service that did not come up.
pub async fn apply(c: &ClientArgs, args: &FileArgs, dry_run: bool, wait: &WaitArgs) -> Result<()> {
    let environment = std::env::vars().collect();
    let file = compose::load(&args.file, &environment)?;
    let stack = file.stack_name(args.stack.as_deref());
    let mut body = file.body.clone();
    if args.stack.is_some()
        && let Some(map) = body.as_object_mut()
    {
        // `--stack` names it, as Compose's `-p` does over the file's `name`.
        map.remove("name");
    }
    let path = format!("/v1/stacks/{stack}?prune={}&dry_run={dry_run}", args.prune);
    let steps = match call(c, Method::PUT, &path, Some(body)).await {
        Ok(steps) => steps,
        Err(e) => bail!(in_file(&file, e)),
    };
    show(c, &steps, |s| {
        let rows = s
            .as_array()
            .into_iter()
            .flatten()
            .map(|step| {
                let changed: Vec<&str> =
                    step["changed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let rollout = step["rollout"].as_u64().map_or("-".to_string(), |r| r.to_string());
                vec![
                    text(&step["service"]),
                    text(&step["deployment"]),
                    text(&step["action"]),
                    if changed.is_empty() { "-".to_string() } else { changed.join(",") },
                    rollout,
                ]
            })
            .collect();
        print_table(&["SERVICE", "DEPLOYMENT", "ACTION", "CHANGED", "ROLLOUT"], rows);
    });
    if !wait.wait || dry_run {
        return Ok(());
    }
    let mut failed = Vec::new();
    for step in steps.as_array().into_iter().flatten() {
        let (service, deployment) = (text(&step["service"]), text(&step["deployment"]));
        let outcome = match (step["action"].as_str(), step["rollout"].as_u64()) {
            (Some("update"), Some(rollout)) => crate::rollout_cli::follow(c, &deployment, rollout, wait).await,
            (Some("create" | "update"), _) => wait_steady(c, &deployment, wait).await,
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            failed.push(format!("{service} ({e})"));
        }
    }
    if !failed.is_empty() {
        bail!("stack {stack}: not every service came up: {}", failed.join("; "));
    }
    if c.output == Output::Table {
        println!("stack {stack} applied");
    }
    Ok(())
}

/// How long a new service must run all its replicas, none failing, to count as up: a
/// container that exits at once runs for a moment first, and the server sees the exit only at
/// its next reconcile sweep (every 2 s by default, longer while sweeps are slow), then records
/// it. Three seconds was once too short on a loaded machine (a service exiting at once was
/// taken for up); five cover two sweeps and the recording.
const STEADY: std::time::Duration = std::time::Duration::from_secs(5);

/// Until the deployment runs its required replicas and keeps them for `STEADY` without a
/// failure (no crash loop), within the wait's timeout.
async fn wait_steady(c: &ClientArgs, name: &str, wait: &WaitArgs) -> Result<()> {
    let started = std::time::Instant::now();
    wait_ready(c, name, wait).await?;
    let mut steady_since = std::time::Instant::now();
    loop {
        let d = call(c, Method::GET, &format!("/v1/deployments/{name}"), None).await?;
        let failing = d.get("crash_looping").is_some_and(|f| !f.is_null());
        if failing || d["actual"] != d["required"] {
            steady_since = std::time::Instant::now();
        } else if steady_since.elapsed() >= STEADY {
            return Ok(());
        }
        if started.elapsed() > wait.timeout {
            let why = match d["crash_looping"]["last_failure"].as_str() {
                Some(last) => format!("its replicas keep failing: {last}"),
                None => format!("{} of {} replicas ready", text(&d["actual"]), text(&d["required"])),
            };
            bail!("not up after {:?}: {why}", wait.timeout);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A refusal of a field of the file, said at its line (`compose.yaml:14: services.web...`).
fn in_file(file: &ComposeFile, e: anyhow::Error) -> String {
    match e.downcast_ref::<ApiFailure>() {
        Some(ApiFailure { field: Some(field), message, .. }) => {
            let bare = message.strip_prefix(&format!("invalid {field}: ")).unwrap_or(message);
            file.at(field, bare)
        }
        _ => e.to_string(),
    }
}

pub async fn list(c: &ClientArgs) -> Result<()> {
    let stacks = call(c, Method::GET, "/v1/stacks", None).await?;
    show(c, &stacks, |s| {
        let rows = s
            .as_array()
            .into_iter()
            .flatten()
            .map(|st| {
                let names: Vec<&str> =
                    st["deployments"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                vec![text(&st["name"]), names.len().to_string(), names.join(",")]
            })
            .collect();
        print_table(&["STACK", "SERVICES", "DEPLOYMENTS"], rows);
    });
    Ok(())
}

pub async fn ps(c: &ClientArgs, name: &str) -> Result<()> {
    let stack = call(c, Method::GET, &format!("/v1/stacks/{name}"), None).await?;
    show(c, &stack, |s| {
        let rows = s["deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                vec![
                    text(&d["name"]),
                    text(&d["image"]),
                    format!("{}/{}", text(&d["actual"]), text(&d["required"])),
                    text(&d["revision"]),
                ]
            })
            .collect();
        print_table(&["DEPLOYMENT", "IMAGE", "RUNNING/REQUIRED", "REVISION"], rows);
    });
    Ok(())
}

pub async fn remove(c: &ClientArgs, name: &str) -> Result<()> {
    call(c, Method::DELETE, &format!("/v1/stacks/{name}"), None).await?;
    if c.output == Output::Table {
        println!("stack {name} removed");
    }
    Ok(())
}
