//! `Scheduler`: the operations that change the cluster (create, scale, delete, add/drain/remove
//! node) and `converge`, the one routine that makes a deployment match its spec. The loops
//! (heartbeat, rebalancer, reconciler) and the API all go through it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use orchestrator_core::error::Kind;
use orchestrator_core::{
    ClusterStore, ContainerRuntime, Deployment, DeploymentName, DeploymentSpec, Error, NewNode, Node, NodeName,
    NodeStatus, Placement, Replica, ReplicaContainer, ReplicaFilter, ReplicaId, ReplicaState, Result,
};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::SchedulerConfig;
use crate::election::Tenure;
use crate::locks::{EnginePermits, ImageLocks};
use crate::placement::{self, Candidate};
use crate::stats::Stats;
use crate::tenure_runtime::TenureRuntime;

/// Most starts recorded in one store transaction.
const RECORD_BATCH: usize = 1_000;

/// What one `converge` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converged {
    pub started: usize,
    pub failed: usize,
    pub removed: usize,
    /// Replicas that found no room (the deployment stays degraded).
    pub unplaced: u32,
}

pub struct Scheduler {
    store: Arc<dyn ClusterStore>,
    runtime: Arc<dyn ContainerRuntime>,
    config: SchedulerConfig,
    image_locks: Arc<ImageLocks>,
    permits: Arc<EnginePermits>,
    stats: Arc<Stats>,
}

impl Scheduler {
    pub fn new(store: Arc<dyn ClusterStore>, runtime: Arc<dyn ContainerRuntime>, config: SchedulerConfig) -> Self {
        let permits = Arc::new(EnginePermits::new(config.per_node_concurrency));
        Self { store, runtime, config, image_locks: Arc::default(), permits, stats: Arc::default() }
    }

    /// The same scheduler (spawn locks, engine permits, counters) writing through another
    /// store: the leader's loops get one fenced by its term.
    pub fn with_store(&self, store: Arc<dyn ClusterStore>) -> Self {
        Self {
            store,
            runtime: Arc::clone(&self.runtime),
            config: self.config.clone(),
            image_locks: Arc::clone(&self.image_locks),
            permits: Arc::clone(&self.permits),
            stats: Arc::clone(&self.stats),
        }
    }

    /// The same scheduler as a leader acts with for one term: writes through `store` (fenced by
    /// the term), container starts and removals only while `tenure` is current.
    pub fn for_tenure(&self, store: Arc<dyn ClusterStore>, tenure: Tenure) -> Self {
        let mut scheduler = self.with_store(store);
        scheduler.runtime = Arc::new(TenureRuntime::new(Arc::clone(&self.runtime), tenure));
        scheduler
    }

    pub fn store(&self) -> &Arc<dyn ClusterStore> {
        &self.store
    }

