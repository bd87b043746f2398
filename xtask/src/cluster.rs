//! `cargo xtask cluster`: several independent Docker Engines on one machine, the seed's
//! "several engines on one system acting as nodes".
//!
//! Each node gets its own network namespace (two dockerds in one fight over bridges and
//! iptables), joined to the host by a veth pair on the bridge `orchbr0` (10.123.0.0/24), and its
//! own mount and UTS namespaces. Its dockerd has its own data-root, exec-root, pidfile, unix
//! socket and TCP listener on the node's address. Everything lives under `target/cluster/`;
//! `nodes` there lists `name tcp-address unix-address` per line for tests and tools.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::packages::{self, Need};
use crate::{image, sh};

const BRIDGE: &str = "orchbr0";
const HOST_IP: &str = "10.123.0.1";
const PREFIX: &str = "10.123.0";
const MAX_NODES: usize = 200;
const ENGINE_PORT: u16 = 2375;
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Start N nodes (stopping any left from before) and load the test image into each.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Fail instead of installing missing system packages.
        #[arg(long)]
        no_install: bool,
    },
    /// Stop every node this tool started and remove their namespaces and state.
    Down,
    /// Show each node, its address and whether it answers.
    Status,
    /// SIGKILL a node's dockerd (a dead engine).
    Kill { node: String },
    /// SIGSTOP a node's dockerd (a hung engine).
    Pause { node: String },
    /// SIGCONT a paused node's dockerd.
    Resume { node: String },
    /// Cut a node off the network (its TCP address stops answering).
    Partition { node: String },
    /// Undo `partition`.
    Heal { node: String },
    /// Start a node's dockerd again after `kill`.
    Start { node: String },
}

pub fn run(command: ClusterCommand) -> Result<()> {
    let cluster = Cluster::new(state_dir());
    match command {
        ClusterCommand::Up { nodes, no_install } => cluster.up(nodes, no_install),
        ClusterCommand::Down => cluster.down(),
        ClusterCommand::Status => cluster.status(),
        ClusterCommand::Kill { node } => cluster.node(&node)?.signal("KILL"),
        ClusterCommand::Pause { node } => cluster.node(&node)?.signal("STOP"),
        ClusterCommand::Resume { node } => cluster.node(&node)?.signal("CONT"),
        ClusterCommand::Partition { node } => {
            sh::run(Command::new("ip").args(["link", "set", &cluster.node(&node)?.veth(), "down"]))
        }
        ClusterCommand::Heal { node } => {
            sh::run(Command::new("ip").args(["link", "set", &cluster.node(&node)?.veth(), "up"]))
        }
        ClusterCommand::Start { node } => {
            let node = cluster.node(&node)?;
            node.start()?;
            node.wait_ready()
        }
    }
}

pub fn state_dir() -> PathBuf {
    std::env::var_os("ORCH_CLUSTER_DIR").map_or_else(|| sh::workspace_root().join("target/cluster"), PathBuf::from)
}

pub struct Cluster {
    dir: PathBuf,
}

pub struct Node {
    index: usize,
    dir: PathBuf,
}

impl Cluster {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn nodes_file(&self) -> PathBuf {
        self.dir.join("nodes")
    }

    /// The node list `up` wrote (empty when the cluster is down), as every test reads it.
    pub fn listed_nodes(&self) -> Vec<test_support::local_cluster::ClusterNode> {
        test_support::local_cluster::listing(&self.dir).unwrap_or_default()
    }

    fn node_at(&self, index: usize) -> Node {
        Node { index, dir: self.dir.join(format!("node{index}")) }
    }

