//! `cargo xtask fuzz [--seconds 60]`: schemathesis (PyPI, in a venv under target/fuzz)
//! against the server's own OpenAPI document: every operation, generated valid and invalid
//! input, all of schemathesis' checks (no 5xx, every status and body as documented, invalid
//! input refused, valid input accepted, 405 for undeclared methods...), once with an admin
//! token and once without one. The server runs with no nodes: nothing reaches an engine.
//! The event stream is left out (it never ends); its parameters are those of `/v1/events`.
//! So are the logs (with `follow` they never end either); their parameters are checked by
//! the API's own tests and the logs test on real engines.
//!
//! The venv is exactly `xtask/fuzz-requirements.txt` (every package pinned with its hashes,
//! made by pip-compile from `fuzz-requirements.in`), so every machine fuzzes with the same
//! tool. A crash of the tool itself (no summary in its output) is retried once with the same
//! seed and reported as a tool failure; a finding (a failing check) is never retried.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::sh;

/// Every package of the fuzz venv, pinned with hashes (pip installs nothing else).
const REQUIREMENTS: &str = "xtask/fuzz-requirements.txt";
/// Which statuses the checks expect where the defaults do not fit (see the file).
const CONFIG: &str = "xtask/schemathesis.toml";
/// Keeps generated bodies inside the bounds the document states with its `x-` keywords.
const HOOKS: &str = "xtask/fuzz_hooks.py";
const TOKEN: &str = "fuzz-admin-token-0123456789abcdef0123456789";

#[derive(clap::Args)]
pub struct Args {
    /// Time budget of the pass with a token (the pass without one gets a quarter).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seed of the generated cases, to replay a run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The venv, (re)made when the requirements file changed since it was made.
fn venv(dir: &Path) -> Result<std::path::PathBuf> {
    let venv = dir.join("venv");
    let st = venv.join("bin/schemathesis");
    let requirements = sh::workspace_root().join(REQUIREMENTS);
    let wanted = std::fs::read_to_string(&requirements).with_context(|| format!("cannot read {REQUIREMENTS}"))?;
    let installed = venv.join("installed-requirements.txt");
    if !st.exists() || std::fs::read_to_string(&installed).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        sh::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        sh::run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--no-deps", "--require-hashes", "-r"])
                .arg(&requirements),
        )?;
        std::fs::write(&installed, wanted)?;
    }
    Ok(st)
}

