//! `GET /status`: the whole cluster from the store alone, so a slow node never slows it.

use actix_web::{HttpResponse, web};
use orchestrator_core::ReplicaFilter;

use crate::ApiState;
use crate::dto::{DeploymentView, NodeView, StatusView};
use crate::error::ApiError;

pub async fn status(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let nodes = state.store.list_nodes().await?;
    let deployments = state.store.list_deployments().await?;
    let replicas = state.store.list_replicas(ReplicaFilter::default().active()).await?;
    let deployments = deployments
        .iter()
        .map(|d| {
            let mine: Vec<_> = replicas.iter().filter(|r| r.deployment == d.name).collect();
            DeploymentView::new(d, &mine, &nodes, true)
        })
        .collect();
    Ok(HttpResponse::Ok().json(StatusView { nodes: nodes.iter().map(NodeView::from).collect(), deployments }))
}