    pub(crate) fn node(&self, name: &str) -> Result<Node> {
        let index: usize = name
            .strip_prefix("node")
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=MAX_NODES).contains(i))
            .with_context(|| format!("no such node {name:?} (nodes are node1, node2, ...)"))?;
        let node = self.node_at(index);
        if !node.dir.exists() {
            bail!("node {name} is not part of the cluster (run `cargo xtask cluster up`)");
        }
        Ok(node)
    }

    /// Indexes of the nodes that exist now, from the state dir and from leftover namespaces.
    fn existing(&self) -> Vec<usize> {
        let mut found: Vec<usize> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
            .collect();
        let netns = sh::output(Command::new("ip").args(["netns", "list"])).unwrap_or_default();
        found.extend(
            netns.lines().filter_map(|l| l.split_whitespace().next()?.strip_prefix("orch-node")?.parse::<usize>().ok()),
        );
        found.sort_unstable();
        found.dedup();
        found
    }

    pub fn up(&self, count: usize, no_install: bool) -> Result<()> {
        if !(1..=MAX_NODES).contains(&count) {
            bail!("--nodes must be 1..={MAX_NODES}");
        }
        packages::ensure(
            &[
                Need { program: "dockerd", package: "docker.io" },
                Need { program: "docker", package: "docker.io" },
                Need { program: "/bin/busybox", package: "busybox-static" },
                Need { program: "ip", package: "iproute2" },
                Need { program: "iptables", package: "iptables" },
                Need { program: "nsenter", package: "util-linux" },
            ],
            no_install,
        )?;
        let started = Instant::now();
        self.down()?;
        std::fs::create_dir_all(&self.dir)?;
        let tar = image::rootfs_tar(&self.dir)?;
        setup_bridge()?;
        let nodes: Vec<Node> = (1..=count).map(|i| self.node_at(i)).collect();
        for node in &nodes {
            node.create()?;
            node.start()?;
        }
        let mut listing = String::new();
        for node in &nodes {
            node.wait_ready()?;
            image::import(&node.socket(), &tar)
                .with_context(|| format!("load {} into {}", image::TEST_IMAGE, node.name()))?;
            listing.push_str(&format!("{} {} unix://{}\n", node.name(), node.tcp_address(), node.socket().display()));
        }
        std::fs::write(self.nodes_file(), &listing)?;
        println!("{count} nodes up in {:.1}s, image {} loaded:", started.elapsed().as_secs_f64(), image::TEST_IMAGE);
        print!("{listing}");
        Ok(())
    }

    pub fn down(&self) -> Result<()> {
        let existing = self.existing();
        let _ = std::fs::remove_file(self.nodes_file());
        for index in &existing {
            self.node_at(*index).destroy();
        }
        teardown_bridge();
        if !existing.is_empty() {
            println!("stopped {} node(s)", existing.len());
        }
        Ok(())
    }

    fn status(&self) -> Result<()> {
        let listed =
            test_support::local_cluster::listing(&self.dir).context("no cluster (run `cargo xtask cluster up`)")?;
        println!("{:<8} {:<26} {:<8} ANSWERS", "NODE", "ADDRESS", "PID");
        for listed in listed {
            let node = self.node(&listed.name)?;
            let pid = node.pid().map_or("-".to_string(), |p| p.to_string());
            let answers = if node.ping() { "yes" } else { "no" };
            println!("{:<8} {:<26} {:<8} {answers}", node.name(), node.tcp_address(), pid);
        }
        Ok(())
    }
}

