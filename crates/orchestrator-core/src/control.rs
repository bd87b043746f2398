//! The boundary between the API and the scheduler: the actions an operator can take. Reads go
//! straight to the store traits; everything that changes the cluster goes through here.

use async_trait::async_trait;

use crate::deployment::{Change, Deployment, DeploymentSpec};
use crate::error::Result;
use crate::name::{DeploymentName, NodeName};
use crate::node::{NewNode, Node, NodeUpdate};

/// Whether the background loops are alive (for readiness checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopHealth {
    pub heartbeat: bool,
    pub rebalancer: bool,
    pub reconciler: bool,
}

impl LoopHealth {
    pub fn all_running(&self) -> bool {
        self.heartbeat && self.rebalancer && self.reconciler
    }
}

/// Counters of the loops, for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoopStats {
    pub last_heartbeat_tick: std::time::Duration,
    pub heartbeat_ticks: u64,
    pub nodes_marked_offline: u64,
    pub rebalances: u64,
    pub replicas_replaced: u64,
    pub reconcile_passes: u64,
    pub last_reconcile_pass: std::time::Duration,
    /// Container calls each engine is given at once now (each adapts to the engine's speed),
    /// by node name, for the engines called since the process started.
    pub engine_call_limits: Vec<(NodeName, u32)>,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// Stores the deployment and starts its replicas in the background.
    async fn create_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        change: Change,
    ) -> Result<Deployment>;

    /// Changes the required replicas if `version` is current (else `Conflict`), and converges
    /// in the background.
    async fn scale_deployment(&self, name: &DeploymentName, replicas: u32, version: u64) -> Result<Deployment>;

    /// Deletes the deployment and removes its containers.
    /// Replaces the spec (a new template makes a revision and starts its rollout).
    async fn update_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        version: u64,
        change: Change,
    ) -> Result<Deployment>;

    /// The rollout `spec` would start, as it would go: a dry run, nothing changes.
    async fn plan_update(&self, name: &DeploymentName, spec: DeploymentSpec) -> Result<crate::rollout::RolloutPlan>;

    /// Pauses the deployment's rollout `id` (`pause`), or resumes it.
    async fn pause_rollout(
        &self,
        name: &DeploymentName,
        id: crate::rollout::RolloutId,
        pause: bool,
        by: Option<String>,
    ) -> Result<crate::rollout::Rollout>;

    async fn delete_deployment(&self, name: &DeploymentName) -> Result<()>;

    /// Moves replicas one at a time (new copy first) to even out the deployment's spread, e.g.
    /// onto a node that joined or came back. Returns how many moved.
    async fn rebalance_deployment(&self, name: &DeploymentName) -> Result<usize>;

    async fn add_node(&self, node: NewNode) -> Result<Node>;

    /// Changes a node's labels or public host; nothing placed moves.
    async fn update_node(&self, name: &NodeName, update: NodeUpdate) -> Result<Node>;

    /// Moves the node's replicas elsewhere; returns how many are left on it.
    async fn drain_node(&self, name: &NodeName) -> Result<usize>;

    /// Drains, then removes the node (`Conflict` if replicas could not be moved).
    async fn remove_node(&self, name: &NodeName) -> Result<()>;

    fn loop_health(&self) -> LoopHealth;

    fn loop_stats(&self) -> LoopStats;

    /// Whether this server leads (runs the loops) or follows, and who leads.
    fn leadership(&self) -> Leadership;
}

/// This server's place among the servers sharing a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// Holds the lease at `term` and runs the loops.
    Leader { id: String, term: u64 },
    /// Serves the API only; `leader` is the lease's live holder, if any.
    Follower { id: String, leader: Option<String> },
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        matches!(self, Leadership::Leader { .. })
    }

    /// The leading server's id, if one is known.
    pub fn leader(&self) -> Option<&str> {
        match self {
            Leadership::Leader { id, .. } => Some(id),
            Leadership::Follower { leader, .. } => leader.as_deref(),
        }
    }
}
