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
//!
//! A pass is two parts. The sweep (list every engine, read the store, remove the containers of
//! deployments that no longer exist) runs every interval. Each deployment's part (the fixes
//! above, then `converge`) goes to the converge queue: converges wait for engines, and a
//! backlog of them (a new leader finding the intents a follower took while nobody led) must
//! not hold up the next sweep, or a deployment deleted on a follower keeps its containers
//! until the backlog is done. A deployment the queue already has (queued, converging, or
//! waiting out a retry's backoff) is left out of the pass: its findings would be stale by the
//! time its turn came, and the next pass after it looks again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;

use futures::StreamExt;
use orchestrator_core::{
    ContainerState, ContainerSummary, CrashLoop, Deployment, DeploymentName, Failure, Health, Node, NodeName,
    NodeStatus, Replica, ReplicaFilter, ReplicaId, ReplicaState, Result,
};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::last_words::{Ending, capture};
use crate::scheduler::{Observed, Scheduler};
use crate::stats::Loop;

/// A sweep never takes more than about this share of the time: after a sweep of T, the next
/// starts no sooner than T x `REST_FACTOR` later (and no sooner than the interval). A sweep
/// over a million replicas costs seconds; back to back it would hold a core for ever. Only the
/// sweep counts: the converges it hands out wait on engines, not on this core.
const REST_FACTOR: u32 = 4;
/// Container listings in flight at once during a pass.
const LISTINGS_AT_ONCE: usize = 64;

/// One container of ours as a pass saw it, kept small: a pass over a million containers
/// holds one of these for each.
struct Seen {
    /// Index into `Snapshot::listed_names`.
    node: u32,
    replica: ReplicaId,
    state: ContainerState,
    exit_code: Option<i64>,
    health: Option<Health>,
    /// Kept only where adoption may need it: replicas not already recorded `Running`.
    container_id: Option<Box<str>>,
}

/// What every deployment's part of one pass shares: the nodes as read, and what the engines
/// said about them.
struct Snapshot {
    /// The nodes as the sweep read them.
    nodes: Arc<BTreeMap<NodeName, Node>>,
    /// Names of the nodes that answered, indexed by `Seen::node`.
    listed_names: Vec<NodeName>,
    /// Nodes whose listing succeeded: absence of a container there means something.
    listed: HashSet<NodeName>,
    /// Replicas that were `Running` before the listing began; only for these does a missing
    /// container mean the container vanished (others may have started after the listing).
    running_before: HashSet<ReplicaId>,
}

/// One pass's view of Docker: the containers on each node that answered, by deployment.
struct Listing {
    snapshot: Snapshot,
    by_deployment: HashMap<DeploymentName, Vec<Seen>>,
}

impl Listing {
    fn add(&mut self, node: u32, c: ContainerSummary) {
        let container_id = (!self.snapshot.running_before.contains(&c.replica)).then(|| c.id.into_boxed_str());
        self.by_deployment.entry(c.deployment).or_default().push(Seen {
            node,
            replica: c.replica,
            state: c.state,
            exit_code: c.exit_code,
            health: c.health,
            container_id,
        });
    }
}

/// A container to remove: where, and whose.
type Doomed = (NodeName, DeploymentName, ReplicaId);

