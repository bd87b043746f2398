//! Updates and their rollouts: `PATCH /v1/deployments/{name}` (scale, or a new template that
//! rolls out; `?dry_run=true` plans it), the rollouts' record, rollback, pause and resume.

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::{Change, DeploymentName, DeploymentSpec, Error, ReplicaFilter, RolloutId};
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::{IntoParams, ToSchema};

use super::deployments::fits_some_engine;
use super::{caller, path_name};
use crate::ApiState;
use crate::body::read_json;
use crate::dto::{Addresses, DeploymentView};
use crate::error::{ApiError, ErrorBody};
use crate::rollout_dto::{RollbackDeployment, RolloutView, UpdateDeployment, UpdatePlanView};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UpdateQuery {
    /// Answer the plan (which replicas, in which order, on which nodes) and change nothing.
    pub dry_run: Option<bool>,
}

/// What an update answers: the deployment, or with `dry_run` the plan.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UpdateAnswer {
    Updated(Box<DeploymentView>),
    Plan(UpdatePlanView),
}

/// The deployment as an update or rollback answers it: with the rollout it started.
async fn answer(
    state: &ApiState,
    name: &DeploymentName,
    deployment: &orchestrator_core::Deployment,
) -> Result<DeploymentView, ApiError> {
    let active = state.store.list_replicas(ReplicaFilter::deployment(name).active()).await?;
    let mine: Vec<_> = active.iter().collect();
    let rollout = match deployment.rollout {
        Some(id) => Some(state.store.get_rollout(name, id).await?),
        None => None,
    };
    Ok(DeploymentView::new(deployment, &mine, &Addresses::default(), false).with_rollout(rollout.as_ref()))
}

#[utoipa::path(patch, path = "/v1/deployments/{name}", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), UpdateQuery), request_body = UpdateDeployment,
    responses((status = 200, description = "Updated: a new template made a revision and started its rollout (`revision`, `rollout`); replicas alone scale. With `dry_run`: the plan, nothing changed", body = UpdateAnswer),
        (status = 400, description = "Malformed JSON, unknown field or wrong type (the field is named)", body = ErrorBody), (status = 422, description = "A value out of range or badly formed (the field is named)", body = ErrorBody), (status = 413, description = "Body over the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody), (status = 409, description = "Stale version", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<UpdateQuery>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let body: UpdateDeployment = read_json(&req, payload, state.body_limit).await?;
    let dry_run = query.dry_run.unwrap_or(false);
    if body.is_scale_only() && !dry_run {
        let replicas = state.limits.check_replicas(body.replicas.unwrap_or_default())?;
        let deployment = state.control.scale_deployment(&name, replicas, body.version).await?;
        return Ok(HttpResponse::Ok().json(UpdateAnswer::Updated(Box::new(answer(&state, &name, &deployment).await?))));
    }
    let current = state.store.get_deployment(&name).await?;
    if current.version != body.version {
        return Err(Error::stale_version(name.as_str(), current.version, body.version).into());
    }
    let version = body.version;
    let (spec, cause) = body.into_spec(&current.spec, &state.limits)?;
    fits_some_engine(&spec.template.resources, state.store.as_ref()).await?;
    if dry_run {
        let plan = state.control.plan_update(&name, spec).await?;
        return Ok(HttpResponse::Ok().json(UpdateAnswer::Plan(UpdatePlanView::new(&plan))));
    }
    let change = Change { by: caller(&req), cause, restores: None };
    let deployment = state.control.update_deployment(&name, spec, version, change).await?;
    info!(deployment = %name, revision = deployment.revision, "updated via API");
    Ok(HttpResponse::Ok().json(UpdateAnswer::Updated(Box::new(answer(&state, &name, &deployment).await?))))
}

/// A rollback's answer: the deployment (with the rollout that brings the revision back) and
/// the rollout it interrupted, if one was under way.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolledBack {
    #[serde(flatten)]
    pub deployment: DeploymentView,
    /// The revision whose template comes back.
    pub restores: u64,
    /// The rollout that was under way (in progress or paused) and ended `rolled_back`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<RolloutView>,
}

