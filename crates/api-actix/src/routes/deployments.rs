//! `/create` (the seed's route) and `/v1/deployments`.

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::{Change, ClusterStore, DeploymentName, EngineFacts, Error, ReplicaFilter, Resources};
use tracing::info;

use super::{caller, path_name};
use crate::ApiState;
use crate::body::read_json;
use crate::dto::{Addresses, CreateDeployment, DeploymentView, Rebalanced, RevisionView};
use crate::error::{ApiError, ErrorBody};
use crate::summary::{ready_by_deployment, replica_counts};

#[utoipa::path(post, path = "/v1/deployments", tag = "deployments", request_body = CreateDeployment,
    responses((status = 201, description = "Created; replicas are being placed", body = DeploymentView), (status = 200, description = "It already exists with exactly this spec (a retried create): nothing changed", body = DeploymentView), (status = 400, description = "Malformed JSON, unknown field or wrong type (the field is named)", body = ErrorBody), (status = 422, description = "A value out of range or badly formed (the field is named)", body = ErrorBody), (status = 413, description = "Body over the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 409, description = "The name is taken by a deployment with another spec", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: CreateDeployment = read_json(&req, payload, state.body_limit).await?;
    let (name, spec) = body.into_spec(&state.limits)?;
    fits_some_engine(&spec.template.resources, state.store.as_ref()).await?;
    let change = Change { by: caller(&req), ..Change::default() };
    // Create by name is idempotent: a client that retries after a lost answer, or whose
    // request a load balancer sent twice, gets the deployment it made, never a second one.
    match state.control.create_deployment(&name, spec.clone(), change).await {
        Ok(deployment) => {
            info!(deployment = %deployment.name, "created via API");
            Ok(HttpResponse::Created().json(DeploymentView::new(&deployment, &[], &Addresses::default(), false)))
        }
        Err(taken @ Error::AlreadyExists { .. }) => match state.store.get_deployment(&name).await {
            Ok(existing) if existing.is_created_by(&spec) => {
                Ok(HttpResponse::Ok().json(DeploymentView::new(&existing, &[], &Addresses::default(), false)))
            }
            _ => Err(ApiError::Conflict(format!("{taken} with another spec"))),
        },
        Err(e) => Err(e.into()),
    }
}

/// Refuses limits above what every engine has, among those whose facts are known (no replica
/// could ever start: the engine refuses more CPUs than it has). Nodes are read only for a
/// deployment that claims some.
pub(super) async fn fits_some_engine(resources: &Resources, store: &dyn ClusterStore) -> Result<(), Error> {
    if resources.is_empty() {
        return Ok(());
    }
    fits_engines(resources, &known_engines(store).await?)
}

/// The facts of every engine whose facts are known.
pub(super) async fn known_engines(store: &dyn ClusterStore) -> Result<Vec<EngineFacts>, Error> {
    Ok(store.list_nodes_brief().await?.iter().filter_map(|n| n.engine).collect())
}

/// `fits_some_engine` against engines already read (a stack checks all its services at once).
pub(super) fn fits_engines(resources: &Resources, engines: &[EngineFacts]) -> Result<(), Error> {
    if engines.is_empty() {
        return Ok(());
    }
    if let Some(nanos) = resources.nano_cpus {
        let most = engines.iter().map(|e| e.cpus).max().unwrap_or(0);
        if nanos > u64::from(most) * 1_000_000_000 {
            return Err(Error::invalid("resources.cpus", format!("above every node's CPUs (the most is {most})")));
        }
    }
    if let Some(bytes) = resources.memory_bytes {
        let most = engines.iter().map(|e| e.memory_bytes).max().unwrap_or(0);
        if bytes > most {
            return Err(Error::invalid(
                "resources.memory",
                format!("above every node's memory (the most is {most} bytes)"),
            ));
        }
    }
    Ok(())
}

/// The seed's route, the same as `POST /v1/deployments`.
#[utoipa::path(post, path = "/create", tag = "seed", request_body = CreateDeployment,
    responses((status = 201, description = "Created; replicas are being placed", body = DeploymentView),
        (status = 200, description = "It already exists with exactly this spec (a retried create): nothing changed", body = DeploymentView),
        (status = 400, description = "Malformed JSON, unknown field or wrong type (the field is named)", body = ErrorBody),
        (status = 422, description = "A value out of range or badly formed (the field is named)", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 409, description = "The name is taken by a deployment with another spec", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody)))]
pub async fn seed_create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    create(req, payload, state).await
}

#[utoipa::path(get, path = "/v1/deployments", tag = "deployments",
    responses((status = 200, description = "Every deployment, without replica details", body = [DeploymentView]), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let deployments = state.store.list_deployments().await?;
    // Counted by the store (a million replicas stay there), once per revision.
    let counts = replica_counts(&state).await?;
    let running = ready_by_deployment(&counts, &deployments);
    let views: Vec<DeploymentView> =
        deployments.iter().map(|d| DeploymentView::counted(d, running.get(&d.name).copied().unwrap_or(0))).collect();
    Ok(HttpResponse::Ok().json(views))
}

#[utoipa::path(get, path = "/v1/deployments/{name}", tag = "deployments", params(("name" = String, Path, description = "Deployment name")),
    responses((status = 200, description = "The deployment and its replicas", body = DeploymentView), (status = 404, description = "No such deployment", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn get(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let deployment = state.store.get_deployment(&name).await?;
    let replicas = state.store.list_replicas(ReplicaFilter::deployment(&name).active()).await?;
    let nodes = state.store.list_nodes_brief().await?;
    let mine: Vec<_> = replicas.iter().collect();
    let rollout = match deployment.rollout {
        Some(id) => state.store.get_rollout(&name, id).await.ok(),
        None => None,
    };
    let last_end = match deployment.crash_loop {
        Some(_) => state.store.list_exits(&name, false).await?.into_iter().next(),
        None => None,
    };
    let view = DeploymentView::new(&deployment, &mine, &Addresses::new(&nodes), true)
        .with_rollout(rollout.as_ref())
        .with_last_failure(last_end.as_ref());
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(delete, path = "/v1/deployments/{name}", tag = "deployments", params(("name" = String, Path, description = "Deployment name")),
    responses((status = 204, description = "Deleted, containers removed"), (status = 404, description = "No such deployment", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn delete(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    state.control.delete_deployment(&name).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/v1/deployments/{name}/revisions", tag = "deployments", params(("name" = String, Path, description = "Deployment name")),
    responses((status = 200, description = "The kept revisions of the deployment's template, oldest first (the current one last)", body = [RevisionView]), (status = 404, description = "No such deployment", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn revisions(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let revisions = state.store.list_revisions(&name).await?;
    Ok(HttpResponse::Ok().json(revisions.iter().map(RevisionView::new).collect::<Vec<_>>()))
}

#[utoipa::path(post, path = "/v1/deployments/{name}/rebalance", tag = "deployments", params(("name" = String, Path, description = "Deployment name")),
    responses((status = 200, description = "Replicas moved to spread the load", body = Rebalanced), (status = 404, description = "No such deployment", body = ErrorBody), (status = 503, description = "Sent to a follower: rebalancing runs on the leader (`not_leader`, with `Retry-After`)", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn rebalance(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let moved = state.control.rebalance_deployment(&name).await?;
    Ok(HttpResponse::Ok().json(Rebalanced { deployment: name.to_string(), moved }))
}
