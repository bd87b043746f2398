//! `cargo xtask bench update`: rolling updates, ours side by side with Docker Swarm's, on the
//! same 3 local engines in the same run. 30 replicas of one image, their env updated:
//!
//! - each with its own defaults (ours: parallelism 1, surge 1, start-first, monitor 5 s,
//!   2 s out of the endpoints before each stop; Swarm: parallelism 1, stop-first, monitor 5 s);
//! - both with the same settings (parallelism 5, start-first, monitor 2 s; ours with
//!   max_surge 5 to match Swarm's start-first, and no deregister delay, which Swarm lacks);
//! - a failing update (the new command exits): time until the service runs the old
//!   revision again (ours: failure_action rollback, the default; Swarm:
//!   `--update-failure-action rollback`).
//!
//! What Swarm's publishing cannot show here: its routing mesh needs an overlay network the
//! nodes' namespaces do not carry, so failed requests during an update are measured for ours
//! only (the zero-downtime test in bins/orchestrator/tests/rollouts.rs). Prints a table and
//! writes target/bench/update.json.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench_e2e::{Node, api, docker, serve, swarm_init, until};
use crate::cluster::{Cluster, state_dir};
use crate::{image, sh};

const REPLICAS: usize = 30;
const UPDATE_TIMEOUT: Duration = Duration::from_secs(600);
/// Exits at once on SIGTERM, so neither side waits out a stop timeout.
const SCRIPT: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    defaults: f64,
    same_settings: f64,
    rollback: f64,
}

pub fn run(no_install: bool) -> Result<()> {
    sh::run(sh::cargo().args(["build", "--release", "-p", "orchestrator"]))?;
    let cluster = Cluster::new(state_dir());
    let result = (|| {
        cluster.up(3, no_install)?;
        let ours = ours().context("orchestrator phase")?;
        cluster.up(3, no_install)?;
        let swarm = swarm().context("Swarm phase")?;
        report(&ours, &swarm)
    })();
    cluster.down()?;
    result
}

// ---- ours -------------------------------------------------------------------------------

fn rollout_state(name: &str, id: &Value) -> Result<String> {
    Ok(api("GET", &format!("/v1/deployments/{name}/rollouts/{id}"), None)?["state"].as_str().unwrap_or("").to_string())
}

/// Creates `name` with `policy`, waits until it runs, updates its env; the seconds until the
/// rollout ended in `want`.
fn ours_update(name: &str, policy: Value, command: &[&str], want: &str) -> Result<f64> {
    let mut body = json!({"image": image::TEST_IMAGE, "replicas": REPLICAS, "name": name,
        "command": ["sh", "-c", SCRIPT], "env": {"REVISION": "1"}});
    for (key, value) in policy.as_object().into_iter().flatten() {
        body[key] = value.clone();
    }
    api("POST", "/v1/deployments", Some(body))?;
    until(&format!("{REPLICAS} running"), Duration::from_secs(120), || {
        Ok(api("GET", &format!("/v1/deployments/{name}"), None)?["actual"] == REPLICAS)
    })?;
    let d = api("GET", &format!("/v1/deployments/{name}"), None)?;
    let mut change = json!({"version": d["version"], "env": {"REVISION": "2"}});
    if !command.is_empty() {
        change["command"] = json!(command);
    }
    let started = Instant::now();
    let updated = api("PATCH", &format!("/v1/deployments/{name}"), Some(change))?;
    let id = updated["rollout"]["id"].clone();
    until("the rollout to end", UPDATE_TIMEOUT, || Ok(rollout_state(name, &id)? != "in_progress"))?;
    let state = rollout_state(name, &id)?;
    if state != want {
        bail!("rollout of {name} ended {state}, not {want}");
    }
    if want == "rolled_back" {
        // Back: the rollback's own rollout done and every replica running the old template.
        until("the rollback to end", UPDATE_TIMEOUT, || {
            let d = api("GET", &format!("/v1/deployments/{name}"), None)?;
            Ok(d["rollout"].is_null() && d["actual"] == REPLICAS)
        })?;
    }
    let took = started.elapsed().as_secs_f64();
    println!("ours: {name}: {state} after {took:.2}s");
    api("DELETE", &format!("/v1/deployments/{name}"), None)?;
    Ok(took)
}

