//! `cargo xtask bench logs`: the logs route under load, on 3 local engines.
//!
//! - follow: 30 replicas each writing 1,000 numbered lines a second for 60 s while one client
//!   follows `GET /v1/deployments/{name}/logs?follow=true`: lines received against written (all
//!   of them, in order per replica, is the target), the server's RSS growth (target < 10 MiB)
//!   and its CPU share, beside the CPU share of the engines that wrote the same lines (the
//!   reference: what the lines cost where they come from);
//! - tail: `?tail=10000` over the 30 replicas, time to the last line, against the same reads
//!   straight from the engines (`docker logs --tail 10000`, all 30 at once).
//!
//! Prints a table and writes target/bench/logs.json.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench_api::rss_kib;
use crate::bench_e2e::{PORT, TOKEN, api, nodes, serve, until};
use crate::cluster::{Cluster, state_dir};
use crate::{image, sh};

const REPLICAS: usize = 30;
const SECONDS: u64 = 60;
const PER_SECOND: u64 = 1_000;
const TAIL: usize = 10_000;
const NAME: &str = "chatty";

/// Each replica: 100 numbered lines every 100 ms (1,000 a second) for `SECONDS`, then quiet.
fn script() -> String {
    let batches = SECONDS * 10;
    format!(
        "i=0; b=0; while [ $b -lt {batches} ]; do j=0; while [ $j -lt 100 ]; do echo $i; i=$((i+1)); j=$((j+1)); \
         done; b=$((b+1)); usleep 100000; done; exec sleep 3600"
    )
}

/// A process's user + system CPU time, in clock ticks (100 a second on Linux).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").context("odd /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn engine_pids() -> Result<Vec<u32>> {
    nodes()?
        .iter()
        .map(|n| Ok(std::fs::read_to_string(state_dir().join(&n.name).join("docker.pid"))?.trim().parse()?))
        .collect()
}

