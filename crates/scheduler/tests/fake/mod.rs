//! Fake engines for the scheduler's tests: a `MockContainerRuntime` (mockall) whose answers
//! come from shared in-memory engine state the test can break (down, exited containers), and
//! the in-memory store of orchestrator-core.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::memory::MemoryStore;
use orchestrator_core::{
    Change, ContainerEnd, ContainerRuntime, ContainerState, ContainerSummary, DeploymentName, DeploymentSpec,
    EngineInfo, Error, LogLine, MockContainerRuntime, NewNode, Node, NodeName, NodeStatus, NodeStore, OutputStream,
    ReplicaContainer, ReplicaId, Result,
};
use scheduler::{Scheduler, SchedulerConfig};

#[derive(Default)]
pub struct Engine {
    /// Refuses connections (a killed engine).
    pub down: bool,
    /// Pings time out (a hung engine, as the runtime reports it after its own timeout).
    pub silent: bool,
    pub containers: BTreeMap<(String, u64), (String, ContainerState, String)>,
    /// What each container printed, by `(deployment, replica)`, as stdout lines.
    pub printed: BTreeMap<(String, u64), Vec<String>>,
    /// Containers the kernel killed for memory.
    pub oom_killed: std::collections::BTreeSet<(String, u64)>,
    /// Its pulls of images starting with this fail (the registry refuses it).
    pub pulls_refused: Option<String>,
    next_id: u64,
}

#[derive(Clone, Default)]
pub struct Engines {
    pub state: Arc<Mutex<BTreeMap<String, Engine>>>,
    /// The registry every engine pulls from: an image reference (with its tag) -> the digest
    /// the tag names now. Images not in it are not pulled from a registry.
    pub registry: Arc<Mutex<BTreeMap<String, String>>>,
    /// What the engines were asked to do, in order: `pull node1 IMAGE`, `start node1 d/3 IMAGE`,
    /// `remove node1 d/3`.
    pub calls: Arc<Mutex<Vec<String>>>,
}

fn refused_pull(node: &Node, image: &str) -> Error {
    Error::PullFailed {
        node: node.name.to_string(),
        image: image.to_string(),
        reason: "unauthorized (no or wrong registry credentials): denied".into(),
    }
}

fn unreachable(node: &Node) -> Error {
    Error::Unreachable { node: node.name.to_string(), message: "connection refused".into() }
}

impl Engines {
    pub fn with(&self, node: &str, f: impl FnOnce(&mut Engine)) {
        f(self.state.lock().unwrap().entry(node.to_string()).or_default());
    }

    pub fn set_down(&self, node: &str, down: bool) {
        self.with(node, |e| e.down = down);
    }

    pub fn set_silent(&self, node: &str, silent: bool) {
        self.with(node, |e| e.silent = silent);
    }

    /// Containers per node: `(node, deployment, replica)`.
    pub fn containers(&self) -> Vec<(String, String, u64)> {
        let state = self.state.lock().unwrap();
        state
            .iter()
            .flat_map(|(node, e)| e.containers.keys().map(move |(d, r)| (node.clone(), d.clone(), *r)))
            .collect()
    }

    pub fn count_on(&self, node: &str) -> usize {
        self.containers().iter().filter(|(n, _, _)| n == node).count()
    }