/// One deployment's part of a pass: the deployment as the sweep read it, and its containers.
struct Work {
    deployment: Deployment,
    seen: Vec<Seen>,
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
        let interval = scheduler.config().reconcile_interval;
        let mut rest = interval;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(rest) => {}
                () = self.wake.notified() => {}
            }
            let started = Instant::now();
            let swept = self.sweep().instrument(info_span!("reconcile_sweep")).await;
            let took = started.elapsed();
            match swept {
                Ok((snapshot, work)) => {
                    let snapshot = Arc::new(snapshot);
                    for item in work {
                        let name = item.deployment.name.clone();
                        scheduler.request(name, Some(observed(&scheduler, item, &snapshot)), None);
                    }
                }
                Err(e) => warn!(error = %e, "reconcile pass failed"),
            }
            scheduler.stats().reconciled(took);
            rest = interval.max(took * REST_FACTOR);
            if rest > interval {
                info!(
                    took_ms = took.as_millis() as u64,
                    rest_ms = rest.as_millis() as u64,
                    "long reconcile sweep; resting"
                );
            }
        }
        scheduler.stats().set_running(Loop::Reconciler, false);
        info!("reconciler stopped");
    }

    /// One full pass over every deployment, waiting for each one's converge.
    pub async fn pass(&self) -> Result<()> {
        let (snapshot, work) = self.sweep().instrument(info_span!("reconcile_pass")).await?;
        let snapshot = Arc::new(snapshot);
        let told: Vec<_> = work
            .into_iter()
            .map(|item| {
                let (tell, told) = oneshot::channel();
                let name = item.deployment.name.clone();
                self.scheduler.request(name, Some(observed(&self.scheduler, item, &snapshot)), Some(tell));
                told
            })
            .collect();
        futures::future::join_all(told).await;
        Ok(())
    }

    /// Lists every reachable engine, removes the containers of deployments that no longer
    /// exist, and hands out each deployment's part (but for those the queue already has).
    async fn sweep(&self) -> Result<(Snapshot, Vec<Work>)> {
        let store = self.scheduler.store();
        let running_before: HashSet<ReplicaId> = store.running_replica_ids().await?.into_iter().collect();
        let nodes = self.scheduler.nodes_by_name().await?;
        let reachable: Vec<&Node> =
            nodes.values().filter(|n| matches!(n.status, NodeStatus::Online | NodeStatus::Draining)).collect();
        let runtime = self.scheduler.runtime();
        // A bounded number of listings at once (each answer is read whole before it is parsed,
        // ~100 KB for 200 containers, and all 5,000 at once held half a gigabyte), each folded
        // into the compact view as it arrives. (Collected first: boxed futures keep the loop's
        // future `Send` for every lifetime.)
        let listing: Vec<_> =
            reachable.iter().map(|n| async move { (n.name.clone(), runtime.list_replicas(n).await) }).collect();
        let mut listings = futures::stream::iter(listing).buffer_unordered(LISTINGS_AT_ONCE);
        let mut listed_names = Vec::with_capacity(reachable.len());
        let mut listed = HashSet::new();
        let mut found: Vec<(u32, ContainerSummary)> = Vec::new();
        while let Some((node, listing)) = listings.next().await {
            match listing {
                Ok(containers) => {
                    let index = u32::try_from(listed_names.len()).unwrap_or(u32::MAX);
                    listed_names.push(node.clone());
                    listed.insert(node);
                    found.extend(containers.into_iter().map(|c| (index, c)));
                }
                Err(e) => warn!(node = %node, error = %e, "cannot list containers; skipping node this pass"),
            }
        }
        drop(listings);
        drop(reachable);
        let mut observed = Listing {
            snapshot: Snapshot { nodes: Arc::new(nodes), listed_names, listed, running_before },
            by_deployment: HashMap::new(),
        };
        for (index, c) in found {
            observed.add(index, c);
        }

        let deployments = store.list_deployments().await?;
        let known: HashSet<&DeploymentName> = deployments.iter().map(|d| &d.name).collect();
        let names = &observed.snapshot.listed_names;
        let orphans: Vec<Doomed> = observed
            .by_deployment
            .iter()
            .filter(|(deployment, _)| !known.contains(deployment))
            .flat_map(|(deployment, seen)| {
                seen.iter().map(|s| (names[s.node as usize].clone(), deployment.clone(), s.replica))
            })
            .collect();
        remove_containers(&self.scheduler, orphans, "its deployment no longer exists").await;

        let Listing { snapshot, mut by_deployment } = observed;
        let work = deployments
            .into_iter()
            .filter(|d| !self.scheduler.is_converging(&d.name))
            .map(|deployment| {
                let seen = by_deployment.remove(&deployment.name).unwrap_or_default();
                Work { deployment, seen }
            })
            .collect();
        Ok((snapshot, work))
    }
}

/// One deployment's part of a pass, for the queue: its fixes, then its converge.
fn observed(scheduler: &Arc<Scheduler>, work: Work, snapshot: &Arc<Snapshot>) -> Observed {
    let (scheduler, shared) = (Arc::clone(scheduler), Arc::clone(snapshot));
    let span = info_span!("reconcile", deployment = %work.deployment.name);
    let fixes = async move { fix(&scheduler, work, &shared).await }.instrument(span);
    Observed { fixes: Box::pin(fixes), nodes: Arc::clone(&snapshot.nodes) }
}

