//! `cargo xtask load [--seconds 60]`: wrk (Debian's) against the release binary. Two passes of
//! the given length: `GET /status` alone (gzip, as browsers ask), then mixed traffic (70%
//! `/status`, 10% one deployment, 10% the newest events, 10% creates of new deployments).
//! Fails if any request errs (a non-2xx answer or a socket error). The local cluster's nodes
//! are registered when it is up. Prints a table and writes target/bench/load.json.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::packages::{self, Need};
use crate::{cluster, sh};

const TOKEN: &str = "load-test-token-0123456789abcdef0123456789";

#[derive(clap::Args)]
pub struct Args {
    /// Length of each pass.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Open connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

const MIXED: &str = r#"
local counter = 0
local next_thread = 0
function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end
local headers = {
  ["Authorization"] = "Bearer TOKEN",
  ["Accept-Encoding"] = "gzip",
  ["Content-Type"] = "application/json",
}
function request()
  counter = counter + 1
  local pick = counter % 10
  if pick < 7 then
    return wrk.format("GET", "/status", headers)
  elseif pick == 7 then
    return wrk.format("GET", "/v1/deployments/load-seed", headers)
  elseif pick == 8 then
    return wrk.format("GET", "/v1/events?tail=50", headers)
  end
  local body = string.format('{"name":"load-%d-%d","image":"local/busybox:1","replicas":0}', tid, counter)
  return wrk.format("POST", "/v1/deployments", headers, body)
end
"#;

/// Appended to both scripts: wrk hands its figures to `done` at the end, written as one JSON
/// line (`{"wrk": ...}`), so nothing is read off its human report.
const REPORT: &str = r#"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"wrk":{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

pub fn run(args: Args) -> Result<()> {
    packages::ensure(&[Need { program: "wrk", package: "wrk" }], false)?;
    sh::run(sh::cargo().args(["build", "--release", "-p", "orchestrator"]))?;
    let root = sh::workspace_root();
    let dir = root.join("target/load");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = crate::net::free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(root.join("target/release/orchestrator"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&dir)
        .env("ORCH_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for node in test_support::local_cluster::listing(&cluster::state_dir()).unwrap_or_default() {
        cmd.arg("--node").arg(format!("{}={}", node.name, node.tcp));
    }
    let mut server = cmd.spawn()?;
    let result = passes(&url, &dir, &args);
    let _ = server.kill();
    let _ = server.wait();
    let report = result?;
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("load.json"), serde_json::to_string_pretty(&report)?)?;
    println!("written to target/bench/load.json");
    let errors: u64 = report["passes"].as_array().into_iter().flatten().filter_map(|p| p["errors"].as_u64()).sum();
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}

fn passes(url: &str, dir: &std::path::Path, args: &Args) -> Result<Value> {
    crate::net::wait_for_ok(&format!("{url}/readyz"), Duration::from_secs(20))
        .context("the server did not become ready")?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    agent
        .post(format!("{url}/v1/deployments"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(json!({"name": "load-seed", "image": "local/busybox:1", "replicas": 0}))?;

    let status_script = dir.join("status.lua");
    std::fs::write(
        &status_script,
        format!(
            "wrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\nwrk.headers[\"Accept-Encoding\"] = \"gzip\"\nwrk.path = \"/status\"\n{REPORT}"
        ),
    )?;
    let mixed_script = dir.join("mixed.lua");
    std::fs::write(&mixed_script, format!("{}{REPORT}", MIXED.replace("TOKEN", TOKEN)))?;
    let mut reports = Vec::new();
    for (label, script) in [("GET /status", &status_script), ("mixed read/write", &mixed_script)] {
        let out = sh::output(
            Command::new("wrk")
                .args(["-t2", &format!("-c{}", args.connections), &format!("-d{}s", args.seconds), "--latency", "-s"])
                .arg(script)
                .arg(url),
        )?;
        let pass = parse_wrk(label, &out).with_context(|| format!("cannot read wrk's report:\n{out}"))?;
        println!(
            "{label}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} errors",
            pass["requests_per_s"].as_f64().unwrap_or(0.0),
            pass["p50_ms"].as_f64().unwrap_or(0.0),
            pass["p99_ms"].as_f64().unwrap_or(0.0),
            pass["requests"],
            pass["errors"]
        );
        reports.push(pass);
    }
    Ok(json!({"seconds": args.seconds, "connections": args.connections, "passes": reports}))
}

/// The figures `REPORT` wrote: the last `{"wrk": ...}` line of wrk's output.
fn parse_wrk(label: &str, out: &str) -> Option<Value> {
    let line = out.lines().rev().find(|l| l.starts_with("{\"wrk\":"))?;
    let report: Value = serde_json::from_str(line).ok()?;
    let w = &report["wrk"];
    let (requests, duration_us) = (w["requests"].as_u64()?, w["duration_us"].as_u64()?);
    Some(json!({
        "pass": label,
        "requests": requests,
        "requests_per_s": requests as f64 / (duration_us.max(1) as f64 / 1e6),
        "p50_ms": w["p50_us"].as_f64()? / 1000.0,
        "p99_ms": w["p99_us"].as_f64()? / 1000.0,
        "errors": w["non_2xx"].as_u64()? + w["socket_errors"].as_u64()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_done_hook_wrote() {
        let out = "Running 1s test @ http://127.0.0.1:1\n  12345 requests in 1.00s\nRequests/sec:  12345.00\n\
                   {\"wrk\":{\"requests\":12345,\"duration_us\":2000000,\"non_2xx\":4,\"socket_errors\":3,\"p50_us\":850,\"p99_us\":5100}}\n";
        let v = parse_wrk("x", out).unwrap();
        assert_eq!((v["requests"].as_u64(), v["errors"].as_u64()), (Some(12345), Some(7)));
        assert_eq!((v["p50_ms"].as_f64(), v["p99_ms"].as_f64()), (Some(0.85), Some(5.1)));
        assert_eq!(v["requests_per_s"].as_f64(), Some(6172.5));
        assert!(parse_wrk("x", "Requests/sec: 1\n").is_none(), "no report line, no figures");
    }
}
