//! `RebalanceContainersOnNodes`: when a node goes down, its replicas become `Lost` (capacity
//! freed) and replacements are placed on online nodes and started. Fed by the heartbeat's
//! hand-off, and level-triggered too: a periodic pass re-reads the store for offline nodes
//! still holding replicas, so no loss is missed even across a restart.

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

    pub async fn run(mut self, shutdown: CancellationToken) {
        let scheduler = Arc::clone(&self.scheduler);
        scheduler.stats().set_running(Loop::Rebalancer, true);
        let mut interval = tokio::time::interval(scheduler.config().rebalance_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(event) = self.events.recv() => self.node_down(event).await,
                _ = interval.tick() => {
                    if let Err(e) = self.pass().await {
                        warn!(error = %e, "rebalance pass failed");
                    }
                }
            }
        }
        scheduler.stats().set_running(Loop::Rebalancer, false);
        info!("rebalancer stopped");
    }

    /// Handles one hand-off: record the loss, acknowledge, then replace.
    pub async fn node_down(&self, event: NodeDown) {
        let span = info_span!("rebalance", node = %event.node);
        async {
            let lost = self.mark_lost(&event.node).await;
            let _ = event.ack.send(());
            if let Ok(deployments) = lost {
                self.replace(deployments).await;
            }
        }
        .instrument(span)
        .await
    }

    /// The level-triggered pass: every offline node that still holds active replicas.
    pub async fn pass(&self) -> Result<()> {
        let store = self.scheduler.store();
        for node in store.list_nodes().await?.into_iter().filter(|n| n.status == NodeStatus::Offline) {
            let span = info_span!("rebalance", node = %node.name);
            async {
                if let Ok(deployments) = self.mark_lost(&node.name).await {
                    self.replace(deployments).await;
                }
            }
            .instrument(span)
            .await;
        }
        Ok(())
    }

    /// Marks the node's replicas lost; returns the deployments that lost some.
    async fn mark_lost(&self, node: &NodeName) -> Result<Vec<DeploymentName>> {
        let lost =
            self.scheduler.store().mark_node_lost(node).await.inspect_err(|e| warn!(error = %e, "mark lost failed"))?;
        if lost.is_empty() {
            return Ok(Vec::new());
        }
        info!(lost = lost.len(), "replicas lost with their node; replacing");
        self.scheduler.stats().rebalanced(lost.len());
        let mut deployments: Vec<DeploymentName> = lost.into_iter().map(|r| r.deployment).collect();
        deployments.sort();
        deployments.dedup();
        Ok(deployments)
    }

    async fn replace(&self, deployments: Vec<DeploymentName>) {
        if !deployments.is_empty() {
            self.scheduler.converge_many(deployments).await;
        }
    }
}
