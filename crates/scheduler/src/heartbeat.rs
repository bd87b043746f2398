//! `SendHeartBeatToNodes`: pings every node each interval, flips status after K misses or one
//! success, and hands each node that goes down to the rebalancer, waiting until it has taken it.
//!
//! Between ticks each answering engine is watched (`ContainerRuntime::watch`: a connection held
//! open to it). When one closes, that engine is checked at once instead of at the next tick: a
//! killed engine refuses it K times, a twentieth of the interval apart, and is offline tens of
//! milliseconds after its death. Only refusals count there; an engine that answers slowly is
//! left to the ticks and keeps its K intervals.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use orchestrator_core::{ContainerRuntime, EngineAddress, Error, Node, NodeName, NodeStatus, Result};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::scheduler::Scheduler;
use crate::stats::Loop;

/// Pings in flight at once: far more than one tick's worth of engines answer in time, and
/// a few hundred hung engines still leave room for the others.
const PINGS_AT_ONCE: usize = 512;

/// How long a watch that ended waits before watching again, doubling while watches end
/// within `WATCH_LASTED` of their start (an engine that cuts them at once, or refuses them).
const WATCH_RETRY: Duration = Duration::from_secs(1);
const WATCH_RETRY_CAP: Duration = Duration::from_secs(30);
const WATCH_LASTED: Duration = Duration::from_secs(30);

/// A node went offline. The rebalancer answers on `ack` once it has recorded the loss, which is
/// what makes the hand-off reliable (the seed's unbuffered channel, with a receipt).
#[derive(Debug)]
pub struct NodeDown {
    pub node: NodeName,
    pub ack: oneshot::Sender<()>,
}

/// The rendezvous between heartbeat and rebalancer: capacity 1, and the sender waits for the ack.
pub fn handoff() -> (mpsc::Sender<NodeDown>, mpsc::Receiver<NodeDown>) {
    mpsc::channel(1)
}

/// Pings a node within `deadline`; returns the outcome and the misses it counts.
///
/// A refused or reset connection means the engine is not listening (down, not slow), so it is
/// re-checked at once, a twentieth of `deadline` apart, up to `attempts` times: K quick
/// refusals count as K misses within one tick, and a killed engine is offline in well under K
/// intervals. A slow or silent engine is never re-checked within the tick: its miss already
/// cost the whole interval, so a busy engine keeps its K intervals to answer (no false downs).
///
/// A twentieth, not a fifth as first built: a SIGKILLed engine refuses from the moment it dies
/// (one restarting, for seconds), so K refusals 25 ms apart say as much as K 100 ms apart did,
/// and its failover starts ~150 ms sooner whether its watch or a tick saw it first (a kill
/// during a tick's probe goes the tick's way).
async fn probe(runtime: &dyn ContainerRuntime, node: &Node, deadline: Duration, attempts: u32) -> (Result<()>, u32) {
    let started = tokio::time::Instant::now();
    let pause = deadline / 20;
    let mut missed = 0;
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        let ping = tokio::time::timeout(left, runtime.ping(node)).await.unwrap_or_else(|_| {
            Err(Error::Timeout { node: node.name.to_string(), operation: "ping", after: deadline })
        });
        let Err(e) = ping else { return (Ok(()), missed) };
        missed += 1;
        let refused = matches!(e, Error::Unreachable { .. });
        if !refused || missed >= attempts || started.elapsed() + pause >= deadline {
            return (Err(e), missed);
        }
        tokio::time::sleep(pause).await;
    }
}

/// What one tick saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    pub answered: usize,
    pub missed: usize,
    pub went_offline: Vec<NodeName>,
    pub came_online: Vec<NodeName>,
}

pub struct Heartbeat {
    scheduler: Arc<Scheduler>,
    down: mpsc::Sender<NodeDown>,
    /// Woken when a node comes (back) online, so its leftovers are reconciled at once.
    node_returned: Arc<Notify>,
    misses: HashMap<NodeName, u32>,
    /// The engines watched, by node, with the address watched; the watch ends with its token.
    watches: HashMap<NodeName, (EngineAddress, CancellationToken)>,
    /// The nodes whose watch ended since they were last checked.
    watch_ended: mpsc::UnboundedSender<NodeName>,
    ended: mpsc::UnboundedReceiver<NodeName>,
}

