//! One bollard client per engine address, made on first use and kept.
//!
//! bollard keeps no idle connections (`pool_max_idle_per_host(0)`), so a cached client holds no
//! socket: it stays valid across engine restarts, and a dead engine costs nothing but its entry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};
use orchestrator_core::{EngineAddress, Error, Node, Result, Scheme};

use crate::classify::engine_error;
use crate::config::DockerRuntimeConfig;

#[derive(Default)]
pub struct Connections {
    clients: Mutex<HashMap<EngineAddress, Docker>>,
}

impl Connections {
    /// The client for `node`, negotiating the API version on first contact (dockerd 20.10
    /// speaks 1.41, newer engines refuse versions that old): bounded by `timeout`.
    pub async fn client(&self, node: &Node, config: &DockerRuntimeConfig, timeout: Duration) -> Result<Docker> {
        if let Some(client) = self.lock().get(&node.address) {
            return Ok(client.clone());
        }
        let name = node.name.as_str();
        let fresh = connect(name, &node.address, config)?;
        let negotiated = match tokio::time::timeout(timeout, fresh.negotiate_version()).await {
            Err(_) => return Err(Error::Timeout { node: name.to_string(), operation: "version", after: timeout }),
            Ok(Err(e)) => return Err(engine_error(name, "version", e)),
            Ok(Ok(client)) => client,
        };
        self.lock().insert(node.address.clone(), negotiated.clone());
        Ok(negotiated)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EngineAddress, Docker>> {
        self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn connect(node: &str, address: &EngineAddress, config: &DockerRuntimeConfig) -> Result<Docker> {
    // Our own tokio timeouts bound every call more tightly; bollard's (whole seconds) is a backstop.
    let backstop = config.request_timeout.as_secs().max(1) + config.stop_grace.as_secs() + 1;
    let connected = match address.scheme() {
        Scheme::Unix => Docker::connect_with_unix(address.target(), backstop, API_DEFAULT_VERSION),
        Scheme::Tcp | Scheme::Http => {
            Docker::connect_with_http(&format!("http://{}", address.target()), backstop, API_DEFAULT_VERSION)
        }
        Scheme::Https => return connect_tls(node, address, config, backstop),
    };
    connected.map_err(|e| engine_error(node, "connect", e))
}

#[cfg(feature = "tls")]
fn connect_tls(node: &str, address: &EngineAddress, config: &DockerRuntimeConfig, backstop: u64) -> Result<Docker> {
    let tls = config.tls.as_ref().ok_or_else(|| {
        Error::invalid("address", format!("{address}: https needs client certificates (tls cert, key and ca)"))
    })?;
    Docker::connect_with_ssl(
        &format!("https://{}", address.target()),
        &tls.key,
        &tls.cert,
        &tls.ca,
        backstop,
        API_DEFAULT_VERSION,
    )
    .map_err(|e| engine_error(node, "connect", e))
}

#[cfg(not(feature = "tls"))]
fn connect_tls(_node: &str, address: &EngineAddress, _config: &DockerRuntimeConfig, _backstop: u64) -> Result<Docker> {
    Err(Error::invalid(
        "address",
        format!("{address}: this build has no TLS support (feature `tls` of runtime-docker)"),
    ))
}
