//! Leader election on a scripted lease store, in virtual time: a leader steps down (its loops
//! stopped) before its lease can run out when renewals fail, and at once when another server
//! has taken the lease.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{Error, Leadership, Lease, MockLeaseStore};
use scheduler::{Election, ElectionConfig, Lead, Tenure};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first renewal makes us leader at term 7; every later one answers `later`.
fn lease_store(later: fn() -> orchestrator_core::Result<Option<Lease>>) -> MockLeaseStore {
    let calls = AtomicU32::new(0);
    let mut lease = MockLeaseStore::new();
    lease.expect_acquire_lease().returning(move |holder, now, ttl| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(Some(Lease { holder: holder.to_string(), term: 7, expires_at: now + ttl }))
        } else {
            later()
        }
    });
    lease
        .expect_current_lease()
        .returning(|| Ok(Some(Lease { holder: "b".into(), term: 8, expires_at: std::time::SystemTime::now() })));
    lease.expect_release_lease().returning(|_, _| Ok(()));
    lease
}

/// One term led: the term, when the loops started, when they were told to stop.
type Led = (u64, Instant, Option<Instant>);

/// A lead that records when it started and when it was told to stop.
fn recording_lead(log: Arc<Mutex<Vec<Led>>>) -> Lead {
    Box::new(move |tenure: Tenure| {
        let (term, stop) = (tenure.term, tenure.stop);
        let log = Arc::clone(&log);
        Box::pin(async move {
            let index = {
                let mut log = log.lock().unwrap();
                log.push((term, Instant::now(), None));
                log.len() - 1
            };
            stop.cancelled().await;
            log.lock().unwrap()[index].2 = Some(Instant::now());
        })
    })
}

async fn lead_then_lose(
    later: fn() -> orchestrator_core::Result<Option<Lease>>,
) -> (Duration, Vec<(u64, Instant, Option<Instant>)>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let config = ElectionConfig::default();
    let election = Election::new(Arc::new(lease_store(later)), "a", config, recording_lead(Arc::clone(&log)));
    let mut role = election.watch();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(election.run(shutdown.clone()));
    role.wait_for(Leadership::is_leader).await.unwrap();
    let led_at = Instant::now();
    role.wait_for(|r| !r.is_leader()).await.unwrap();
    let led_for = led_at.elapsed();
    // Followers never start the loops again while the lease is not theirs.
    tokio::time::sleep(Duration::from_secs(10)).await;
    shutdown.cancel();
    task.await.unwrap();
    let log = log.lock().unwrap().clone();
    (led_for, log)
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_its_loops_before_the_lease_ends() {
    let config = ElectionConfig::default();
    let (led_for, log) = lead_then_lose(|| Err(Error::Store("database unreachable".into()))).await;
    assert!(led_for < config.ttl, "stepped down after {led_for:?}, the lease lasts {:?}", config.ttl);
    assert!(led_for >= config.ttl - 2 * config.renew_every, "stepped down too early: {led_for:?}");
    assert_eq!(log.len(), 1, "led once: {log:?}");
    let (term, started, stopped) = log[0];
    assert_eq!(term, 7);
    assert!(stopped.unwrap() - started < config.ttl, "the loops ran past the lease");
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_lease_was_taken_steps_down_at_the_next_renewal() {
    let config = ElectionConfig::default();
    let (led_for, log) = lead_then_lose(|| Ok(None)).await;
    assert!(led_for <= config.renew_every + Duration::from_millis(10), "{led_for:?}");
    assert_eq!(log.len(), 1);
    assert!(log[0].2.is_some(), "the loops were stopped");
}
