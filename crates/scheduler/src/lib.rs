//! The heart of the seed: placement, the locked spawn of `/create`, `SendHeartBeatToNodes`,
//! `RebalanceContainersOnNodes`, the reconciler, and `AddNodesToCluster` /
//! `DeleteNodesFromTheCluster`.
//!
//! Architecture invariant: depends only on orchestrator-core's traits; no Docker, SQL or HTTP.
//! Every loop is a value with `run(self, shutdown)`, started in one place (the binary).

#![forbid(unsafe_code)]

mod config;
mod control;
mod election;
mod engine_limits;
mod foreign_ports;
mod heartbeat;
mod last_words;
mod locks;
pub mod placement;
pub mod planner;
mod queue;
mod rebalancer;
mod reconciler;
pub mod rollout_step;
mod scheduler;
mod stats;
mod tenure_runtime;

pub use config::SchedulerConfig;
pub use control::{ActingLeader, Published, SchedulerControl};
pub use election::{Election, ElectionConfig, Lead, Tenure};
pub use heartbeat::{Heartbeat, NodeDown, Tick, handoff};
pub use placement::{Candidate, Plan, Strategy};
pub use queue::Backoff;
pub use rebalancer::Rebalancer;
pub use reconciler::Reconciler;
pub use scheduler::{Converged, Scheduler};
pub use stats::{Loop, Stats};
pub use tenure_runtime::TenureRuntime;

use std::sync::Arc;

use tokio::sync::Notify;

/// The three loops, wired to each other, ready to be spawned.
pub struct Loops {
    pub heartbeat: Heartbeat,
    pub rebalancer: Rebalancer,
    pub reconciler: Reconciler,
}

impl Loops {
    pub fn new(scheduler: &Arc<Scheduler>) -> Self {
        let (down_tx, down_rx) = handoff();
        let node_returned = Arc::new(Notify::new());
        Self {
            heartbeat: Heartbeat::new(Arc::clone(scheduler), down_tx, Arc::clone(&node_returned)),
            rebalancer: Rebalancer::new(Arc::clone(scheduler), down_rx),
            reconciler: Reconciler::new(Arc::clone(scheduler), node_returned),
        }
    }
}
