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
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self { locks: Mutex::default() }
    }
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    pub async fn lock(&self, key: &K) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds or waits for, so the map stays as small as the set of
            // keys being worked on.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        lock.lock_owned().await
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
}
