//! One bollard client per engine address, made on first use and kept (per runtime value).
//!
//! Over TCP one shared client keeps up to `IDLE_PER_ENGINE` connections per engine alive for
//! `IDLE_TIMEOUT`
//! (bollard's own client keeps none: a connection per call, which at thousands of starts a
//! second was most of the control plane's CPU and filled the port range with TIME_WAIT). A
//! pooled connection to an engine that restarted fails at its next use and hyper retries the
//! request on a new one when nothing was sent yet; a dead engine's idle connections are gone
//! after the timeout. Unix sockets keep bollard's client (a local connect is cheap).

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
    /// This runtime's one HTTP client for TCP engines. Not a process-wide one: a pooled
    /// connection is driven by a task on the tokio runtime it was opened from, and a second
    /// tokio runtime in the process (each `#[tokio::test]` has its own) reusing it after the
    /// first ended got `SendRequest` errors from a connection nobody drove any more.
    transport: std::sync::OnceLock<SharedTransport>,
}

impl Connections {
    /// The client for `node`, negotiating the API version on first contact (dockerd 20.10
    /// speaks 1.41, newer engines refuse versions that old): bounded by `timeout`.
    pub async fn client(&self, node: &Node, config: &DockerRuntimeConfig, timeout: Duration) -> Result<Docker> {
        if let Some(client) = self.lock().get(&node.address) {
            return Ok(client.clone());
        }
        let name = node.name.as_str();
        let transport = self.transport.get_or_init(shared_transport);
        let fresh = connect(name, &node.address, config, transport)?;
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

fn connect(
    node: &str,
    address: &EngineAddress,
    config: &DockerRuntimeConfig,
    transport: &SharedTransport,
) -> Result<Docker> {
    // Our own tokio timeouts bound every call more tightly; bollard's (whole seconds) is a backstop.
    let backstop = config.request_timeout.as_secs().max(1) + config.stop_grace.as_secs() + 1;
    let connected = match address.scheme() {
        Scheme::Unix => Docker::connect_with_unix(address.target(), backstop, API_DEFAULT_VERSION),
        Scheme::Tcp | Scheme::Http => pooled_http(std::sync::Arc::clone(transport), address.target(), backstop),
        Scheme::Https => return connect_tls(node, address, config, backstop),
    };
    connected.map_err(|e| engine_error(node, "connect", e))
}

/// Idle connections kept per engine: the heartbeat's, which every call may reuse; a busier
/// moment opens more and closes the extra ones after use (each kept one costs memory: with
/// 5,000 engines, two each held 10,000 sockets and their buffers).
const IDLE_PER_ENGINE: usize = 1;
/// Shorter than any engine's or proxy's idle timeout we know of (HAProxy's default 50 s), so
/// a connection is never reused just as the other end closes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Each kept connection's read buffer, fixed: hyper's adaptive buffer grew to the largest
/// answer seen (a container listing, ~100 KB on a busy engine) and kept it while idle, which
/// was half a gigabyte over 5,000 engines. Answers larger than this are read in pieces.
const READ_BUFFER: usize = 8 * 1024;

/// A request through the shared client (bollard's body type is private: the client's type is
/// only ever inferred, and the shared value is this function).
type SharedTransport = std::sync::Arc<
    dyn Fn(
            bollard::BollardRequest,
        ) -> futures::future::BoxFuture<
            'static,
            std::result::Result<hyper::Response<hyper::body::Incoming>, bollard::errors::Error>,
        > + Send
        + Sync,
>;

/// One HTTP client for every TCP engine: its pool keeps connections per engine address, and
/// 5,000 engines cost one client, not 5,000.
fn shared_transport() -> SharedTransport {
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::{TokioExecutor, TokioTimer};

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(IDLE_PER_ENGINE)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .http1_read_buf_exact_size(READ_BUFFER)
        .build(connector);
    std::sync::Arc::new(move |request: bollard::BollardRequest| {
        let response = client.request(request);
        Box::pin(async move { response.await.map_err(bollard::errors::Error::from) })
            as futures::future::BoxFuture<'static, _>
    })
}

fn pooled_http(
    transport: SharedTransport,
    target: &str,
    backstop: u64,
) -> std::result::Result<Docker, bollard::errors::Error> {
    Docker::connect_with_custom_transport(
        move |request: bollard::BollardRequest| transport(request),
        Some(format!("http://{target}")),
        backstop,
        API_DEFAULT_VERSION,
    )
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
