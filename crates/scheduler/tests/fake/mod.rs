//! Fake engines for the scheduler's tests: test-support's engines in memory, whose state the
//! test can break (down, exited containers), and the in-memory store of orchestrator-core.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::memory::MemoryStore;
use orchestrator_core::{
    Change, ContainerRuntime, ContainerSummary, DeploymentName, DeploymentSpec, EngineInfo, Error, NewNode, Node,
    NodeName, NodeStatus, NodeStore, ReplicaContainer, ReplicaId, Result,
};
use scheduler::{Scheduler, SchedulerConfig};

pub use test_support::fake_engines::Engines;

/// A runtime that takes `delay` per start, to make concurrency observable, and records every
/// start as `(deployment, begin, end)` in virtual time.
pub struct Slow {
    pub inner: Engines,
    pub delay: Duration,
    /// How long a ping takes (a hung engine answers never, or late).
    pub ping_delay: Duration,
    pub starts: Arc<Mutex<Vec<(String, tokio::time::Instant, tokio::time::Instant)>>>,
    /// Set: the runtime of a leader whose tenure ended; starts begun before still finish, but
    /// it refuses new container changes as `TenureRuntime` does.
    pub deposed: Arc<std::sync::atomic::AtomicBool>,
    /// Set: each engine runs this many starts at once at `delay` each, and a start made with
    /// more in flight on its engine takes proportionally longer (an engine that queues).
    pub runs_at_once: Option<usize>,
    pub in_flight: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

impl Slow {
    /// Starts that take `delay` on `engines`; pings answer at once.
    pub fn starting_in(engines: &Engines, delay: Duration) -> Self {
        Self {
            inner: engines.clone(),
            delay,
            ping_delay: Duration::ZERO,
            starts: Arc::default(),
            deposed: Arc::default(),
            runs_at_once: None,
            in_flight: Arc::default(),
        }
    }

    /// The most starts that were in flight at once, from the recorded starts.
    pub fn most_in_flight(&self) -> usize {
        let starts = self.starts.lock().unwrap();
        let mut edges: Vec<(tokio::time::Instant, i32)> =
            starts.iter().flat_map(|(_, begin, end)| [(*begin, 1), (*end, -1)]).collect();
        // An end and a begin at the same instant: the end first.
        edges.sort();
        edges
            .iter()
            .scan(0, |now, (_, d)| {
                *now += d;
                Some(*now)
            })
            .max()
            .unwrap_or(0) as usize
    }

    fn check(&self) -> Result<()> {
        if self.deposed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::NotLeader { leader: None });
        }
        Ok(())
    }
}

#[async_trait]
impl ContainerRuntime for Slow {
    async fn ping(&self, node: &Node) -> Result<()> {
        tokio::time::sleep(self.ping_delay).await;
        self.inner.ping(node).await
    }
    async fn watch(&self, node: &Node) -> Result<()> {
        self.inner.watch(node).await
    }
    async fn engine_info(&self, node: &Node) -> Result<EngineInfo> {
        self.inner.engine_info(node).await
    }
    async fn start_replica(&self, node: &Node, c: &ReplicaContainer) -> Result<String> {
        self.check()?;
        let begin = tokio::time::Instant::now();
        let now_in_flight = {
            let mut in_flight = self.in_flight.lock().unwrap();
            let n = in_flight.entry(node.name.to_string()).or_default();
            *n += 1;
            *n
        };
        let delay = match self.runs_at_once {
            Some(at_once) => self.delay.mul_f64((now_in_flight as f64 / at_once as f64).max(1.0)),
            None => self.delay,
        };
        tokio::time::sleep(delay).await;
        *self.in_flight.lock().unwrap().get_mut(node.name.as_str()).unwrap() -= 1;
        let id = self.inner.start_replica(node, c).await;
        self.starts.lock().unwrap().push((c.deployment.to_string(), begin, tokio::time::Instant::now()));
        id
    }
    async fn resolve_image(&self, node: &Node, t: &orchestrator_core::ContainerTemplate) -> Result<Option<String>> {
        self.inner.resolve_image(node, t).await
    }
    async fn prepare_image(
        &self,
        node: &Node,
        t: &orchestrator_core::ContainerTemplate,
        digest: Option<String>,
    ) -> Result<orchestrator_core::runtime::ImageReady> {
        self.check()?;
        self.inner.prepare_image(node, t, digest).await
    }
    async fn remove_replica(&self, node: &Node, d: &DeploymentName, r: ReplicaId) -> Result<()> {
        self.check()?;
        self.inner.remove_replica(node, d, r).await
    }
    async fn list_replicas(&self, node: &Node) -> Result<Vec<ContainerSummary>> {
        self.inner.list_replicas(node).await
    }
    async fn inspect_replica(&self, node: &Node, d: &DeploymentName, r: ReplicaId) -> Result<ContainerSummary> {
        self.inner.inspect_replica(node, d, r).await
    }
    async fn replica_end(
        &self,
        node: &Node,
        d: &DeploymentName,
        r: ReplicaId,
    ) -> Result<orchestrator_core::ContainerEnd> {
        self.inner.replica_end(node, d, r).await
    }
    async fn replica_logs(
        &self,
        node: &Node,
        d: &DeploymentName,
        r: ReplicaId,
        request: &orchestrator_core::LogRequest,
    ) -> Result<orchestrator_core::LogLines> {
        self.inner.replica_logs(node, d, r, request).await
    }
}

pub struct Harness {
    pub store: Arc<MemoryStore>,
    pub engines: Engines,
    pub scheduler: Arc<Scheduler>,
}

impl Harness {
    pub fn new(config: SchedulerConfig) -> Self {
        let engines = Engines::default();
        let runtime = Arc::new(engines.clone());
        Self::with_runtime(config, engines, runtime)
    }

    pub fn with_runtime(config: SchedulerConfig, engines: Engines, runtime: Arc<dyn ContainerRuntime>) -> Self {
        let store = Arc::new(MemoryStore::new());
        let scheduler = Arc::new(Scheduler::new(store.clone(), runtime, config));
        Self { store, engines, scheduler }
    }

    pub async fn online_nodes(&self, count: usize, capacity: i64) {
        for i in 1..=count {
            let name = format!("node{i}");
            self.store
                .add_node(NewNode::new(&name, &format!("tcp://10.0.0.{i}:2375"), capacity).unwrap())
                .await
                .unwrap();
            self.store.set_node_status(&NodeName::new(name).unwrap(), NodeStatus::Online, None).await.unwrap();
        }
    }

    pub async fn deploy(&self, name: &str, image: &str, replicas: u32) -> DeploymentName {
        let spec = DeploymentSpec::of(image, replicas).unwrap();
        let name = DeploymentName::new(name).unwrap();
        let d = self.scheduler.create_deployment(&name, spec, Change::default()).await.unwrap();
        self.scheduler.converge(&d.name).await.unwrap();
        d.name
    }

    pub async fn node(&self, name: &str) -> Node {
        self.store.get_node(&NodeName::new(name).unwrap()).await.unwrap()
    }
}
