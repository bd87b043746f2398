//! Settings of the Docker runtime.

use std::path::PathBuf;
use std::time::Duration;

/// Client certificate, key and CA for `https://` engines (feature `tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRuntimeConfig {
    /// This orchestrator's cluster id: stamped on every container, and the only containers
    /// listed or removed are those carrying it.
    pub cluster_id: String,
    /// Bound on a ping: short, since the heartbeat counts a slow answer as a miss.
    pub ping_timeout: Duration,
    /// Bound on every other call (create, start, list, inspect, info).
    pub request_timeout: Duration,
    /// Time a container gets to stop after SIGTERM before it is killed, unless its template
    /// says otherwise (`stop_grace_period`).
    pub stop_grace: Duration,
    /// Pull an image the engine lacks before giving up. Off by default: nodes here reach no
    /// registry, and a pull attempt would only turn a clear error into a slow one.
    pub pull_missing_images: bool,
    pub tls: Option<TlsFiles>,
}

impl DockerRuntimeConfig {
    pub fn new(cluster_id: impl Into<String>) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            ping_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(2),
            pull_missing_images: false,
            tls: None,
        }
    }
}
