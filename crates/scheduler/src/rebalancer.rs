//! `RebalanceContainersOnNodes`: when a node goes down, its replicas become `Lost` (capacity
//! freed) and replacements are placed on online nodes and started. Fed by the heartbeat's
//! hand-off, and level-triggered too: a periodic pass re-reads the store for offline nodes
//! still holding replicas, so no loss is missed even across a restart.

use std::collections::BTreeSet;
use std::sync::Arc;

use orchestrator_core::{DeploymentName, NodeName, NodeStatus, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::heartbeat::NodeDown;
use crate::scheduler::Scheduler;
use crate::stats::Loop;

pub struct Rebalancer {
    scheduler: Arc<Scheduler>,
    events: mpsc::Receiver<NodeDown>,
}

impl Rebalancer {
    pub fn new(scheduler: Arc<Scheduler>, events: mpsc::Receiver<NodeDown>) -> Self {
        Self { scheduler, events }
    }

    /// Takes every loss as it comes (marks it, acknowledges it) and hands the deployments that
    /// lost replicas to the converge queue: the heartbeat's hand-off never waits for a
    /// replacement (with 50 nodes lost at once and a few seconds of converging each, it used
    /// to wait minutes, and the next losses with it), and a deployment hit by several losses
    /// while its converge is queued converges once for all of them.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let scheduler = Arc::clone(&self.scheduler);
        scheduler.stats().set_running(Loop::Rebalancer, true);
        let mut interval = tokio::time::interval(scheduler.config().rebalance_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let lost = tokio::select! {
                () = shutdown.cancelled() => break,
                Some(event) = self.events.recv() => self.take(event).await,
                _ = interval.tick() => self.losses().await.unwrap_or_else(|e| {
                    warn!(error = %e, "rebalance pass failed");
                    Vec::new()
                }),
            };
            let deployments: BTreeSet<DeploymentName> = lost.into_iter().collect();
            for name in deployments {
                scheduler.enqueue(name);
            }
        }
        scheduler.stats().set_running(Loop::Rebalancer, false);
        info!("rebalancer stopped");
    }

    /// Records a hand-off's loss and acknowledges it; the deployments to converge.
    async fn take(&self, event: NodeDown) -> Vec<DeploymentName> {
        let span = info_span!("rebalance", node = %event.node);
        async {
            let lost = self.mark_lost(&event.node).await;
            let _ = event.ack.send(());
            lost.unwrap_or_default()
        }
        .instrument(span)
        .await
    }

    /// The level-triggered pass: marks lost the replicas still recorded on offline nodes (a
    /// hand-off missed across a restart); the deployments that lost some.
    async fn losses(&self) -> Result<Vec<DeploymentName>> {
        let store = self.scheduler.store();
        let mut deployments = Vec::new();
        for node in store.list_nodes_brief().await?.into_iter().filter(|n| n.status == NodeStatus::Offline) {
            let span = info_span!("rebalance", node = %node.name);
            if let Ok(lost) = self.mark_lost(&node.name).instrument(span).await {
                deployments.extend(lost);
            }
        }
        Ok(deployments)
    }

    /// Marks the node's replicas lost; returns the deployment of each.
    async fn mark_lost(&self, node: &NodeName) -> Result<Vec<DeploymentName>> {
        let lost =
            self.scheduler.store().mark_node_lost(node).await.inspect_err(|e| warn!(error = %e, "mark lost failed"))?;
        if lost.is_empty() {
            return Ok(Vec::new());
        }
        info!(lost = lost.len(), "replicas lost with their node; replacing");
        self.scheduler.stats().rebalanced(lost.len());
        // Repeats are fine: the queue merges them.
        Ok(lost.into_iter().map(|r| r.deployment).collect())
    }
}
