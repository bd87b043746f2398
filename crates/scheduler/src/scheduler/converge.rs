//! The executor half of converge: reads the state, asks the planner, and carries the plan out
//! on the engines and in the store (starts in parallel, recorded in batches; removals after).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use futures::StreamExt;
use futures::future::BoxFuture;
use orchestrator_core::error::Kind;
use orchestrator_core::{
    Claim, CrashLoop, Deployment, DeploymentName, Error, Failure, Node, NodeName, Placement, Replica, ReplicaContainer,
    ReplicaFilter, ReplicaId, Result, Unplaced,
};
use tracing::{Instrument, debug, info, info_span, warn};

use super::{Converged, RECORD_BATCH, Scheduler};
use crate::foreign_ports::refused_port;
use crate::last_words::{Ending, record};
use crate::planner::{self, Move, Plan, Serving};

/// Drops a plan's placements, and the removals that counted on them: the removals are the
/// planner's picks for an excess that each placement made one larger, and a smaller excess
/// picks a prefix of the same list.
fn hold_back_placements(plan: &mut Plan) {
    let held = plan.place.len();
    plan.place.clear();
    plan.remove.truncate(plan.remove.len().saturating_sub(held));
}

impl Scheduler {
    /// Converges the deployment now, in the caller's task (still one at a time per
    /// deployment); the loops and the API go through the queue instead.
    pub async fn converge(&self, name: &DeploymentName) -> Result<Converged> {
        let span = info_span!("converge", deployment = %name);
        async {
            let _turn = self.deployment_locks.lock(name).await;
            self.converge_locked(name, None).await
        }
        .instrument(span)
        .await
    }