#[utoipa::path(post, path = "/v1/deployments/{name}/rollback", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name")), request_body = RollbackDeployment,
    responses((status = 200, description = "Rolling back: a new revision restoring the one asked for (default: the one before the current), rolled out with the rollback policy; a rollout under way, even paused, ends rolled_back (`interrupted`)", body = RolledBack),
        (status = 400, description = "Malformed JSON, unknown field or wrong type", body = ErrorBody), (status = 422, description = "A value out of range (the field is named)", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 404, description = "No such deployment, or no such revision kept", body = ErrorBody), (status = 409, description = "Stale version, or the revision runs the current template already", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn rollback(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let body: RollbackDeployment = read_json(&req, payload, state.body_limit).await?;
    let current = state.store.get_deployment(&name).await?;
    if current.version != body.version {
        return Err(Error::stale_version(name.as_str(), current.version, body.version).into());
    }
    let revisions = state.store.list_revisions(&name).await?;
    let wanted = match body.to_revision {
        Some(r) => u64::try_from(r)
            .ok()
            .filter(|r| *r >= 1)
            .ok_or_else(|| Error::invalid("to_revision", "must be at least 1"))?,
        None => revisions.iter().rev().map(|r| r.number).find(|n| *n < current.revision).ok_or_else(|| {
            ApiError::NotFound(format!("deployment {name} has no revision before {} kept", current.revision))
        })?,
    };
    let target = revisions.iter().find(|r| r.number == wanted).ok_or_else(|| {
        let kept: Vec<String> = revisions.iter().map(|r| r.number.to_string()).collect();
        ApiError::NotFound(format!("revision {wanted} of {name} is not kept (kept: {})", kept.join(", ")))
    })?;
    if target.template == current.spec.template {
        return Err(ApiError::Conflict(format!(
            "revision {wanted} runs the template {name} runs now (revision {}): nothing to roll back",
            current.revision
        )));
    }
    let interrupted = match current.rollout {
        Some(id) => state.store.get_rollout(&name, id).await.ok().filter(|r| r.state.is_active()),
        None => None,
    };
    let spec = DeploymentSpec { template: target.template.clone(), ..current.spec.clone() };
    let who = caller(&req);
    let cause =
        format!("rollback to revision {wanted}{}", who.as_ref().map(|w| format!(" by {w}")).unwrap_or_default());
    let change = Change { by: who, cause: Some(cause), restores: Some(wanted) };
    let deployment = state.control.update_deployment(&name, spec, body.version, change).await?;
    info!(deployment = %name, restores = wanted, revision = deployment.revision, "rollback via API");
    let interrupted = match interrupted {
        Some(r) => Some(RolloutView::new(&state.store.get_rollout(&name, r.id).await?)),
        None => None,
    };
    let view = answer(&state, &name, &deployment).await?;
    Ok(HttpResponse::Ok().json(RolledBack { deployment: view, restores: wanted, interrupted }))
}

#[utoipa::path(get, path = "/v1/deployments/{name}/rollouts", tag = "deployments", params(("name" = String, Path, description = "Deployment name")),
    responses((status = 200, description = "Every rollout of the deployment, newest first", body = [RolloutView]), (status = 404, description = "No such deployment", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn list(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let rollouts = state.store.list_rollouts(&name).await?;
    Ok(HttpResponse::Ok().json(rollouts.iter().map(RolloutView::new).collect::<Vec<_>>()))
}

fn rollout_path(path: &(String, String)) -> Result<(DeploymentName, RolloutId), ApiError> {
    let name = path_name::<DeploymentName>(&path.0, "deployment")?;
    let id = path_name::<RolloutId>(&path.1, "rollout")?;
    Ok((name, id))
}

#[utoipa::path(get, path = "/v1/deployments/{name}/rollouts/{id}", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), ("id" = u64, Path, description = "Rollout id")),
    responses((status = 200, description = "The rollout", body = RolloutView), (status = 404, description = "No such deployment or rollout", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn get(path: web::Path<(String, String)>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let (name, id) = rollout_path(&path)?;
    Ok(HttpResponse::Ok().json(RolloutView::new(&state.store.get_rollout(&name, id).await?)))
}

#[utoipa::path(post, path = "/v1/deployments/{name}/rollouts/{id}/pause", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), ("id" = u64, Path, description = "Rollout id")),
    responses((status = 200, description = "Paused: no more replicas are replaced until it resumes (lost ones are still replaced)", body = RolloutView), (status = 404, description = "No such deployment or rollout", body = ErrorBody), (status = 409, description = "The rollout is not in progress", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn pause(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = rollout_path(&path)?;
    let rollout = state.control.pause_rollout(&name, id, true, caller(&req)).await?;
    Ok(HttpResponse::Ok().json(RolloutView::new(&rollout)))
}

#[utoipa::path(post, path = "/v1/deployments/{name}/rollouts/{id}/resume", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), ("id" = u64, Path, description = "Rollout id")),
    responses((status = 200, description = "Resumed", body = RolloutView), (status = 404, description = "No such deployment or rollout", body = ErrorBody), (status = 409, description = "The rollout is not paused", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn resume(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = rollout_path(&path)?;
    let rollout = state.control.pause_rollout(&name, id, false, caller(&req)).await?;
    Ok(HttpResponse::Ok().json(RolloutView::new(&rollout)))
}