fn logs_stream(query: &str) -> Result<impl BufRead> {
    let response = ureq::get(format!("http://127.0.0.1:{PORT}/v1/deployments/{NAME}/logs?{query}"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()?;
    Ok(BufReader::with_capacity(1 << 16, response.into_body().into_reader()))
}

#[derive(Default)]
struct Follow {
    written: u64,
    received: u64,
    out_of_order: u64,
    rss_growth_kib: u64,
    server_cpu_share: f64,
    engines_cpu_share: f64,
    seconds: f64,
}

/// Follows the deployment until every replica's last line came (or the time is up).
fn follow(server_pid: u32) -> Result<Follow> {
    let engines = engine_pids()?;
    let engines_cpu = || -> Result<u64> { engines.iter().map(|p| cpu_ticks(*p)).sum() };
    let body = json!({"image": image::TEST_IMAGE, "replicas": REPLICAS, "name": NAME,
        "command": ["sh", "-c", script()]});
    let rss_before = rss_kib(server_pid)?;
    let (server_before, engines_before) = (cpu_ticks(server_pid)?, engines_cpu()?);
    let started = Instant::now();
    api("POST", "/v1/deployments", Some(body))?;
    until(&format!("{REPLICAS} running"), Duration::from_secs(120), || {
        Ok(api("GET", &format!("/v1/deployments/{NAME}"), None)?["actual"] == REPLICAS)
    })?;
    let per_replica = SECONDS * PER_SECOND;
    let mut next: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut figures = Follow { written: per_replica * REPLICAS as u64, ..Follow::default() };
    let mut peak_rss = rss_before;
    let mut last_sample = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(SECONDS * 2 + 60);
    let mut lines = logs_stream("follow=true")?;
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            bail!("the followed stream ended");
        }
        let item: Value = serde_json::from_str(&line)?;
        let (Some(replica), Some(n)) =
            (item["replica"].as_u64(), item["line"].as_str().and_then(|l| l.trim().parse::<u64>().ok()))
        else {
            continue; // a marker
        };
        figures.received += 1;
        let expected = next.entry(replica).or_insert(0);
        if n != *expected {
            figures.out_of_order += 1;
        }
        *expected = n + 1;
        if last_sample.elapsed() > Duration::from_millis(500) {
            peak_rss = peak_rss.max(rss_kib(server_pid)?);
            last_sample = Instant::now();
        }
        if next.len() == REPLICAS && next.values().all(|v| *v >= per_replica) {
            break;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let ticks = |t: u64| t as f64 / 100.0 / wall;
    figures.server_cpu_share = ticks(cpu_ticks(server_pid)? - server_before);
    figures.engines_cpu_share = ticks(engines_cpu()? - engines_before);
    figures.rss_growth_kib = peak_rss.max(rss_kib(server_pid)?).saturating_sub(rss_before);
    figures.seconds = wall;
    Ok(figures)
}

/// Seconds until the last line of `?tail=TAIL`, and of the same reads from the engines.
fn tail() -> Result<(f64, usize, f64)> {
    let started = Instant::now();
    let received = logs_stream(&format!("tail={TAIL}"))?.lines().count();
    let ours = started.elapsed().as_secs_f64();
    let containers: Vec<(crate::bench_e2e::Node, String)> = nodes()?
        .into_iter()
        .flat_map(|n| {
            let ids = crate::bench_e2e::docker(
                &n,
                &["ps", "-q", "--filter", &format!("label=io.orchestrator.deployment={NAME}")],
            )
            .unwrap_or_default();
            ids.lines().map(|id| (n.clone(), id.to_string())).collect::<Vec<_>>()
        })
        .collect();
    if containers.len() != REPLICAS {
        bail!("{} containers found on the engines, {REPLICAS} expected", containers.len());
    }
    let started = Instant::now();
    let readers: Vec<_> = containers
        .iter()
        .map(|(n, id)| {
            Command::new("docker")
                .args(["-H", &n.tcp, "logs", "--tail", &TAIL.to_string(), id])
                .stdout(std::process::Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    for mut reader in readers {
        reader.wait()?;
    }
    Ok((ours, received, started.elapsed().as_secs_f64()))
}

pub fn run() -> Result<()> {
    sh::run(sh::cargo().args(["build", "--release", "-p", "orchestrator"]))?;
    let cluster = Cluster::new(state_dir());
    let result = (|| {
        cluster.up(3, false)?;
        let server = serve("bench-logs")?;
        let followed = follow(server.0.id()).context("follow phase")?;
        let (tail_s, tail_lines, raw_tail_s) = tail().context("tail phase")?;
        report(&followed, tail_s, tail_lines, raw_tail_s)
    })();
    cluster.down()?;
    result
}

fn report(f: &Follow, tail_s: f64, tail_lines: usize, raw_tail_s: f64) -> Result<()> {
    println!("\n{REPLICAS} replicas x {PER_SECOND} lines/s x {SECONDS} s, one client following");
    println!("lines written / received / out of order   {} / {} / {}", f.written, f.received, f.out_of_order);
    println!("server RSS growth                         {:.1} MiB", f.rss_growth_kib as f64 / 1024.0);
    println!(
        "CPU share (cores): server / engines       {:.2} / {:.2} (ratio {:.2})",
        f.server_cpu_share,
        f.engines_cpu_share,
        f.server_cpu_share / f.engines_cpu_share
    );
    println!(
        "tail={TAIL} over {REPLICAS}: ours / engines     {tail_s:.2} s / {raw_tail_s:.2} s (ratio {:.2}, {tail_lines} lines)",
        tail_s / raw_tail_s
    );
    let json = json!({
        "replicas": REPLICAS, "lines_per_second": PER_SECOND, "seconds": SECONDS,
        "follow": {"written": f.written, "received": f.received, "out_of_order": f.out_of_order,
            "rss_growth_mib": f.rss_growth_kib as f64 / 1024.0, "server_cpu_share": f.server_cpu_share,
            "engines_cpu_share": f.engines_cpu_share, "wall_s": f.seconds},
        "tail": {"lines": tail_lines, "ours_s": tail_s, "engines_s": raw_tail_s, "ours_over_engines": tail_s / raw_tail_s},
    });
    let path = sh::workspace_root().join("target/bench/logs.json");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("written to {}", path.display());
    if f.received < f.written || f.out_of_order > 0 {
        bail!("lines were lost or reordered");
    }
    Ok(())
}
