//! The seed's spawn lock, per image: containers of one image are spawned by one task at a time
//! while different images proceed in parallel. Plus a bound on work in flight per engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use orchestrator_core::{ImageRef, NodeName};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

#[derive(Default)]
pub struct ImageLocks {
    locks: Mutex<HashMap<ImageRef, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageLocks {
    pub async fn lock(&self, image: &ImageRef) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds or waits for, so the map stays as small as the set of
            // images being worked on.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            Arc::clone(locks.entry(image.clone()).or_default())
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
