//! `serve`'s settings: flags, then `ORCH_*` environment variables (clap), then the TOML file
//! given by `--config`, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use orchestrator_core::{Limits, NewNode};
use scheduler::{ElectionConfig, SchedulerConfig, Strategy};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and ORCH_* variables win over it).
    #[arg(long, env = "ORCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the API listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "ORCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the SQLite file and the generated admin token [default: ./orchestrator-data].
    #[arg(long, env = "ORCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Store URL [default: sqlite://DATA_DIR/orchestrator.db].
    #[arg(long, env = "ORCH_STORE")]
    pub store: Option<String>,
    /// A node the cluster starts with, as NAME=ADDRESS (repeat, or comma-separate in ORCH_NODES).
    #[arg(long = "node", env = "ORCH_NODES", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// A label of a node of the static list, as NODE:KEY=VALUE (repeat, or comma-separate in
    /// ORCH_NODE_LABELS); set at every start, over what the node had under that key.
    #[arg(long = "node-label", env = "ORCH_NODE_LABELS", value_delimiter = ',', value_name = "NODE:KEY=VALUE")]
    pub node_labels: Vec<String>,
    /// Capacity of each node given with --node [default: 100].
    #[arg(long, env = "ORCH_NODE_CAPACITY")]
    pub node_capacity: Option<i64>,
    /// Time between heartbeats [default: 500ms].
    #[arg(long, env = "ORCH_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Missed heartbeats before a node is offline [default: 3].
    #[arg(long, env = "ORCH_HEARTBEAT_MISSES")]
    pub heartbeat_misses: Option<u32>,
    /// Bound on one heartbeat ping [default: 1s].
    #[arg(long, env = "ORCH_PING_TIMEOUT", value_parser = humantime::parse_duration)]
    pub ping_timeout: Option<Duration>,
    /// Bound on other engine calls [default: 30s].
    #[arg(long, env = "ORCH_ENGINE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub engine_timeout: Option<Duration>,
    /// Time a container gets to stop before it is killed [default: 2s].
    #[arg(long, env = "ORCH_STOP_GRACE", value_parser = humantime::parse_duration)]
    pub stop_grace: Option<Duration>,
    /// Time between reconcile passes [default: 2s].
    #[arg(long, env = "ORCH_RECONCILE_INTERVAL", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Option<Duration>,
    /// Leader lease: how long it lasts unrenewed [default: 5s]. Servers sharing a store elect
    /// one leader to run the loops.
    #[arg(long, env = "ORCH_LEASE_TTL", value_parser = humantime::parse_duration)]
    pub lease_ttl: Option<Duration>,
    /// Leader lease: time between renewals [default: 1s]; less than half the TTL.
    #[arg(long, env = "ORCH_LEASE_RENEW", value_parser = humantime::parse_duration)]
    pub lease_renew: Option<Duration>,
    /// This server's id in leader election [default: HOSTNAME-PID].
    #[arg(long, env = "ORCH_SERVER_ID")]
    pub server_id: Option<String>,
    /// Placement strategy: spread or binpack [default: spread].
    #[arg(long, env = "ORCH_STRATEGY")]
    pub strategy: Option<String>,
    /// Move replicas onto new or returning nodes to even out spread (one at a time, new copy
    /// first). Off by default, as in Swarm; `=false` turns off what the file turned on.
    #[arg(long, env = "ORCH_REBALANCE_ON_JOIN", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub rebalance_on_join: Option<bool>,
    /// Most replicas one deployment may ask for [default: 10000].
    #[arg(long, env = "ORCH_MAX_REPLICAS")]
    pub max_replicas: Option<u32>,
    /// Revisions kept per deployment, the current one included [default: 10].
    #[arg(long, env = "ORCH_REVISIONS_KEPT")]
    pub revisions_kept: Option<usize>,
    /// Log format [default: text]; the filter is RUST_LOG.
    #[arg(long, env = "ORCH_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Admin token (else read from --admin-token-file, else generated once into the data dir).
    #[arg(long, env = "ORCH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, env = "ORCH_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The key sealing registry passwords in the store [default: DATA_DIR/registry.key, made
    /// once]; servers sharing a store need the same one.
    #[arg(long, env = "ORCH_REGISTRY_KEY_FILE")]
    pub registry_key_file: Option<PathBuf>,
    /// Serve /metrics without a token (for a Prometheus on a trusted network); `=false` turns
    /// off what the file turned on.
    #[arg(long, env = "ORCH_METRICS_PUBLIC", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub metrics_public: Option<bool>,
    /// A read-only token.
    #[arg(long, env = "ORCH_READER_TOKEN", hide_env_values = true)]
    pub reader_token: Option<String>,
    /// For `https://` engines: the CA that signed the engines' certificates...
    #[arg(long, env = "ORCH_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// ...and this server's client certificate and key (build with the `tls` feature). The
    /// three go together, from any layer (flags, variables, file).
    #[arg(long, env = "ORCH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "ORCH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    nodes: Option<Vec<FileNode>>,
    node_capacity: Option<i64>,
    heartbeat_interval: Option<String>,
    heartbeat_misses: Option<u32>,
    ping_timeout: Option<String>,
    engine_timeout: Option<String>,
    stop_grace: Option<String>,
    reconcile_interval: Option<String>,
    lease_ttl: Option<String>,
    lease_renew: Option<String>,
    server_id: Option<String>,
    strategy: Option<String>,
    max_replicas: Option<u32>,
    revisions_kept: Option<usize>,
    rebalance_on_join: Option<bool>,
    metrics_public: Option<bool>,
    log_format: Option<LogFormat>,
    admin_token_file: Option<PathBuf>,
    registry_key_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    name: String,
    address: String,
    capacity: Option<i64>,
}

