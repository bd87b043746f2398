//! `GET /v1/deployments/{name}/endpoints`: where a deployment's published ports are reached,
//! as the engines themselves report them (the real host port, also when the engine picked it).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures::future::join_all;
use orchestrator_core::{ContainerSummary, DeploymentName, Node, NodeName, ReplicaFilter, ReplicaId};
use serde::Serialize;
use tracing::warn;
use utoipa::ToSchema;

use super::path_name;
use crate::ApiState;
use crate::error::{ApiError, ErrorBody};

/// One published port of one replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub replica: u64,
    pub node: String,
    /// `host:port` on the node; the host is the one its engine is reached at.
    #[schema(example = "10.123.0.11:18081")]
    pub address: String,
    pub target: u16,
    pub protocol: &'static str,
    /// Running, and healthy if it has a health check.
    pub ready: bool,
}

/// Engines that do not answer within this are left out, never waited for.
const ENGINE_DEADLINE: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/v1/deployments/{name}/endpoints", tag = "deployments", params(("name" = String, Path, description = "Deployment name")),
    responses((status = 200, description = "Each published port of each replica, as its engine reports it (replicas on engines that do not answer within 2 s are left out)", body = [EndpointView]), (status = 404, description = "No such deployment", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn list(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    state.store.get_deployment(&name).await?;
    let replicas = state.store.list_replicas(ReplicaFilter::deployment(&name).active()).await?;
    let nodes: HashMap<NodeName, Node> =
        state.store.list_nodes_brief().await?.into_iter().map(|n| (n.name.clone(), n)).collect();
    // A replica out of the endpoints (about to stop) is listed, not ready.
    let mut on_node: BTreeMap<&NodeName, Vec<(ReplicaId, bool)>> = BTreeMap::new();
    for r in &replicas {
        on_node.entry(&r.node).or_default().push((r.id, r.deregistered_at.is_some()));
    }
    let engines = &state.engines;
    let asked = on_node.iter().filter_map(|(node, ids)| Some((nodes.get(*node)?, ids))).map(|(node, ids)| async move {
        match tokio::time::timeout(ENGINE_DEADLINE, engines.list_replicas(node)).await {
            Ok(Ok(listed)) => Some((node, ids, listed)),
            Ok(Err(e)) => {
                warn!(node = %node.name, error = %e, "endpoints: engine did not answer");
                None
            }
            Err(_) => {
                warn!(node = %node.name, "endpoints: engine did not answer in time");
                None
            }
        }
    });
    let mut views = Vec::new();
    for (node, ids, listed) in join_all(asked).await.into_iter().flatten() {
        let Some(host) = node.reachable_host() else { continue };
        let ours: HashMap<ReplicaId, &ContainerSummary> =
            listed.iter().filter(|c| c.deployment == name).map(|c| (c.replica, c)).collect();
        for (id, leaving) in ids {
            let Some(container) = ours.get(id) else { continue };
            for port in &container.ports {
                views.push(EndpointView {
                    replica: id.0,
                    node: node.name.to_string(),
                    address: format!("{host}:{}", port.published),
                    target: port.target,
                    protocol: port.protocol.as_str(),
                    ready: container.is_ready() && !leaving,
                });
            }
        }
    }
    views.sort_by(|a, b| (a.replica, a.target, a.protocol).cmp(&(b.replica, b.target, b.protocol)));
    Ok(HttpResponse::Ok().json(views))
}
