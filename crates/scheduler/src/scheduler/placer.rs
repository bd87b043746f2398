//! Placements are decided one deployment after another, each on the capacity the one before
//! left: converges deciding at once on the same numbers would all pick the same emptiest node.
//! Those that wait meanwhile are decided together by the next one to take the turn, on one read
//! of the nodes, and recorded in one transaction: at a thousand deployments, a read of every
//! node and a commit for each were most of what placing cost (Nomad's plan applier commits the
//! plans that queued up meanwhile in one batch too).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use orchestrator_core::{Deployment, Error, HostPort, Node, NodeName, Replica, Result};
use tokio::sync::oneshot::{self, error::TryRecvError};
use tracing::debug;

use super::Scheduler;
use super::converge::placements_of;
use crate::planner::{self, Plan, Serving};

/// Deployments decided and recorded together at most: a transaction of ~16,000 replicas at
/// 1,000 each, a fraction of a second of the writer.
const MOST_AT_ONCE: usize = 16;

/// The turn to place, and the deployments waiting for it.
#[derive(Default)]
pub(crate) struct Placer {
    /// Held while placements are decided and recorded; also by the rollouts' and the spread
    /// moves' records, which are decided apart.
    pub(crate) turn: tokio::sync::Mutex<()>,
    waiting: Mutex<VecDeque<Ask>>,
}

struct Ask {
    deployment: Deployment,
    /// Its active replicas (what serves is judged on the nodes as the turn reads them).
    replicas: Vec<Replica>,
    told: oneshot::Sender<Result<Decided>>,
}

/// A deployment's placements, decided and recorded.
pub(crate) struct Decided {
    /// The nodes they were decided on (shared by the deployments decided together).
    pub nodes: Arc<BTreeMap<NodeName, Node>>,
    /// The converge's plan on those nodes, its placements taken out: they are `placed`.
    pub plan: Plan,
    pub placed: Vec<Replica>,
}

impl Placer {
    fn take_waiting(&self) -> Vec<Ask> {
        let mut waiting = self.waiting.lock().expect("placer queue poisoned");
        let n = waiting.len().min(MOST_AT_ONCE);
        waiting.drain(..n).collect()
    }
}

impl Scheduler {
    /// Plans `deployment` on the current nodes and records its placements `Pending`, their
    /// capacity reserved; `replicas` are its active ones.
    pub(super) async fn place(&self, deployment: &Deployment, replicas: Vec<Replica>) -> Result<Decided> {
        let (told, mut answer) = oneshot::channel();
        let ask = Ask { deployment: deployment.clone(), replicas, told };
        self.placer.waiting.lock().expect("placer queue poisoned").push_back(ask);
        loop {
            let _turn = self.placer.turn.lock().await;
            // Whoever held the turn before took the asks at the front, this one perhaps, and
            // answered them before letting the turn go, unless it was dropped meanwhile (its
            // converge cancelled with the leader's term).
            match answer.try_recv() {
                Ok(decided) => return decided,
                Err(TryRecvError::Closed) => {
                    return Err(Error::Conflict("placing was cancelled with another converge; try again".into()));
                }
                Err(TryRecvError::Empty) => {}
            }
            // This one is still waiting: each turn takes at least one, so it comes.
            let asks = self.placer.take_waiting();
            self.place_together(asks).await;
        }
    }

    /// Decides `asks` in order on one read of the nodes, each on what the ones before took,
    /// and records them in one transaction. If that fails, each goes again on its own, so one
    /// deployment's trouble (deleted meanwhile, a port taken) is not the others'.
    async fn place_together(&self, asks: Vec<Ask>) {
        if asks.is_empty() {
            return;
        }
        let mut ports: Vec<HostPort> = asks.iter().flat_map(|a| a.deployment.spec.template.claim().ports).collect();
        ports.sort_unstable();
        ports.dedup();
        let mut nodes = match self.nodes_holding(&ports).await {
            Ok(nodes) => nodes,
            Err(e) => {
                for ask in asks {
                    let _ = ask.told.send(Err(e.clone()));
                }
                return;
            }
        };
        let mut plans = Vec::with_capacity(asks.len());
        let mut placements = Vec::new();
        for ask in &asks {
            let d = &ask.deployment;
            let serving = Serving::of(ask.replicas.iter().cloned(), &nodes);
            let mut plan = planner::plan(self.config.strategy, d, &serving, &nodes);
            let mine = placements_of(d, std::mem::take(&mut plan.place));
            for p in &mine {
                if let Some(n) = nodes.get_mut(&p.node) {
                    n.hold(p.units, &p.claim);
                }
            }
            plans.push((plan, mine.len()));
            placements.extend(mine);
        }
        let nodes = Arc::new(nodes);
        match self.store.place_replicas(&placements).await {
            Ok(placed) => {
                // In the placements' order: each deployment's, one after another.
                let mut placed = placed.into_iter();
                for (ask, (plan, count)) in asks.into_iter().zip(plans) {
                    let mine = placed.by_ref().take(count).collect();
                    let _ = ask.told.send(Ok(Decided { nodes: Arc::clone(&nodes), plan, placed: mine }));
                }
            }
            Err(e) if asks.len() == 1 => {
                let _ = asks.into_iter().next().expect("one ask").told.send(Err(e));
            }
            Err(e) => {
                debug!(error = %e, deployments = asks.len(), "placing together failed; each on its own");
                for ask in asks {
                    let decided = self.place_alone(&ask.deployment, ask.replicas).await;
                    let _ = ask.told.send(decided);
                }
            }
        }
    }

