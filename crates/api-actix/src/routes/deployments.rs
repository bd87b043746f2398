//! `/create` (the seed's route) and `/v1/deployments`.

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::{DeploymentName, DeploymentSpec, ReplicaFilter};
use tracing::info;

use super::path_name;
use crate::ApiState;
use crate::body::read_json;
use crate::dto::{Addresses, CreateDeployment, DeploymentView, ScaleDeployment};
use crate::error::ApiError;

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: CreateDeployment = read_json(&req, payload, state.body_limit).await?;
    let spec =
        DeploymentSpec::new(body.name.as_deref(), &body.image, body.command, body.replicas, body.units, &state.limits)?;
    let deployment = state.control.create_deployment(spec).await?;
    info!(deployment = %deployment.name, "created via API");
    Ok(HttpResponse::Created().json(DeploymentView::new(&deployment, &[], &Addresses::default(), false)))
}

pub async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let deployments = state.store.list_deployments().await?;
    let replicas = state.store.list_replicas(ReplicaFilter::default().active()).await?;
    let views: Vec<DeploymentView> = deployments
        .iter()
        .map(|d| {
            let mine: Vec<_> = replicas.iter().filter(|r| r.deployment == d.name).collect();
            DeploymentView::new(d, &mine, &Addresses::default(), false)
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

pub async fn get(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let deployment = state.store.get_deployment(&name).await?;
    let replicas = state.store.list_replicas(ReplicaFilter::deployment(&name).active()).await?;
    let nodes = state.store.list_nodes().await?;
    let mine: Vec<_> = replicas.iter().collect();
    Ok(HttpResponse::Ok().json(DeploymentView::new(&deployment, &mine, &Addresses::new(&nodes), true)))
}

pub async fn scale(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let body: ScaleDeployment = read_json(&req, payload, state.body_limit).await?;
    let replicas = state.limits.check_replicas(body.replicas)?;
    let deployment = state.control.scale_deployment(&name, replicas, body.version).await?;
    let active = state.store.list_replicas(ReplicaFilter::deployment(&name).active()).await?;
    let mine: Vec<_> = active.iter().collect();
    Ok(HttpResponse::Ok().json(DeploymentView::new(&deployment, &mine, &Addresses::default(), false)))
}

pub async fn delete(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    state.control.delete_deployment(&name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn rebalance(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let moved = state.control.rebalance_deployment(&name).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deployment": name.to_string(), "moved": moved })))
}