pub fn run(args: Args) -> Result<()> {
    let root = sh::workspace_root();
    let dir = root.join("target/fuzz");
    std::fs::create_dir_all(&dir)?;
    let st = venv(&dir)?;
    sh::run(sh::cargo().args(["build", "-p", "orchestrator"]))?;
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let port = crate::net::free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut server = Command::new(root.join("target/debug/orchestrator"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .env("ORCH_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let result = passes(&st, &url, &dir, &args);
    let _ = server.kill();
    let _ = server.wait();
    let (cases, failures) = result?;
    println!("fuzz: {cases} cases generated over every operation, {failures} failures (reports in target/fuzz)");
    if failures > 0 {
        bail!("schemathesis found {failures} failures (see target/fuzz/*.xml and the output above)");
    }
    Ok(())
}

fn passes(st: &Path, url: &str, dir: &Path, args: &Args) -> Result<(u64, u64)> {
    crate::net::wait_for_ok(&format!("{url}/healthz"), Duration::from_secs(20))
        .context("the server did not start (see target/fuzz/server.log)")?;
    let (mut cases, mut failures) = (0, 0);
    for (label, token, seconds) in [("admin", true, args.seconds), ("no-token", false, args.seconds.div_ceil(4))] {
        let mut outcome = one_pass(st, url, dir, args.seed, label, token, seconds)?;
        if let Pass::ToolCrashed(why) = &outcome {
            println!("{label}: schemathesis itself crashed ({why}); once more with the same seed");
            outcome = one_pass(st, url, dir, args.seed, label, token, seconds)?;
        }
        let (operations, found, generated) = match outcome {
            Pass::Ran { operations, found, generated } => (operations, found, generated.unwrap_or(0)),
            Pass::ToolCrashed(why) => {
                bail!("schemathesis crashed twice ({label}): a tool failure, not a finding: {why}")
            }
        };
        println!("{label}: {generated} cases over {operations} operations, {found} operations failed a check");
        cases += generated;
        failures += found;
    }
    Ok((cases, failures))
}

/// How one schemathesis run ended.
enum Pass {
    /// It wrote its report: `found` of its `operations` failed a check (findings); it
    /// generated `generated` cases, when its summary says.
    Ran { operations: u64, found: u64, generated: Option<u64> },
    /// It ended without a summary (a traceback inside the tool): nothing was judged.
    ToolCrashed(String),
}

fn one_pass(st: &Path, url: &str, dir: &Path, seed: u64, label: &str, token: bool, seconds: u64) -> Result<Pass> {
    let mut cmd = Command::new(st);
    cmd.arg("--config-file")
        .arg(sh::workspace_root().join(CONFIG))
        .args(["run", &format!("{url}/openapi.json"), "--checks", "all", "--exclude-path", "/v1/events/stream"])
        .args(["--exclude-path", "/v1/deployments/{name}/logs"])
        // A rollback's 404 for a revision not kept (the contract) reads to this check as "the
        // deployment just created is gone"; the route tests hold created deployments to being found.
        .args(["--exclude-checks", "ensure_resource_availability"])
        // One worker: CPython 3.11 before 3.11.8 keeps the AST constructor's recursion depth
        // where two threads can both move it (python/cpython#106905), and schemathesis' coverage
        // phase, run from two workers, died of it (`AST constructor recursion depth mismatch`)
        // in one CI run out of four, twice with the same seed. One worker also makes a seed
        // replay the same cases in the same order.
        .args(["--max-time", &seconds.to_string(), "--request-timeout", "30", "--workers", "1"])
        .args(["--seed", &seed.to_string(), "--report", "junit"])
        .arg("--report-junit-path")
        .arg(dir.join(format!("{label}.xml")))
        .env("SCHEMATHESIS_HOOKS", sh::workspace_root().join(HOOKS))
        .env("NO_COLOR", "1");
    if token {
        cmd.args(["-H", &format!("Authorization: Bearer {TOKEN}")]);
    }
    // A report left by an earlier run must not stand in for this one.
    let report_path = dir.join(format!("{label}.xml"));
    let _ = std::fs::remove_file(&report_path);
    eprintln!("$ {}", sh::display(&cmd));
    let out = cmd.output().context("cannot run schemathesis")?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    let report = std::fs::read_to_string(&report_path).ok();
    Ok(classify(report.as_deref(), &text, &stderr))
}

/// A JUnit report means the tool ran to its end: its failing operations are the findings,
/// whatever its exit status. No report (or one that does not parse) means the tool broke.
fn classify(report: Option<&str>, stdout: &str, stderr: &str) -> Pass {
    match report.and_then(junit_counts) {
        Some((operations, found)) => Pass::Ran { operations, found, generated: generated(stdout) },
        None => {
            // A traceback ends on stderr with the exception; else the tool's own last words.
            let last_of = |text: &'_ str| text.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string);
            let last = last_of(stderr).or_else(|| last_of(stdout)).unwrap_or_default();
            Pass::ToolCrashed(format!("no JUnit report; last line: {}", last.trim()))
        }
    }
}

/// `<testsuites tests="29" failures="1" errors="0">`: (operations, operations that failed or
/// erred).
fn junit_counts(xml: &str) -> Option<(u64, u64)> {
    let document = roxmltree::Document::parse(xml).ok()?;
    let root = document.root_element();
    let count = |name: &str| root.attribute(name).unwrap_or("0").parse::<u64>().ok();
    Some((root.attribute("tests")?.parse().ok()?, count("failures")? + count("errors")?))
}

/// How many cases the run generated, from its summary line (`14383 generated, ...`): shown,
/// not judged.
fn generated(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let n = words.next()?.parse().ok()?;
        (words.next() == Some("generated,")).then_some(n)
    })
}

#[cfg(test)]
mod tests {
    use super::{Pass, classify, generated, junit_counts};

    const REPORT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites errors="0" failures="1" skipped="0" tests="29" time="44.38">
  <testsuite name="schemathesis" errors="0" failures="1" skipped="0" tests="29">
    <testcase name="GET /v1/deployments/{name}/replicas"><failure type="failure" message="ST103">Undocumented status code</failure></testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn the_verdict_is_read_from_the_junit_report() {
        assert_eq!(junit_counts(REPORT), Some((29, 1)));
        assert_eq!(
            junit_counts(&REPORT.replace(r#"errors="0" failures="1""#, r#"errors="2" failures="0""#)),
            Some((29, 2))
        );
        assert_eq!(junit_counts("<testsuites"), None);
        assert_eq!(generated("Test cases:\n  14383 generated, 20 found 20 unique failures\n"), Some(14383));
    }

    #[test]
    fn a_crash_of_the_tool_is_told_apart_from_a_finding() {
        let crash = "Traceback (most recent call last):\nSystemError: AST constructor recursion depth mismatch\n";
        assert!(matches!(classify(None, "Schemathesis v4\n", crash), Pass::ToolCrashed(why) if why.contains("AST")));
        let ran = classify(Some(REPORT), "  700 generated, 3 found 3 unique failures\n", "");
        assert!(matches!(ran, Pass::Ran { operations: 29, found: 1, generated: Some(700) }));
    }
}