    async fn place_alone(&self, deployment: &Deployment, replicas: Vec<Replica>) -> Result<Decided> {
        let nodes = self.nodes_for(deployment).await?;
        let serving = Serving::of(replicas, &nodes);
        let mut plan = planner::plan(self.config.strategy, deployment, &serving, &nodes);
        let placed = self.record_placements(deployment, std::mem::take(&mut plan.place)).await?;
        Ok(Decided { nodes: Arc::new(nodes), plan, placed })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use orchestrator_core::error::Kind;
    use orchestrator_core::memory::MemoryStore;
    use orchestrator_core::{
        Change, DeploymentName, DeploymentSpec, DeploymentStore, Error, MockContainerRuntime, NewNode, NodeStatus,
        NodeStore, StoreRevision,
    };

    use super::*;
    use crate::SchedulerConfig;

    async fn cluster(capacities: &[i64], deployments: &[(&str, u32)]) -> (Arc<MemoryStore>, Arc<Scheduler>) {
        let store = Arc::new(MemoryStore::new());
        for (i, capacity) in capacities.iter().enumerate() {
            let name = format!("node{}", i + 1);
            store.add_node(NewNode::new(&name, "tcp://127.0.0.1:2375", *capacity).unwrap()).await.unwrap();
            store.set_node_status(&NodeName::new(name).unwrap(), NodeStatus::Online, None).await.unwrap();
        }
        for (name, replicas) in deployments {
            let spec = DeploymentSpec::of("local/busybox:1", *replicas).unwrap();
            store.create_deployment(&DeploymentName::new(*name).unwrap(), spec, Change::default()).await.unwrap();
        }
        // No expectations: placing starts nothing, and any engine call fails the test.
        let runtime = Arc::new(MockContainerRuntime::new());
        (store.clone(), Arc::new(Scheduler::new(store, runtime, SchedulerConfig::default())))
    }

    /// Places each of `names` from a task of its own while the turn is held, and once all of
    /// them wait for it, runs `meanwhile` and lets the turn go.
    async fn place_waiting(
        scheduler: &Arc<Scheduler>,
        names: &[&str],
        meanwhile: impl std::future::Future<Output = ()>,
    ) -> Vec<Result<(Vec<Replica>, u32)>> {
        let turn = scheduler.placer.turn.lock().await;
        let tasks: Vec<_> = names
            .iter()
            .map(|name| {
                let (scheduler, name) = (Arc::clone(scheduler), DeploymentName::new(*name).unwrap());
                tokio::spawn(async move { scheduler.place_missing(&name).await })
            })
            .collect();
        while scheduler.placer.waiting.lock().unwrap().len() < names.len() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        meanwhile.await;
        drop(turn);
        futures::future::join_all(tasks).await.into_iter().map(|t| t.unwrap()).collect()
    }

    #[tokio::test]
    async fn those_that_wait_are_placed_together_each_on_what_the_ones_before_took() {
        // 12 units for 12 replicas: the fourth fits only on what the first three left.
        let (store, scheduler) = cluster(&[6, 3, 3], &[("a", 3), ("b", 3), ("c", 3), ("d", 3)]).await;
        let before = store.revision().await.unwrap();
        let placed = place_waiting(&scheduler, &["a", "b", "c", "d"], async {}).await;
        for outcome in placed {
            let (replicas, unplaced) = outcome.unwrap();
            assert_eq!((replicas.len(), unplaced), (3, 0));
        }
        let free: Vec<u32> = store.list_nodes().await.unwrap().iter().map(|n| n.available).collect();
        assert_eq!(free, [0, 0, 0]);
        assert_eq!(store.revision().await.unwrap(), before + 1, "four deployments, one write");
    }

    #[tokio::test]
    async fn a_deployment_gone_while_it_waited_is_not_the_others_trouble() {
        let (store, scheduler) = cluster(&[10, 10], &[("a", 2), ("b", 2), ("c", 2)]).await;
        let b = DeploymentName::new("b").unwrap();
        let gone = store.delete_deployment(&b);
        let placed = place_waiting(&scheduler, &["a", "b", "c"], async { gone.await.map(drop).unwrap() }).await;
        assert_eq!(placed[0].as_ref().map(|(r, u)| (r.len(), *u)), Ok((2, 0)));
        assert!(matches!(placed[1], Err(Error::NotFound { kind: Kind::Deployment, .. })), "{:?}", placed[1]);
        assert_eq!(placed[2].as_ref().map(|(r, u)| (r.len(), *u)), Ok((2, 0)));
        let free: Vec<u32> = store.list_nodes().await.unwrap().iter().map(|n| n.available).collect();
        assert_eq!(free, [8, 8]);
    }

    /// A converge that took the asks at the front and was then dropped (its term ended) never
    /// answers them: each of those converges fails, to be retried, instead of waiting forever.
    // Two workers: a converge spinning on the turn must not keep the timeout from firing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ask_dropped_by_a_cancelled_turn_fails_instead_of_waiting_forever() {
        let (_store, scheduler) = cluster(&[10], &[("a", 1)]).await;
        let dropped = async {
            drop(scheduler.placer.take_waiting());
        };
        let placed = tokio::time::timeout(Duration::from_secs(5), place_waiting(&scheduler, &["a"], dropped)).await;
        let placed = placed.expect("the converge still waits").pop().unwrap();
        assert!(matches!(placed, Err(Error::Conflict(_))), "{placed:?}");
    }
}
