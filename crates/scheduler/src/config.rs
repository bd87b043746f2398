//! Knobs of the scheduler and its loops, with defaults tuned for fast failover.

use std::time::Duration;

use crate::placement::Strategy;
use crate::queue::Backoff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub strategy: Strategy,
    /// Time between heartbeat ticks.
    pub heartbeat_interval: Duration,
    /// The heartbeat's budget of pings a second: with more nodes than `heartbeat_interval` x
    /// this, ticks space out to one per `nodes / pings_per_second` (as Nomad's
    /// `max_heartbeats_per_second` spaces its nodes' heartbeats). A killed engine is still seen
    /// at once (its watch closes); a hung one takes `misses_to_offline` of the longer ticks.
    /// At 5,000 nodes and 500 ms, 10,000 pings a second held ~0.43 of a core on the server
    /// alone (`cargo xtask bench scale`), and as much again on the engines' side of the bench.
    pub pings_per_second: u32,
    /// Consecutive missed heartbeats before a node is marked offline. With the defaults a hung
    /// node is offline within 1.5 s up to 2,000 nodes (see `pings_per_second`), a killed one
    /// in well under a second whatever the size; raise it to ride out short network blips.
    pub misses_to_offline: u32,
    /// Time between full reconcile passes (Docker's view against the store's).
    pub reconcile_interval: Duration,
    /// Time between level-triggered rebalancer passes (beside the heartbeat's hand-off).
    pub rebalance_interval: Duration,
    /// Container starts or removals in flight on one engine at once, to begin with: each
    /// engine's limit then follows how fast it starts containers (see `engine_limits`), between
    /// `min_per_node_concurrency` and `max_per_node_concurrency`. The floor is 4 by default:
    /// on small engines whose starts' throughput is flat (the 3 sharing 2 cores in `bench
    /// e2e`) a failover took 1.02x the raw API at 4 and 1.09-1.21x when the limits settled at 3.
    pub per_node_concurrency: usize,
    pub min_per_node_concurrency: usize,
    pub max_per_node_concurrency: usize,
    /// Container starts or removals one converge (or one batch of removals) has in flight at
    /// once: a converge starts on `total_concurrency / per_node_concurrency` nodes at a time.
    /// Not a bound across converges (32 of them run at once).
    pub total_concurrency: usize,
    /// Move replicas onto new or returning nodes to even out spread (one at a time, new copy
    /// started before the old one stops). Off by default, as in Swarm.
    pub rebalance_on_join: bool,
    /// Deployments converging at once (the queue's bound; one converge per deployment always).
    pub converge_concurrency: usize,
    /// How long a converge that failed (or whose starts did) waits before its retry; an
    /// operator's request for the deployment cuts the wait short.
    pub converge_retry: Backoff,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Spread,
            heartbeat_interval: Duration::from_millis(500),
            pings_per_second: 4_000,
            misses_to_offline: 3,
            reconcile_interval: Duration::from_secs(2),
            rebalance_interval: Duration::from_secs(5),
            per_node_concurrency: 4,
            min_per_node_concurrency: 4,
            max_per_node_concurrency: 16,
            total_concurrency: 64,
            rebalance_on_join: false,
            converge_concurrency: 32,
            converge_retry: Backoff { first: Duration::from_secs(1), cap: Duration::from_secs(10) },
        }
    }
}