    pub fn runtime(&self) -> &Arc<dyn ContainerRuntime> {
        &self.runtime
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ----- Operator actions -----

    /// Stores a new deployment. Its replicas are started by `converge` (which the caller runs,
    /// in the background or not) and, failing that, by the reconciler.
    pub async fn create_deployment(&self, spec: DeploymentSpec) -> Result<Deployment> {
        let deployment = self.store.create_deployment(spec).await?;
        info!(deployment = %deployment.name, image = %deployment.image, replicas = deployment.replicas, "deployment created");
        Ok(deployment)
    }

    pub async fn scale_deployment(&self, name: &DeploymentName, replicas: u32, version: u64) -> Result<Deployment> {
        let deployment = self.store.scale_deployment(name, replicas, version).await?;
        info!(deployment = %name, replicas, version = deployment.version, "deployment scaled");
        Ok(deployment)
    }

    /// Deletes the deployment and removes its containers. Containers on unreachable nodes are
    /// removed by the reconciler when the node answers again (they are no longer in the store).
    ///
    /// Without the image's spawn lock: a convergence of the same image may hold it for as long
    /// as an engine takes to time out, and a delete must not wait for that. A convergence still
    /// under way for this deployment finds its records gone (its writes fail) and any container
    /// it still starts is an orphan the reconciler removes.
    pub async fn delete_deployment(&self, name: &DeploymentName) -> Result<()> {
        let removed = self.store.delete_deployment(name).await?;
        info!(deployment = %name, "deployment deleted");
        self.remove_containers_of(removed).await;
        Ok(())
    }

    /// Removes the containers of replicas the store no longer has, on the nodes that answer
    /// (online or draining); the reconciler removes the others when their node is back.
    pub async fn remove_containers_of(&self, removed: Vec<Replica>) {
        let Ok(nodes) = self.nodes_by_name().await else { return };
        let work = removed
            .into_iter()
            .filter(|r| r.state.is_active())
            .filter_map(|r| Some((nodes.get(&r.node).filter(|n| n.status != NodeStatus::Offline)?.clone(), r)));
        futures::stream::iter(work)
            .map(|(node, replica)| async move {
                let _permit = self.permits.acquire(&node.name).await;
                if let Err(e) = self.runtime.remove_replica(&node, &replica.deployment, replica.id).await {
                    warn!(node = %node.name, replica = %replica.id, error = %e, "remove failed; the reconciler will retry");
                }
            })
            .buffer_unordered(self.config.total_concurrency)
            .collect::<Vec<_>>()
            .await;
    }

    /// `AddNodesToCluster`: the node starts offline and becomes eligible on its first good ping,
    /// which is tried at once.
    pub async fn add_node(&self, node: NewNode) -> Result<Node> {
        let node = self.store.add_node(node).await?;
        info!(node = %node.name, address = %node.address, capacity = node.capacity, "node added");
        match self.runtime.ping(&node).await {
            Ok(()) => {
                self.store.set_node_status(&node.name, NodeStatus::Online, Some(std::time::SystemTime::now())).await
            }
            Err(e) => {
                info!(node = %node.name, error = %e, "new node not answering yet; the heartbeat keeps trying");
                Ok(node)
            }
        }
    }

    /// Stops placing replicas on the node and moves the ones it has (each replacement started
    /// before the old copy is removed). Returns how many are still on it (0 when done).
    pub async fn drain_node(&self, name: &NodeName) -> Result<usize> {
        self.store.set_node_status(name, NodeStatus::Draining, None).await?;
        info!(node = %name, "draining node");
        let on_node = self.store.list_replicas(ReplicaFilter::node(name).active()).await?;
        let mut deployments: Vec<DeploymentName> = on_node.into_iter().map(|r| r.deployment).collect();
        deployments.sort();
        deployments.dedup();
        self.converge_many(deployments).await;
        Ok(self.store.list_replicas(ReplicaFilter::node(name).active()).await?.len())
    }

    /// `DeleteNodesFromTheCluster`: drains, then forgets the node. `Conflict` if replicas could
    /// not be moved (no room elsewhere); the node stays draining.
    pub async fn remove_node(&self, name: &NodeName) -> Result<()> {
        let left = self.drain_node(name).await?;
        if left > 0 {
            return Err(Error::Conflict(format!(
                "node {name:?} still runs {left} replicas that found no room elsewhere; it stays draining"
            )));
        }
        self.store.remove_node(name).await?;
        info!(node = %name, "node removed");
        Ok(())
    }

    // ----- Convergence -----

    /// Converges several deployments concurrently (same-image ones serialize on the image lock).
    pub async fn converge_many(&self, names: Vec<DeploymentName>) -> Vec<(DeploymentName, Result<Converged>)> {
        futures::future::join_all(names.into_iter().map(|name| async move {
            let result = self.converge(&name).await;
            if let Err(e) = &result {
                warn!(deployment = %name, error = %e, "converge failed; the reconciler will retry");
            }
            (name, result)
        }))
        .await
    }

    /// Makes the deployment run exactly its required replicas on schedulable nodes: starts
    /// pending replicas, places and starts missing ones, then removes surplus ones (those on
    /// draining nodes first, then from the most loaded nodes). A deployment that no longer
    /// exists converges trivially.
    pub async fn converge(&self, name: &DeploymentName) -> Result<Converged> {
        let deployment = match self.store.get_deployment(name).await {
            Ok(d) => d,
            Err(Error::NotFound { kind: Kind::Deployment, .. }) => return Ok(Converged::default()),
            Err(e) => return Err(e),
        };
        let span = info_span!("converge", deployment = %name);
        async {
            let _spawn = self.image_locks.lock(&deployment.image).await;
            self.converge_locked(name, None).await
        }
        .instrument(span)
        .await
    }

    /// `converge` for a caller that already holds the deployment's image lock. `seen`: the
    /// nodes as the caller read them (a reconcile pass reads them once for every deployment,
    /// not once per deployment: 5,000 nodes x 1,000 deployments was most of a pass); they are
    /// read again before placing, which needs current capacity.
    pub(crate) async fn converge_locked(
        &self,
        name: &DeploymentName,
        seen: Option<&HashMap<NodeName, Node>>,
    ) -> Result<Converged> {
        // Re-read under the lock: the state may have changed while we waited for it.
        let deployment = match self.store.get_deployment(name).await {
            Ok(d) => d,
            Err(Error::NotFound { kind: Kind::Deployment, .. }) => return Ok(Converged::default()),
            Err(e) => return Err(e),
        };
        let mut nodes: Cow<'_, HashMap<NodeName, Node>> = match seen {
            Some(nodes) => Cow::Borrowed(nodes),
            None => Cow::Owned(self.nodes_by_name().await?),
        };
        let (mut healthy, moving) = self.serving_replicas(name, &nodes).await?;
        let mut report = Converged::default();

        // Pending replicas (a start that failed half-way, or a crash before it) are started again:
        // the runtime's create is idempotent by name, so this never makes a second container.
        let pending: Vec<Replica> = healthy.iter().filter(|r| r.state == ReplicaState::Pending).cloned().collect();
        let required = deployment.replicas as usize;
        let missing = required.saturating_sub(healthy.len());
        let mut to_start = pending;
        if missing > 0 {
            if seen.is_some() {
                nodes = Cow::Owned(self.nodes_by_name().await?);
            }
            let (placed, unplaced) = self.place(&deployment, &nodes, &healthy, missing as u32).await?;
            report.unplaced = unplaced;
            healthy.extend(placed.iter().cloned());
            to_start.extend(placed);
        }
        let failed = self.start_all(&deployment, &nodes, to_start, &mut report).await;
        healthy.retain(|r| !failed.contains(&r.id));

        // Surplus: everything on draining nodes once enough run elsewhere, then the excess.
        let serving = healthy.len() + moving.len();
        let mut excess = serving.saturating_sub(required);
        let mut to_remove: Vec<Replica> = Vec::new();
        for r in moving {
            if excess == 0 {
                break;
            }
            to_remove.push(r);
            excess -= 1;
        }
        if excess > 0 {
            to_remove.extend(pick_surplus(&healthy, &nodes, excess));
        }
        report.removed = self.remove_all(&nodes, to_remove).await;
        if report.started + report.removed + report.failed > 0 {
            info!(started = report.started, removed = report.removed, failed = report.failed, "converged");
        }
        Ok(report)
    }