fn setup_bridge() -> Result<()> {
    if !sh::quiet(Command::new("ip").args(["link", "show", BRIDGE])) {
        sh::output(Command::new("ip").args(["link", "add", BRIDGE, "type", "bridge"]))?;
        sh::output(Command::new("ip").args(["addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE]))?;
    }
    sh::output(Command::new("ip").args(["link", "set", BRIDGE, "up"]))?;
    // A leftover FORWARD DROP policy with br_netfilter would drop node-to-node traffic.
    if !sh::quiet(Command::new("iptables").args(["-C", "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"])) {
        sh::quiet(Command::new("iptables").args(["-I", "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]));
    }
    Ok(())
}

fn teardown_bridge() {
    while sh::quiet(Command::new("iptables").args(["-D", "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"])) {}
    sh::quiet(Command::new("ip").args(["link", "del", BRIDGE]));
}

/// Whether a process is alive: a zombie (state Z) is dead even though `kill -0` succeeds, and
/// PID 1 here reaps slowly.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
        .is_some_and(|dead| !dead)
}

impl Node {
    pub fn name(&self) -> String {
        format!("node{}", self.index)
    }

    fn netns(&self) -> String {
        format!("orch-node{}", self.index)
    }

    pub(crate) fn veth(&self) -> String {
        format!("orch-v{}", self.index)
    }

    fn ip(&self) -> String {
        format!("{PREFIX}.{}", 10 + self.index)
    }

    pub fn tcp_address(&self) -> String {
        format!("tcp://{}:{ENGINE_PORT}", self.ip())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.join("docker.pid")
    }

    fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pidfile()).ok()?.trim().parse().ok().filter(|p| alive(*p))
    }

    pub(crate) fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().with_context(|| format!("{}'s dockerd is not running", self.name()))?;
        sh::run(Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()))
    }

    /// Network namespace, veth pair with a fixed MAC (the host's ARP cache may remember an old
    /// one), addresses, and the per-node files.
    fn create(&self) -> Result<()> {
        let (ns, veth, peer) = (self.netns(), self.veth(), format!("orch-p{}", self.index));
        std::fs::create_dir_all(&self.dir)?;
        let socket_len = self.exec_root().join("containerd/containerd.sock.ttrpc").as_os_str().len();
        if socket_len > 100 {
            bail!(
                "state dir {} is too deep for unix sockets; set ORCH_CLUSTER_DIR to a shorter path",
                self.dir.display()
            );
        }
        sh::output(Command::new("ip").args(["netns", "add", &ns]))?;
        sh::output(Command::new("ip").args(["link", "add", &veth, "type", "veth", "peer", "name", &peer]))?;
        sh::output(Command::new("ip").args(["link", "set", &peer, "netns", &ns]))?;
        let in_ns = |args: &[&str]| sh::output(Command::new("ip").args(["-n", &ns]).args(args));
        in_ns(&["link", "set", &peer, "name", "eth0"])?;
        in_ns(&["link", "set", "eth0", "address", &format!("02:00:0a:7b:00:{:02x}", 10 + self.index)])?;
        in_ns(&["addr", "add", &format!("{}/24", self.ip()), "dev", "eth0"])?;
        in_ns(&["link", "set", "eth0", "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        in_ns(&["route", "add", "default", "via", HOST_IP])?;
        sh::output(Command::new("ip").args(["link", "set", &veth, "master", BRIDGE, "up"]))?;

        // Own engine key (else all nodes report one engine ID) and own container bridge subnet.
        let config = format!(
            r#"{{"deprecated-key-path": "{}", "bip": "172.31.{}.1/24"}}"#,
            self.dir.join("key.json").display(),
            self.index
        );
        std::fs::write(self.dir.join("daemon.json"), config)?;
        let script = format!(
            r#"#!/bin/sh
# Starts {name}'s dockerd in its own network, mount and UTS namespaces (written by cargo xtask cluster).
D={dir}
rm -f "$D/docker.pid"
# Swarm tasks (cargo xtask bench e2e) use the locally imported image instead of waiting for a
# registry that is not there.
export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1
# A containerd of a killed dockerd may linger as a zombie (PID 1 reaps slowly); its pidfile
# would make the new dockerd wait for it forever.
P="$D/exec/containerd/containerd.pid"
if [ -f "$P" ]; then
  S=$(awk '{{print $3}}' "/proc/$(cat "$P")/stat" 2>/dev/null)
  if [ -z "$S" ] || [ "$S" = Z ]; then rm -f "$P"; fi
fi
setsid nsenter --net=/run/netns/{ns} -- unshare --mount --uts --propagation slave -- sh -c '
  hostname {name}
  # A containerd shared by the host would be used instead of this node'"'"'s own: hide it.
  [ -d /run/containerd ] && mount -t tmpfs tmpfs /run/containerd
  exec dockerd --data-root "$0/data" --exec-root "$0/exec" --pidfile "$0/docker.pid" \
    --config-file "$0/daemon.json" -H "unix://$0/docker.sock" -H tcp://{ip}:{port} --tls=false
' "$D" >>"$D/dockerd.log" 2>&1 </dev/null &
"#,
            name = self.name(),
            dir = self.dir.display(),
            ns = ns,
            ip = self.ip(),
            port = ENGINE_PORT,
        );
        std::fs::write(self.dir.join("start.sh"), script)?;
        Ok(())
    }

    pub(crate) fn start(&self) -> Result<()> {
        if self.pid().is_some() {
            bail!("{} is already running", self.name());
        }
        sh::run(Command::new("sh").arg(self.dir.join("start.sh")))
    }

    /// Answers `GET /_ping` on its unix socket.
    fn ping(&self) -> bool {
        let Ok(mut stream) = UnixStream::connect(self.socket()) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }

    pub(crate) fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        bail!(
            "{} did not answer /_ping within {START_TIMEOUT:?}; last lines of its log:\n{}",
            self.name(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// Stops everything of this node, whatever state it is in, and removes its state.
    fn destroy(&self) {
        let pid = self.pid();
        if let Some(pid) = pid {
            sh::quiet(Command::new("kill").args(["-CONT", &pid.to_string()]));
        }
        // Containers live in namespaces of their own and outlive a killed dockerd: ask runc.
        // Doing it first also spares dockerd's shutdown the stop grace period of each one.
        let runc_root = self.exec_root().join("runtime-runc/moby");
        if runc_root.exists() {
            let ids =
                sh::output(Command::new("runc").arg("--root").arg(&runc_root).args(["list", "-q"])).unwrap_or_default();
            for id in ids.lines().filter(|l| !l.is_empty()) {
                sh::quiet(Command::new("runc").arg("--root").arg(&runc_root).args(["delete", "-f", id]));
            }
        }
        if let Some(pid) = pid {
            sh::quiet(Command::new("kill").args(["-TERM", &pid.to_string()]));
            let deadline = Instant::now() + Duration::from_secs(15);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let pids = sh::output(Command::new("ip").args(["netns", "pids", &self.netns()])).unwrap_or_default();
        for pid in pids.split_whitespace() {
            sh::quiet(Command::new("kill").args(["-9", pid]));
        }
        // `ip netns del` drops the veth asynchronously; delete it explicitly first.
        sh::quiet(Command::new("ip").args(["link", "del", &self.veth()]));
        sh::quiet(Command::new("ip").args(["netns", "del", &self.netns()]));
        remove_dir_retrying(&self.dir);
    }
}

/// Mounts of a dying mount namespace can hold files for a moment; retry briefly.
fn remove_dir_retrying(dir: &Path) {
    for _ in 0..20 {
        if !dir.exists() || std::fs::remove_dir_all(dir).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("warning: could not remove {}", dir.display());
}
