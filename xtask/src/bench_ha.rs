//! `cargo xtask bench ha`: failover of the HA setup (`ha up`: PostgreSQL, 3 servers, HAProxy).
//!
//! Five rounds of: kill -9 the leader, time until another server says it leads with its loops
//! running (takeover), restart the killed one as a follower. All along, a client sends
//! requests through HAProxy (reads of /status and of one deployment, creates by name, scales
//! with the version read) and retries a failed one once; the success ratio counts requests
//! that succeeded on the first try or on that one retry. Prints a table and writes
//! target/bench/ha.json.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::ha::{self, Options, Setup};
use crate::sh;

const ROUNDS: usize = 5;
const RETRY_AFTER: Duration = Duration::from_millis(200);

pub fn run() -> Result<()> {
    let _ = ha::down();
    let port = crate::net::free_port()?;
    let setup = ha::up(&Options {
        servers: 3,
        port,
        release: true,
        no_install: false,
        max_nodes: None,
        server_args: Vec::new(),
    })?;
    let result = measure(&setup);
    let _ = ha::down();
    let report = result?;
    let dir = sh::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("ha.json"), serde_json::to_string_pretty(&report)?)?;
    println!("written to target/bench/ha.json");
    Ok(())
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    first_try_failed: AtomicU64,
    failed: AtomicU64,
}

fn measure(setup: &Setup) -> Result<Value> {
    let token = setup.token()?;
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (url, token, counts, stop) = (setup.url.clone(), token.clone(), Arc::clone(&counts), Arc::clone(&stop));
        std::thread::spawn(move || client_loop(&url, &token, &counts, &stop))
    };

    let mut takeovers = Vec::new();
    let measured = (|| -> Result<()> {
        for round in 1..=ROUNDS {
            wait_all_ready(setup)?;
            let leader = setup.leader().context("no leader")?;
            let pid = setup.server_pid(leader).context("the leader's pid")?;
            let killed = Instant::now();
            sh::run(std::process::Command::new("kill").args(["-KILL", &pid.to_string()]))?;
            let new_leader = loop {
                if killed.elapsed() > Duration::from_secs(30) {
                    bail!("no takeover within 30 s");
                }
                if let Some(i) = (0..setup.servers.len()).filter(|&i| i != leader).find(|&i| is_ready_leader(setup, i))
                {
                    break i;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let took = killed.elapsed();
            println!(
                "round {round}: s{} killed, s{} leads after {:.2} s",
                leader + 1,
                new_leader + 1,
                took.as_secs_f64()
            );
            takeovers.push(took.as_secs_f64());
            setup.start_server(leader)?;
        }
        wait_all_ready(setup)
    })();
    stop.store(true, Ordering::Relaxed);
    client.join().map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    measured?;

    let mut sorted = takeovers.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let requests = counts.requests.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let first_try_failed = counts.first_try_failed.load(Ordering::Relaxed);
    let ratio = |n: u64| if requests == 0 { 0.0 } else { n as f64 / requests as f64 };
    println!();
    println!("| | |");
    println!("|---|---|");
    println!("| takeover after kill -9 of the leader, median of {ROUNDS} (s) | {median:.2} |");
    println!("| takeover, each round (s) | {} |", fmt_list(&takeovers));
    println!("| requests through HAProxy during the {ROUNDS} failovers | {requests} |");
    println!("| succeeded with at most one retry | {:.3}% |", 100.0 * (1.0 - ratio(failed)));
    println!("| succeeded at the first try | {:.3}% |", 100.0 * (1.0 - ratio(first_try_failed)));
    Ok(json!({
        "servers": setup.servers.len(),
        "lease_ttl_s": 5,
        "takeover_s": takeovers,
        "takeover_median_s": median,
        "requests": requests,
        "failed_after_one_retry": failed,
        "failed_first_try": first_try_failed,
        "success_ratio_with_one_retry": 1.0 - ratio(failed),
        "success_ratio_first_try": 1.0 - ratio(first_try_failed),
    }))
}

fn fmt_list(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ")
}

fn is_ready_leader(setup: &Setup, index: usize) -> bool {
    crate::net::http_get(&format!("{}/readyz", setup.servers[index])).is_some_and(|(code, body)| {
        code == 200 && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["role"] == "leader")
    })
}

fn wait_all_ready(setup: &Setup) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let ready = (0..setup.servers.len()).all(|i| {
            crate::net::http_get(&format!("{}/readyz", setup.servers[i])).is_some_and(|(code, _)| code == 200)
        });
        if ready && setup.leader().is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("not every server became ready within 30 s")
}

/// One request through HAProxy: `Ok(true)` when it did what it was for.
type Attempt<'a> = Box<dyn Fn() -> Result<bool> + 'a>;

fn client_loop(url: &str, token: &str, counts: &Counts, stop: &AtomicBool) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let auth = format!("Bearer {token}");
    let (agent, auth) = (&agent, auth.as_str());
    let probe = "bench-ha-probe";
    let _ = agent
        .post(format!("{url}/v1/deployments"))
        .header("Authorization", auth)
        .send_json(json!({"name": probe, "image": "local/busybox:1", "replicas": 0}));
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let name = format!("bench-ha-{i}");
        let status: Attempt = Box::new(|| {
            Ok(agent.get(format!("{url}/status")).header("Authorization", auth).call()?.status().is_success())
        });
        let create = |name: String| -> Attempt {
            Box::new(move || {
                let body = json!({"name": name, "image": "local/busybox:1", "replicas": 0});
                let code = agent
                    .post(format!("{url}/v1/deployments"))
                    .header("Authorization", auth)
                    .send_json(&body)?
                    .status()
                    .as_u16();
                Ok(code == 200 || code == 201)
            })
        };
        // Scale the probe deployment with the version just read; a 409 after a lost answer is
        // success when the count is the one asked for.
        let scale: Attempt = Box::new(|| {
            let mut got = agent.get(format!("{url}/v1/deployments/{probe}")).header("Authorization", auth).call()?;
            if !got.status().is_success() {
                return Ok(false);
            }
            let d: Value = got.body_mut().read_json()?;
            let want = i % 3;
            let code = agent
                .patch(format!("{url}/v1/deployments/{probe}"))
                .header("Authorization", auth)
                .send_json(json!({"replicas": want, "version": d["version"]}))?
                .status()
                .as_u16();
            if code != 409 {
                return Ok(code == 200);
            }
            let mut now = agent.get(format!("{url}/v1/deployments/{probe}")).header("Authorization", auth).call()?;
            Ok(now.body_mut().read_json::<Value>()?["required"] == want)
        });
        let work: Vec<Attempt> = match i % 4 {
            0 => vec![scale],
            1 => vec![create(name)],
            _ => vec![status],
        };
        for attempt in work {
            counts.requests.fetch_add(1, Ordering::Relaxed);
            if attempt().unwrap_or(false) {
                continue;
            }
            counts.first_try_failed.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(RETRY_AFTER);
            if !attempt().unwrap_or(false) {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