    /// Evens out a deployment's spread over online nodes (moby#24103: Swarm never moves tasks
    /// back onto a returning node). One replica at a time, from the node running the most to
    /// the one running the fewest, while they differ by more than one; each new copy is started
    /// before the old one is removed, so the deployment never runs fewer than before.
    /// Returns how many replicas moved.
    pub async fn rebalance_spread(&self, name: &DeploymentName) -> Result<usize> {
        let deployment = match self.store.get_deployment(name).await {
            Ok(d) => d,
            Err(Error::NotFound { kind: Kind::Deployment, .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        let _spawn = self.image_locks.lock(&deployment.image).await;
        self.rebalance_spread_locked(name).await
    }

    pub(crate) async fn rebalance_spread_locked(&self, name: &DeploymentName) -> Result<usize> {
        let deployment = self.store.get_deployment(name).await?;
        let mut moved = 0;
        // Each move narrows the gap, so this ends; the bound is a guard against a store that
        // keeps changing under us.
        for _ in 0..=deployment.replicas {
            let nodes = self.nodes_by_name().await?;
            let running: Vec<Replica> = self
                .store
                .list_replicas(ReplicaFilter::deployment(name).active())
                .await?
                .into_iter()
                .filter(|r| r.state == ReplicaState::Running && nodes.get(&r.node).is_some_and(Node::is_schedulable))
                .collect();
            let mut per_node: BTreeMap<&NodeName, Vec<&Replica>> =
                nodes.values().filter(|n| n.is_schedulable()).map(|n| (&n.name, Vec::new())).collect();
            for r in &running {
                per_node.entry(&r.node).or_default().push(r);
            }
            let Some((from, most)) = per_node.iter().max_by_key(|(n, rs)| (rs.len(), std::cmp::Reverse(*n))) else {
                break;
            };
            let Some((to, fewest)) = per_node
                .iter()
                .filter(|(n, _)| nodes[**n].available >= deployment.units)
                .min_by_key(|(n, rs)| (rs.len(), std::cmp::Reverse(nodes[**n].available), *n))
            else {
                break;
            };
            if most.len() <= fewest.len() + 1 {
                break;
            }
            let victim = (*most.iter().max_by_key(|r| r.id).expect("the busiest node runs replicas")).clone();
            let placement = Placement { deployment: name.clone(), node: (*to).clone(), units: deployment.units };
            let placed = self.store.place_replicas(&[placement]).await?;
            if !self.start_one(&deployment, &nodes[*to], &placed[0]).await {
                break;
            }
            info!(from = %from, to = %to, replica = %victim.id, "moved a replica to even out spread");
            if self.remove_all(&nodes, vec![victim]).await == 0 {
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
        let deployment = self.store.get_deployment(name).await?;
        let _spawn = self.image_locks.lock(&deployment.image).await;
        let nodes = self.nodes_by_name().await?;
        let (healthy, _) = self.serving_replicas(name, &nodes).await?;
        let missing = (deployment.replicas as usize).saturating_sub(healthy.len());
        if missing == 0 {
            return Ok((Vec::new(), 0));
        }
        self.place(&deployment, &nodes, &healthy, missing as u32).await
    }

    /// The deployment's active replicas on online nodes, and those on draining nodes (to move).
    /// Replicas on offline nodes count for nothing; the rebalancer marks them lost.
    async fn serving_replicas(
        &self,
        name: &DeploymentName,
        nodes: &HashMap<NodeName, Node>,
    ) -> Result<(Vec<Replica>, Vec<Replica>)> {
        let replicas = self.store.list_replicas(ReplicaFilter::deployment(name).active()).await?;
        let status_of = |r: &Replica| nodes.get(&r.node).map(|n| n.status);
        Ok(replicas
            .into_iter()
            .filter(|r| matches!(status_of(r), Some(NodeStatus::Online | NodeStatus::Draining)))
            .partition(|r| status_of(r) == Some(NodeStatus::Online)))
    }

    /// Plans `count` more replicas beside `healthy` and records them in one transaction.
    async fn place(
        &self,
        deployment: &Deployment,
        nodes: &HashMap<NodeName, Node>,
        healthy: &[Replica],
        count: u32,
    ) -> Result<(Vec<Replica>, u32)> {
        let plan = self.plan(deployment, nodes, healthy, count).await?;
        if plan.unplaced > 0 {
            warn!(unplaced = plan.unplaced, "not enough capacity: deployment degraded until room appears");
        }
        let placements: Vec<Placement> = plan
            .nodes
            .into_iter()
            .map(|node| Placement { deployment: deployment.name.clone(), node, units: deployment.units })
            .collect();
        Ok((self.store.place_replicas(&placements).await?, plan.unplaced))
    }

    async fn plan(
        &self,
        deployment: &Deployment,
        nodes: &HashMap<NodeName, Node>,
        healthy: &[Replica],
        count: u32,
    ) -> Result<placement::Plan> {
        let mut here: HashMap<&NodeName, u32> = HashMap::new();
        for r in healthy {
            *here.entry(&r.node).or_default() += 1;
        }
        let candidates: Vec<Candidate> = nodes
            .values()
            .filter(|n| n.is_schedulable())
            .map(|n| Candidate {
                node: n.name.clone(),
                available: n.available,
                replicas: here.get(&n.name).copied().unwrap_or(0),
            })
            .collect();
        Ok(placement::place(self.config.strategy, &candidates, deployment.units, count))
    }

    /// Starts replicas in parallel (bounded per engine and in total) and records them running
    /// in batches: the starts that finished while the previous batch was being written go in
    /// the next one, so the store sees one transaction per batch, not one per container, and
    /// the engines never wait for it. Returns the ids that failed; their reservations are
    /// released so a later pass places them again.
    async fn start_all(
        &self,
        deployment: &Deployment,
        nodes: &HashMap<NodeName, Node>,
        replicas: Vec<Replica>,
        report: &mut Converged,
    ) -> Vec<ReplicaId> {
        let total = replicas.len();
        let node_of: HashMap<ReplicaId, NodeName> = replicas.iter().map(|r| (r.id, r.node.clone())).collect();
        let (done, mut finished) = tokio::sync::mpsc::unbounded_channel::<(ReplicaId, Result<String>)>();
        let starting = futures::stream::iter(replicas)
            .map(|replica| async move {
                let outcome = match nodes.get(&replica.node) {
                    Some(node) => self.start_container(deployment, node, &replica).await,
                    None => Err(Error::not_found(Kind::Node, replica.node.as_str())),
                };
                (replica.id, outcome)
            })
            .buffer_unordered(self.config.total_concurrency)
            .for_each(move |outcome| {
                // The receiver lives until every start is in: a send cannot fail.
                let _ = done.send(outcome);
                std::future::ready(())
            });
        let recording = async {
            let mut failed = Vec::new();
            let mut refused_all = Vec::new();
            let mut batch = Vec::with_capacity(RECORD_BATCH);
            while finished.recv_many(&mut batch, RECORD_BATCH).await > 0 {
                let mut started = Vec::with_capacity(batch.len());
                for (id, outcome) in batch.drain(..) {
                    match outcome {
                        Ok(container_id) => started.push((id, container_id)),
                        Err(e) => {
                            warn!(replica = %id, error = %e, "start failed; releasing the reservation");
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
            (failed, refused_all)
        };
        let ((), (failed, refused)) = futures::join!(starting, recording);
        let refused: Vec<(ReplicaId, NodeName)> =
            refused.into_iter().filter_map(|id| Some((id, node_of.get(&id)?.clone()))).collect();
        self.remove_if_deleted(deployment, nodes, &refused).await;
        for id in &failed {
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
        nodes: &HashMap<NodeName, Node>,
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
        let _permit = self.permits.acquire(&node.name).await;
        let container = ReplicaContainer::new(deployment, replica);
        let container_id = self.runtime.start_replica(node, &container).await?;
        debug!(node = %node.name, replica = %replica.id, "container running");
        Ok(container_id)
    }

    /// Starts one replica and records it running; on failure releases its reservation.
    async fn start_one(&self, deployment: &Deployment, node: &Node, replica: &Replica) -> bool {
        let outcome = match self.start_container(deployment, node, replica).await {
            Ok(container_id) => self.store.mark_running(replica.id, &container_id).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => true,
            Err(e) => {
                warn!(node = %node.name, replica = %replica.id, error = %e, "start failed; releasing the reservation");
                if let Err(e) = self.store.release_replica(replica.id).await {
                    warn!(replica = %replica.id, error = %e, "release failed");
                }
                false
            }
        }
    }

    /// Removes replicas' containers, then their records. A replica whose container could not be
    /// removed keeps its record (and capacity) so the next pass tries again.
    async fn remove_all(&self, nodes: &HashMap<NodeName, Node>, replicas: Vec<Replica>) -> usize {
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

    pub(crate) async fn nodes_by_name(&self) -> Result<HashMap<NodeName, Node>> {
        Ok(self.store.list_nodes().await?.into_iter().map(|n| (n.name.clone(), n)).collect())
    }

    pub(crate) fn image_locks(&self) -> &ImageLocks {
        &self.image_locks
    }
}

/// Which `count` replicas to remove when scaling down: from the nodes running the most
/// replicas of the deployment, then the fullest nodes, newest replica first.
fn pick_surplus(healthy: &[Replica], nodes: &HashMap<NodeName, Node>, count: usize) -> Vec<Replica> {
    let mut per_node: BTreeMap<&NodeName, Vec<&Replica>> = BTreeMap::new();
    for r in healthy {
        per_node.entry(&r.node).or_default().push(r);
    }
    for list in per_node.values_mut() {
        list.sort_by_key(|r| r.id);
    }
    let mut picked = Vec::with_capacity(count);
    while picked.len() < count {
        let Some((node, _)) = per_node
            .iter()
            .filter(|(_, list)| !list.is_empty())
            .max_by(|(a, la), (b, lb)| {
                let free = |n: &NodeName| nodes.get(n).map_or(0, |n| n.available);
                la.len().cmp(&lb.len()).then_with(|| free(b).cmp(&free(a))).then_with(|| b.cmp(a))
            })
            .map(|(n, l)| (*n, l.len()))
        else {
            break;
        };
        let replica = per_node.get_mut(node).and_then(Vec::pop).expect("picked a non-empty node");
        picked.push(replica.clone());
    }
    picked
}
