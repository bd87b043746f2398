//! A value read from the store, built at most once per store revision and shared by every
//! request: `/status`'s document and `/status/summary`'s counts.
//!
//! Why: at scale both read the whole replica table (10,000 replicas: tens of milliseconds; a
//! million: half a second for the summary's counts alone), while dashboards, scripts and
//! scrapers poll them many times a second and the cluster changes a few times a second at most
//! (heartbeats). When the store's revision moves past the cached value, one request rebuilds
//! it, so it sees its own writes; requests arriving during that rebuild get the previous value
//! rather than queueing behind it.
//!
//! A value that took long to build (`EXPENSIVE`) twice in a row then rests: for `REST_FACTOR`
//! times its build it is served, whatever the revision, as the reconciler's sweep rests. While
//! a million replicas were placed and started the revision moved every few milliseconds, and
//! one client polling `/status/summary` four times a second kept a reader counting the
//! replica table back to back (half a second a count), a core of a two-core machine.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use orchestrator_core::ClusterStore;

use crate::error::ApiError;

/// Two builds in a row at least this long make the value rest; below it (every cluster but the
/// largest: a million replicas are counted in ~0.5 s, 200,000 in ~0.1 s) each revision is
/// built, so a client reads its own writes, and one slow build (a busy machine) changes nothing.
const EXPENSIVE: Duration = Duration::from_millis(250);
/// After a build of T that was `EXPENSIVE`, the value is served as it is until T x this after
/// it was built: at most a fifth of the time goes to building it.
const REST_FACTOR: u32 = 4;

struct Stamped<T> {
    /// The store revision read before the value was built: it holds at least that state.
    revision: u64,
    /// The leading server when it was built; a new leader means a new value.
    leader: Option<String>,
    value: Arc<T>,
    /// How long it took to build.
    took: Duration,
    /// Until when it is served whatever the revision (it and the one before were `EXPENSIVE`).
    rests_until: Option<Instant>,
}

pub struct PerRevision<T> {
    current: RwLock<Option<Stamped<T>>>,
    rebuilding: tokio::sync::Mutex<()>,
}

impl<T> Stamped<T> {
    fn resting(&self) -> bool {
        self.rests_until.is_some_and(|until| Instant::now() < until)
    }
}

impl<T> Default for PerRevision<T> {
    fn default() -> Self {
        Self { current: RwLock::new(None), rebuilding: tokio::sync::Mutex::new(()) }
    }
}

impl<T> PerRevision<T> {
    /// The value for the store's current revision and `leader`: cached, the previous one while
    /// another request rebuilds it, or built now by `build`.
    pub async fn get<F, Fut>(
        &self,
        store: &dyn ClusterStore,
        leader: Option<String>,
        build: F,
    ) -> Result<Arc<T>, ApiError>
    where
        F: FnOnce(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let revision = store.revision().await?;
        let stale = match self.fresh_or_stale(revision, leader.as_deref()) {
            Ok(value) => return Ok(value),
            Err(stale) => stale,
        };
        let _rebuilding = match (self.rebuilding.try_lock(), stale) {
            (Ok(guard), _) => guard,
            (Err(_), Some(stale)) => return Ok(stale),
            (Err(_), None) => self.rebuilding.lock().await,
        };
        // Another request may have rebuilt it while this one waited for the lock.
        if let Ok(value) = self.fresh_or_stale(revision, leader.as_deref()) {
            return Ok(value);
        }
        let started = Instant::now();
        let value = Arc::new(build(leader.clone()).await?);
        let took = started.elapsed();
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let twice = took >= EXPENSIVE && current.as_ref().is_some_and(|before| before.took >= EXPENSIVE);
        let rests_until = twice.then(|| Instant::now() + took * REST_FACTOR);
        *current = Some(Stamped { revision, leader, value: Arc::clone(&value), took, rests_until });
        Ok(value)
    }

    /// `Ok` with the cached value if it is at least `revision` or resting, else `Err` with the
    /// stale one. Never another leader's.
    fn fresh_or_stale(&self, revision: u64, leader: Option<&str>) -> Result<Arc<T>, Option<Arc<T>>> {
        match self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(s) if s.leader.as_deref() == leader && (s.revision >= revision || s.resting()) => {
                Ok(Arc::clone(&s.value))
            }
            Some(s) => Err(Some(Arc::clone(&s.value))),
            None => Err(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use orchestrator_core::memory::MemoryStore;
    use orchestrator_core::{NewNode, NodeStore};

    use super::*;

    /// Builds a count of its builds, taking `took` to do it.
    async fn get(cache: &PerRevision<u32>, store: &MemoryStore, builds: &AtomicU32, took: Duration) -> u32 {
        let value = cache
            .get(store, None, |_| async move {
                tokio::time::sleep(took).await;
                Ok(builds.fetch_add(1, Ordering::SeqCst) + 1)
            })
            .await
            .unwrap();
        *value
    }

    async fn write(store: &MemoryStore, i: u32) {
        store.add_node(NewNode::new(&format!("n{i}"), "tcp://127.0.0.1:2375", 1).unwrap()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cheap_value_is_built_again_for_every_new_revision() {
        let (store, cache, builds) = (MemoryStore::new(), PerRevision::default(), AtomicU32::new(0));
        let quick = Duration::from_millis(1);
        assert_eq!(get(&cache, &store, &builds, quick).await, 1);
        assert_eq!(get(&cache, &store, &builds, quick).await, 1, "same revision: cached");
        write(&store, 1).await;
        assert_eq!(get(&cache, &store, &builds, quick).await, 2, "a client reads its own write");
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_expensive_twice_rests_four_times_its_build_then_follows_the_revision() {
        let (store, cache, builds) = (MemoryStore::new(), PerRevision::default(), AtomicU32::new(0));
        let slow = Duration::from_millis(500);
        assert_eq!(get(&cache, &store, &builds, slow).await, 1);
        write(&store, 1).await;
        assert_eq!(get(&cache, &store, &builds, slow).await, 2, "one slow build: no rest");
        write(&store, 2).await;
        tokio::time::sleep(slow * REST_FACTOR - Duration::from_millis(10)).await;
        assert_eq!(get(&cache, &store, &builds, slow).await, 2, "resting: the revision moved, the value did not");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(get(&cache, &store, &builds, slow).await, 3, "rested: built for the new revision");
        // Resting never serves another leader's value.
        let other = cache.get(&store, Some("b".into()), |_| async { Ok(7) }).await.unwrap();
        assert_eq!(*other, 7);
    }
}
