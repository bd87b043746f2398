//! Engines in memory: a plain `ContainerRuntime` whose state a test reads and breaks (an
//! engine down or hung, a container exited or OOM-killed, a registry refusing pulls), for the
//! scheduler's tests and anything else that needs engines without Docker. Clones share one
//! state, so a test keeps a handle while the scheduler owns the runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use orchestrator_core::error::Kind;
use orchestrator_core::runtime::{ImageReady, image_to_run};
use orchestrator_core::{
    ContainerEnd, ContainerRuntime, ContainerState, ContainerSummary, ContainerTemplate, DeploymentName, EngineInfo,
    Error, LogLine, LogLines, LogRequest, Node, OutputStream, ReplicaContainer, ReplicaId, Result,
};

/// One engine's state.
#[derive(Default)]
pub struct Engine {
    /// Refuses connections (a killed engine).
    pub down: bool,
    /// Pings time out (a hung engine, as the runtime reports it after its own timeout).
    pub silent: bool,
    /// `(deployment, replica)` -> (container id, state, the image reference it runs).
    pub containers: BTreeMap<(String, u64), (String, ContainerState, String)>,
    /// What each container printed, by `(deployment, replica)`, as stdout lines.
    pub printed: BTreeMap<(String, u64), Vec<String>>,
    /// Containers the kernel killed for memory.
    pub oom_killed: BTreeSet<(String, u64)>,
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
    /// Told when an engine goes down, for the watches.
    went_down: Arc<tokio::sync::Notify>,
    /// Watches under way, on any engine.
    watching: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a watch while it lasts, however it ends.
struct Watching(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn unreachable(node: &Node) -> Error {
    Error::Unreachable { node: node.name.to_string(), message: "connection refused".into() }
}

fn refused_pull(node: &Node, image: &str) -> Error {
    Error::PullFailed {
        node: node.name.to_string(),
        image: image.to_string(),
        reason: "unauthorized (no or wrong registry credentials): denied".into(),
    }
}

fn no_container(d: &DeploymentName, r: ReplicaId) -> Error {
    Error::not_found(Kind::Container, format!("{d}-{r}"))
}

impl Engine {
    fn refuses_pull_of(&self, image: &str) -> bool {
        self.pulls_refused.as_deref().is_some_and(|prefix| image.starts_with(prefix))
    }
}

impl Engines {
    pub fn with(&self, node: &str, f: impl FnOnce(&mut Engine)) {
        f(self.state.lock().unwrap().entry(node.to_string()).or_default());
    }

    pub fn set_down(&self, node: &str, down: bool) {
        self.with(node, |e| e.down = down);
        if down {
            self.went_down.notify_waiters();
        }
    }

    /// Watches under way, on any engine.
    pub fn watching(&self) -> usize {
        self.watching.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn is_down(&self, node: &Node) -> bool {
        self.state.lock().unwrap().get(node.name.as_str()).is_some_and(|e| e.down)
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

    fn call(&self, what: String) {
        self.calls.lock().unwrap().push(what);
    }

    /// The engine of `node` when it answers.
    fn answering<T>(&self, node: &Node, f: impl FnOnce(&mut Engine) -> Result<T>) -> Result<T> {
        let mut state = self.state.lock().unwrap();
        let e = state.entry(node.name.to_string()).or_default();
        if e.down {
            return Err(unreachable(node));
        }
        f(e)
    }
}

#[async_trait]
impl ContainerRuntime for Engines {
    async fn ping(&self, node: &Node) -> Result<()> {
        self.answering(node, |e| {
            if e.silent {
                return Err(Error::Timeout {
                    node: node.name.to_string(),
                    operation: "ping",
                    after: Duration::from_secs(1),
                });
            }
            Ok(())
        })
    }

    /// Ends when the engine goes down (a watch of a down engine is refused).
    async fn watch(&self, node: &Node) -> Result<()> {
        if self.is_down(node) {
            return Err(unreachable(node));
        }
        self.watching.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _counted = Watching(Arc::clone(&self.watching));
        loop {
            let went_down = self.went_down.notified();
            tokio::pin!(went_down);
            // Listening before the look: a `set_down` after it wakes us.
            went_down.as_mut().enable();
            if self.is_down(node) {
                return Ok(());
            }
            went_down.await;
        }
    }

    async fn engine_info(&self, _node: &Node) -> Result<EngineInfo> {
        Ok(EngineInfo { id: "fake".into(), version: "0".into(), cpus: 2, memory_bytes: 1 << 30 })
    }

    async fn start_replica(&self, node: &Node, c: &ReplicaContainer) -> Result<String> {
        let image = c.image().to_string();
        let started = self.answering(node, |e| {
            if e.refuses_pull_of(c.template.image.as_str()) {
                return Err(refused_pull(node, &image));
            }
            e.next_id += 1;
            let fresh = format!("{}-c{}", node.name, e.next_id);
            let entry = e.containers.entry((c.deployment.to_string(), c.replica.0)).or_insert((
                fresh,
                ContainerState::Running,
                image.clone(),
            ));
            entry.1 = ContainerState::Running;
            Ok(entry.0.clone())
        })?;
        self.call(format!("start {} {}/{} {image}", node.name, c.deployment, c.replica.0));
        Ok(started)
    }

    async fn resolve_image(&self, node: &Node, t: &ContainerTemplate) -> Result<Option<String>> {
        self.answering(node, |e| {
            if e.refuses_pull_of(t.image.as_str()) {
                return Err(refused_pull(node, t.image.as_str()));
            }
            Ok(())
        })?;
        Ok(self.registry.lock().unwrap().get(t.image.as_str()).cloned())
    }

    async fn prepare_image(&self, node: &Node, t: &ContainerTemplate, digest: Option<String>) -> Result<ImageReady> {
        let image = image_to_run(t, digest.as_deref()).to_string();
        self.answering(node, |e| {
            if e.refuses_pull_of(t.image.as_str()) {
                return Err(refused_pull(node, &image));
            }
            Ok(())
        })?;
        self.call(format!("pull {} {image}", node.name));
        Ok(ImageReady::Pulled)
    }

    async fn remove_replica(&self, node: &Node, d: &DeploymentName, r: ReplicaId) -> Result<()> {
        self.answering(node, |e| {
            e.containers.remove(&(d.to_string(), r.0));
            Ok(())
        })?;
        self.call(format!("remove {} {d}/{}", node.name, r.0));
        Ok(())
    }

    async fn list_replicas(&self, node: &Node) -> Result<Vec<ContainerSummary>> {
        self.answering(node, |e| {
            Ok(e.containers
                .iter()
                .filter_map(|((d, r), (id, st, _))| {
                    Some(ContainerSummary {
                        id: id.clone(),
                        deployment: DeploymentName::new(d.clone()).ok()?,
                        replica: ReplicaId(*r),
                        state: *st,
                        exit_code: (*st == ContainerState::Exited).then_some(1),
                        health: None,
                        ports: Vec::new(),
                    })
                })
                .collect())
        })
    }

    async fn inspect_replica(&self, _node: &Node, d: &DeploymentName, r: ReplicaId) -> Result<ContainerSummary> {
        Err(no_container(d, r))
    }

    async fn replica_end(&self, node: &Node, d: &DeploymentName, r: ReplicaId) -> Result<ContainerEnd> {
        self.answering(node, |e| {
            let key = (d.to_string(), r.0);
            let (_, st, _) = e.containers.get(&key).ok_or_else(|| no_container(d, r))?;
            let oom = e.oom_killed.contains(&key);
            Ok(ContainerEnd {
                exit_code: (*st == ContainerState::Exited).then_some(if oom { 137 } else { 1 }),
                oom_killed: oom,
                health_output: None,
            })
        })
    }

    async fn replica_logs(
        &self,
        node: &Node,
        d: &DeploymentName,
        r: ReplicaId,
        _request: &LogRequest,
    ) -> Result<LogLines> {
        let lines: Vec<Result<LogLine>> = self.answering(node, |e| {
            let key = (d.to_string(), r.0);
            if !e.containers.contains_key(&key) {
                return Err(no_container(d, r));
            }
            Ok(e.printed
                .get(&key)
                .into_iter()
                .flatten()
                .map(|l| Ok(LogLine { stream: OutputStream::Stdout, time: SystemTime::now(), line: l.clone() }))
                .collect())
        })?;
        Ok(Box::pin(futures::stream::iter(lines)))
    }
}
