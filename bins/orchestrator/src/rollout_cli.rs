//! `deploy update | rollback | history | rollout pause|resume`: template changes and their
//! rollouts from the command line. `--wait` follows the rollout with a progress bar (updated
//! and healthy of N, what it waits on) and exits non-zero unless it succeeded, saying why.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{
    ClientArgs, Output, RolloutRef, RolloutView, WaitArgs, call, deployment_view, drop_blank_column, get_as,
    print_table, show, text,
};
use crate::workload_args::WorkloadArgs;

/// `--update-*` flags, in `docker service update`'s words.
#[derive(Args, Debug, Default)]
pub struct UpdatePolicyArgs {
    /// Replicas replaced at once (0: all).
    #[arg(long)]
    update_parallelism: Option<i64>,
    /// Replicas beyond the required count while replacing.
    #[arg(long)]
    update_max_surge: Option<i64>,
    /// Ready replicas below the required count while replacing.
    #[arg(long)]
    update_max_unavailable: Option<i64>,
    /// start-first or stop-first.
    #[arg(long)]
    update_order: Option<String>,
    /// How long a new replica must stay ready before the next is replaced, e.g. 5s.
    #[arg(long, value_name = "DURATION")]
    update_monitor: Option<String>,
    /// rollback, pause or continue.
    #[arg(long)]
    update_failure_action: Option<String>,
    /// Failed new replicas tolerated, as a share of those started (0..1).
    #[arg(long)]
    update_max_failure_ratio: Option<f64>,
}

impl UpdatePolicyArgs {
    fn policy(&self) -> Option<Value> {
        let mut p = Map::new();
        let mut put = |key: &str, v: Option<Value>| {
            if let Some(v) = v {
                p.insert(key.into(), v);
            }
        };
        put("parallelism", self.update_parallelism.map(Value::from));
        put("max_surge", self.update_max_surge.map(Value::from));
        put("max_unavailable", self.update_max_unavailable.map(Value::from));
        put("order", self.update_order.clone().map(Value::from));
        put("monitor", self.update_monitor.clone().map(Value::from));
        put("failure_action", self.update_failure_action.clone().map(Value::from));
        put("max_failure_ratio", self.update_max_failure_ratio.map(Value::from));
        (!p.is_empty()).then_some(Value::Object(p))
    }
}

/// What `deploy update` changes, besides the workload flags.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// A new image.
    #[arg(long)]
    image: Option<String>,
    #[arg(long, short = 'r')]
    replicas: Option<i64>,
    /// Why, kept with the revision (`deploy history` shows it).
    #[arg(long)]
    cause: Option<String>,
    /// Remove an environment variable (repeatable).
    #[arg(long = "env-rm", value_name = "KEY")]
    env_rm: Vec<String>,
    /// Show the plan (which replicas, in which order, on which nodes) and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    policy: UpdatePolicyArgs,
}

/// The PATCH body: the flags given, `-e` and `--label` merged into what the deployment has.
fn update_body(current: &Value, args: &UpdateArgs, workload: WorkloadArgs) -> Result<Value> {
    let mut body = json!({ "version": current["version"] });
    workload.fill(&mut body)?;
    for key in ["env", "labels"] {
        if let Some(given) = body.get(key).and_then(Value::as_object).cloned() {
            let mut merged = current[key].as_object().cloned().unwrap_or_default();
            merged.extend(given);
            body[key] = Value::Object(merged);
        }
    }
    if !args.env_rm.is_empty() {
        let mut env =
            body["env"].as_object().cloned().or_else(|| current["env"].as_object().cloned()).unwrap_or_default();
        for key in &args.env_rm {
            if env.remove(key).is_none() {
                bail!("--env-rm {key}: the deployment has no such variable");
            }
        }
        body["env"] = Value::Object(env);
    }
    if let Some(image) = &args.image {
        body["image"] = json!(image);
    }
    if let Some(replicas) = args.replicas {
        body["replicas"] = json!(replicas);
    }
    if let Some(cause) = &args.cause {
        body["cause"] = json!(cause);
    }
    if let Some(policy) = args.policy.policy() {
        body["update"] = policy;
    }
    Ok(body)
}

