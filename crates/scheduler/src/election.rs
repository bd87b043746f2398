//! Leader election over the store's lease. Every server runs one `Election`; the one holding
//! the lease runs `lead(tenure)` (the loops, on a store fenced by its term and engines guarded
//! by its `Tenure`), the others serve the API only.
//!
//! The lease is renewed every `renew_every` (1 s) for `ttl` (5 s). A leader whose renewals fail
//! steps down, stopping its loops, once less than `renew_every` of its lease is left by its own
//! clock, so it is no longer acting when another server may take over. Should it be paused and
//! miss that moment, its store is fenced: nothing it still writes lands under a newer term; and
//! its engine calls that change containers are refused by `Tenure::is_current` once its lease
//! has run out by its own clock, whatever order its timers fire in after the pause.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use orchestrator_core::{Leadership, LeaseStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy)]
pub struct ElectionConfig {
    pub ttl: Duration,
    pub renew_every: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(5), renew_every: Duration::from_secs(1) }
    }
}

/// What a leader runs, given its tenure; it must return once `tenure.stop` is cancelled.
pub type Lead = Box<dyn Fn(Tenure) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One term of leadership as the leader's own code sees it.
#[derive(Debug, Clone)]
pub struct Tenure {
    pub term: u64,
    /// Cancelled when this server stops leading.
    pub stop: CancellationToken,
    /// When the lease runs out by our clock: sent time of the last renewal that succeeded + TTL
    /// (the store's expiry, computed after the request left, is later).
    valid_until: Arc<Mutex<Instant>>,
}

impl Tenure {
    pub(crate) fn new(term: u64, stop: CancellationToken, valid_until: Instant) -> Self {
        Self { term, stop, valid_until: Arc::new(Mutex::new(valid_until)) }
    }

    /// Whether this server may still act as leader: not stopped, and the lease not run out by
    /// its own (monotonic) clock. A process paused past its lease sees `false` at once when it
    /// resumes, before the election has had a turn to step down.
    pub fn is_current(&self) -> bool {
        !self.stop.is_cancelled() && Instant::now() < self.valid_until()
    }

    fn valid_until(&self) -> Instant {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn extend_to(&self, until: Instant) {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }
}

struct Leading {
    tenure: Tenure,
    task: JoinHandle<()>,
}

pub struct Election {
    lease: Arc<dyn LeaseStore>,
    id: String,
    config: ElectionConfig,
    lead: Lead,
    role: watch::Sender<Leadership>,
}

impl Election {
    pub fn new(lease: Arc<dyn LeaseStore>, id: impl Into<String>, config: ElectionConfig, lead: Lead) -> Self {
        let id = id.into();
        let (role, _) = watch::channel(Leadership::Follower { id: id.clone(), leader: None });
        Self { lease, id, config, lead, role }
    }

    /// Follows this server's role as it changes.
    pub fn watch(&self) -> watch::Receiver<Leadership> {
        self.role.subscribe()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut leading: Option<Leading> = None;
        let mut tick = tokio::time::interval(self.config.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            // First the clock: after a pause, stop before anything else runs on a lapsed lease.
            if leading.as_ref().is_some_and(|l| Instant::now() + self.config.renew_every >= l.tenure.valid_until()) {
                warn!(id = %self.id, "lease about to lapse without renewal: stepping down");
                self.step_down(&mut leading, None).await;
            }
            let sent = Instant::now();
            let attempt = tokio::time::timeout(
                self.config.renew_every,
                self.lease.acquire_lease(&self.id, SystemTime::now(), self.config.ttl),
            )
            .await;
            match attempt {
                Ok(Ok(Some(lease))) => match &mut leading {
                    Some(l) if l.tenure.term == lease.term => l.tenure.extend_to(sent + self.config.ttl),
                    _ => {
                        self.step_down(&mut leading, None).await;
                        info!(id = %self.id, term = lease.term, "leading");
                        let tenure = Tenure::new(lease.term, shutdown.child_token(), sent + self.config.ttl);
                        let task = tokio::spawn((self.lead)(tenure.clone()));
                        leading = Some(Leading { tenure, task });
                        self.role.send_replace(Leadership::Leader { id: self.id.clone(), term: lease.term });
                    }
                },
                Ok(Ok(None)) => {
                    let holder = self.lease.current_lease().await.ok().flatten().map(|l| l.holder);
                    if leading.is_some() {
                        warn!(id = %self.id, leader = ?holder, "lease taken by another server: stepping down");
                    }
                    self.step_down(&mut leading, holder).await;
                }
                Ok(Err(e)) => warn!(id = %self.id, error = %e, "lease renewal failed"),
                Err(_) => warn!(id = %self.id, "lease renewal timed out"),
            }
        }
        if let Some(l) = &leading {
            let term = l.tenure.term;
            self.step_down(&mut leading, None).await;
            // Hand over at once instead of making the others wait out the TTL.
            if let Err(e) = self.lease.release_lease(&self.id, term).await {
                warn!(error = %e, "could not release the lease");
            }
        }
    }

    /// Stops the loops (waiting a little for them to finish their step, then aborting them).
    async fn step_down(&self, leading: &mut Option<Leading>, leader: Option<String>) {
        if let Some(l) = leading.take() {
            l.tenure.stop.cancel();
            let mut task = l.task;
            if tokio::time::timeout(self.config.renew_every / 2, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
            info!(id = %self.id, term = l.tenure.term, "stopped leading");
        }
        self.role.send_replace(Leadership::Follower { id: self.id.clone(), leader });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tenure_ends_with_its_lease_by_the_clock_or_when_stopped() {
        let stop = CancellationToken::new();
        let tenure = Tenure::new(7, stop.clone(), Instant::now() + Duration::from_secs(5));
        assert!(tenure.is_current());
        // A pause past the lease: current no more, with no renewal having run.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!tenure.is_current());
        tenure.extend_to(Instant::now() + Duration::from_secs(5));
        assert!(tenure.clone().is_current(), "clones share the renewal");
        stop.cancel();
        assert!(!tenure.is_current());
    }
}