/// Makes the store and the engines agree on one deployment's containers (run by the queue,
/// under the deployment's lock, before its converge).
async fn fix(scheduler: &Scheduler, work: Work, snapshot: &Snapshot) -> Result<()> {
    let Work { deployment, seen: containers } = work;
    let store = scheduler.store();
    let replicas: HashMap<ReplicaId, _> = store
        .list_replicas(ReplicaFilter::deployment(&deployment.name))
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let mut seen = HashSet::new();
    let mut surplus: Vec<Doomed> = Vec::new();
    let mut health: Vec<(ReplicaId, Option<Health>)> = Vec::new();
    let mut failed: Option<Failure> = None;
    let mut ended: Vec<(&Replica, Ending)> = Vec::new();
    for container in &containers {
        let node = &snapshot.listed_names[container.node as usize];
        let replica = replicas.get(&container.replica).filter(|r| r.node == *node);
        seen.insert(container.replica);
        let doomed = || (node.clone(), deployment.name.clone(), container.replica);
        match replica {
            Some(r) if r.state.is_active() => match container.state {
                ContainerState::Exited | ContainerState::Dead => {
                    info!(node = %node, replica = %r.id, exit_code = ?container.exit_code, "container exited; replacing");
                    failed = Some(Failure::Exited(container.exit_code));
                    let code = container.exit_code.map_or_else(|| "?".to_string(), |c| c.to_string());
                    scheduler.count_for_rollout(&deployment, r, &format!("exited with code {code}")).await?;
                    surplus.push(doomed());
                    ended.push((r, Ending::Exited(container.exit_code)));
                }
                // The engine says unhealthy once the check failed its retries in a row; it never
                // acts on it itself (moby/moby#28400), so a replacement is ours to make.
                ContainerState::Running if container.health == Some(Health::Unhealthy) => {
                    info!(node = %node, replica = %r.id, "container unhealthy; replacing");
                    failed = failed.or(Some(Failure::Unhealthy));
                    scheduler.count_for_rollout(&deployment, r, "unhealthy").await?;
                    surplus.push(doomed());
                    ended.push((r, Ending::Unhealthy));
                }
                ContainerState::Running if r.state != ReplicaState::Running => {
                    // Not running before the listing, so the listing kept its container id.
                    if let Some(container_id) = &container.container_id {
                        info!(node = %node, replica = %r.id, "adopting running container");
                        store.mark_running(r.id, container_id).await?;
                    }
                }
                ContainerState::Running if r.health != container.health => health.push((r.id, container.health)),
                _ => {}
            },
            Some(r) => {
                // Lost: the node came back after its replicas were replaced elsewhere.
                surplus.push(doomed());
                if let Err(e) = store.release_replica(r.id).await {
                    warn!(replica = %r.id, error = %e, "release of a lost record failed; next pass retries");
                }
            }
            None => surplus.push(doomed()),
        }
    }
    retire(scheduler, &snapshot.nodes, ended).await;
    remove_containers(scheduler, surplus, "surplus or stale").await;
    if !health.is_empty() {
        store.set_replica_health(&health).await?;
    }
    record_crash_loop(scheduler, &deployment, failed).await?;

    let mut vanished = Vec::new();
    for r in replicas.values().filter(|r| snapshot.listed.contains(&r.node) && !seen.contains(&r.id)) {
        if r.state == ReplicaState::Running && snapshot.running_before.contains(&r.id) {
            info!(node = %r.node, replica = %r.id, "container vanished; replacing");
            vanished.push((r, Ending::Vanished));
        } else if r.state == ReplicaState::Lost
            && let Err(e) = store.release_replica(r.id).await
        {
            warn!(replica = %r.id, error = %e, "release failed");
        }
    }
    retire(scheduler, &snapshot.nodes, vanished).await;
    Ok(())
}

/// Keeps how each replica ended and its last lines (read from its engine, all at once, each
/// bounded), and deletes it, its capacity released: a replacement is placed.
async fn retire(scheduler: &Scheduler, nodes: &BTreeMap<NodeName, Node>, ended: Vec<(&Replica, Ending)>) {
    let runtime = scheduler.runtime().as_ref();
    let records =
        futures::future::join_all(ended.into_iter().map(|(r, ending)| capture(runtime, nodes.get(&r.node), r, ending)))
            .await;
    for exit in records {
        let id = exit.replica;
        if let Err(e) = scheduler.store().retire_replica(exit).await {
            warn!(replica = %id, error = %e, "release failed");
        }
    }
}

/// One more failure in the deployment's streak (one a pass, however many replicas failed in
/// it: they failed together), or the streak's end after long enough without one. The
/// converge that follows waits out the backoff before it places replacements.
async fn record_crash_loop(scheduler: &Scheduler, deployment: &Deployment, failed: Option<Failure>) -> Result<()> {
    let now = SystemTime::now();
    let crash = match failed {
        Some(failure) => {
            let crash = CrashLoop::after(deployment.crash_loop.as_ref(), failure, now);
            if crash.restarts > 1 {
                warn!(restarts = crash.restarts, exit_code = ?crash.last_exit_code, "replicas keep failing; backing off");
            }
            Some(crash)
        }
        None if deployment.crash_loop.as_ref().is_some_and(|c| c.is_over(now)) => None,
        None => return Ok(()),
    };
    scheduler.store().set_crash_loop(&deployment.name, crash).await
}

async fn remove_containers(scheduler: &Scheduler, containers: Vec<Doomed>, why: &str) {
    if containers.is_empty() {
        return;
    }
    let Ok(nodes) = scheduler.nodes_by_name().await else { return };
    let runtime = scheduler.runtime();
    futures::future::join_all(containers.iter().filter_map(|(node, deployment, replica)| {
        let node = nodes.get(node)?;
        Some(async move {
            info!(node = %node.name, deployment = %deployment, replica = %replica, why, "removing container");
            if let Err(e) = runtime.remove_replica(node, deployment, *replica).await {
                warn!(node = %node.name, replica = %replica, error = %e, "remove failed; next pass retries");
            }
        })
    }))
    .await;
}
