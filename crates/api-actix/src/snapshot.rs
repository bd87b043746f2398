//! The `/status` document, built once per store revision and shared by every request.
//!
//! Why: with 10,000 replicas, building it (three store reads and a serialization) costs tens of
//! milliseconds, while dashboards and scripts poll it many times a second and the cluster
//! changes a few times a second at most (heartbeats). When the store's revision moves past the
//! cached document, one request rebuilds it, so it sees its own writes; requests arriving
//! during that rebuild get the previous document rather than queueing behind it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix_web::web::Bytes;
use orchestrator_core::{ClusterStore, Replica, ReplicaFilter};

use crate::dto::{DeploymentView, NodeView, StatusView};
use crate::error::ApiError;

struct Document {
    /// The store revision read before the document was built: it holds at least that state.
    revision: u64,
    body: Bytes,
}

#[derive(Default)]
pub struct StatusCache {
    current: RwLock<Option<Arc<Document>>>,
    rebuilding: tokio::sync::Mutex<()>,
}

impl StatusCache {
    /// The JSON body of `GET /status`.
    pub async fn get(&self, store: &dyn ClusterStore) -> Result<Bytes, ApiError> {
        let revision = store.revision().await?;
        let cached = self.fresh_or_stale(revision);
        let cached = match cached {
            Ok(body) => return Ok(body),
            Err(stale) => stale,
        };
        let _rebuilding = match (self.rebuilding.try_lock(), cached) {
            (Ok(guard), _) => guard,
            (Err(_), Some(stale)) => return Ok(stale),
            (Err(_), None) => self.rebuilding.lock().await,
        };
        // Another request may have rebuilt it while this one waited for the lock.
        if let Ok(body) = self.fresh_or_stale(revision) {
            return Ok(body);
        }
        let body = Bytes::from(serde_json::to_vec(&build(store).await?).map_err(|e| ApiError::Internal(e.to_string()))?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(Document { revision, body: body.clone() }));
        Ok(body)
    }

    /// `Ok` with the cached body if it is at least `revision`, else `Err` with the stale body.
    fn fresh_or_stale(&self, revision: u64) -> Result<Bytes, Option<Bytes>> {
        match self.current.read().unwrap_or_else(|p| p.into_inner()).as_deref() {
            Some(doc) if doc.revision >= revision => Ok(doc.body.clone()),
            Some(doc) => Err(Some(doc.body.clone())),
            None => Err(None),
        }
    }
}

async fn build(store: &dyn ClusterStore) -> Result<StatusView, ApiError> {
    let nodes = store.list_nodes().await?;
    let deployments = store.list_deployments().await?;
    let replicas = store.list_replicas(ReplicaFilter::default().active()).await?;
    let mut by_deployment: HashMap<&str, Vec<&Replica>> = HashMap::new();
    for r in &replicas {
        by_deployment.entry(r.deployment.as_str()).or_default().push(r);
    }
    let deployments = deployments
        .iter()
        .map(|d| DeploymentView::new(d, by_deployment.get(d.name.as_str()).map_or(&[], Vec::as_slice), &nodes, true))
        .collect();
    Ok(StatusView { nodes: nodes.iter().map(NodeView::from).collect(), deployments })
}
