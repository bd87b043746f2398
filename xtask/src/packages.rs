//! System packages the local tooling needs (dockerd, busybox, later PostgreSQL and HAProxy).
//! One helper for every xtask command: install with apt-get when we can, else say exactly how.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, anyhow, bail};

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

/// Every package the tooling installs, at the version it was tested with (one line per package,
/// followed by the parts pinned along with it).
const PINS: &str = include_str!("../debian-packages.txt");

/// `package=version` for the package and the parts pinned with it.
fn pinned(package: &str) -> Result<Vec<&'static str>> {
    PINS.lines()
        .find(|line| line.split_once('=').is_some_and(|(name, _)| name == package))
        .map(|line| line.split_whitespace().collect())
        .ok_or_else(|| anyhow!("no pinned version of {package} in xtask/debian-packages.txt"))
}

/// Makes sure every needed program is there, installing the missing packages with apt-get when
/// running as root on Debian unless `no_install` is set.
pub fn ensure(needs: &[Need], no_install: bool) -> Result<()> {
    let mut missing: Vec<&str> = needs.iter().filter(|n| !present(n.program)).map(|n| n.package).collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pins = Vec::new();
    for package in &missing {
        pins.extend(pinned(package)?);
    }
    pins.sort_unstable();
    pins.dedup();
    let command = format!("apt-get update && apt-get install -y --no-install-recommends {}", pins.join(" "));
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
            .args(&pins),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_package_the_tooling_installs_is_pinned_once() {
        let mut tops = Vec::new();
        for line in PINS.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            for word in line.split_whitespace() {
                let (name, version) = word.split_once('=').unwrap_or_else(|| panic!("{word}: not package=version"));
                assert!(!name.is_empty() && !version.is_empty() && !version.contains('='), "{word}");
            }
            tops.push(line.split_once('=').unwrap().0);
        }
        let before = tops.len();
        tops.sort_unstable();
        tops.dedup();
        assert_eq!(tops.len(), before, "a package has two lines");

        // Every package a `Need` names in the sources and `.ci/run` installs.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources = vec![std::fs::read_to_string(root.join("../.ci/run")).unwrap()];
        let mut dirs = vec![root.join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    sources.push(std::fs::read_to_string(path).unwrap());
                }
            }
        }
        let named =
            sources.iter().flat_map(|text| text.split("package: \"").skip(1).map(|s| s.split('"').next().unwrap()));
        let mut count = 0;
        for package in named {
            pinned(package).unwrap();
            count += 1;
        }
        assert!(count >= 10, "found {count} packages named in the sources");
        let ci = &sources[0];
        let listed = ci.split("pins=$(pinned ").nth(1).unwrap().split(')').next().unwrap();
        for package in listed.split_whitespace().filter(|w| *w != "\\") {
            pinned(package).unwrap();
        }
    }
}