    /// `converge` for a caller that already holds the deployment's lock. `seen`: the
    /// nodes as the caller read them (a reconcile pass reads them once for every deployment,
    /// not once per deployment: 5,000 nodes x 1,000 deployments was most of a pass); they are
    /// read again before placing, which needs current capacity.
    pub(crate) async fn converge_locked(
        &self,
        name: &DeploymentName,
        seen: Option<&BTreeMap<NodeName, Node>>,
    ) -> Result<Converged> {
        // Read under the lock: the state may have changed while we waited for it.
        let mut deployment = match self.store.get_deployment(name).await {
            Ok(d) => d,
            Err(Error::NotFound { kind: Kind::Deployment, .. }) => return Ok(Converged::default()),
            Err(e) => return Err(e),
        };
        if let Some(id) = deployment.rollout {
            match self.store.get_rollout(name, id).await {
                Ok(rollout) if rollout.state.is_active() => {
                    if let Some(report) = self.step_rollout(&deployment, rollout).await? {
                        return Ok(report);
                    }
                    // It ended: converge as usual, on the deployment as it is now.
                    deployment = self.store.get_deployment(name).await?;
                }
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let read: BTreeMap<NodeName, Node>;
        let mut nodes: &BTreeMap<NodeName, Node> = match seen {
            Some(nodes) => nodes,
            None => {
                read = self.nodes_for(&deployment).await?;
                &read
            }
        };
        let replicas = self.store.list_replicas(ReplicaFilter::deployment(name).active()).await?;
        let serving = Serving::of(replicas.iter().cloned(), nodes);
        let now = SystemTime::now();
        let backing_off = deployment.crash_loop.as_ref().is_some_and(|c| c.is_backing_off(now));
        let mut plan = planner::plan(self.config.strategy, &deployment, &serving, nodes);
        let held_back = backing_off && !plan.place.is_empty();
        if backing_off {
            // Its replicas keep failing: no replacement before the backoff is over (a later
            // pass places them), never a hot loop of starts that fail again.
            debug!("replicas keep failing; replacements wait out the backoff");
            hold_back_placements(&mut plan);
        }
        let mut placed = Vec::new();
        let decided_on;
        if !plan.place.is_empty() || (plan.unplaced > 0 && !backing_off) {
            // Decided again on the current capacity, in the placer's turn; only the decision
            // and its record wait, not the starts.
            let decided = self.place(&deployment, replicas).await?;
            (plan, placed, decided_on) = (decided.plan, decided.placed, decided.nodes);
            nodes = &decided_on;
        }
        if (!placed.is_empty() || !plan.restart.is_empty())
            && let Err(e) = self.pin_image(&mut deployment, nodes).await
        {
            // The starts ask the registry again and say why each cannot have its image; a
            // replica that finds the tag on its engine runs unpinned until the next resolve.
            warn!(error = %e, "image not resolved to a digest; starting by its tag");
        }
        let mut report = self.execute(&deployment, nodes, plan, placed).await?;
        if held_back && let Some(crash) = &deployment.crash_loop {
            // Replacements are due when the backoff ends, not at the next reconcile pass.
            report.look_again = crash.retry_at.duration_since(now).ok();
        }
        if report.started + report.removed + report.failed > 0 {
            info!(started = report.started, removed = report.removed, failed = report.failed, "converged");
        }
        Ok(report)
    }

    /// Records placements as `Pending` replicas, their capacity reserved, in one transaction.
    pub(super) async fn record_placements(
        &self,
        deployment: &Deployment,
        nodes: Vec<NodeName>,
    ) -> Result<Vec<Replica>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        self.store.place_replicas(&placements_of(deployment, nodes)).await
    }

    /// Carries a plan out: starts the placed replicas (already recorded) and the pending
    /// ones, then removes from the plan's removals only as many as leave the required count
    /// serving after the starts that succeeded.
    pub(super) async fn execute(
        &self,
        deployment: &Deployment,
        nodes: &BTreeMap<NodeName, Node>,
        plan: Plan,
        placed: Vec<Replica>,
    ) -> Result<Converged> {
        let Plan { restart, place: _, unplaced, unplaced_reason, remove } = plan;
        let mut report = Converged { unplaced, ..Converged::default() };
        let waiting = unplaced_reason.map(|reason| Unplaced { count: unplaced, reason });
        if let Some(w) = &waiting {
            warn!(unplaced, reason = %w.reason, "replicas unplaced: deployment degraded until a node fits");
        }
        if deployment.unplaced != waiting {
            self.store.set_unplaced(&deployment.name, waiting).await?;
        }
        let mut to_start = restart;
        to_start.extend(placed);
        let failed = self.start_all(deployment, nodes, to_start, &mut report).await;
        // Each failed start leaves one fewer serving than the plan counted on.
        let allowed = remove.len().saturating_sub(failed.len());
        let to_remove: Vec<Replica> = remove.into_iter().filter(|r| !failed.contains(&r.id)).take(allowed).collect();
        report.removed = self.remove_all(nodes, to_remove, deployment.spec.policy.deregister_delay).await;
        Ok(report)
    }

    /// Evens out a deployment's spread over online nodes (moby#24103: Swarm never moves tasks
    /// back onto a returning node). One replica at a time, from the node running the most to
    /// the one running the fewest, while they differ by more than one; each new copy is started
    /// before the old one is removed, so the deployment never runs fewer than before.
    /// Returns how many replicas moved.
    pub async fn rebalance_spread(&self, name: &DeploymentName) -> Result<usize> {
        let _turn = self.deployment_locks.lock(name).await;
        self.rebalance_spread_locked(name).await
    }

    pub(super) async fn rebalance_spread_locked(&self, name: &DeploymentName) -> Result<usize> {
        let deployment = match self.store.get_deployment(name).await {
            Ok(d) => d,
            Err(Error::NotFound { kind: Kind::Deployment, .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut moved = 0;
        // Each move narrows the gap, so this ends; the bound is a guard against a store that
        // keeps changing under us.
        for _ in 0..=deployment.spec.replicas {
            let nodes = self.nodes_for(&deployment).await?;
            let replicas = self.store.list_replicas(ReplicaFilter::deployment(name).active()).await?;
            let Some(Move { replica: victim, to }) = planner::spread_move(&deployment, &replicas, &nodes) else {
                break;
            };
            let placed = {
                let _placing = self.placer.turn.lock().await;
                self.record_placements(&deployment, vec![to.clone()]).await?
            };
            if !self.start_one(&deployment, &nodes[&to], &placed[0]).await {
                break;
            }
            info!(from = %victim.node, to = %to, replica = %victim.id, "moved a replica to even out spread");
            if self.remove_all(&nodes, vec![victim], deployment.spec.policy.deregister_delay).await == 0 {
                break;
            }
            moved += 1;
        }
        Ok(moved)
    }

    /// The placement half of `converge` alone: decides where the deployment's missing replicas
    /// go and records them `Pending` with their capacity reserved, starting nothing (the
    /// reconciler or a later `converge` starts them). `cargo xtask bench scale` times this as
    /// "placements decided and persisted"; the API never calls it. Returns the replicas placed
    /// and how many found no room.
    pub async fn place_missing(&self, name: &DeploymentName) -> Result<(Vec<Replica>, u32)> {
        let _turn = self.deployment_locks.lock(name).await;
        let deployment = self.store.get_deployment(name).await?;
        let replicas = self.store.list_replicas(ReplicaFilter::deployment(name).active()).await?;
        let decided = self.place(&deployment, replicas).await?;
        Ok((decided.placed, decided.plan.unplaced))
    }

    /// Starts replicas in parallel (bounded per engine and in total) and records them running
    /// in batches: the starts that finished while the previous batch was being written go in
    /// the next one, so the store sees one transaction per batch, not one per container, and
    /// the engines never wait for it. On each node the starts form one batch under the node's
    /// spawn lock for the image. Returns the ids that failed; their reservations are released
    /// so a later pass places them again.
    async fn start_all(
        &self,
        deployment: &Deployment,
        nodes: &BTreeMap<NodeName, Node>,
        replicas: Vec<Replica>,
        report: &mut Converged,
    ) -> Vec<ReplicaId> {
        let total = replicas.len();
        let node_of: HashMap<ReplicaId, Replica> = replicas.iter().map(|r| (r.id, r.clone())).collect();
        let (done, mut finished) = tokio::sync::mpsc::unbounded_channel::<(ReplicaId, Result<String>)>();
        let mut by_node: BTreeMap<NodeName, Vec<Replica>> = BTreeMap::new();
        for replica in replicas {
            by_node.entry(replica.node.clone()).or_default().push(replica);
        }
        // The engine limits bound the calls in flight on each engine; this bounds the nodes a
        // converge works on at once (each holds its spawn lock meanwhile).
        let nodes_at_once = (self.config.total_concurrency / self.config.per_node_concurrency.max(1)).max(1);
        // Collected first, and drained with loops rather than closures: futures built by
        // closures inside the stream would keep this one from being `Send` for every lifetime.
        let per_node: Vec<BoxFuture<'_, ()>> = by_node
            .into_iter()
            .map(|(name, replicas)| {
                let done = done.clone();
                Box::pin(async move {
                    // The receiver lives until every start is in: a send cannot fail.
                    let Some(node) = nodes.get(&name) else {
                        for replica in replicas {
                            let _ = done.send((replica.id, Err(Error::not_found(Kind::Node, name.as_str()))));
                        }
                        return;
                    };
                    let _spawn = self.spawn_locks.lock(&(name.clone(), deployment.spec.template.image.clone())).await;
                    let starts: Vec<_> =
                        replicas
                            .into_iter()
                            .map(|replica| async move {
                                (replica.id, self.start_container(deployment, node, &replica).await)
                            })
                            .collect();
                    let mut starts =
                        futures::stream::iter(starts).buffer_unordered(self.config.max_per_node_concurrency.max(1));
                    while let Some(outcome) = starts.next().await {
                        let _ = done.send(outcome);
                    }
                }) as BoxFuture<'_, ()>
            })
            .collect();
        drop(done);
        let starting = futures::stream::iter(per_node).buffer_unordered(nodes_at_once).collect::<Vec<()>>();
        let recording = async {
            let mut failed = Vec::new();
            let mut not_started = Vec::new();
            let mut refused_all = Vec::new();
            let mut batch = Vec::with_capacity(RECORD_BATCH);
            while finished.recv_many(&mut batch, RECORD_BATCH).await > 0 {
                let mut started = Vec::with_capacity(batch.len());
                for (id, outcome) in batch.drain(..) {
                    match outcome {
                        Ok(container_id) => started.push((id, container_id)),
                        Err(e) => {
                            warn!(replica = %id, error = %e, "start failed; releasing the reservation");
                            if let Some(r) = node_of.get(&id) {
                                self.note_refused_port(&r.node, &r.claim, &e);
                                if is_the_replicas_failure(&e) {
                                    not_started.push((r.clone(), e));
                                }
                            }
                            failed.push(id);
                        }
                    }
                }
                match self.store.mark_running_many(&started).await {
                    Ok(refused) => {
                        for id in &refused {
                            warn!(replica = %id, "started, but the replica was lost or removed meanwhile");
                        }
                        failed.extend(refused.iter().copied());
                        refused_all.extend(refused);
                    }
                    Err(e) => {
                        warn!(error = %e, replicas = started.len(), "recording starts failed; releasing them");
                        failed.extend(started.into_iter().map(|(id, _)| id));
                    }
                }
            }
            (failed, not_started, refused_all)
        };
        let (_, (failed, not_started, refused)) = futures::join!(starting, recording);
        let refused: Vec<(ReplicaId, NodeName)> =
            refused.into_iter().filter_map(|id| Some((id, node_of.get(&id)?.node.clone()))).collect();
        self.remove_if_deleted(deployment, nodes, &refused).await;
        let mut retired = HashSet::new();
        let mut no_image = false;
        for (replica, error) in not_started {
            retired.insert(replica.id);
            no_image |= self.retire_not_started(deployment, &replica, &error).await;
        }
        // One failure of the streak for the whole batch: its starts failed together.
        if no_image {
            self.count_no_image(deployment).await;
        }
        for id in failed.iter().filter(|id| !retired.contains(id)) {
            if let Err(e) = self.store.release_replica(*id).await {
                warn!(replica = %id, error = %e, "release failed");
            }
        }
        report.started += total - failed.len();
        report.failed += failed.len();
        failed
    }

    /// A start whose record was refused left a container behind. If the deployment is gone
    /// (deleted while the start was under way, perhaps on another server), nobody wants it:
    /// remove it now rather than leave it to the reconciler. Refused for another reason (the
    /// node was marked offline and its replicas lost), the node may not answer; the reconciler
    /// removes it when the node is back.
    async fn remove_if_deleted(
        &self,
        deployment: &Deployment,
        nodes: &BTreeMap<NodeName, Node>,
        refused: &[(ReplicaId, NodeName)],
    ) {
        if refused.is_empty()
            || !matches!(
                self.store.get_deployment(&deployment.name).await,
                Err(Error::NotFound { kind: Kind::Deployment, .. })
            )
        {
            return;
        }
        let work: Vec<(ReplicaId, Node)> =
            refused.iter().filter_map(|(id, node)| Some((*id, nodes.get(node)?.clone()))).collect();
        futures::stream::iter(work)
            .map(|(id, node)| async move {
                let _permit = self.permits.acquire(&node.name).await;
                match self.runtime.remove_replica(&node, &deployment.name, id).await {
                    Ok(()) => {
                        info!(node = %node.name, replica = %id, "removed a container started for a deleted deployment")
                    }
                    Err(e) => {
                        warn!(node = %node.name, replica = %id, error = %e, "remove failed; the reconciler will retry")
                    }
                }
            })
            .buffer_unordered(self.config.total_concurrency)
            .collect::<Vec<_>>()
            .await;
    }

    /// Creates and starts one replica's container (idempotent by name); its container id.
    async fn start_container(&self, deployment: &Deployment, node: &Node, replica: &Replica) -> Result<String> {
        let permit = self.permits.acquire_start(&node.name).await;
        let container = ReplicaContainer::new(deployment, replica);
        let container_id = self.runtime.start_replica(node, &container).await?;
        permit.started();
        debug!(node = %node.name, replica = %replica.id, "container running");
        Ok(container_id)
    }

    /// Starts one replica and records it running; on failure releases its reservation.
    async fn start_one(&self, deployment: &Deployment, node: &Node, replica: &Replica) -> bool {
        let spawn = self.spawn_locks.lock(&(node.name.clone(), deployment.spec.template.image.clone())).await;
        let started = self.start_container(deployment, node, replica).await;
        drop(spawn);
        let outcome = match started {
            Ok(container_id) => self.store.mark_running(replica.id, &container_id).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => true,
            Err(e) => {
                warn!(node = %node.name, replica = %replica.id, error = %e, "start failed; releasing the reservation");
                self.note_refused_port(&node.name, &replica.claim, &e);
                if is_the_replicas_failure(&e) {
                    if self.retire_not_started(deployment, replica, &e).await {
                        self.count_no_image(deployment).await;
                    }
                } else if let Err(e) = self.store.release_replica(replica.id).await {
                    warn!(replica = %replica.id, error = %e, "release failed");
                }
                false
            }
        }
    }

    /// A replica of the revision a rollout is rolling out to failed: the rollout counts it (the
    /// replica itself is replaced and forgotten), and its failure action follows its policy.
    pub(crate) async fn count_for_rollout(&self, deployment: &Deployment, r: &Replica, what: &str) -> Result<()> {
        if deployment.rollout.is_none() || r.revision != deployment.revision {
            return Ok(());
        }
        let why = format!("replica {} on {} {what}", r.id, r.node);
        self.store.count_rollout_failure(&deployment.name, r.revision, &why).await
    }

    /// A start failed for want of its image: one more failure in the deployment's streak, so
    /// replacements wait 1 s doubling to 5 min instead of pulling again at every pass.
    async fn count_no_image(&self, deployment: &Deployment) {
        let crash = CrashLoop::after(deployment.crash_loop.as_ref(), Failure::NoImage, SystemTime::now());
        if let Err(e) = self.store.set_crash_loop(&deployment.name, Some(crash)).await {
            warn!(deployment = %deployment.name, error = %e, "cannot record the failed pull's backoff");
        }
    }

    /// Releases a replica whose container did not start for `error`, keeping why (`deploy ps`
    /// shows it); one that lacks its image counts against a rollout to its revision. Returns
    /// whether it lacked its image (the caller counts the deployment's backoff, once a batch).
    async fn retire_not_started(&self, deployment: &Deployment, replica: &Replica, error: &Error) -> bool {
        let lacks_image = lacks_its_image(error);
        if lacks_image && let Err(e) = self.count_for_rollout(deployment, replica, "could not have its image").await {
            warn!(replica = %replica.id, error = %e, "cannot count the failed pull in the rollout");
        }
        if let Err(e) = self.store.retire_replica(record(replica, &refusal(error, replica))).await {
            warn!(replica = %replica.id, error = %e, "release failed");
        }
        lacks_image
    }

    /// Keeps a port the engine refused (something else holds it) out of placement on that
    /// node for a while: the next plan puts the replica elsewhere, or says why it cannot.
    fn note_refused_port(&self, node: &NodeName, claim: &Claim, error: &Error) {
        if let Some(port) = refused_port(error, claim) {
            warn!(node = %node, port = %port, "the engine holds the port for something else; avoiding the node for it");
            self.foreign_ports.hold(node, port);
        }
    }

    /// Removes replicas' containers, then their records. Endpoints first: those still serving
    /// leave the endpoints `deregister_delay` before their SIGTERM, so a load balancer that
    /// follows the endpoints stops sending them requests before they stop (kubernetes#43576).
    /// A replica whose container could not be removed keeps its record (and capacity) so the
    /// next pass tries again.
    pub(super) async fn remove_all(
        &self,
        nodes: &BTreeMap<NodeName, Node>,
        replicas: Vec<Replica>,
        deregister_delay: std::time::Duration,
    ) -> usize {
        let serving: Vec<ReplicaId> = replicas
            .iter()
            .filter(|r| r.state == orchestrator_core::ReplicaState::Running && r.deregistered_at.is_none())
            .map(|r| r.id)
            .collect();
        if !serving.is_empty() && !deregister_delay.is_zero() {
            match self.store.deregister_replicas(&serving).await {
                Ok(()) => {
                    debug!(
                        replicas = serving.len(),
                        delay_ms = deregister_delay.as_millis() as u64,
                        "deregistered; stopping after the delay"
                    );
                    tokio::time::sleep(deregister_delay).await;
                }
                Err(e) => warn!(error = %e, "cannot take replicas out of the endpoints; stopping them anyway"),
            }
        }
        futures::stream::iter(replicas)
            .map(|replica| async move {
                let Some(node) = nodes.get(&replica.node) else { return false };
                let _permit = self.permits.acquire(&node.name).await;
                if let Err(e) = self.runtime.remove_replica(node, &replica.deployment, replica.id).await {
                    warn!(node = %node.name, replica = %replica.id, error = %e, "remove failed; will retry");
                    return false;
                }
                self.store.release_replica(replica.id).await.is_ok()
            })
            .buffer_unordered(self.config.total_concurrency)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await
    }
}

/// Whether a failed start says something about the replica (its image, its ports, the engine
/// refusing it) rather than about this server (no longer the leader) or the record (gone).
fn is_the_replicas_failure(error: &Error) -> bool {
    !matches!(error, Error::NotLeader { .. } | Error::NotFound { kind: Kind::Replica | Kind::Deployment, .. })
}

/// Why a start failed, as `deploy ps` says it: a pull that failed, a port the engine holds
/// for something else (named with its node), or anything else in the error's own words.
fn refusal(error: &Error, replica: &Replica) -> Ending {
    if let Error::PullFailed { node, image, reason } = error {
        return Ending::PullFailed(format!("{image} on {node}: {reason}"));
    }
    Ending::NotStarted(match refused_port(error, &replica.claim) {
        Some(port) => format!("port {port} taken on {}", replica.node),
        None => error.to_string(),
    })
}

/// Whether a start failed for want of the image: a pull that failed, or an image the engine
/// lacks and may not pull. Waiting helps (a login added, a registry back); a loop does not.
fn lacks_its_image(error: &Error) -> bool {
    matches!(error, Error::PullFailed { .. } | Error::ImageNotFound { .. })
}

/// A placement of `deployment` on each of `nodes`, in order.
pub(super) fn placements_of(deployment: &Deployment, nodes: Vec<NodeName>) -> Vec<Placement> {
    let claim = deployment.spec.template.claim();
    nodes
        .into_iter()
        .map(|node| Placement {
            deployment: deployment.name.clone(),
            node,
            units: deployment.spec.units,
            revision: deployment.revision,
            claim: claim.clone(),
        })
        .collect()
}
