//! Counters the loops keep for `/metrics` and `/readyz`, readable without locks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Stats {
    heartbeat_tick_micros: AtomicU64,
    heartbeat_ticks: AtomicU64,
    nodes_marked_offline: AtomicU64,
    rebalances: AtomicU64,
    replicas_replaced: AtomicU64,
    reconcile_passes: AtomicU64,
    reconcile_pass_micros: AtomicU64,
    heartbeat_running: AtomicBool,
    rebalancer_running: AtomicBool,
    reconciler_running: AtomicBool,
}

/// Which loop a flag belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Loop {
    Heartbeat,
    Rebalancer,
    Reconciler,
}

impl Stats {
    fn flag(&self, which: Loop) -> &AtomicBool {
        match which {
            Loop::Heartbeat => &self.heartbeat_running,
            Loop::Rebalancer => &self.rebalancer_running,
            Loop::Reconciler => &self.reconciler_running,
        }
    }

    pub(crate) fn set_running(&self, which: Loop, running: bool) {
        self.flag(which).store(running, Ordering::Relaxed);
    }

    /// All loops stopped (a new leader's loops set their flags as they start).
    pub fn clear_running(&self) {
        for which in [Loop::Heartbeat, Loop::Rebalancer, Loop::Reconciler] {
            self.set_running(which, false);
        }
    }

    pub fn is_running(&self, which: Loop) -> bool {
        self.flag(which).load(Ordering::Relaxed)
    }

    pub(crate) fn heartbeat_tick(&self, took: Duration) {
        self.heartbeat_tick_micros.store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.heartbeat_ticks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn marked_offline(&self, nodes: usize) {
        self.nodes_marked_offline.fetch_add(nodes as u64, Ordering::Relaxed);
    }

    pub(crate) fn rebalanced(&self, replaced: usize) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        self.replicas_replaced.fetch_add(replaced as u64, Ordering::Relaxed);
    }

    pub(crate) fn reconciled(&self, took: Duration) {
        self.reconcile_passes.fetch_add(1, Ordering::Relaxed);
        self.reconcile_pass_micros.store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn last_reconcile_pass(&self) -> Duration {
        Duration::from_micros(self.reconcile_pass_micros.load(Ordering::Relaxed))
    }

    pub fn last_heartbeat_tick(&self) -> Duration {
        Duration::from_micros(self.heartbeat_tick_micros.load(Ordering::Relaxed))
    }

    pub fn heartbeat_ticks(&self) -> u64 {
        self.heartbeat_ticks.load(Ordering::Relaxed)
    }

    pub fn nodes_marked_offline(&self) -> u64 {
        self.nodes_marked_offline.load(Ordering::Relaxed)
    }

    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Relaxed)
    }

    pub fn replicas_replaced(&self) -> u64 {
        self.replicas_replaced.load(Ordering::Relaxed)
    }

    pub fn reconcile_passes(&self) -> u64 {
        self.reconcile_passes.load(Ordering::Relaxed)
    }
}
