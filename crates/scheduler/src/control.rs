//! The scheduler as the API sees it: `ControlPlane`.

use std::sync::Arc;

use async_trait::async_trait;
use orchestrator_core::{
    ControlPlane, Deployment, DeploymentName, DeploymentSpec, Leadership, LoopHealth, LoopStats, NewNode, Node,
    NodeName, Result,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::scheduler::Scheduler;
use crate::stats::Loop;

/// Runs the convergence that follows a create or scale in the background, so the API answers
/// at once; `--wait` clients poll until actual == required. On a follower the leader's
/// reconciler does it instead (within its interval): two servers converging one deployment at
/// once could both place the missing replicas.
#[derive(Clone)]
pub struct SchedulerControl {
    scheduler: Arc<Scheduler>,
    leadership: watch::Receiver<Leadership>,
}

impl SchedulerControl {
    /// `leadership` follows this server's `Election`.
    pub fn new(scheduler: Arc<Scheduler>, leadership: watch::Receiver<Leadership>) -> Self {
        Self { scheduler, leadership }
    }

    fn converge_in_background(&self, name: DeploymentName) {
        if !self.leadership.borrow().is_leader() {
            return;
        }
        let scheduler = Arc::clone(&self.scheduler);
        let span = tracing::info_span!("converge_after_request", deployment = %name);
        tokio::spawn(
            async move {
                if let Err(e) = scheduler.converge(&name).await {
                    tracing::warn!(error = %e, "converge failed; the reconciler will retry");
                }
            }
            .instrument(span),
        );
    }
}

#[async_trait]
impl ControlPlane for SchedulerControl {
    async fn create_deployment(&self, spec: DeploymentSpec) -> Result<Deployment> {
        let deployment = self.scheduler.create_deployment(spec).await?;
        self.converge_in_background(deployment.name.clone());
        Ok(deployment)
    }

    async fn scale_deployment(&self, name: &DeploymentName, replicas: u32, version: u64) -> Result<Deployment> {
        let deployment = self.scheduler.scale_deployment(name, replicas, version).await?;
        self.converge_in_background(deployment.name.clone());
        Ok(deployment)
    }

    async fn delete_deployment(&self, name: &DeploymentName) -> Result<()> {
        self.scheduler.delete_deployment(name).await
    }

    async fn rebalance_deployment(&self, name: &DeploymentName) -> Result<usize> {
        self.scheduler.rebalance_spread(name).await
    }

    async fn add_node(&self, node: NewNode) -> Result<Node> {
        self.scheduler.add_node(node).await
    }

    async fn drain_node(&self, name: &NodeName) -> Result<usize> {
        self.scheduler.drain_node(name).await
    }

    async fn remove_node(&self, name: &NodeName) -> Result<()> {
        self.scheduler.remove_node(name).await
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
