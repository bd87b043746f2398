//! `cargo xtask fuzz [--seconds 60]`: schemathesis (PyPI, in a venv under target/fuzz)
//! against the server's own OpenAPI document: every operation, generated valid and invalid
//! input, all of schemathesis' checks (no 5xx, every status and body as documented, invalid
//! input refused, valid input accepted, 405 for undeclared methods...), once with an admin
//! token and once without one. The server runs with no nodes: nothing reaches an engine.
//! The event stream is left out (it never ends); its parameters are those of `/v1/events`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::sh;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";
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

fn venv(dir: &Path) -> Result<std::path::PathBuf> {
    let venv = dir.join("venv");
    let st = venv.join("bin/schemathesis");
    if !st.exists() {
        sh::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        sh::run(Command::new(venv.join("bin/pip")).args(["install", "-q", SCHEMATHESIS]))?;
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
        let mut cmd = Command::new(st);
        cmd.args(["run", &format!("{url}/openapi.json"), "--checks", "all", "--exclude-path", "/v1/events/stream"])
            .args(["--max-time", &seconds.to_string(), "--request-timeout", "30", "--workers", "2"])
            .args(["--seed", &args.seed.to_string(), "--report", "junit"])
            .arg("--report-junit-path")
            .arg(dir.join(format!("{label}.xml")))
            .env("NO_COLOR", "1");
        if token {
            cmd.args(["-H", &format!("Authorization: Bearer {TOKEN}")]);
        }
        eprintln!("$ {}", sh::display(&cmd));
        let out = cmd.output().context("cannot run schemathesis")?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        let (generated, found) =
            summary(&text).with_context(|| format!("no summary in schemathesis' output ({label})"))?;
        println!("{label}: {generated} cases, {found} failures");
        cases += generated;
        failures += found;
        if !out.status.success() && found == 0 {
            bail!("schemathesis failed ({label}): {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok((cases, failures))
}

/// `14383 generated, 20 found 20 unique failures, ...` or `1795 generated, 1795 passed` ->
/// (generated, failures).
fn summary(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.contains(" generated"))?;
    let generated = line.split_whitespace().next()?.parse().ok()?;
    let found = line
        .split(',')
        .find_map(|part| {
            let words: Vec<&str> = part.split_whitespace().collect();
            (words.get(1) == Some(&"found")).then(|| words[0].parse().ok()).flatten()
        })
        .unwrap_or(0);
    Some((generated, found))
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn reads_schemathesis_summaries() {
        assert_eq!(
            summary("Test cases:\n  14383 generated, 20 found 20 unique failures, 20 skipped\n"),
            Some((14383, 20))
        );
        assert_eq!(summary("  1795 generated, 1795 passed, 32 skipped\n"), Some((1795, 0)));
    }
}
