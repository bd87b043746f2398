//! `Scheduler`: the operations that change the cluster (create, scale, delete, add/drain/remove
//! node) and `converge`, the one routine that makes a deployment match its spec. The loops
//! (heartbeat, rebalancer, reconciler) and the API all go through it, and all of them ask for
//! converges through the queue (`enqueue`, `converge_all`): never two of one deployment at
//! once, a bounded number across deployments, failed ones retried with a backoff.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use orchestrator_core::error::Kind;
use orchestrator_core::{
    ClusterStore, ContainerRuntime, Deployment, DeploymentName, Error, HostPort, ImageRef, Node, NodeName, Result,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

mod actions;
mod converge;
mod images;
mod placer;
mod rollout;

use crate::config::SchedulerConfig;
use crate::election::Tenure;
use crate::engine_limits::{EngineLimits, LimitBounds};
use crate::foreign_ports::ForeignPorts;
use crate::locks::KeyedLocks;
use crate::queue::{Ran, WorkQueue, Worker};
use crate::stats::Stats;
use crate::tenure_runtime::TenureRuntime;

/// Most starts recorded in one store transaction.
pub(crate) const RECORD_BATCH: usize = 1_000;

/// What one `converge` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converged {
    pub started: usize,
    pub failed: usize,
    pub removed: usize,
    /// Replicas that found no room (the deployment stays degraded).
    pub unplaced: u32,
    /// A rollout waits on the clock (a new replica's monitor period): converge again after
    /// this, rather than at the next reconcile pass.
    pub look_again: Option<std::time::Duration>,
}

/// What a reconcile pass found for one deployment, for its next converge: the fixes to make
/// first (adopt, release what exited or vanished, remove what is stale), and the nodes as the
/// pass read them.
pub(crate) struct Observed {
    pub(crate) fixes: BoxFuture<'static, Result<()>>,
    pub(crate) nodes: Arc<BTreeMap<NodeName, Node>>,
}

type ConvergeQueue = WorkQueue<DeploymentName, Observed, Result<Converged>>;

pub struct Scheduler {
    store: Arc<dyn ClusterStore>,
    runtime: Arc<dyn ContainerRuntime>,
    config: SchedulerConfig,
    /// Held by every converge, spread move and placement of a deployment, whoever runs it.
    deployment_locks: Arc<KeyedLocks<DeploymentName>>,
    /// The seed's spawn rule, per engine: one batch of an image's containers at a time.
    spawn_locks: Arc<KeyedLocks<(NodeName, ImageRef)>>,
    /// Whose turn it is to place, and who waits for it (see `placer`).
    placer: Arc<placer::Placer>,
    permits: Arc<EngineLimits>,
    /// Host ports engines refused because something else holds them.
    foreign_ports: Arc<ForeignPorts>,
    stats: Arc<Stats>,
    /// Stops the queue's work and what `spawn` started: the term's end, for a leader.
    stop: CancellationToken,
    queue: Arc<ConvergeQueue>,
}

impl Scheduler {
    pub fn new(store: Arc<dyn ClusterStore>, runtime: Arc<dyn ContainerRuntime>, config: SchedulerConfig) -> Self {
        let permits = Arc::new(EngineLimits::new(LimitBounds {
            initial: config.per_node_concurrency,
            min: config.min_per_node_concurrency,
            max: config.max_per_node_concurrency,
        }));
        let stop = CancellationToken::new();
        let queue = Arc::new(WorkQueue::new(config.converge_concurrency, config.converge_retry, stop.clone()));
        Self {
            store,
            runtime,
            config,
            deployment_locks: Arc::default(),
            spawn_locks: Arc::default(),
            placer: Arc::default(),
            permits,
            foreign_ports: Arc::default(),
            stats: Arc::default(),
            stop,
            queue,
        }
    }

    /// The same scheduler (locks, engine permits, counters) writing through another store,
    /// with a queue of its own that stops with `stop`, and a placer of its own.
    pub fn with_store(&self, store: Arc<dyn ClusterStore>, stop: CancellationToken) -> Self {
        let queue =
            Arc::new(WorkQueue::new(self.config.converge_concurrency, self.config.converge_retry, stop.clone()));
        Self {
            store,
            runtime: Arc::clone(&self.runtime),
            config: self.config.clone(),
            deployment_locks: Arc::clone(&self.deployment_locks),
            spawn_locks: Arc::clone(&self.spawn_locks),
            // Not shared: a converge of the old term waiting for the turn must not be placed
            // through this store, under the new term's fence.
            placer: Arc::default(),
            permits: Arc::clone(&self.permits),
            foreign_ports: Arc::clone(&self.foreign_ports),
            stats: Arc::clone(&self.stats),
            stop,
            queue,
        }
    }

    /// The same scheduler as a leader acts with for one term: writes through `store` (fenced by
    /// the term), container starts and removals only while `tenure` is current, and its queue
    /// and background work stopped when the term ends.
    pub fn for_tenure(&self, store: Arc<dyn ClusterStore>, tenure: Tenure) -> Self {
        let mut scheduler = self.with_store(store, tenure.stop.clone());
        scheduler.runtime = Arc::new(TenureRuntime::new(Arc::clone(&self.runtime), tenure));
        scheduler
    }

