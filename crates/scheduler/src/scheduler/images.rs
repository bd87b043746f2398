//! Images before replicas: a revision's tag is resolved once to a digest that every replica
//! of the revision runs (a tag moved later changes nothing until the next update), and a
//! rollout has its image on every node it may use before it stops anything (pull before
//! stop), so a registry that refuses or is gone fails the rollout while every old replica
//! still serves.

use std::collections::BTreeMap;

use futures::StreamExt;
use futures::future::BoxFuture;
use orchestrator_core::runtime::{ImageReady, image_to_run};
use orchestrator_core::{Deployment, Error, NewEvent, Node, NodeName, Result, Rollout, RolloutProgress};
use tracing::{debug, info, warn};

use super::Scheduler;
use crate::planner;

/// How the pulls ahead of a rollout ended.
pub(super) enum PullAhead {
    /// The image is on every node the rollout may use (those that answered).
    Done,
    /// It cannot be had: the rollout fails, with why.
    Failed(String),
}

impl Scheduler {
    /// Pins the deployment's current revision to the digest its tag names now, if it should be
    /// and is not yet, asking the engine of the first online node that answers. A registry's
    /// refusal is returned (as `PullFailed`); engines that do not answer leave it unpinned.
    pub(super) async fn pin_image(&self, deployment: &mut Deployment, nodes: &BTreeMap<NodeName, Node>) -> Result<()> {
        if deployment.image_digest.is_some() || !deployment.spec.template.pins_digest() {
            return Ok(());
        }
        let mut online: Vec<&Node> = nodes.values().filter(|n| n.is_schedulable()).collect();
        online.sort_by(|a, b| a.name.cmp(&b.name));
        for node in online {
            match self.runtime.resolve_image(node, &deployment.spec.template).await {
                Ok(Some(digest)) => {
                    self.store.pin_image(&deployment.name, deployment.revision, &digest).await?;
                    // The first resolution wins (another server may have pinned it first).
                    let stored = self.store.get_deployment(&deployment.name).await?;
                    if stored.revision == deployment.revision {
                        deployment.image_digest = stored.image_digest;
                    }
                    info!(image = %deployment.spec.template.image, digest = ?deployment.image_digest, "image pinned");
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(e @ Error::PullFailed { .. }) => return Err(e),
                Err(e) => debug!(node = %node.name, error = %e, "cannot resolve the image there; trying another node"),
            }
        }
        Ok(())
    }

    /// Pins the rollout's image and has it on every online node the deployment's constraints
    /// admit (where its new replicas go, now or after a failover), each node's pull an event
    /// as it starts and ends. Nodes that do not answer are left to the heartbeat.
    pub(super) async fn pull_ahead(
        &self,
        deployment: &mut Deployment,
        rollout: &Rollout,
        nodes: &BTreeMap<NodeName, Node>,
    ) -> Result<PullAhead> {
        if let Err(e) = self.pin_image(deployment, nodes).await {
            return Ok(PullAhead::Failed(format!("image {} not resolved: {e}", deployment.spec.template.image)));
        }
        let mut targets: Vec<&Node> =
            nodes.values().filter(|n| n.is_schedulable() && planner::admits(deployment, n)).collect();
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        let template = &deployment.spec.template;
        let image = image_to_run(template, deployment.image_digest.as_deref()).to_string();
        let names: Vec<&str> = targets.iter().map(|n| n.name.as_str()).collect();
        let waiting = format!("pulling {} on {}", template.image, names.join(", "));
        let progress = RolloutProgress { updated: rollout.updated, healthy: rollout.healthy };
        self.store.record_rollout_progress(rollout.id, progress, Some(waiting)).await?;
        let name = deployment.name.as_str();
        let starting = targets.iter().map(|n| NewEvent::image_pull(name, n.name.as_str(), &image, None)).collect();
        self.store.record_events(starting).await?;
        let digest = deployment.image_digest.clone();
        // Boxed first, then drained: futures made by a closure inside the stream would keep
        // the converge from being `Send` for every lifetime.
        let mut pulls: Vec<BoxFuture<'_, (NodeName, Result<ImageReady>)>> = Vec::with_capacity(targets.len());
        for node in targets {
            let digest = digest.clone();
            pulls.push(Box::pin(async move {
                let _permit = self.permits.acquire(&node.name).await;
                (node.name.clone(), self.runtime.prepare_image(node, template, digest).await)
            }));
        }
        let outcomes: Vec<(NodeName, Result<ImageReady>)> =
            futures::stream::iter(pulls).buffer_unordered(self.config.total_concurrency.max(1)).collect().await;
        let mut ended = Vec::new();
        let mut failures = Vec::new();
        for (node, outcome) in outcomes {
            match outcome {
                Ok(ready) => {
                    debug!(node = %node, ?ready, "image ready");
                    let pulled = ready == ImageReady::Pulled;
                    ended.push(NewEvent::image_pull(name, node.as_str(), &image, Some(Ok(pulled))));
                }
                Err(e @ (Error::PullFailed { .. } | Error::ImageNotFound { .. })) => {
                    let why = e.to_string();
                    ended.push(NewEvent::image_pull(name, node.as_str(), &image, Some(Err(&why))));
                    failures.push(why);
                }
                Err(e) => {
                    // Not the image's fault: the engine does not answer (the heartbeat will
                    // say so), or this server no longer leads.
                    warn!(node = %node, error = %e, "no pull there; the node's replicas will pull at their start");
                    ended.push(NewEvent::image_pull(name, node.as_str(), &image, Some(Err(&e.to_string()))));
                    if matches!(e, Error::NotLeader { .. }) {
                        self.store.record_events(ended).await?;
                        return Err(e);
                    }
                }
            }
        }
        self.store.record_events(ended).await?;
        Ok(match failures.first() {
            None => PullAhead::Done,
            Some(first) => PullAhead::Failed(format!("the new image could not be had: {first}")),
        })
    }
}
