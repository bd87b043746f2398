//! The scheduler as the API sees it: `ControlPlane`.
//!
//! Every server serves the whole API, but only the leader acts on engines. On the leader an
//! action runs with the scheduler its loops use (store fenced by the term, engines guarded by
//! the tenure). On a follower an action only records the intent in the store (what a
//! deployment should run, that a node drains, that a deployment is gone) and the leader's
//! reconciler carries it out within its interval: two servers acting on one deployment at
//! once could both place its missing replicas. The one action that is not an intent,
//! rebalancing, is refused with `NotLeader`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::{
    Change, ControlPlane, Deployment, DeploymentName, DeploymentSpec, Error, Leadership, LoopHealth, LoopStats,
    NewNode, Node, NodeName, NodeStatus, NodeUpdate, ReplicaFilter, Result, Rollout, RolloutId, RolloutPlan,
    RolloutState,
};
use tokio::sync::watch;
use tracing::{Instrument, info};

use crate::scheduler::Scheduler;
use crate::stats::Loop;

/// How long a node removal sent to a follower waits for the leader to move the node's replicas.
const FOLLOWER_DRAIN_WAIT: Duration = Duration::from_secs(60);
const FOLLOWER_DRAIN_POLL: Duration = Duration::from_millis(250);

/// The scheduler this server acts with while it leads, published by its `lead` for the API.
#[derive(Clone)]
pub struct ActingLeader(Arc<watch::Sender<Option<Arc<Scheduler>>>>);

impl Default for ActingLeader {
    fn default() -> Self {
        Self(Arc::new(watch::channel(None).0))
    }
}

impl ActingLeader {
    /// Makes `scheduler` the one actions run with, until the returned guard drops.
    pub fn publish(&self, scheduler: Arc<Scheduler>) -> Published {
        self.0.send_replace(Some(scheduler));
        Published(self.clone())
    }

    fn current(&self) -> Option<Arc<Scheduler>> {
        self.0.borrow().clone()
    }
}

/// Withdraws the published scheduler when dropped (the term ended).
pub struct Published(ActingLeader);

impl Drop for Published {
    fn drop(&mut self) {
        (self.0).0.send_replace(None);
    }
}

/// Hands the convergence that follows a create or scale to the leader's queue, so the API
/// answers at once; `--wait` clients poll until actual == required.
#[derive(Clone)]
pub struct SchedulerControl {
    /// Unfenced: records intents, which are valid whoever leads.
    scheduler: Arc<Scheduler>,
    leadership: watch::Receiver<Leadership>,
    acting: ActingLeader,
}

impl SchedulerControl {
    /// `leadership` follows this server's `Election`; `acting` is what its `lead` publishes.
    pub fn new(scheduler: Arc<Scheduler>, leadership: watch::Receiver<Leadership>, acting: ActingLeader) -> Self {
        Self { scheduler, leadership, acting }
    }

    /// The leader's queue converges the deployment soon; a follower leaves it to the leader's
    /// reconciler, which finds the intent within its interval.
    fn converge_in_background(&self, name: DeploymentName) {
        if let Some(leader) = self.acting.current() {
            leader.enqueue(name);
        }
    }

    async fn left_on(&self, name: &NodeName) -> Result<usize> {
        Ok(self.scheduler.store().list_replicas(ReplicaFilter::node(name).active()).await?.len())
    }

    /// A follower's drain: the intent only; the leader's reconciler moves the replicas.
    async fn mark_draining(&self, name: &NodeName) -> Result<usize> {
        self.scheduler.store().set_node_status(name, NodeStatus::Draining, None).await?;
        info!(node = %name, "node marked draining; the leader moves its replicas");
        self.left_on(name).await
    }
}

