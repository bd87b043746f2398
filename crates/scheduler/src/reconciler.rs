//! The level-triggered reconciler (kube-rs style): each pass compares what Docker reports on
//! every reachable node with what the store holds, fixes the difference, and converges each
//! deployment to exactly its required count. It never depends on having seen an event.
//!
//! Per container of ours it finds:
//! - replica `Pending` in the store, container running -> adopt it (`Running`; a crash between
//!   start and record);
//! - container exited or dead -> remove it and release the replica (a replacement is placed);
//! - replica `Lost` (the node came back after its replicas were replaced), or unknown to the
//!   store, or of a deleted deployment -> remove the container: it is surplus;
//! - replica `Running` in the store with no container (it vanished) -> release the replica.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use orchestrator_core::{
    ContainerState, ContainerSummary, Deployment, DeploymentName, NodeName, NodeStatus, ReplicaFilter, ReplicaId,
    ReplicaState, Result,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::scheduler::{Converged, Scheduler};
use crate::stats::Loop;

/// One pass's view of Docker: the containers on each node that answered.
struct Observed {
    /// Nodes whose listing succeeded: absence of a container there means something.
    listed: HashSet<NodeName>,
    containers: Vec<(NodeName, ContainerSummary)>,
    /// Replicas that were `Running` before the listing began; only for these does a missing
    /// container mean the container vanished (others may have started after the listing).
    running_before: HashSet<ReplicaId>,
}

pub struct Reconciler {
    scheduler: Arc<Scheduler>,
    wake: Arc<Notify>,
}

impl Reconciler {
    pub fn new(scheduler: Arc<Scheduler>, wake: Arc<Notify>) -> Self {
        Self { scheduler, wake }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let scheduler = Arc::clone(&self.scheduler);
        scheduler.stats().set_running(Loop::Reconciler, true);
        let mut interval = tokio::time::interval(scheduler.config().reconcile_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = interval.tick() => {}
                () = self.wake.notified() => {}
            }
            if let Err(e) = self.pass().instrument(info_span!("reconcile_pass")).await {
                warn!(error = %e, "reconcile pass failed");
            }
        }
        scheduler.stats().set_running(Loop::Reconciler, false);
        info!("reconciler stopped");
    }

    /// One full pass over every deployment.
    pub async fn pass(&self) -> Result<()> {
        let store = self.scheduler.store();
        let running_before: HashSet<ReplicaId> = store
            .list_replicas(ReplicaFilter::default())
            .await?
            .into_iter()
            .filter(|r| r.state == ReplicaState::Running)
            .map(|r| r.id)
            .collect();
        let nodes = store.list_nodes().await?;
        let reachable: Vec<_> =
            nodes.iter().filter(|n| matches!(n.status, NodeStatus::Online | NodeStatus::Draining)).collect();
        let runtime = self.scheduler.runtime();
        let listings = futures::future::join_all(reachable.iter().map(|n| runtime.list_replicas(n))).await;
        let mut observed = Observed { listed: HashSet::new(), containers: Vec::new(), running_before };
        for (node, listing) in reachable.iter().zip(listings) {
            match listing {
                Ok(containers) => {
                    observed.listed.insert(node.name.clone());
                    observed.containers.extend(containers.into_iter().map(|c| (node.name.clone(), c)));
                }
                Err(e) => warn!(node = %node.name, error = %e, "cannot list containers; skipping node this pass"),
            }
        }

        let deployments = store.list_deployments().await?;
        let known: HashSet<&DeploymentName> = deployments.iter().map(|d| &d.name).collect();
        let orphans: Vec<(NodeName, ContainerSummary)> =
            observed.containers.iter().filter(|(_, c)| !known.contains(&c.deployment)).cloned().collect();
        self.remove_containers(orphans, "its deployment no longer exists").await;

        futures::future::join_all(deployments.iter().map(|d| {
            let span = info_span!("reconcile", deployment = %d.name);
            self.reconcile(d, &observed).instrument(span)
        }))
        .await;
        self.scheduler.stats().reconciled();
        Ok(())
    }

    async fn reconcile(&self, deployment: &Deployment, observed: &Observed) -> Result<Converged> {
        let _spawn = self.scheduler.image_locks().lock(&deployment.image).await;
        let store = self.scheduler.store();
        let replicas: HashMap<ReplicaId, _> = store
            .list_replicas(ReplicaFilter::deployment(&deployment.name))
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let mut seen = HashSet::new();
        let mut surplus = Vec::new();
        for (node, container) in observed.containers.iter().filter(|(_, c)| c.deployment == deployment.name) {
            let replica = replicas.get(&container.replica).filter(|r| r.node == *node);
            seen.insert(container.replica);
            match replica {
                Some(r) if r.state.is_active() => match container.state {
                    ContainerState::Exited | ContainerState::Dead => {
                        info!(node = %node, replica = %r.id, exit_code = ?container.exit_code, "container exited; replacing");
                        surplus.push((node.clone(), container.clone()));
                        if let Err(e) = store.release_replica(r.id).await {
                            warn!(replica = %r.id, error = %e, "release failed");
                        }
                    }
                    ContainerState::Running if r.state != ReplicaState::Running => {
                        info!(node = %node, replica = %r.id, "adopting running container");
                        store.mark_running(r.id, &container.id).await?;
                    }
                    _ => {}
                },
                Some(r) => {
                    // Lost: the node came back after its replicas were replaced elsewhere.
                    surplus.push((node.clone(), container.clone()));
                    if let Err(e) = store.release_replica(r.id).await {
                        warn!(replica = %r.id, error = %e, "release of a lost record failed; next pass retries");
                    }
                }
                None => surplus.push((node.clone(), container.clone())),
            }
        }
        self.remove_containers(surplus, "surplus or stale").await;

        for r in replicas.values().filter(|r| observed.listed.contains(&r.node) && !seen.contains(&r.id)) {
            let vanished = r.state == ReplicaState::Running && observed.running_before.contains(&r.id);
            if vanished || r.state == ReplicaState::Lost {
                if vanished {
                    info!(node = %r.node, replica = %r.id, "container vanished; replacing");
                }
                if let Err(e) = store.release_replica(r.id).await {
                    warn!(replica = %r.id, error = %e, "release failed");
                }
            }
        }
        let converged = self.scheduler.converge_locked(&deployment.name).await?;
        if self.scheduler.config().rebalance_on_join {
            self.scheduler.rebalance_spread_locked(&deployment.name).await?;
        }
        Ok(converged)
    }

    async fn remove_containers(&self, containers: Vec<(NodeName, ContainerSummary)>, why: &str) {
        if containers.is_empty() {
            return;
        }
        let Ok(nodes) = self.scheduler.nodes_by_name().await else { return };
        let runtime = self.scheduler.runtime();
        futures::future::join_all(containers.iter().filter_map(|(node, c)| {
            let node = nodes.get(node)?;
            Some(async move {
                info!(node = %node.name, deployment = %c.deployment, replica = %c.replica, why, "removing container");
                if let Err(e) = runtime.remove_replica(node, &c.deployment, c.replica).await {
                    warn!(node = %node.name, replica = %c.replica, error = %e, "remove failed; next pass retries");
                }
            })
        }))
        .await;
    }
}