fn ours() -> Result<Figures> {
    let _server = serve("bench-update")?;
    let same = json!({"update": {"parallelism": 5, "max_surge": 5, "order": "start-first", "monitor": "2s"},
        "deregister_delay": "0s"});
    let failing = json!({"update": {"monitor": "2s"}, "rollback": {"parallelism": 5, "max_surge": 5, "monitor": "2s"}});
    Ok(Figures {
        defaults: ours_update("defaults", json!({}), &[], "succeeded")?,
        same_settings: ours_update("same", same, &[], "succeeded")?,
        rollback: ours_update("failing", failing, &["sh", "-c", "exit 1"], "rolled_back")?,
    })
}

// ---- Docker Swarm -----------------------------------------------------------------------

fn update_state(manager: &Node, name: &str) -> Result<String> {
    Ok(docker(
        manager,
        &["service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", name],
    )?
    .trim()
    .to_string())
}

fn swarm_update(manager: &Node, name: &str, create: &[&str], update: &[&str], want: &str) -> Result<f64> {
    let replicas = REPLICAS.to_string();
    let mut args = vec!["service", "create", "--detach", "--no-resolve-image", "--name", name, "--replicas", &replicas];
    args.extend(["--env", "REVISION=1"]);
    args.extend(create);
    args.extend([image::TEST_IMAGE, "sh", "-c", SCRIPT]);
    docker(manager, &args)?;
    until(&format!("{REPLICAS}/{REPLICAS}"), Duration::from_secs(120), || {
        let ls = docker(manager, &["service", "ls", "--filter", &format!("name={name}"), "--format", "{{.Replicas}}"])?;
        Ok(ls.trim() == format!("{REPLICAS}/{REPLICAS}"))
    })?;
    let started = Instant::now();
    let mut args = vec!["service", "update", "--detach", "--no-resolve-image", "--env-add", "REVISION=2"];
    args.extend(update);
    args.push(name);
    docker(manager, &args)?;
    until(&format!("{name} {want}"), UPDATE_TIMEOUT, || Ok(update_state(manager, name)? == want))?;
    let took = started.elapsed().as_secs_f64();
    println!("swarm: {name}: {want} after {took:.2}s");
    docker(manager, &["service", "rm", name])?;
    Ok(took)
}

fn swarm() -> Result<Figures> {
    let nodes = swarm_init()?;
    let manager = &nodes[0];
    let same = ["--update-parallelism", "5", "--update-order", "start-first", "--update-monitor", "2s"];
    let failing_create =
        ["--update-monitor", "2s", "--update-failure-action", "rollback", "--rollback-parallelism", "5"];
    Ok(Figures {
        defaults: swarm_update(manager, "defaults", &[], &[], "completed")?,
        same_settings: swarm_update(manager, "same", &same, &[], "completed")?,
        rollback: swarm_update(
            manager,
            "failing",
            &failing_create,
            &["--args", "sh -c 'exit 1'"],
            "rollback_completed",
        )?,
    })
}

fn report(ours: &Figures, swarm: &Figures) -> Result<()> {
    let rows = [
        ("each with its defaults (s)", ours.defaults, swarm.defaults),
        ("same settings: parallelism 5, start-first, monitor 2s (s)", ours.same_settings, swarm.same_settings),
        ("failing update back on the old revision (s)", ours.rollback, swarm.rollback),
    ];
    println!(
        "\n{REPLICAS} replicas on 3 nodes, env updated\n{:<58} {:>8} {:>8} {:>11}",
        "", "ours", "swarm", "ours/swarm"
    );
    for (what, o, s) in rows {
        println!("{what:<58} {o:>8.2} {s:>8.2} {:>11.2}", o / s);
    }
    let json = json!({
        "replicas": REPLICAS,
        "ours": {"defaults_s": ours.defaults, "same_settings_s": ours.same_settings, "rollback_s": ours.rollback},
        "swarm": {"defaults_s": swarm.defaults, "same_settings_s": swarm.same_settings, "rollback_s": swarm.rollback},
        "ratios": {
            "defaults_ours_over_swarm": ours.defaults / swarm.defaults,
            "same_settings_ours_over_swarm": ours.same_settings / swarm.same_settings,
            "rollback_ours_over_swarm": ours.rollback / swarm.rollback,
        },
    });
    let path = sh::workspace_root().join("target/bench/update.json");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("written to {}", path.display());
    Ok(())
}
