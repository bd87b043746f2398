//! A value read from the store, built at most once per store revision and shared by every
//! request: `/status`'s document and `/status/summary`'s counts.
//!
//! Why: at scale both read the whole replica table (10,000 replicas: tens of milliseconds; a
//! million: half a second for the summary's counts alone), while dashboards, scripts and
//! scrapers poll them many times a second and the cluster changes a few times a second at most
//! (heartbeats). When the store's revision moves past the cached value, one request rebuilds
//! it, so it sees its own writes; requests arriving during that rebuild get the previous value
//! rather than queueing behind it.

use std::future::Future;
use std::sync::{Arc, RwLock};

use orchestrator_core::ClusterStore;

use crate::error::ApiError;

struct Stamped<T> {
    /// The store revision read before the value was built: it holds at least that state.
    revision: u64,
    /// The leading server when it was built; a new leader means a new value.
    leader: Option<String>,
    value: Arc<T>,
}

pub struct PerRevision<T> {
    current: RwLock<Option<Stamped<T>>>,
    rebuilding: tokio::sync::Mutex<()>,
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
        let value = Arc::new(build(leader.clone()).await?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Stamped { revision, leader, value: Arc::clone(&value) });
        Ok(value)
    }

    /// `Ok` with the cached value if it is at least `revision`, else `Err` with the stale one.
    fn fresh_or_stale(&self, revision: u64, leader: Option<&str>) -> Result<Arc<T>, Option<Arc<T>>> {
        match self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(s) if s.revision >= revision && s.leader.as_deref() == leader => Ok(Arc::clone(&s.value)),
            Some(s) => Err(Some(Arc::clone(&s.value))),
            None => Err(None),
        }
    }
}
