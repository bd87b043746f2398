//! The boundary to durable state. The diesel implementation lives in `store-diesel`; tests use
//! the `Mock*Store` types (feature `mock`).
//!
//! Invariants every implementation keeps, whatever the interleaving of callers:
//! - a node's available capacity stays within `0..=capacity`, and equals capacity minus the
//!   units of its active (non-`Lost`) replicas;
//! - a failed call changes nothing (each call is one transaction);
//! - deployment writes carry the version they were based on and fail with `Conflict` if stale.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::crash_loop::CrashLoop;
use crate::deployment::{Change, Deployment, DeploymentSpec, Revision, Unplaced};
use crate::error::Result;
use crate::event::EventStore;
use crate::history::ReplicaExit;
use crate::name::{DeploymentName, NodeName};
use crate::node::{NewNode, Node, NodeStatus, NodeUpdate};
use crate::replica::{Placement, Replica, ReplicaCount, ReplicaFilter, ReplicaId, ReplicaState};
use crate::rollout::{Rollout, RolloutId, RolloutProgress, RolloutState};
use crate::workload::{Health, HostPort};

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Adds a node (status `Offline`, all capacity available). `AlreadyExists` if the name is taken.
    async fn add_node(&self, node: NewNode) -> Result<Node>;

    async fn get_node(&self, name: &NodeName) -> Result<Node>;

    /// Every node, with all the host ports its replicas hold.
    async fn list_nodes(&self) -> Result<Vec<Node>>;

    /// Every node, its reserved ports limited to those among `ports` (none when it is empty):
    /// what placing one deployment needs, without reading every port of every replica.
    async fn list_nodes_holding(&self, ports: &[HostPort]) -> Result<Vec<Node>>;

    /// Every node, without its reserved host ports (left empty): for callers that need
    /// nodes' status, address and resources only (the heartbeat, a request's checks). Reading
    /// the ports reads every published port of every replica.
    async fn list_nodes_brief(&self) -> Result<Vec<Node>> {
        self.list_nodes_holding(&[]).await
    }

    /// Sets a node's status, and its last heartbeat time when given.
    async fn set_node_status(&self, name: &NodeName, status: NodeStatus, heartbeat: Option<SystemTime>)
    -> Result<Node>;

    /// Marks these nodes offline, together: the failure detector's write. A store may let it
    /// ahead of writes waiting their turn, since a dead node's replicas are replaced only once
    /// it is marked (behind the writes of a failover under way, the marks of the next dead
    /// nodes waited seconds).
    async fn mark_offline(&self, names: &[NodeName]) -> Result<()> {
        for name in names {
            self.set_node_status(name, NodeStatus::Offline, None).await?;
        }
        Ok(())
    }

    /// Changes a node's labels, public host or engine facts (a `node.updated` event when labels
    /// or public host change). Replicas already placed stay where they are.
    async fn update_node(&self, name: &NodeName, update: NodeUpdate) -> Result<Node>;

    /// Records a successful heartbeat for many nodes in one write (status unchanged).
    async fn record_heartbeats(&self, names: &[NodeName], at: SystemTime) -> Result<()>;

    /// Removes a node. `Conflict` while active replicas are still placed on it; its `Lost`
    /// replica records go with it.
    async fn remove_node(&self, name: &NodeName) -> Result<()>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Stores a new deployment at version 1 and revision 1 (kept with `change`).
    /// `AlreadyExists` if the name is taken.
    async fn create_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        change: Change,
    ) -> Result<Deployment>;

    async fn get_deployment(&self, name: &DeploymentName) -> Result<Deployment>;

    async fn list_deployments(&self) -> Result<Vec<Deployment>>;

    /// Changes the required replicas if the stored version is still `expected_version`;
    /// otherwise `Conflict`. Returns the deployment at its new version.
    async fn scale_deployment(&self, name: &DeploymentName, replicas: u32, expected_version: u64)
    -> Result<Deployment>;

    /// Replaces the spec if the stored version is still `expected_version` (otherwise
    /// `Conflict`): a new template makes the next revision (kept with `change`, the oldest
    /// beyond the store's limit forgotten) and starts a rollout to it, in the same
    /// transaction; replicas, units and policy alone do not. A rollout still under way ends:
    /// `rolled_back` when `change.restores` is set, otherwise `failed`, superseded. Replicas
    /// already placed keep their revision and units. Returns the deployment at its new version.
    async fn update_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        expected_version: u64,
        change: Change,
    ) -> Result<Deployment>;

    /// The revisions kept for the deployment, oldest first (the current one last).
    async fn list_revisions(&self, name: &DeploymentName) -> Result<Vec<Revision>>;

    /// The deployment's rollouts, newest first.
    async fn list_rollouts(&self, name: &DeploymentName) -> Result<Vec<Rollout>>;

    /// One rollout of the deployment (`NotFound` if it has no such rollout).
    async fn get_rollout(&self, name: &DeploymentName, id: RolloutId) -> Result<Rollout>;

    /// Records what a step of the rollout saw (a `rollout.progressed` event when the counts
    /// change) and what it waits on. `Conflict` if the rollout is no longer active.
    async fn record_rollout_progress(
        &self,
        id: RolloutId,
        progress: RolloutProgress,
        waiting_on: Option<String>,
    ) -> Result<Rollout>;

    /// Counts a failed replica of `revision` against the deployment's active rollout when that
    /// is the revision it rolls out to (otherwise nothing): the replica itself is replaced and
    /// forgotten, the failure is not.
    async fn count_rollout_failure(&self, name: &DeploymentName, revision: u64, why: &str) -> Result<()>;

    /// Moves the rollout to `to` if it is in one of `from` (otherwise `Conflict`), with
    /// `reason` and its event; a finished state records when and clears the deployment's
    /// rollout under way.
    async fn set_rollout_state(
        &self,
        id: RolloutId,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<String>,
    ) -> Result<Rollout>;

    /// Deletes the deployment and its replica records, releasing their capacity. Returns the
    /// records it deleted so the caller can remove their containers.
    async fn delete_deployment(&self, name: &DeploymentName) -> Result<Vec<Replica>>;

    /// Records why replicas of the deployment wait unplaced (`None`: none wait), with a
    /// `deployment.unplaced` event when the reason or count changes. A deployment gone is no
    /// error: there is nothing left to place.
    async fn set_unplaced(&self, name: &DeploymentName, unplaced: Option<Unplaced>) -> Result<()>;

    /// Pins `revision`'s image to `digest` (on the revision, and on the deployment while that
    /// is its current revision), unless it is pinned already: the first resolution wins, so
    /// what a revision runs never changes under it. A deployment or revision gone is no error.
    async fn pin_image(&self, name: &DeploymentName, revision: u64, digest: &str) -> Result<()>;

    /// Records that the rollout's image is on every node it may use, so its old replicas may
    /// now stop. `Conflict` if the rollout is no longer active.
    async fn mark_rollout_pulled(&self, id: RolloutId) -> Result<Rollout>;

    /// Records the deployment's streak of failing replicas (`None`: the streak is over), with a
    /// `deployment.crash_looping` event for each new failure. A deployment gone is no error.
    async fn set_crash_loop(&self, name: &DeploymentName, crash: Option<CrashLoop>) -> Result<()>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ReplicaStore: Send + Sync {
    /// Reserves capacity and records a `Pending` replica for every placement, all in one
    /// transaction: if any node is not online or lacks capacity, nothing is written and the
    /// error names that node (`InsufficientCapacity`, `Conflict` or `NotFound`).
    async fn place_replicas(&self, placements: &[Placement]) -> Result<Vec<Replica>>;

    /// Marks a replica `Running` with the container that backs it (its start time now).
    async fn mark_running(&self, id: ReplicaId, container_id: &str) -> Result<Replica>;

    /// `mark_running` for many replicas in one transaction: the scheduler commits the starts
    /// of a convergence together instead of one transaction per container. Replicas that are
    /// `Lost` or no longer stored are left as they are and returned; every other one is
    /// `Running` with its container afterwards.
    async fn mark_running_many(&self, started: &[(ReplicaId, String)]) -> Result<Vec<ReplicaId>>;

    /// Moves a replica to another state. Moving to `Lost` releases its capacity; a `Lost`
    /// replica cannot come back (`Conflict`): a new replica replaces it.
    async fn set_replica_state(&self, id: ReplicaId, state: ReplicaState) -> Result<Replica>;

    /// Takes replicas out of the endpoints before they are stopped (a `replica.deregistered`
    /// event each); replicas no longer stored are skipped.
    async fn deregister_replicas(&self, ids: &[ReplicaId]) -> Result<()>;

    /// Deletes a replica record, releasing its capacity if it still held it.
    async fn release_replica(&self, id: ReplicaId) -> Result<()>;

    /// `release_replica` for a replica that ended badly, keeping why and its last lines in the
    /// same transaction (a `replica.exited` event with the reason), and the deployment's newest
    /// `history::kept_for(replicas)` such records. `NotFound` if the replica is not stored.
    async fn retire_replica(&self, exit: ReplicaExit) -> Result<()>;

    /// The deployment's replicas that ended badly, newest first; deleted with the deployment.
    /// Without `logs`, their kept lines are left out (`logs` empty): a listing of why does not
    /// read up to 64 KiB a record. `NotFound` if no such deployment.
    async fn list_exits(&self, deployment: &DeploymentName, logs: bool) -> Result<Vec<ReplicaExit>>;

    /// Records the health verdicts the engines reported (and since when: now), in one
    /// transaction; replicas no longer stored are skipped.
    async fn set_replica_health(&self, changes: &[(ReplicaId, Option<Health>)]) -> Result<()>;

    async fn list_replicas(&self, filter: ReplicaFilter) -> Result<Vec<Replica>>;

    /// The ids of the replicas that are `Running`: what the reconciler needs to know before it
    /// lists containers, without loading a million rows.
    async fn running_replica_ids(&self) -> Result<Vec<ReplicaId>>;

    /// Replicas per deployment and state (states with none left out): counted where they are
    /// stored, so a summary of a million replicas moves a few thousand numbers, not the rows.
    async fn count_replicas(&self) -> Result<Vec<ReplicaCount>>;

    /// Marks every active replica on the node `Lost` (releasing capacity) in one transaction and
    /// returns them: the rebalancer's first step when a node dies. The heartbeat waits for it
    /// before its next tick, so a store may let it ahead of writes waiting their turn, as
    /// `mark_offline`.
    async fn mark_node_lost(&self, node: &NodeName) -> Result<Vec<Replica>>;
}

/// A number that changes whenever the cluster state may have changed, so a reader can keep a
/// view derived from the store (the `/status` document) until it does. Heartbeats' timestamps
/// alone do not change it (a node's status does): a view kept may show an older
/// `last_heartbeat`. Nor do audit records, which no such view shows.
///
/// It never goes backwards while the store is open; it need not be dense, nor survive a
/// restart. A store shared by several processes must reflect the others' writes too.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StoreRevision: Send + Sync {
    async fn revision(&self) -> Result<u64>;
}

/// Everything the orchestrator keeps, as one value the scheduler and API can share.
pub trait ClusterStore: NodeStore + DeploymentStore + ReplicaStore + StoreRevision + EventStore {}

impl<T: NodeStore + DeploymentStore + ReplicaStore + StoreRevision + EventStore + ?Sized> ClusterStore for T {}
