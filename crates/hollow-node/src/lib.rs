//! Hollow nodes: test tooling that serves many simulated Docker Engines from one process, one
//! loopback port each, speaking the subset of the Engine API the orchestrator uses (`/_ping`,
//! `/version`, `/info`, containers create/start/stop/kill/delete/list with label filters/
//! inspect, and an `/events` stream that stays silent until the engine is killed) with dockerd's
//! status codes and JSON shapes, containers kept in memory. Nothing runs: a started container
//! is a record. What Kubernetes' kubemark does for kubelets, for measuring the control plane
//! at a scale real engines on one machine cannot reach.
//!
//! Knobs per engine: added latency, a failure rate (500s), hang (accept, never answer), kill
//! (close the listener and every connection) and revive (listen on the same port again).

#![forbid(unsafe_code)]

mod engine;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::task::{JoinHandle, JoinSet};

pub use engine::{API_VERSION, Engine};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("no hollow engine {0}")]
    NoSuchEngine(usize),
}

#[derive(Debug, Clone, Copy, Default)]
struct Knobs {
    latency: Duration,
    /// Share of requests answered 500, 0.0..=1.0.
    failure_rate: f64,
    hung: bool,
}

struct Node {
    engine: Mutex<Engine>,
    knobs: Mutex<Knobs>,
    addr: SocketAddr,
    serving: Mutex<Option<JoinHandle<()>>>,
    /// The listening socket of the current life, shut down by a kill at once: the aborted
    /// serving task drops it only when next polled, and a revive right after must find the
    /// port no longer listened on (or its bind fails: address in use).
    listening: Mutex<Option<Arc<tokio::net::TcpListener>>>,
    /// Bumped by each kill. Aborting the serving task only asks for its end, which comes a
    /// little later on another worker thread; until then a kept-alive connection would still be
    /// answered, as a SIGKILLed dockerd never does. Connections of an older life answer nothing.
    life: std::sync::atomic::AtomicU64,
}

/// What a connection of a killed engine's earlier life gets: closed without an answer.
#[derive(Debug, thiserror::Error)]
#[error("this engine was killed")]
struct Killed;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Many hollow engines, served until dropped.
pub struct HollowCluster {
    nodes: Vec<Arc<Node>>,
}

/// A deterministic draw in 0..1 for failure injection (no RNG dependency, repeatable runs).
fn draw() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1_u64 << 53) as f64
}

fn listener(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let listen = || {
        let socket = TcpSocket::new_v4()?;
        // `revive` listens on the port it had: connections of the killed listener may linger.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    listen().map_err(|source| Error::Listen { addr, source })
}

impl HollowCluster {
    /// Starts `count` engines on free loopback ports.
    pub async fn start(count: usize) -> Result<Self, Error> {
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let listener = listener(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let addr = listener
                .local_addr()
                .map_err(|source| Error::Listen { addr: SocketAddr::from(([127, 0, 0, 1], 0)), source })?;
            let node = Arc::new(Node {
                engine: Mutex::new(Engine::new(format!("hollow{}", i + 1))),
                knobs: Mutex::new(Knobs::default()),
                addr,
                serving: Mutex::new(None),
                listening: Mutex::new(None),
                life: std::sync::atomic::AtomicU64::new(0),
            });
            let listener = Arc::new(listener);
            *lock(&node.listening) = Some(Arc::clone(&listener));
            *lock(&node.serving) = Some(tokio::spawn(serve(Arc::clone(&node), listener, 0)));
            nodes.push(node);
        }
        Ok(Self { nodes })
    }

    fn node(&self, i: usize) -> Result<&Arc<Node>, Error> {
        self.nodes.get(i).ok_or(Error::NoSuchEngine(i))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `tcp://127.0.0.1:PORT` of engine `i`.
    pub fn address(&self, i: usize) -> Result<String, Error> {
        Ok(format!("tcp://{}", self.node(i)?.addr))
    }

    pub fn set_latency(&self, i: usize, latency: Duration) -> Result<(), Error> {
        lock(&self.node(i)?.knobs).latency = latency;
        Ok(())
    }

    pub fn set_failure_rate(&self, i: usize, rate: f64) -> Result<(), Error> {
        lock(&self.node(i)?.knobs).failure_rate = rate.clamp(0.0, 1.0);
        Ok(())
    }

    /// Stop answering (connections are accepted, requests never answered), or answer again.
    pub fn set_hung(&self, i: usize, hung: bool) -> Result<(), Error> {
        lock(&self.node(i)?.knobs).hung = hung;
        Ok(())
    }

    /// Close the listener and every open connection: a dead engine (connection refused).
    pub fn kill(&self, i: usize) -> Result<(), Error> {
        let node = self.node(i)?;
        node.life.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(listener) = lock(&node.listening).take() {
            // Out of the listening state now: new connections are refused, as by a dead
            // dockerd, and the port may be bound again.
            let _ = socket2::SockRef::from(&*listener).shutdown(std::net::Shutdown::Both);
        }
        if let Some(task) = lock(&node.serving).take() {
            task.abort();
        }
        Ok(())
    }

    /// Listen again on the same port, with the containers it had (dockerd restarting).
    pub fn revive(&self, i: usize) -> Result<(), Error> {
        let node = self.node(i)?;
        let mut serving = lock(&node.serving);
        if serving.is_none() {
            let life = node.life.load(std::sync::atomic::Ordering::SeqCst);
            let listener = Arc::new(listener(node.addr)?);
            *lock(&node.listening) = Some(Arc::clone(&listener));
            *serving = Some(tokio::spawn(serve(Arc::clone(node), listener, life)));
        }
        Ok(())
    }

    /// Runs `f` on engine `i`'s state (to look, or to make a container exit).
    pub fn with_engine<T>(&self, i: usize, f: impl FnOnce(&mut Engine) -> T) -> Result<T, Error> {
        Ok(f(&mut lock(&self.node(i)?.engine)))
    }
}

impl Drop for HollowCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(task) = lock(&node.serving).take() {
                task.abort();
            }
        }
    }
}