pub async fn update(
    c: &ClientArgs,
    name: &str,
    args: UpdateArgs,
    workload: WorkloadArgs,
    wait: &WaitArgs,
) -> Result<()> {
    let current = call(c, Method::GET, &format!("/v1/deployments/{name}"), None).await?;
    let body = update_body(&current, &args, workload)?;
    let query = if args.dry_run { "?dry_run=true" } else { "" };
    let answer = call(c, Method::PATCH, &format!("/v1/deployments/{name}{query}"), Some(body)).await?;
    if args.dry_run {
        show(c, &answer, print_plan);
        return Ok(());
    }
    started(c, name, &answer, wait).await
}

fn print_plan(plan: &Value) {
    if plan["rollout"] != json!(true) {
        println!("no template change: nothing rolls out");
        return;
    }
    println!("revision {} -> {} (dry run: nothing changed)", text(&plan["from_revision"]), text(&plan["to_revision"]));
    let rows = plan["plan"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let replica = a["replica"].as_u64().map_or("new".to_string(), |r| r.to_string());
            let why = a["why"].as_str().unwrap_or("").to_string();
            vec![text(&a["step"]), text(&a["action"]), replica, text(&a["node"]), text(&a["revision"]), why]
        })
        .collect();
    print_table(&["STEP", "ACTION", "REPLICA", "NODE", "REVISION", "WHY"], rows);
    if let Some(stuck) = plan["stuck"].as_str() {
        println!("the plan cannot finish: {stuck}");
    }
}

/// After an update or rollback: says what started and, with `--wait`, follows it.
async fn started(c: &ClientArgs, name: &str, answer: &Value, wait: &WaitArgs) -> Result<()> {
    let rollout = answer["rollout"].clone();
    show(c, answer, |d| match rollout["id"].as_u64() {
        Some(id) => println!(
            "deployment {name}: revision {} rolling out (rollout {id}, from revision {})",
            text(&d["revision"]),
            text(&rollout["from_revision"])
        ),
        None => println!("deployment {name} updated (version {}); nothing to roll out", text(&d["version"])),
    });
    match (wait.wait, rollout["id"].as_u64()) {
        (true, Some(id)) => follow(c, name, id, wait).await,
        _ => Ok(()),
    }
}

/// Follows a rollout to its end: Ok only if it succeeded.
pub(crate) async fn follow(c: &ClientArgs, name: &str, id: u64, wait: &WaitArgs) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} updated {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if c.output == Output::Json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let begun = Instant::now();
    loop {
        let r: RolloutView = get_as(c, &format!("/v1/deployments/{name}/rollouts/{id}")).await?;
        let required = deployment_view(c, name).await?.required;
        bar.set_length(required);
        bar.set_position(r.updated.min(required));
        let healthy = r.healthy;
        let reason = r.reason.as_deref().unwrap_or("");
        bar.set_message(format!(
            "{healthy} healthy{}",
            if reason.is_empty() { String::new() } else { format!("; {reason}") }
        ));
        match r.state.as_str() {
            "in_progress" => {}
            "succeeded" => {
                bar.finish_with_message(format!("{healthy} healthy"));
                if c.output == Output::Table {
                    println!("rollout {id} of {name} succeeded");
                }
                return Ok(());
            }
            state => {
                bar.abandon();
                bail!(
                    "rollout {id} of {name} {}: {}",
                    state.replace('_', " "),
                    r.reason.as_deref().unwrap_or("no reason given")
                );
            }
        }
        if begun.elapsed() > wait.timeout {
            bar.abandon();
            bail!("timed out after {:?} waiting for rollout {id} of {name} ({reason})", wait.timeout);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

pub async fn rollback(c: &ClientArgs, name: &str, to_revision: Option<u64>, wait: &WaitArgs) -> Result<()> {
    let current = deployment_view(c, name).await?;
    let mut body = json!({ "version": current.version });
    if let Some(r) = to_revision {
        body["to_revision"] = json!(r);
    }
    let answer = call(c, Method::POST, &format!("/v1/deployments/{name}/rollback"), Some(body)).await?;
    if let Some(interrupted) = answer["interrupted"].as_object()
        && c.output == Output::Table
    {
        println!("rollout {} was under way and ended rolled back", text(&interrupted["id"]));
    }
    started(c, name, &answer, wait).await
}

/// What changed from one template view to the next, in words: `image local/web:1 -> local/web:2`.
fn changes(before: Option<&Value>, after: &Value) -> String {
    let Some(before) = before else { return "created".into() };
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else { return String::new() };
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| {
            let side = |v: Option<&Value>| v.map_or("-".to_string(), text);
            format!("{k} {} -> {}", side(b.get(k)), side(a.get(k)))
        })
        .collect();
    changed.join("; ")
}

pub async fn history(c: &ClientArgs, name: &str) -> Result<()> {
    let revisions = call(c, Method::GET, &format!("/v1/deployments/{name}/revisions"), None).await?;
    show(c, &revisions, |list| {
        let list = list.as_array().cloned().unwrap_or_default();
        let mut rows: Vec<Vec<String>> = list
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let previous = i.checked_sub(1).map(|p| &list[p]["template"]);
                let mut what = changes(previous, &r["template"]);
                if let Some(restores) = r["restores"].as_u64() {
                    what = format!("restores revision {restores}: {what}");
                }
                let when = r["created_at_ms"].as_u64().map_or("-".to_string(), |ms| {
                    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                    humantime::format_rfc3339_seconds(at).to_string()
                });
                vec![text(&r["revision"]), when, text(&r["by"]), text(&r["cause"]), text(&r["image_digest"]), what]
            })
            .collect();
        let mut header = vec!["REVISION", "CREATED", "BY", "CAUSE", "DIGEST", "CHANGE"];
        drop_blank_column(&mut header, &mut rows, "DIGEST");
        print_table(&header, rows);
    });
    Ok(())
}

