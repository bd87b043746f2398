//! Leadership among several servers sharing one store: a lease with a holder, a term and an
//! expiry. One server at a time holds it and runs the loops; its writes carry the term
//! (fencing), so a leader that was paused past its lease cannot undo its successor's work.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::error::Result;

/// The lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holding server's id (unique per process start).
    pub holder: String,
    /// Grows by one each time the lease changes hands; never reused.
    pub term: u64,
    pub expires_at: SystemTime,
}

impl Lease {
    pub fn is_live(&self, now: SystemTime) -> bool {
        now < self.expires_at
    }
}

/// The boundary to the lease. Each call is one transaction, serialized with every other write,
/// so at most one holder has a live lease at any instant of the store's history.
///
/// Time is passed in, from each server's clock: servers sharing a store are assumed to agree
/// on the time to well within the TTL (NTP), as in every lease-based system.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Renews the lease if `holder` holds it (same term), or takes it with the next term if it
    /// is free or expired. Returns the lease `holder` now has, or `None` when another live
    /// holder has it.
    async fn acquire_lease(&self, holder: &str, now: SystemTime, ttl: Duration) -> Result<Option<Lease>>;

    /// The lease as stored, live or not; `None` if no server ever took it.
    async fn current_lease(&self) -> Result<Option<Lease>>;

    /// Gives the lease up at once (graceful shutdown), if `holder` still holds it at `term`.
    async fn release_lease(&self, holder: &str, term: u64) -> Result<()>;
}