    /// Runs `work` in the background until it ends or this scheduler stops (a leader's term).
    pub fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = work => {}
            }
        });
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

    /// Each engine's current limit of container calls at once, by node name.
    pub fn engine_call_limits(&self) -> Vec<(NodeName, u32)> {
        let mut limits: Vec<(NodeName, u32)> =
            self.permits.limits().into_iter().map(|(n, l)| (n, u32::try_from(l).unwrap_or(u32::MAX))).collect();
        limits.sort_unstable();
        limits
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Asks for the deployment to be converged by the queue, soon; returns at once.
    pub fn enqueue(self: &Arc<Self>, name: DeploymentName) {
        self.request(name, None, None);
    }

    /// Converges the deployments through the queue and waits for each one's run (one that
    /// was already under way runs again after it, so what was asked before this call counts).
    pub async fn converge_all(
        self: &Arc<Self>,
        names: Vec<DeploymentName>,
    ) -> Vec<(DeploymentName, Result<Converged>)> {
        let waiting: Vec<_> = names
            .into_iter()
            .map(|name| {
                let (told, told_rx) = oneshot::channel();
                self.request(name.clone(), None, Some(told));
                (name, told_rx)
            })
            .collect();
        futures::future::join_all(waiting.into_iter().map(|(name, told)| async move {
            // Unanswered: the queue stopped (the term ended) before the run.
            let result = told.await.unwrap_or(Err(Error::NotLeader { leader: None }));
            (name, result)
        }))
        .await
    }

    /// Whether a converge of the deployment is queued, running or waiting to be retried.
    pub fn is_converging(&self, name: &DeploymentName) -> bool {
        self.queue.contains(name)
    }

    pub(crate) fn request(
        self: &Arc<Self>,
        name: DeploymentName,
        observed: Option<Observed>,
        told: Option<oneshot::Sender<Result<Converged>>>,
    ) {
        self.queue.enqueue(name, observed, told, || self.worker());
    }

    /// What the queue runs for a deployment: the converge, after the fixes a reconcile pass
    /// found (and then, if configured, the spread moves the pass makes). Retried with backoff
    /// when it failed or some starts did.
    fn worker(self: &Arc<Self>) -> Worker<DeploymentName, Observed, Result<Converged>> {
        let scheduler = Arc::clone(self);
        Box::new(move |name: DeploymentName, observed: Option<Observed>| {
            let scheduler = Arc::clone(&scheduler);
            Box::pin(async move {
                let span = info_span!("converge", deployment = %name);
                let output = match scheduler.run_queued(&name, observed).instrument(span).await {
                    // Deleted while it converged: nothing left to do.
                    Err(Error::NotFound { kind: Kind::Deployment, .. }) => Ok(Converged::default()),
                    other => other,
                };
                if let Ok(Converged { look_again: Some(after), .. }) = &output {
                    let (again, name) = (Arc::clone(&scheduler), name.clone());
                    let after = *after;
                    scheduler.spawn(async move {
                        tokio::time::sleep(after).await;
                        again.enqueue(name);
                    });
                }
                let retry = match &output {
                    Ok(report) => report.failed > 0,
                    Err(e) => {
                        warn!(deployment = %name, error = %e, "converge failed; retrying after a backoff");
                        true
                    }
                };
                Ran { output, retry }
            })
        })
    }

    async fn run_queued(&self, name: &DeploymentName, observed: Option<Observed>) -> Result<Converged> {
        let _turn = self.deployment_locks.lock(name).await;
        let Some(Observed { fixes, nodes }) = observed else { return self.converge_locked(name, None).await };
        fixes.await?;
        let converged = self.converge_locked(name, Some(&nodes)).await?;
        if self.config.rebalance_on_join {
            self.rebalance_spread_locked(name).await?;
        }
        Ok(converged)
    }

    /// The nodes, their reserved host ports left out: for reaching engines, not placing.
    pub(crate) async fn nodes_by_name(&self) -> Result<BTreeMap<NodeName, Node>> {
        Ok(self.store.list_nodes_holding(&[]).await?.into_iter().map(|n| (n.name.clone(), n)).collect())
    }

    /// The nodes with those of `ports` that replicas hold, or that engines said something else
    /// holds.
    pub(crate) async fn nodes_holding(&self, ports: &[HostPort]) -> Result<BTreeMap<NodeName, Node>> {
        let mut nodes: BTreeMap<NodeName, Node> =
            self.store.list_nodes_holding(ports).await?.into_iter().map(|n| (n.name.clone(), n)).collect();
        self.foreign_ports.apply(&mut nodes);
        Ok(nodes)
    }

    /// The nodes as placing `deployment` reads them: with those of its host ports that replicas
    /// hold, or that engines said something else holds.
    pub(crate) async fn nodes_for(&self, deployment: &Deployment) -> Result<BTreeMap<NodeName, Node>> {
        let claim = deployment.spec.template.claim();
        let mut nodes = self.nodes_holding(&claim.ports).await?;
        for n in nodes.values_mut() {
            n.reserved.ports.retain(|p| claim.ports.contains(p));
        }
        Ok(nodes)
    }
}