/// Pauses (`pause`) or resumes the deployment's rollout under way.
pub async fn pause(c: &ClientArgs, name: &str, pause: bool) -> Result<()> {
    let Some(RolloutRef { id }) = deployment_view(c, name).await?.rollout else {
        bail!("deployment {name} has no rollout under way")
    };
    let verb = if pause { "pause" } else { "resume" };
    let r = call(c, Method::POST, &format!("/v1/deployments/{name}/rollouts/{id}/{verb}"), None).await?;
    show(c, &r, |r| println!("rollout {id} of {name} is {}", text(&r["state"]).replace('_', " ")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(env_rm: &[&str]) -> UpdateArgs {
        UpdateArgs {
            image: Some("local/web:2".into()),
            replicas: None,
            cause: Some("greet".into()),
            env_rm: env_rm.iter().map(|s| s.to_string()).collect(),
            dry_run: false,
            policy: UpdatePolicyArgs {
                update_parallelism: Some(2),
                update_order: Some("stop-first".into()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn an_update_merges_env_into_what_the_deployment_has_and_names_its_policy() {
        let current = json!({"version": 4, "env": {"A": "1", "B": "2"}});
        let workload: WorkloadArgs =
            clap::Parser::try_parse_from(["x", "-e", "B=3"]).map(|w: WorkloadOnly| w.w).unwrap();
        let body = update_body(&current, &args(&[]), workload).unwrap();
        assert_eq!(body["version"], 4);
        assert_eq!(body["env"], json!({"A": "1", "B": "3"}));
        assert_eq!(body["image"], "local/web:2");
        assert_eq!(body["update"], json!({"parallelism": 2, "order": "stop-first"}));
        let body = update_body(&current, &args(&["A"]), WorkloadArgs::default()).unwrap();
        assert_eq!(body["env"], json!({"B": "2"}));
        assert!(update_body(&current, &args(&["C"]), WorkloadArgs::default()).is_err());
        assert!(body.get("labels").is_none(), "what is not given is not sent");
    }

    #[derive(clap::Parser)]
    struct WorkloadOnly {
        #[command(flatten)]
        w: WorkloadArgs,
    }

    #[test]
    fn history_says_what_changed() {
        let before = json!({"image": "local/web:1", "command": []});
        let after = json!({"image": "local/web:1", "command": [], "env": {"A": "1"}});
        assert_eq!(changes(None, &before), "created");
        assert_eq!(changes(Some(&before), &after), r#"env - -> {"A":"1"}"#);
    }
}
