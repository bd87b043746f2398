//! Locks by key, and a bound on work in flight per engine.
//!
//! Two kinds of key are locked: a deployment (what keeps two converges of one deployment
//! apart, whoever calls them) and a node with an image (the seed's spawn rule: on one engine,
//! the containers of one image are spawned one batch at a time, while other engines and other
//! images proceed in parallel).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use orchestrator_core::NodeName;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

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

pub struct EnginePermits {
    per_node: usize,
    nodes: Mutex<HashMap<NodeName, Arc<Semaphore>>>,
}

impl EnginePermits {
    pub fn new(per_node: usize) -> Self {
        Self { per_node: per_node.max(1), nodes: Mutex::default() }
    }

    pub async fn acquire(&self, node: &NodeName) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(nodes.entry(node.clone()).or_insert_with(|| Arc::new(Semaphore::new(self.per_node))))
        };
        semaphore.acquire_owned().await.expect("engine semaphores are never closed")
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