impl Heartbeat {
    pub fn new(scheduler: Arc<Scheduler>, down: mpsc::Sender<NodeDown>, node_returned: Arc<Notify>) -> Self {
        let (watch_ended, ended) = mpsc::unbounded_channel();
        Self { scheduler, down, node_returned, misses: HashMap::new(), watches: HashMap::new(), watch_ended, ended }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let stats_owner = Arc::clone(&self.scheduler);
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next) => {
                    let started = tokio::time::Instant::now();
                    let pinged = match self.tick().await {
                        Ok(tick) => tick.answered + tick.missed,
                        Err(e) => {
                            warn!(error = %e, "heartbeat tick failed");
                            0
                        }
                    };
                    // A tick that ran late delays the next rather than bunching them up.
                    next = (started + self.spacing(pinged)).max(tokio::time::Instant::now());
                    // Running (and so ready) only once a first tick has told which nodes are
                    // online: a create before that would see every node offline.
                    stats_owner.stats().set_running(Loop::Heartbeat, true);
                }
                Some(first) = self.ended.recv() => {
                    let mut suspects = BTreeSet::from([first]);
                    while let Ok(more) = self.ended.try_recv() {
                        suspects.insert(more);
                    }
                    if let Err(e) = self.check_now(suspects).instrument(info_span!("heartbeat_watch_ended")).await {
                        warn!(error = %e, "checking engines whose watch ended failed");
                    }
                }
            }
        }
        stats_owner.stats().set_running(Loop::Heartbeat, false);
        info!("heartbeat stopped");
    }

    /// Time from a tick that pinged `pinged` nodes to the next: the interval, or longer where
    /// that many pings each interval would pass the budget (`pings_per_second`).
    fn spacing(&self, pinged: usize) -> Duration {
        let config = self.scheduler.config();
        let budget = f64::from(config.pings_per_second.max(1));
        config.heartbeat_interval.max(Duration::from_secs_f64(pinged as f64 / budget))
    }

    /// One round: ping all nodes concurrently (each bounded by the runtime's ping timeout), so a
    /// tick costs one store read, one batched write, and one ping per node, whatever the
    /// number of replicas.
    pub async fn tick(&mut self) -> Result<Tick> {
        let started = tokio::time::Instant::now();
        let result = self.tick_inner().instrument(info_span!("heartbeat_tick")).await;
        self.scheduler.stats().heartbeat_tick(started.elapsed());
        result
    }

    async fn tick_inner(&mut self) -> Result<Tick> {
        let store = Arc::clone(self.scheduler.store());
        let nodes = store.list_nodes_brief().await?;
        let threshold = self.scheduler.config().misses_to_offline.max(1);
        let pings = self.probe_all(&nodes).await;
        self.misses.retain(|name, _| nodes.iter().any(|n| n.name == *name));

        let now = SystemTime::now();
        let mut tick = Tick::default();
        let mut answered = Vec::new();
        for (node, (ping, missed)) in nodes.iter().zip(pings) {
            match ping {
                Ok(()) => {
                    self.misses.remove(&node.name);
                    tick.answered += 1;
                    if node.status == NodeStatus::Offline {
                        store.set_node_status(&node.name, NodeStatus::Online, Some(now)).await?;
                        info!(node = %node.name, "node online");
                        tick.came_online.push(node.name.clone());
                        if node.engine.is_none() {
                            self.scheduler.learn_engine(node.clone());
                        }
                    } else {
                        answered.push(node.name.clone());
                    }
                }
                Err(e) => {
                    tick.missed += 1;
                    let misses = self.misses.entry(node.name.clone()).or_default();
                    *misses += missed;
                    if *misses >= threshold && node.status != NodeStatus::Offline {
                        warn!(node = %node.name, misses = *misses, error = %e, "node offline");
                        tick.went_offline.push(node.name.clone());
                    }
                }
            }
        }
        self.mark_offline(&tick.went_offline).await?;
        self.watch(&nodes, &tick.went_offline);
        if !answered.is_empty() {
            store.record_heartbeats(&answered, now).await?;
        }
        if !tick.came_online.is_empty() {
            self.node_returned.notify_one();
        }
        for node in &tick.went_offline {
            self.hand_off(node.clone()).await;
        }
        Ok(tick)
    }

    /// Watches the engines of the nodes that count as up after a tick (those not offline, but
    /// those it just marked offline), and stops watching the others.
    fn watch(&mut self, nodes: &[Node], went_offline: &[NodeName]) {
        let up: HashMap<&NodeName, &Node> = nodes
            .iter()
            .filter(|n| n.status != NodeStatus::Offline && !went_offline.contains(&n.name))
            .map(|n| (&n.name, n))
            .collect();
        self.watches.retain(|name, (address, stop)| {
            let keep = up.get(name).is_some_and(|n| n.address == *address);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (name, node) in up {
            if self.watches.contains_key(name) {
                continue;
            }
            let stop = CancellationToken::new();
            let runtime = Arc::clone(self.scheduler.runtime());
            tokio::spawn(watch_engine(runtime, node.clone(), self.watch_ended.clone(), stop.clone()));
            self.watches.insert(name.clone(), (node.address.clone(), stop));
        }
    }

    /// Checks at once the engines whose watch ended: one that refuses K times is offline now
    /// and handed to the rebalancer, as a tick would have done; anything else waits for the
    /// ticks. Returns the nodes it marked offline.
    pub async fn check_now(&mut self, suspects: BTreeSet<NodeName>) -> Result<Vec<NodeName>> {
        let store = Arc::clone(self.scheduler.store());
        let threshold = self.scheduler.config().misses_to_offline.max(1);
        // One read for them all, as a tick reads: at a million replicas a read per node took
        // seconds for fifty engines killed at once.
        let nodes: Vec<Node> = store
            .list_nodes_brief()
            .await?
            .into_iter()
            .filter(|n| suspects.contains(&n.name) && n.status != NodeStatus::Offline)
            .collect();
        // Together, as a tick probes: fifty engines killed at once are fifty checks at once.
        let pings = self.probe_all(&nodes).await;
        let mut went_offline = Vec::new();
        for (node, (ping, missed)) in nodes.into_iter().zip(pings) {
            match ping {
                Err(Error::Unreachable { .. }) if missed >= threshold => {
                    warn!(node = %node.name, misses = missed, "node offline: its engine went away");
                    self.misses.insert(node.name.clone(), missed);
                    went_offline.push(node.name);
                }
                other => debug!(node = %node.name, answered = other.is_ok(), "a watch ended; the engine is not gone"),
            }
        }
        self.mark_offline(&went_offline).await?;
        for name in &went_offline {
            if let Some((_, stop)) = self.watches.remove(name) {
                stop.cancel();
            }
        }
        for name in &went_offline {
            self.hand_off(name.clone()).await;
        }
        Ok(went_offline)
    }

    /// Probes `nodes` concurrently, each within the interval.
    async fn probe_all(&self, nodes: &[Node]) -> Vec<(Result<()>, u32)> {
        let runtime = self.scheduler.runtime().as_ref();
        // A ping slower than the interval is a miss, whatever the runtime's own timeout: so a
        // hung engine is offline after K intervals, like a dead one, and ticks keep their pace.
        let deadline = self.scheduler.config().heartbeat_interval;
        let threshold = self.scheduler.config().misses_to_offline.max(1);
        // Bounded: 5,000 pings in flight at once held tens of megabytes of request state for a
        // moment every tick. Each probe's deadline starts when it does, so a slot held by a hung
        // engine delays the others, never counts a miss against them.
        let probes: Vec<_> = nodes.iter().map(|n| probe(runtime, n, deadline, threshold)).collect();
        futures::stream::iter(probes).buffered(PINGS_AT_ONCE).collect().await
    }

    /// Marks `names` offline in one write, and counts them.
    async fn mark_offline(&self, names: &[NodeName]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        self.scheduler.store().mark_offline(names).await?;
        self.scheduler.stats().marked_offline(names.len());
        Ok(())
    }

    /// Waits until the rebalancer has taken the event. If the rebalancer is gone (shutdown),
    /// nothing is lost: the loss is in the store and its periodic pass picks it up next start.
    async fn hand_off(&self, node: NodeName) {
        let (ack, taken) = oneshot::channel();
        if self.down.send(NodeDown { node: node.clone(), ack }).await.is_err() {
            warn!(node = %node, "rebalancer not running; its next pass will handle the node");
            return;
        }
        let _ = taken.await;
    }
}

/// The watches end with the heartbeat, however it ends (a term's end drops it).
impl Drop for Heartbeat {
    fn drop(&mut self) {
        for (_, (_, stop)) in self.watches.drain() {
            stop.cancel();
        }
    }
}

/// Watches one engine until `stop`: each time its watch ends (or cannot be held), tells
/// `ended`, then watches again after a pause.
async fn watch_engine(
    runtime: Arc<dyn ContainerRuntime>,
    node: Node,
    ended: mpsc::UnboundedSender<NodeName>,
    stop: CancellationToken,
) {
    let mut pause = WATCH_RETRY;
    loop {
        let began = tokio::time::Instant::now();
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = runtime.watch(&node) => outcome,
        };
        if let Err(e) = outcome {
            debug!(node = %node.name, error = %e, "cannot watch the engine");
        }
        if ended.send(node.name.clone()).is_err() {
            return;
        }
        pause = if began.elapsed() >= WATCH_LASTED { WATCH_RETRY } else { (pause * 2).min(WATCH_RETRY_CAP) };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
