//! System packages the local tooling needs (dockerd, busybox, later PostgreSQL and HAProxy).
//! One helper for every xtask command: install with apt-get when we can, else say exactly how.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::sh;

/// A program we need and the Debian package that provides it.
pub struct Need {
    pub program: &'static str,
    pub package: &'static str,
}

fn present(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        || ["/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(program).is_file())
}

fn is_root() -> bool {
    sh::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// Makes sure every needed program is there, installing the missing packages with apt-get when
/// running as root on Debian unless `no_install` is set.
pub fn ensure(needs: &[Need], no_install: bool) -> Result<()> {
    let mut missing: Vec<&str> = needs.iter().filter(|n| !present(n.program)).map(|n| n.package).collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    let can_install = is_root() && Path::new("/usr/bin/apt-get").exists();
    if no_install || !can_install {
        bail!("missing system packages: {}. Install them with:\n  sudo sh -c '{command}'", missing.join(" "));
    }
    eprintln!("installing missing system packages: {}", missing.join(" "));
    sh::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    // Packages only: their system services (dockerd, a postgresql cluster) must not start, we
    // run instances of our own. policy-rc.d answering 101 means "do not start".
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let made_policy = !policy.exists() && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok();
    if made_policy {
        sh::quiet(Command::new("chmod").arg("+x").arg(policy));
    }
    let installed = sh::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    );
    if made_policy {
        let _ = std::fs::remove_file(policy);
    }
    installed
}

/// What building the orchestrator binary needs beyond Rust: libpq for diesel's PostgreSQL
/// backend (HA stores).
pub fn ensure_build_deps(no_install: bool) -> Result<()> {
    ensure(&[Need { program: "pg_config", package: "libpq-dev" }], no_install)
}
