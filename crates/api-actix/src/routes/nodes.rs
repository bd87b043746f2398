//! `/v1/nodes`: `AddNodesToCluster`, `DeleteNodesFromTheCluster`, drain.

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::{NewNode, NodeName};
use serde_json::json;

use super::path_name;
use crate::ApiState;
use crate::body::read_json;
use crate::dto::{AddNode, NodeView};
use crate::error::ApiError;

pub async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let nodes = state.store.list_nodes().await?;
    Ok(HttpResponse::Ok().json(nodes.iter().map(NodeView::from).collect::<Vec<_>>()))
}

pub async fn add(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: AddNode = read_json(&req, payload, state.body_limit).await?;
    let node = NewNode::new(&body.name, &body.address, body.capacity)?;
    let node = state.control.add_node(node).await?;
    Ok(HttpResponse::Created().json(NodeView::from(&node)))
}

pub async fn get(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<NodeName>(&path, "node")?;
    let node = state.store.get_node(&name).await?;
    Ok(HttpResponse::Ok().json(NodeView::from(&node)))
}

pub async fn remove(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<NodeName>(&path, "node")?;
    state.control.remove_node(&name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn drain(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<NodeName>(&path, "node")?;
    let remaining = state.control.drain_node(&name).await?;
    Ok(HttpResponse::Ok().json(json!({ "node": name.to_string(), "remaining": remaining })))
}
