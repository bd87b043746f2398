//! `/v1/nodes`: `AddNodesToCluster`, `DeleteNodesFromTheCluster`, drain.

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::NodeName;

use super::path_name;
use crate::ApiState;
use crate::body::read_json;
use crate::dto::{AddNode, Drained, NodeView, UpdateNode};
use crate::error::{ApiError, ErrorBody};

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, description = "Every node", body = [NodeView]), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let nodes = state.store.list_nodes().await?;
    Ok(HttpResponse::Ok().json(nodes.iter().map(NodeView::from).collect::<Vec<_>>()))
}

#[utoipa::path(post, path = "/v1/nodes", tag = "nodes", request_body = AddNode,
    responses((status = 201, description = "Added; online after its first heartbeat", body = NodeView), (status = 400, description = "Malformed JSON, unknown field or wrong type (the field is named)", body = ErrorBody), (status = 422, description = "A value out of range or badly formed (the field is named)", body = ErrorBody), (status = 413, description = "Body over the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn add(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: AddNode = read_json(&req, payload, state.body_limit).await?;
    let node = state.control.add_node(body.into_new_node()?).await?;
    Ok(HttpResponse::Created().json(NodeView::from(&node)))
}

#[utoipa::path(get, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")),
    responses((status = 200, description = "The node", body = NodeView), (status = 404, description = "No such node", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn get(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<NodeName>(&path, "node")?;
    let node = state.store.get_node(&name).await?;
    Ok(HttpResponse::Ok().json(NodeView::from(&node)))
}

#[utoipa::path(patch, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")), request_body = UpdateNode,
    responses((status = 200, description = "Updated; replicas waiting for a node their constraints admit are placed, nothing placed moves", body = NodeView), (status = 400, description = "Malformed JSON, unknown field or wrong type (the field is named)", body = ErrorBody), (status = 422, description = "A value badly formed (the field is named)", body = ErrorBody), (status = 413, description = "Body over the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 404, description = "No such node", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let name = path_name::<NodeName>(&path, "node")?;
    let body: UpdateNode = read_json(&req, payload, state.body_limit).await?;
    let node = state.control.update_node(&name, body.into_update()?).await?;
    Ok(HttpResponse::Ok().json(NodeView::from(&node)))
}

#[utoipa::path(delete, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")),
    responses((status = 204, description = "Drained, then removed"), (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "Replicas could not all be moved off it", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn remove(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<NodeName>(&path, "node")?;
    state.control.remove_node(&name).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/nodes/{name}/drain", tag = "nodes", params(("name" = String, Path, description = "Node name")),
    responses((status = 200, description = "No new replicas go there; its replicas moved elsewhere", body = Drained), (status = 404, description = "No such node", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn drain(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<NodeName>(&path, "node")?;
    let remaining = state.control.drain_node(&name).await?;
    Ok(HttpResponse::Ok().json(Drained { node: name.to_string(), remaining }))
}
