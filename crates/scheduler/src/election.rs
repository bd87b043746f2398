//! Leader election over the store's lease. Every server runs one `Election`; the one holding
//! the lease runs `lead(term, stop)` (the loops, on a store fenced by that term), the others
//! serve the API only.
//!
//! The lease is renewed every `renew_every` (1 s) for `ttl` (5 s). A leader whose renewals fail
//! steps down, stopping its loops, once less than `renew_every` of its lease is left by its own
//! clock, so it is no longer acting when another server may take over. Should it be paused and
//! miss that moment, its store is fenced: nothing it still writes lands under a newer term.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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

/// What a leader runs: given its term and a token cancelled when it must stop.
pub type Lead = Box<dyn Fn(u64, CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Leading {
    term: u64,
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// When our lease runs out by our clock: sent time of the last renewal that succeeded + TTL.
    valid_until: Instant,
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
            if leading.as_ref().is_some_and(|l| Instant::now() + self.config.renew_every >= l.valid_until) {
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
                    Some(l) if l.term == lease.term => l.valid_until = sent + self.config.ttl,
                    _ => {
                        self.step_down(&mut leading, None).await;
                        info!(id = %self.id, term = lease.term, "leading");
                        let stop = shutdown.child_token();
                        let task = tokio::spawn((self.lead)(lease.term, stop.clone()));
                        leading = Some(Leading { term: lease.term, stop, task, valid_until: sent + self.config.ttl });
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
            let term = l.term;
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
            l.stop.cancel();
            let mut task = l.task;
            if tokio::time::timeout(self.config.renew_every / 2, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
            info!(id = %self.id, term = l.term, "stopped leading");
        }
        self.role.send_replace(Leadership::Follower { id: self.id.clone(), leader });
    }
}
