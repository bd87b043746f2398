//! Locks by key.
//!
//! Two kinds of key are locked: a deployment (what keeps two converges of one deployment
//! apart, whoever calls them) and a node with an image (the seed's spawn rule: on one engine,
//! the containers of one image are spawned one batch at a time, while other engines and other
//! images proceed in parallel).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

pub struct KeyedLocks<K> {
    locks: Mutex<Locks<K>>,
}

struct Locks<K> {
    by_key: HashMap<K, Arc<tokio::sync::Mutex<()>>>,
    /// The map's size after the last sweep: the next one comes when it has doubled.
    swept_at: usize,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self { locks: Mutex::new(Locks { by_key: HashMap::new(), swept_at: 0 }) }
    }
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    pub async fn lock(&self, key: &K) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds or waits for, so the map stays about as small as the set
            // of keys being worked on. Swept when it has doubled, not on every call: with
            // thousands of keys held (a converge over thousands of nodes), a sweep a call was
            // a scan of them all for each.
            if locks.by_key.len() >= 2 * locks.swept_at.max(32) {
                locks.by_key.retain(|_, l| Arc::strong_count(l) > 1);
                locks.swept_at = locks.by_key.len();
            }
            Arc::clone(locks.by_key.entry(key.clone()).or_default())
        };
        lock.lock_owned().await
    }

    /// Keys with a lock kept (held, waited for, or not yet swept).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_keys_apart() {
        let locks = KeyedLocks::<&str>::default();
        let a = locks.lock(&"a").await;
        let _b = locks.lock(&"b").await;
        let waiting = locks.lock(&"a");
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending(), "a second holder of one key waits");
        drop(a);
        let _a = waiting.await;
    }

    #[tokio::test]
    async fn locks_nobody_holds_are_forgotten_as_the_map_grows() {
        let locks = KeyedLocks::<u32>::default();
        for key in 0..10_000 {
            drop(locks.lock(&key).await);
        }
        assert!(locks.kept() <= 64, "{} kept", locks.kept());
        let mut held = Vec::new();
        for key in 0..1_000 {
            held.push(locks.lock(&key).await);
        }
        assert!(locks.kept() >= 1_000);
        drop(held);
        for key in 20_000..24_000 {
            drop(locks.lock(&key).await);
        }
        assert!(locks.kept() <= 2_048, "{} kept", locks.kept());
    }
}