#[async_trait]
impl ControlPlane for SchedulerControl {
    async fn create_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        change: Change,
    ) -> Result<Deployment> {
        let deployment = self.scheduler.create_deployment(name, spec, change).await?;
        self.converge_in_background(deployment.name.clone());
        Ok(deployment)
    }

    async fn scale_deployment(&self, name: &DeploymentName, replicas: u32, version: u64) -> Result<Deployment> {
        let deployment = self.scheduler.scale_deployment(name, replicas, version).await?;
        self.converge_in_background(deployment.name.clone());
        Ok(deployment)
    }

    async fn update_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        version: u64,
        change: Change,
    ) -> Result<Deployment> {
        let deployment = self.scheduler.update_deployment(name, spec, version, change).await?;
        self.converge_in_background(deployment.name.clone());
        Ok(deployment)
    }

    async fn plan_update(&self, name: &DeploymentName, spec: DeploymentSpec) -> Result<RolloutPlan> {
        self.scheduler.plan_update(name, spec).await
    }

    async fn pause_rollout(
        &self,
        name: &DeploymentName,
        id: RolloutId,
        pause: bool,
        by: Option<String>,
    ) -> Result<Rollout> {
        let store = self.scheduler.store();
        // Through the deployment, so a rollout of another deployment is not found here.
        store.get_rollout(name, id).await?;
        let who = by.map(|b| format!(" by {b}")).unwrap_or_default();
        let rollout = if pause {
            store
                .set_rollout_state(id, &[RolloutState::InProgress], RolloutState::Paused, Some(format!("paused{who}")))
                .await?
        } else {
            store.set_rollout_state(id, &[RolloutState::Paused], RolloutState::InProgress, None).await?
        };
        info!(deployment = %name, rollout = id, state = %rollout.state, "rollout {}", if pause { "paused" } else { "resumed" });
        self.converge_in_background(name.clone());
        Ok(rollout)
    }

    /// Answers once the deployment is gone from the store; its containers are removed in the
    /// background (an engine that hangs must not hold the answer for its timeout).
    async fn delete_deployment(&self, name: &DeploymentName) -> Result<()> {
        match self.acting.current() {
            Some(leader) => {
                let removed = leader.store().delete_deployment(name).await?;
                info!(deployment = %name, "deployment deleted");
                let span = tracing::info_span!("remove_after_delete", deployment = %name);
                let remover = Arc::clone(&leader);
                leader.spawn(async move { remover.remove_containers_of(removed).await }.instrument(span));
                Ok(())
            }
            // The leader's reconciler removes containers whose deployment no longer exists.
            None => self.scheduler.store().delete_deployment(name).await.map(drop),
        }
    }

    async fn rebalance_deployment(&self, name: &DeploymentName) -> Result<usize> {
        match self.acting.current() {
            Some(leader) => leader.rebalance_spread(name).await,
            None => Err(Error::NotLeader { leader: self.leadership.borrow().leader().map(str::to_string) }),
        }
    }

    async fn add_node(&self, node: NewNode) -> Result<Node> {
        match self.acting.current() {
            Some(leader) => leader.add_node(node).await,
            // Offline until the leader's heartbeat reaches it (within one interval).
            None => self.scheduler.store().add_node(node).await,
        }
    }

    async fn update_node(&self, name: &NodeName, update: NodeUpdate) -> Result<Node> {
        match self.acting.current() {
            Some(leader) => leader.update_node(name, update).await,
            // The leader's reconciler converges what waits for it within its interval.
            None => self.scheduler.store().update_node(name, update).await,
        }
    }

    async fn drain_node(&self, name: &NodeName) -> Result<usize> {
        match self.acting.current() {
            Some(leader) => leader.drain_node(name).await,
            None => self.mark_draining(name).await,
        }
    }

    async fn remove_node(&self, name: &NodeName) -> Result<()> {
        if let Some(leader) = self.acting.current() {
            return leader.remove_node(name).await;
        }
        let mut left = self.mark_draining(name).await?;
        let deadline = tokio::time::Instant::now() + FOLLOWER_DRAIN_WAIT;
        while left > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(FOLLOWER_DRAIN_POLL).await;
            left = self.left_on(name).await?;
        }
        if left > 0 {
            return Err(Error::Conflict(format!(
                "node {name:?} still runs {left} replicas that found no room elsewhere; it stays draining"
            )));
        }
        self.scheduler.store().remove_node(name).await?;
        info!(node = %name, "node removed");
        Ok(())
    }

    fn loop_stats(&self) -> LoopStats {
        let stats = self.scheduler.stats();
        LoopStats {
            last_heartbeat_tick: stats.last_heartbeat_tick(),
            heartbeat_ticks: stats.heartbeat_ticks(),
            nodes_marked_offline: stats.nodes_marked_offline(),
            rebalances: stats.rebalances(),
            replicas_replaced: stats.replicas_replaced(),
            reconcile_passes: stats.reconcile_passes(),
            last_reconcile_pass: stats.last_reconcile_pass(),
            engine_call_limits: self.scheduler.engine_call_limits(),
        }
    }

    fn leadership(&self) -> Leadership {
        self.leadership.borrow().clone()
    }

    fn loop_health(&self) -> LoopHealth {
        let stats = self.scheduler.stats();
        LoopHealth {
            heartbeat: stats.is_running(Loop::Heartbeat),
            rebalancer: stats.is_running(Loop::Rebalancer),
            reconciler: stats.is_running(Loop::Reconciler),
        }
    }
}