/// Accepts connections until aborted; aborting drops the listener and, with the `JoinSet`,
/// every connection.
/// Answers engine `node` in its `life`-th life (see `Node::life`).
async fn serve(node: Arc<Node>, listener: Arc<tokio::net::TcpListener>, life: u64) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // A killed life's socket, shut down: this life is over.
                    if node.life.load(std::sync::atomic::Ordering::SeqCst) != life {
                        return;
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let node = Arc::clone(&node);
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let node = Arc::clone(&node);
                        async move {
                            if node.life.load(std::sync::atomic::Ordering::SeqCst) != life {
                                return Err(Killed);
                            }
                            answer(node, req).await.map_err(|never| match never {})
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// `%XX` and `+` decoding of a query component.
fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `/v1.49/containers/json` -> `/containers/json`.
fn without_version(path: &str) -> &str {
    let rest = path.strip_prefix("/v").unwrap_or("");
    match rest.find('/') {
        Some(i) if !rest[..i].is_empty() && rest[..i].bytes().all(|b| b.is_ascii_digit() || b == b'.') => &rest[i..],
        _ => path,
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// A body that never sends anything and never ends (its connection's end ends it).
struct Silence;

impl hyper::body::Body for Silence {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Pending
    }
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

async fn answer(node: Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let knobs = *lock(&node.knobs);
    if knobs.hung {
        std::future::pending::<()>().await;
    }
    if !knobs.latency.is_zero() {
        tokio::time::sleep(knobs.latency).await;
    }
    let method = req.method().as_str().to_string();
    let path = without_version(req.uri().path()).to_string();
    if (method.as_str(), path.as_str()) == ("GET", "/events") {
        // Nothing ever happens on a hollow engine: the stream stays open and silent until the
        // engine is killed, which drops the connection, as dockerd's death does.
        let response = Response::builder()
            .header("Api-Version", API_VERSION)
            .header("Content-Type", "application/json")
            .body(Silence.boxed());
        return Ok(response.unwrap_or_else(|_| Response::new(full(Bytes::new()))));
    }
    let query = query(req.uri().query());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let (status, json) = if knobs.failure_rate > 0.0 && draw() < knobs.failure_rate {
        (500, Some(serde_json::json!({ "message": "hollow node: injected failure" })))
    } else {
        lock(&node.engine).answer(&method, &path, &query, &body)
    };
    let mut response =
        Response::builder().status(status).header("Api-Version", API_VERSION).header("Server", "hollow-node");
    let bytes = match (path.as_str(), json) {
        ("/_ping", _) => {
            response = response.header("Content-Type", "text/plain; charset=utf-8");
            Bytes::from_static(b"OK")
        }
        (_, Some(v)) => {
            response = response.header("Content-Type", "application/json");
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
        (_, None) => Bytes::new(),
    };
    Ok(response.body(full(bytes)).unwrap_or_else(|_| Response::new(full(Bytes::new()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries_and_strips_versions() {
        let q = query(Some("all=true&filters=%7B%22label%22%3A%5B%22a%3D1%22%5D%7D&name=x+y"));
        assert_eq!(q["filters"], r#"{"label":["a=1"]}"#);
        assert_eq!(q["name"], "x y");
        assert_eq!(without_version("/v1.49/containers/json"), "/containers/json");
        assert_eq!(without_version("/_ping"), "/_ping");
        assert_eq!(without_version("/version"), "/version");
    }
}
