//! The `/status` document, built once per store revision and shared by every request.
//!
//! Why: with 10,000 replicas, building it (three store reads and a serialization) costs tens of
//! milliseconds, while dashboards and scripts poll it many times a second and the cluster
//! changes a few times a second at most (heartbeats). When the store's revision moves past the
//! cached document, one request rebuilds it, so it sees its own writes; requests arriving
//! during that rebuild get the previous document rather than queueing behind it.
//!
//! The document is also kept gzipped (JSON of 10,000 replicas is 1.7 MB; gzip makes it about a
//! tenth), compressed once per revision instead of once per response.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, RwLock};

use actix_web::web::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use orchestrator_core::{ClusterStore, Deployment, DeploymentName, Node, Replica, ReplicaExit, ReplicaFilter};

use crate::dto::{Addresses, DeploymentView, NodeView, StatusView};
use crate::error::ApiError;

pub struct Document {
    /// The store revision read before the document was built: it holds at least that state.
    revision: u64,
    /// The leading server when it was built; a new leader means a new document.
    leader: Option<String>,
    pub json: Bytes,
    pub gzip: Bytes,
}

impl Document {
    fn new(revision: u64, leader: Option<String>, view: &StatusView) -> Result<Self, ApiError> {
        let internal = |e: std::io::Error| ApiError::Internal(format!("cannot encode /status: {e}"));
        let json = serde_json::to_vec(view).map_err(|e| internal(e.into()))?;
        let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 8), Compression::fast());
        encoder.write_all(&json).map_err(internal)?;
        let gzip = encoder.finish().map_err(internal)?;
        Ok(Self { revision, leader, json: json.into(), gzip: gzip.into() })
    }
}

#[derive(Default)]
pub struct StatusCache {
    current: RwLock<Option<Arc<Document>>>,
    rebuilding: tokio::sync::Mutex<()>,
}

impl StatusCache {
    /// The body of `GET /status`.
    pub async fn get(&self, store: &dyn ClusterStore, leader: Option<String>) -> Result<Arc<Document>, ApiError> {
        let revision = store.revision().await?;
        let cached = self.fresh_or_stale(revision, leader.as_deref());
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
        if let Ok(body) = self.fresh_or_stale(revision, leader.as_deref()) {
            return Ok(body);
        }
        let nodes = store.list_nodes().await?;
        let deployments = store.list_deployments().await?;
        let replicas = store.list_replicas(ReplicaFilter::default().active()).await?;
        let failures = last_failures(store, &deployments).await?;
        // Tens of milliseconds of CPU for a large cluster: off the actix worker, which meanwhile
        // keeps answering its other connections with the previous document.
        let document = tokio::task::spawn_blocking(move || {
            let view = view(leader.clone(), &nodes, &deployments, &replicas, &failures);
            Document::new(revision, leader, &view)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("building /status failed: {e}")))??;
        let document = Arc::new(document);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&document));
        Ok(document)
    }

    /// `Ok` with the cached document if it is at least `revision`, else `Err` with the stale one.
    fn fresh_or_stale(&self, revision: u64, leader: Option<&str>) -> Result<Arc<Document>, Option<Arc<Document>>> {
        match self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(doc) if doc.revision >= revision && doc.leader.as_deref() == leader => Ok(Arc::clone(doc)),
            Some(doc) => Err(Some(Arc::clone(doc))),
            None => Err(None),
        }
    }
}

/// Why the replicas of each crash-looping deployment last ended, from their kept history: one
/// read per such deployment (a pull refused, an exit code), none for the others.
pub(crate) async fn last_failures(
    store: &dyn ClusterStore,
    deployments: &[Deployment],
) -> Result<HashMap<DeploymentName, ReplicaExit>, ApiError> {
    let mut last = HashMap::new();
    for d in deployments.iter().filter(|d| d.crash_loop.is_some()) {
        if let Some(exit) = store.list_exits(&d.name, false).await?.into_iter().next() {
            last.insert(d.name.clone(), exit);
        }
    }
    Ok(last)
}

pub(crate) fn view(
    leader: Option<String>,
    nodes: &[Node],
    deployments: &[Deployment],
    replicas: &[Replica],
    last_failures: &HashMap<DeploymentName, ReplicaExit>,
) -> StatusView {
    let mut by_deployment: HashMap<&str, Vec<&Replica>> = HashMap::new();
    for r in replicas {
        by_deployment.entry(r.deployment.as_str()).or_default().push(r);
    }
    let addresses = Addresses::new(nodes);
    let deployments = deployments
        .iter()
        .map(|d| {
            DeploymentView::new(d, by_deployment.get(d.name.as_str()).map_or(&[], Vec::as_slice), &addresses, true)
                .with_last_failure(last_failures.get(&d.name))
        })
        .collect();
    StatusView { leader, nodes: nodes.iter().map(NodeView::from).collect(), deployments, next_cursor: None }
}
