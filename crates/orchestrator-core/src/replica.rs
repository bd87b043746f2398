//! Replicas: one copy of a deployment, placed on one node, backed by one container.

use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::name::{DeploymentName, NodeName};
use crate::workload::{Claim, Health};

/// Assigned by the store, increasing: a replica id is never reused, so a container labelled with
/// an id the store no longer holds as active is recognizably stale (e.g. a copy left on a node
/// that came back after its replicas were replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(pub u64);

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplicaState {
    /// Capacity reserved, container not (yet) confirmed running.
    Pending,
    Running,
    /// The container stopped; it still holds its capacity until restarted or replaced.
    Exited,
    /// Its node went offline; capacity released, a replacement is placed elsewhere.
    Lost,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Pending => "pending",
            ReplicaState::Running => "running",
            ReplicaState::Exited => "exited",
            ReplicaState::Lost => "lost",
        }
    }

    /// Whether the replica still holds capacity on its node and counts towards its deployment.
    pub fn is_active(self) -> bool {
        self != ReplicaState::Lost
    }
}

impl std::str::FromStr for ReplicaState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(ReplicaState::Pending),
            "running" => Ok(ReplicaState::Running),
            "exited" => Ok(ReplicaState::Exited),
            "lost" => Ok(ReplicaState::Lost),
            other => Err(Error::invalid("state", format!("unknown replica state {other:?}"))),
        }
    }
}

impl std::fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: ReplicaId,
    pub deployment: DeploymentName,
    pub node: NodeName,
    pub units: u32,
    /// The deployment revision whose template its container runs.
    pub revision: u64,
    /// Docker's container id, once the engine created it.
    pub container_id: Option<String>,
    pub state: ReplicaState,
    pub created_at: SystemTime,
    /// Its health check's verdict as last observed; `None` before one (or with no check).
    pub health: Option<Health>,
    /// What it holds of its node besides units, as its revision's template asked when placed.
    pub claim: Claim,
    /// When it was last recorded running (its container started).
    pub started_at: Option<SystemTime>,
    /// When `health` last changed.
    pub health_since: Option<SystemTime>,
    /// Set when it left the endpoints because it is about to be stopped: it serves no new
    /// requests from then on, and is removed after the deployment's `deregister_delay`.
    pub deregistered_at: Option<SystemTime>,
}

/// A decision to put one replica of a deployment on a node; the store turns it into a `Pending`
/// replica and a capacity reservation in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub deployment: DeploymentName,
    pub node: NodeName,
    pub units: u32,
    pub revision: u64,
    /// Memory, CPUs and host ports reserved with the units.
    pub claim: Claim,
}

/// How many replicas of one deployment are in one state: what summaries need, without rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaCount {
    pub deployment: DeploymentName,
    pub state: ReplicaState,
    pub health: Option<Health>,
    pub count: u64,
}

/// Which replicas to list; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaFilter {
    pub deployment: Option<DeploymentName>,
    pub node: Option<NodeName>,
    /// Leave out `Lost` replicas.
    pub active_only: bool,
}

impl ReplicaFilter {
    pub fn deployment(name: &DeploymentName) -> Self {
        Self { deployment: Some(name.clone()), ..Self::default() }
    }

    pub fn node(name: &NodeName) -> Self {
        Self { node: Some(name.clone()), ..Self::default() }
    }

    pub fn active(mut self) -> Self {
        self.active_only = true;
        self
    }

    pub fn matches(&self, replica: &Replica) -> bool {
        self.deployment.as_ref().is_none_or(|d| *d == replica.deployment)
            && self.node.as_ref().is_none_or(|n| *n == replica.node)
            && (!self.active_only || replica.state.is_active())
    }
}
