//! The `/status` document, built once per store revision (`PerRevision`) and shared by every
//! request.
//!
//! The document is also kept gzipped (JSON of 10,000 replicas is 1.7 MB; gzip makes it about a
//! tenth), compressed once per revision instead of once per response.

use std::collections::HashMap;
use std::io::Write;

use actix_web::web::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use orchestrator_core::{ClusterStore, Deployment, DeploymentName, Node, Replica, ReplicaExit, ReplicaFilter};

use crate::dto::{Addresses, DeploymentView, NodeView, StatusView};
use crate::error::ApiError;

pub struct Document {
    pub json: Bytes,
    pub gzip: Bytes,
}

impl Document {
    fn new(view: &StatusView) -> Result<Self, ApiError> {
        let internal = |e: std::io::Error| ApiError::Internal(format!("cannot encode /status: {e}"));
        let json = serde_json::to_vec(view).map_err(|e| internal(e.into()))?;
        let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 8), Compression::fast());
        encoder.write_all(&json).map_err(internal)?;
        let gzip = encoder.finish().map_err(internal)?;
        Ok(Self { json: json.into(), gzip: gzip.into() })
    }

    /// The whole cluster's document, built from the store.
    pub async fn build(store: &dyn ClusterStore, leader: Option<String>) -> Result<Self, ApiError> {
        let nodes = store.list_nodes().await?;
        let deployments = store.list_deployments().await?;
        let replicas = store.list_replicas(ReplicaFilter::default().active()).await?;
        let failures = last_failures(store, &deployments).await?;
        // Tens of milliseconds of CPU for a large cluster: off the actix worker, which meanwhile
        // keeps answering its other connections with the previous document.
        tokio::task::spawn_blocking(move || Document::new(&view(leader, &nodes, &deployments, &replicas, &failures)))
            .await
            .map_err(|e| ApiError::Internal(format!("building /status failed: {e}")))?
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
