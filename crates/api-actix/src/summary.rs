//! The cluster in numbers, from counts the store makes (no replica row leaves it): the body of
//! `GET /status/summary`, and what `/metrics` and `GET /v1/deployments` report.

use std::collections::HashMap;
use std::sync::Arc;

use orchestrator_core::{Deployment, DeploymentName, NodeStatus, ReplicaCount, ReplicaState};

use crate::ApiState;
use crate::dto::{DeploymentCounts, NodeCounts, ReplicaCounts, StatusSummary};
use crate::error::ApiError;

/// Ready replicas per deployment (running, and healthy where its template has a check;
/// deployments with none left out).
pub(crate) fn ready_by_deployment<'a>(
    counts: &'a [ReplicaCount],
    deployments: &[Deployment],
) -> HashMap<&'a DeploymentName, u64> {
    let templates: HashMap<&DeploymentName, _> = deployments.iter().map(|d| (&d.name, &d.spec.template)).collect();
    let mut ready = HashMap::new();
    for c in counts {
        if templates.get(&c.deployment).is_some_and(|t| t.is_ready(c.state, c.health)) {
            *ready.entry(&c.deployment).or_default() += c.count;
        }
    }
    ready
}

/// Replicas counted by deployment, state and health, at most once per store revision: at a
/// million replicas the store takes half a second to count them.
pub(crate) async fn replica_counts(state: &ApiState) -> Result<Arc<Vec<ReplicaCount>>, ApiError> {
    let store = state.store.as_ref();
    state.replica_counts.get(store, None, |_| async { Ok(store.count_replicas().await?) }).await
}

/// The counts, `leader` unset.
async fn summarize(state: &ApiState) -> Result<StatusSummary, ApiError> {
    let store = state.store.as_ref();
    // Without the host ports their replicas hold (none asked for): they are not counted.
    let nodes = store.list_nodes_holding(&[]).await?;
    let deployments = store.list_deployments().await?;
    let counts = replica_counts(state).await?;
    let mut node_counts = NodeCounts::default();
    for n in &nodes {
        node_counts.total += 1;
        match n.status {
            NodeStatus::Online => node_counts.online += 1,
            NodeStatus::Offline => node_counts.offline += 1,
            NodeStatus::Draining => node_counts.draining += 1,
        }
        node_counts.capacity += u64::from(n.capacity);
        node_counts.available += u64::from(n.available);
    }
    let ready = ready_by_deployment(&counts, &deployments);
    let mut replicas = ReplicaCounts {
        running: counts.iter().filter(|c| c.state == ReplicaState::Running).map(|c| c.count).sum(),
        ready: ready.values().sum(),
        pending: counts.iter().filter(|c| c.state == ReplicaState::Pending).map(|c| c.count).sum(),
        ..ReplicaCounts::default()
    };
    let mut deployment_counts = DeploymentCounts { total: deployments.len() as u64, degraded: 0 };
    for d in &deployments {
        replicas.required += u64::from(d.spec.replicas);
        if ready.get(&d.name).copied().unwrap_or(0) < u64::from(d.spec.replicas) {
            deployment_counts.degraded += 1;
        }
    }
    Ok(StatusSummary { leader: None, nodes: node_counts, deployments: deployment_counts, replicas })
}

/// The summary of the store's current revision (its `leader` unset), built at most once per
/// revision.
pub(crate) async fn cached_summary(state: &ApiState) -> Result<StatusSummary, ApiError> {
    Ok(StatusSummary::clone(&*state.summary.get(state.store.as_ref(), None, |_| summarize(state)).await?))
}
