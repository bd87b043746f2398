//! The offline test image: a root file system holding only a static busybox and its applet
//! links, imported into each node as `local/busybox:1`. No registry is needed.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::sh;

pub const TEST_IMAGE: &str = "local/busybox:1";

/// Builds `dir/busybox-rootfs.tar` unless it is already there; returns its path.
pub fn rootfs_tar(dir: &Path) -> Result<PathBuf> {
    let tar = dir.join("busybox-rootfs.tar");
    if tar.exists() {
        return Ok(tar);
    }
    let root = dir.join("busybox-rootfs");
    let _ = std::fs::remove_dir_all(&root);
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    for empty in ["tmp", "etc", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(root.join(empty))?;
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).context("copy /bin/busybox (package busybox-static)")?;
    let applets = sh::output(Command::new("/bin/busybox").arg("--list"))?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
        symlink("busybox", bin.join(applet))?;
    }
    symlink("bin", root.join("sbin"))?;
    std::fs::create_dir_all(root.join("usr"))?;
    symlink("../bin", root.join("usr/bin"))?;
    let partial = dir.join("busybox-rootfs.tar.partial");
    sh::output(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&partial).arg("."))?;
    std::fs::rename(&partial, &tar)?;
    std::fs::remove_dir_all(&root)?;
    Ok(tar)
}

/// Imports the test image into the engine behind `socket` unless it has it already.
pub fn import(socket: &Path, tar: &Path) -> Result<()> {
    let host = format!("unix://{}", socket.display());
    let has = Command::new("docker")
        .args(["-H", &host, "image", "inspect", TEST_IMAGE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        sh::output(Command::new("docker").args(["-H", &host, "import"]).arg(tar).arg(TEST_IMAGE))?;
    }
    Ok(())
}