/// Everything `serve` needs, resolved.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store_url: String,
    pub nodes: Vec<NewNode>,
    pub scheduler: SchedulerConfig,
    pub ping_timeout: Duration,
    pub engine_timeout: Duration,
    pub stop_grace: Duration,
    pub limits: Limits,
    pub revisions_kept: usize,
    pub log_format: LogFormat,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub registry_key_file: Option<PathBuf>,
    pub reader_token: Option<String>,
    pub metrics_public: bool,
    pub election: ElectionConfig,
    pub server_id: String,
    pub tls: Option<runtime_docker::TlsFiles>,
}

/// `HOSTNAME-PID`: unique among the servers of one store, and says where to look.
fn default_server_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}-{}", if host.is_empty() { "orchestrator" } else { host }, std::process::id())
}

fn duration(field: &str, flag: Option<Duration>, file: Option<&String>, default: Duration) -> Result<Duration> {
    match (flag, file) {
        (Some(d), _) => Ok(d),
        (None, Some(text)) => humantime::parse_duration(text).with_context(|| format!("config {field}: {text:?}")),
        (None, None) => Ok(default),
    }
}

impl ServeArgs {
    pub fn resolve(self) -> Result<Settings> {
        let file: FileConfig = match &self.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let data_dir = self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("orchestrator-data"));
        let store_url = self
            .store
            .or(file.store)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("orchestrator.db").display()));
        let capacity = self.node_capacity.or(file.node_capacity).unwrap_or(100);
        let mut nodes = Vec::new();
        for spec in &self.nodes {
            let (name, address) =
                spec.split_once('=').with_context(|| format!("--node {spec:?}: expected NAME=ADDRESS"))?;
            nodes.push(NewNode::new(name, address, capacity).with_context(|| format!("--node {spec:?}"))?);
        }
        if self.nodes.is_empty() {
            for n in file.nodes.unwrap_or_default() {
                let node = NewNode::new(&n.name, &n.address, n.capacity.unwrap_or(capacity))
                    .with_context(|| format!("config node {:?}", n.name))?;
                nodes.push(node);
            }
        }
        for spec in &self.node_labels {
            let parsed = spec.split_once(':').and_then(|(node, pair)| Some((node, pair.split_once('=')?)));
            let Some((node, (key, value))) = parsed else {
                anyhow::bail!("--node-label {spec:?}: expected NODE:KEY=VALUE");
            };
            let Some(target) = nodes.iter_mut().find(|n| n.name.as_str() == node) else {
                anyhow::bail!("--node-label {spec:?}: {node:?} is not a node of the static list (--node)");
            };
            let mut labels = target.labels.clone();
            labels.insert(key.to_string(), value.to_string());
            *target = target.clone().with_labels(labels).with_context(|| format!("--node-label {spec:?}"))?;
        }
        let defaults = SchedulerConfig::default();
        let strategy = match self.strategy.or(file.strategy) {
            Some(s) => s.parse::<Strategy>().map_err(anyhow::Error::msg)?,
            None => defaults.strategy,
        };
        let misses = self.heartbeat_misses.or(file.heartbeat_misses).unwrap_or(defaults.misses_to_offline);
        if misses == 0 {
            bail!("heartbeat misses must be at least 1");
        }
        let scheduler = SchedulerConfig {
            strategy,
            heartbeat_interval: duration(
                "heartbeat_interval",
                self.heartbeat_interval,
                file.heartbeat_interval.as_ref(),
                defaults.heartbeat_interval,
            )?,
            misses_to_offline: misses,
            rebalance_on_join: self.rebalance_on_join.or(file.rebalance_on_join).unwrap_or(false),
            reconcile_interval: duration(
                "reconcile_interval",
                self.reconcile_interval,
                file.reconcile_interval.as_ref(),
                defaults.reconcile_interval,
            )?,
            ..defaults
        };
        let election = ElectionConfig {
            ttl: duration("lease_ttl", self.lease_ttl, file.lease_ttl.as_ref(), ElectionConfig::default().ttl)?,
            renew_every: duration(
                "lease_renew",
                self.lease_renew,
                file.lease_renew.as_ref(),
                ElectionConfig::default().renew_every,
            )?,
        };
        if election.renew_every.is_zero() || election.renew_every * 2 > election.ttl {
            bail!("lease renew interval must be more than 0 and at most half the lease TTL");
        }
        let limits = Limits {
            max_replicas: self.max_replicas.or(file.max_replicas).unwrap_or(Limits::default().max_replicas),
            ..Limits::default()
        };
        let revisions_kept = self.revisions_kept.or(file.revisions_kept).unwrap_or(orchestrator_core::REVISIONS_KEPT);
        if revisions_kept == 0 {
            bail!("revisions kept must be at least 1 (the current one)");
        }
        Ok(Settings {
            revisions_kept,
            listen: self.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid default")),
            data_dir,
            store_url,
            nodes,
            scheduler,
            ping_timeout: duration(
                "ping_timeout",
                self.ping_timeout,
                file.ping_timeout.as_ref(),
                Duration::from_secs(1),
            )?,
            engine_timeout: duration(
                "engine_timeout",
                self.engine_timeout,
                file.engine_timeout.as_ref(),
                Duration::from_secs(30),
            )?,
            stop_grace: duration("stop_grace", self.stop_grace, file.stop_grace.as_ref(), Duration::from_secs(2))?,
            limits,
            log_format: self.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
            admin_token: self.admin_token,
            admin_token_file: self.admin_token_file.or(file.admin_token_file),
            registry_key_file: self.registry_key_file.or(file.registry_key_file),
            reader_token: self.reader_token,
            metrics_public: self.metrics_public.or(file.metrics_public).unwrap_or(false),
            election,
            server_id: self.server_id.or(file.server_id).unwrap_or_else(default_server_id),
            tls: match (self.tls_ca.or(file.tls_ca), self.tls_cert.or(file.tls_cert), self.tls_key.or(file.tls_key)) {
                (Some(ca), Some(cert), Some(key)) => {
                    for (setting, path) in [("tls_ca", &ca), ("tls_cert", &cert), ("tls_key", &key)] {
                        anyhow::ensure!(path.is_file(), "{setting} {}: no such file", path.display());
                    }
                    Some(runtime_docker::TlsFiles { cert, key, ca })
                }
                (None, None, None) => None,
                _ => bail!("tls_ca, tls_cert and tls_key go together: give all three (flags, ORCH_TLS_*, or the file)"),
            },
        })
    }
}

fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.toml");
        std::fs::write(
            &path,
            "heartbeat_interval = \"250ms\"\nheartbeat_misses = 5\nstrategy = \"binpack\"\n\
             revisions_kept = 4\n[[nodes]]\nname = \"n1\"\naddress = \"tcp://127.0.0.1:2375\"\ncapacity = 7\n",
        )
        .unwrap();
        let args = ServeArgs { config: Some(path), heartbeat_misses: Some(2), ..ServeArgs::default() };
        let s = args.resolve().unwrap();
        assert_eq!(s.scheduler.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(s.scheduler.misses_to_offline, 2);
        assert_eq!(s.scheduler.strategy, Strategy::Binpack);
        assert_eq!((s.nodes.len(), s.nodes[0].capacity), (1, 7));
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(s.store_url.starts_with("sqlite://"));
        assert_eq!(s.revisions_kept, 4);
        assert_eq!(ServeArgs::default().resolve().unwrap().revisions_kept, orchestrator_core::REVISIONS_KEPT);
    }

    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parsed(flags: &[&str]) -> ServeArgs {
        use clap::Parser;
        Serve::try_parse_from(std::iter::once("serve").chain(flags.iter().copied())).unwrap().args
    }

    #[test]
    fn a_switch_the_file_turns_on_a_flag_turns_off_and_tls_comes_from_any_layer() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
        for f in [&ca, &cert, &key] {
            std::fs::write(f, "pem").unwrap();
        }
        let path = dir.path().join("orchestrator.toml");
        let toml = format!(
            "rebalance_on_join = true\nmetrics_public = true\ntls_ca = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n",
            ca, cert, key
        );
        std::fs::write(&path, toml).unwrap();
        let config = path.to_str().unwrap();
        let file_only = parsed(&["--config", config]).resolve().unwrap();
        assert!(file_only.scheduler.rebalance_on_join && file_only.metrics_public);
        assert_eq!(file_only.tls.map(|t| t.key), Some(key.clone()), "TLS from the file");
        let off =
            parsed(&["--config", config, "--rebalance-on-join=false", "--metrics-public", "false"]).resolve().unwrap();
        assert!(!off.scheduler.rebalance_on_join && !off.metrics_public, "the flags turn off what the file turned on");
        let on = parsed(&["--rebalance-on-join", "--metrics-public"]).resolve().unwrap();
        assert!(on.scheduler.rebalance_on_join && on.metrics_public, "a bare switch is on");
        let defaults = parsed(&[]).resolve().unwrap();
        assert!(!defaults.scheduler.rebalance_on_join && !defaults.metrics_public && defaults.tls.is_none());
        let other_key = dir.path().join("other.pem");
        std::fs::write(&other_key, "pem").unwrap();
        let flag_key = parsed(&["--config", config, "--tls-key", other_key.to_str().unwrap()]).resolve().unwrap();
        assert_eq!(flag_key.tls.map(|t| t.key), Some(other_key), "a flag over the file's setting");
        let half = parsed(&["--tls-ca", ca.to_str().unwrap()]).resolve().unwrap_err();
        assert!(half.to_string().contains("go together"), "{half}");
    }

    #[test]
    fn bad_settings_are_one_clear_error() {
        let labelled = ServeArgs {
            nodes: vec!["n1=tcp://127.0.0.1:2375".into()],
            node_labels: vec!["n1:zone=a".into(), "n1:disk=ssd".into()],
            ..ServeArgs::default()
        };
        let s = labelled.resolve().unwrap();
        assert_eq!(s.nodes[0].labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(s.nodes[0].labels.len(), 2);
        for bad in ["n2:zone=a", "n1:zone", "zone=a", "n1:bad key=a"] {
            let args = ServeArgs {
                nodes: vec!["n1=tcp://127.0.0.1:2375".into()],
                node_labels: vec![bad.into()],
                ..ServeArgs::default()
            };
            assert!(args.resolve().unwrap_err().to_string().contains("--node-label"), "{bad}");
        }
        let bad_node = ServeArgs { nodes: vec!["n1".into()], ..ServeArgs::default() };
        assert!(bad_node.resolve().unwrap_err().to_string().contains("NAME=ADDRESS"));
        let bad_address = ServeArgs { nodes: vec!["n1=ftp://x:1".into()], ..ServeArgs::default() };
        assert!(format!("{:#}", bad_address.resolve().unwrap_err()).contains("address"));
        let bad_strategy = ServeArgs { strategy: Some("random".into()), ..ServeArgs::default() };
        assert!(bad_strategy.resolve().unwrap_err().to_string().contains("spread or binpack"));
        let no_revisions = ServeArgs { revisions_kept: Some(0), ..ServeArgs::default() };
        assert!(no_revisions.resolve().unwrap_err().to_string().contains("revisions kept"));
    }
}