    pub fn mock(&self) -> MockContainerRuntime {
        let mut mock = MockContainerRuntime::new();
        let s = self.state.clone();
        mock.expect_ping().returning(move |node| {
            let state = s.lock().unwrap();
            match state.get(node.name.as_str()) {
                Some(e) if e.down => Err(unreachable(node)),
                Some(e) if e.silent => Err(Error::Timeout {
                    node: node.name.to_string(),
                    operation: "ping",
                    after: Duration::from_secs(1),
                }),
                _ => Ok(()),
            }
        });
        mock.expect_engine_info()
            .returning(|_| Ok(EngineInfo { id: "fake".into(), version: "0".into(), cpus: 2, memory_bytes: 1 << 30 }));
        let (s, registry) = (self.state.clone(), self.registry.clone());
        mock.expect_resolve_image().returning(move |node, t| {
            let state = s.lock().unwrap();
            let e = state.get(node.name.as_str());
            if e.is_some_and(|e| e.down) {
                return Err(unreachable(node));
            }
            if e.and_then(|e| e.pulls_refused.as_deref()).is_some_and(|prefix| t.image.as_str().starts_with(prefix)) {
                return Err(refused_pull(node, t.image.as_str()));
            }
            Ok(registry.lock().unwrap().get(t.image.as_str()).cloned())
        });
        let (s, calls) = (self.state.clone(), self.calls.clone());
        mock.expect_prepare_image().returning(move |node, t, digest| {
            let state = s.lock().unwrap();
            let e = state.get(node.name.as_str());
            if e.is_some_and(|e| e.down) {
                return Err(unreachable(node));
            }
            let image = orchestrator_core::runtime::image_to_run(t, digest.as_deref());
            if e.and_then(|e| e.pulls_refused.as_deref()).is_some_and(|prefix| t.image.as_str().starts_with(prefix)) {
                return Err(refused_pull(node, image.as_str()));
            }
            calls.lock().unwrap().push(format!("pull {} {image}", node.name));
            Ok(orchestrator_core::runtime::ImageReady::Pulled)
        });
        let (s, calls) = (self.state.clone(), self.calls.clone());
        mock.expect_start_replica().returning(move |node, c: &ReplicaContainer| {
            let mut state = s.lock().unwrap();
            let e = state.entry(node.name.to_string()).or_default();
            if e.down {
                return Err(unreachable(node));
            }
            if e.pulls_refused.as_deref().is_some_and(|prefix| c.template.image.as_str().starts_with(prefix)) {
                return Err(refused_pull(node, c.image().as_str()));
            }
            let key = (c.deployment.to_string(), c.replica.0);
            e.next_id += 1;
            let fresh = format!("{}-c{}", node.name, e.next_id);
            calls.lock().unwrap().push(format!("start {} {}/{} {}", node.name, c.deployment, c.replica.0, c.image()));
            let entry = e.containers.entry(key).or_insert((fresh, ContainerState::Running, c.image().to_string()));
            entry.1 = ContainerState::Running;
            Ok(entry.0.clone())
        });
        let (s, calls) = (self.state.clone(), self.calls.clone());
        mock.expect_remove_replica().returning(move |node, d: &DeploymentName, r: ReplicaId| {
            let mut state = s.lock().unwrap();
            let e = state.entry(node.name.to_string()).or_default();
            if e.down {
                return Err(unreachable(node));
            }
            calls.lock().unwrap().push(format!("remove {} {d}/{}", node.name, r.0));
            e.containers.remove(&(d.to_string(), r.0));
            Ok(())
        });
        let s = self.state.clone();
        mock.expect_list_replicas().returning(move |node| {
            let state = s.lock().unwrap();
            let Some(e) = state.get(node.name.as_str()) else { return Ok(Vec::new()) };
            if e.down {
                return Err(unreachable(node));
            }
            Ok(e.containers
                .iter()
                .map(|((d, r), (id, st, _))| ContainerSummary {
                    id: id.clone(),
                    deployment: DeploymentName::new(d.clone()).unwrap(),
                    replica: ReplicaId(*r),
                    state: *st,
                    exit_code: (*st == ContainerState::Exited).then_some(1),
                    health: None,
                    ports: Vec::new(),
                })
                .collect())
        });
        let s = self.state.clone();
        mock.expect_replica_end().returning(move |node, d, r| {
            let state = s.lock().unwrap();
            let key = (d.to_string(), r.0);
            let e = state.get(node.name.as_str()).filter(|e| !e.down).ok_or_else(|| unreachable(node))?;
            let (_, st, _) = e
                .containers
                .get(&key)
                .ok_or_else(|| Error::not_found(orchestrator_core::error::Kind::Container, format!("{d}-{r}")))?;
            Ok(ContainerEnd {
                exit_code: (*st == ContainerState::Exited).then_some(if e.oom_killed.contains(&key) { 137 } else { 1 }),
                oom_killed: e.oom_killed.contains(&key),
                health_output: None,
            })
        });
        let s = self.state.clone();
        mock.expect_replica_logs().returning(move |node, d, r, _| {
            let state = s.lock().unwrap();
            let key = (d.to_string(), r.0);
            let e = state.get(node.name.as_str()).filter(|e| !e.down).ok_or_else(|| unreachable(node))?;
            if !e.containers.contains_key(&key) {
                return Err(Error::not_found(orchestrator_core::error::Kind::Container, format!("{d}-{r}")));
            }
            let lines: Vec<Result<LogLine>> = e
                .printed
                .get(&key)
                .into_iter()
                .flatten()
                .map(|l| {
                    Ok(LogLine { stream: OutputStream::Stdout, time: std::time::SystemTime::now(), line: l.clone() })
                })
                .collect();
            Ok(Box::pin(futures::stream::iter(lines)) as orchestrator_core::LogLines)
        });
        mock.expect_inspect_replica()
            .returning(|_, d, r| Err(Error::not_found(orchestrator_core::error::Kind::Container, format!("{d}-{r}"))));
        mock
    }
}

/// A runtime that takes `delay` per start, to make concurrency observable, and records every
/// start as `(deployment, begin, end)` in virtual time.
pub struct Slow {
    pub inner: MockContainerRuntime,
    pub delay: Duration,
    /// How long a ping takes (a hung engine answers never, or late).
    pub ping_delay: Duration,
    pub starts: Arc<Mutex<Vec<(String, tokio::time::Instant, tokio::time::Instant)>>>,
    /// Set: the runtime of a leader whose tenure ended; starts begun before still finish, but
    /// it refuses new container changes as `TenureRuntime` does.
    pub deposed: Arc<std::sync::atomic::AtomicBool>,
}

impl Slow {
    /// Starts that take `delay` on `engines`; pings answer at once.
    pub fn starting_in(engines: &Engines, delay: Duration) -> Self {
        Self {
            inner: engines.mock(),
            delay,
            ping_delay: Duration::ZERO,
            starts: Arc::default(),
            deposed: Arc::default(),
        }
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
    async fn engine_info(&self, node: &Node) -> Result<EngineInfo> {
        self.inner.engine_info(node).await
    }
    async fn start_replica(&self, node: &Node, c: &ReplicaContainer) -> Result<String> {
        self.check()?;
        let begin = tokio::time::Instant::now();
        tokio::time::sleep(self.delay).await;
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
        let runtime = Arc::new(engines.mock());
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
