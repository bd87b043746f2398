//! Finds (or starts) the local multi-node cluster of `cargo xtask cluster` for tests that need
//! real engines. Under CI (`CI=true` or `ORCH_REQUIRE_DOCKER=1`) a missing cluster fails the
//! test loudly; elsewhere the test is skipped with a printed reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use orchestrator_core::{EngineAddress, Node, NodeName};

pub use crate::required;
use crate::workspace_root;

#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub name: String,
    pub tcp: String,
    pub unix: String,
    pub dir: PathBuf,
}

impl ClusterNode {
    /// The node as the orchestrator sees it, reached over TCP (or the unix socket).
    pub fn node(&self, over_unix: bool) -> Node {
        let address = if over_unix { &self.unix } else { &self.tcp };
        Node::online(NodeName::new(self.name.clone()).unwrap(), EngineAddress::parse(address).unwrap(), 100)
    }

    fn dockerd_pid(&self) -> String {
        std::fs::read_to_string(self.dir.join("docker.pid")).expect("dockerd pidfile").trim().to_string()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.dockerd_pid()).status().unwrap();
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    pub fn set_link(&self, up: bool) {
        let veth = format!("orch-v{}", self.name.trim_start_matches("node"));
        let state = if up { "up" } else { "down" };
        let status = Command::new("ip").args(["link", "set", &veth, state]).status().unwrap();
        assert!(status.success(), "ip link set {veth} {state}");
    }

    /// Starts the node's dockerd again after a SIGKILL (the script `cluster up` wrote).
    pub fn restart(&self) {
        let status = Command::new("sh").arg(self.dir.join("start.sh")).status().unwrap();
        assert!(status.success(), "restart {}", self.name);
    }
}

/// Where `cargo xtask cluster up` keeps its state (`ORCH_CLUSTER_DIR` overrides it).
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("ORCH_CLUSTER_DIR").map_or_else(|| workspace_root().join("target/cluster"), PathBuf::from)
}

/// The node list `cluster up` wrote into `dir` (`name tcp-address unix-address` a line), or
/// `None` when there is none.
pub fn listing(dir: &Path) -> Option<Vec<ClusterNode>> {
    let text = std::fs::read_to_string(dir.join("nodes")).ok()?;
    Some(
        text.lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let (name, tcp, unix) = (parts.next()?, parts.next()?, parts.next()?);
                Some(ClusterNode { name: name.into(), tcp: tcp.into(), unix: unix.into(), dir: dir.join(name) })
            })
            .collect(),
    )
}

fn read_nodes() -> Option<Vec<ClusterNode>> {
    listing(&cluster_dir()).filter(|nodes| nodes.len() >= 3)
}

fn start_cluster() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["xtask", "cluster", "up", "--nodes", "4", "--no-install"])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// The cluster's nodes, or `None` (after saying why) when the test should be skipped.
pub fn nodes() -> Option<Vec<ClusterNode>> {
    static NODES: OnceLock<Result<Vec<ClusterNode>, String>> = OnceLock::new();
    let found = NODES.get_or_init(|| {
        if let Some(nodes) = read_nodes() {
            return Ok(nodes);
        }
        start_cluster()?;
        read_nodes().ok_or_else(|| "cluster up wrote no node list".to_string())
    });
    match found {
        Ok(nodes) => Some(nodes.clone()),
        Err(why) if required() => panic!("real Docker engines are required here but unavailable: {why}"),
        Err(why) => {
            eprintln!("skipping: no local Docker cluster ({why}); run `cargo xtask cluster up`");
            None
        }
    }
}

/// A cluster id of its own per test run, so runs never see each other's containers.
pub fn unique_cluster_id(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t{tag}{}x{nanos:x}", std::process::id())
}

pub const TEST_IMAGE: &str = "local/busybox:1";
pub const SHORT: Duration = Duration::from_secs(1);
