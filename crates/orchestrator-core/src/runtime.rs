//! The boundary to container engines. The Docker implementation lives in `runtime-docker`;
//! tests use `MockContainerRuntime` (feature `mock`).
//!
//! Every call names the node it talks to, so one runtime value serves the whole cluster. An
//! implementation scopes everything to one orchestrator cluster: it only lists and removes
//! containers it created for that cluster, so two orchestrators can share an engine.

use async_trait::async_trait;

use crate::deployment::{ContainerTemplate, Deployment};
use crate::error::Result;
use crate::image::ImageRef;
use crate::logs::{LogLines, LogRequest};
use crate::name::DeploymentName;
use crate::node::Node;
use crate::replica::{Replica, ReplicaId};
use crate::workload::{Health, Protocol};

/// What an engine reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// The engine's own id (unique per engine when nodes are set up right).
    pub id: String,
    pub version: String,
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// The container that backs one replica: everything an engine needs to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaContainer {
    pub deployment: DeploymentName,
    pub replica: ReplicaId,
    /// Labelled on the container, so what runs can be told apart by revision.
    pub revision: u64,
    pub template: ContainerTemplate,
    /// The digest the revision's image is pinned to, if it is.
    pub image_digest: Option<String>,
}

impl ReplicaContainer {
    /// The container of `replica`, running the deployment's current template (replicas are
    /// only ever placed at the current revision; older ones are replaced, not restarted).
    pub fn new(deployment: &Deployment, replica: &Replica) -> Self {
        Self {
            deployment: deployment.name.clone(),
            replica: replica.id,
            revision: replica.revision,
            template: deployment.spec.template.clone(),
            image_digest: deployment.image_digest.clone(),
        }
    }

    /// The image reference the engine runs: the template's, pinned to the revision's digest
    /// when it has one.
    pub fn image(&self) -> ImageRef {
        image_to_run(&self.template, self.image_digest.as_deref())
    }
}

/// The reference an engine runs for `template` with the revision's `digest`.
pub fn image_to_run(template: &ContainerTemplate, digest: Option<&str>) -> ImageRef {
    match digest {
        Some(digest) => template.image.pinned(digest),
        None => template.image.clone(),
    }
}

/// What `prepare_image` found on the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageReady {
    /// The engine had it (and the pull policy did not ask for a pull).
    Present,
    /// The engine pulled it just now.
    Pulled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Removing,
}

/// A container port as the engine bound it on the host: `published` is the real host port,
/// also when the engine picked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundPort {
    pub target: u16,
    pub published: u16,
    pub protocol: Protocol,
}

/// One of our containers as an engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub deployment: DeploymentName,
    pub replica: ReplicaId,
    pub state: ContainerState,
    /// Set once the container has exited.
    pub exit_code: Option<i64>,
    /// `None` when the container has no health check.
    pub health: Option<Health>,
    /// Its published ports, each once (an engine binding IPv4 and IPv6 reports two).
    pub ports: Vec<BoundPort>,
}

impl ContainerSummary {
    /// A container in `state` with no health check and no published port.
    pub fn new(id: impl Into<String>, deployment: DeploymentName, replica: ReplicaId, state: ContainerState) -> Self {
        Self { id: id.into(), deployment, replica, state, exit_code: None, health: None, ports: Vec::new() }
    }

    /// Running, and healthy if it has a health check: ready to serve.
    pub fn is_ready(&self) -> bool {
        self.state == ContainerState::Running && matches!(self.health, None | Some(Health::Healthy))
    }
}

/// How a replica's container ended, as its engine tells it after the fact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnd {
    pub exit_code: Option<i64>,
    /// The kernel killed it for going over its memory limit.
    pub oom_killed: bool,
    /// The output of its last health check.
    pub health_output: Option<String>,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Cheap liveness check, bounded by a short timeout; the heartbeat calls it.
    async fn ping(&self, node: &Node) -> Result<()>;

    /// Holds a connection to the engine open and returns when it closes: the engine stopped
    /// or restarted, or the network cut it. `Err` when none can be held. The heartbeat checks
    /// the engine as soon as this returns instead of at its next tick, so a killed engine is
    /// seen at once. A runtime that cannot watch keeps this default, which never returns: the
    /// ticks alone find its engines gone.
    async fn watch(&self, node: &Node) -> Result<()> {
        let _ = node;
        std::future::pending().await
    }

    async fn engine_info(&self, node: &Node) -> Result<EngineInfo>;

    /// Creates and starts the replica's container and returns its id. Idempotent: the container
    /// name is derived from deployment and replica id, so a retry after a lost answer finds the
    /// container made by the first attempt (and starts it if needed) instead of making a second.
    async fn start_replica(&self, node: &Node, container: &ReplicaContainer) -> Result<String>;

    /// The digest (`sha256:...`) the template's image tag names in its registry now, asked
    /// through the node's engine (with the login kept for that registry). `None` when this
    /// runtime does not pull such an image (no registry to ask, a pull policy of `never`, or
    /// a reference that carries its digest already). A registry that refuses or cannot be
    /// reached is `PullFailed`, as a pull would be.
    async fn resolve_image(&self, node: &Node, template: &ContainerTemplate) -> Result<Option<String>>;

    /// Makes sure the engine has the image a replica of `template` pinned to `digest` runs,
    /// as its pull policy says (`if_not_present`: pulled if missing; `always`: pulled;
    /// `never`: `ImageNotFound` if missing), before any replica needs it: a rollout calls it
    /// on every node it may use before it stops anything.
    async fn prepare_image(
        &self,
        node: &Node,
        template: &ContainerTemplate,
        digest: Option<String>,
    ) -> Result<ImageReady>;

    /// Stops and removes the replica's container. A container that does not exist is success.
    async fn remove_replica(&self, node: &Node, deployment: &DeploymentName, replica: ReplicaId) -> Result<()>;

    /// Every container of this cluster on the node, in any state.
    async fn list_replicas(&self, node: &Node) -> Result<Vec<ContainerSummary>>;

    /// One replica's container; `NotFound` when it does not exist.
    async fn inspect_replica(
        &self,
        node: &Node,
        deployment: &DeploymentName,
        replica: ReplicaId,
    ) -> Result<ContainerSummary>;

    /// How the replica's container ended (or how it is, if it still runs); `NotFound` when
    /// there is no such container.
    async fn replica_end(&self, node: &Node, deployment: &DeploymentName, replica: ReplicaId) -> Result<ContainerEnd>;

    /// What the replica's container printed (`NotFound` when there is no such container).
    /// Opening is bounded by the runtime's timeouts; a followed stream then lasts as long as the
    /// container runs, and may be silent: whether its engine still answers is the caller's to
    /// watch (`ping`).
    async fn replica_logs(
        &self,
        node: &Node,
        deployment: &DeploymentName,
        replica: ReplicaId,
        request: &LogRequest,
    ) -> Result<LogLines>;
}
