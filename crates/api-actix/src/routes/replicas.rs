//! `GET /v1/deployments/{name}/replicas` (the CLI's `deploy ps`): each replica with its state
//! and, when it is not serving, why in words, and a line for each replica the deployment is
//! short of: unplaced (no node meets a constraint, a port taken everywhere) or waiting out a
//! crash loop's backoff; with `history`, the replicas that ended badly and why (kept by the
//! scheduler when it replaced them). Read from the store alone, so a follower answers it too.

use std::collections::HashMap;
use std::time::SystemTime;

use actix_web::{HttpResponse, web};
use orchestrator_core::{
    CrashLoop, Deployment, DeploymentName, EndReason, Health, Replica, ReplicaExit, ReplicaFilter, ReplicaState,
    Revision, runtime::image_to_run,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::path_name;
use crate::ApiState;
use crate::error::{ApiError, ErrorBody};

/// One replica, or one the deployment is short of (`replica` and `node` then absent).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaStatusView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub revision: u64,
    /// The image reference its engine runs: pinned to its revision's digest
    /// (`10.123.0.1:5000/app@sha256:...`) when it is, else as the template names it. Absent
    /// for an ended replica whose revision is no longer kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `pending`, `running`, `exited`, `lost`; for a missing replica `unplaced` or `waiting`
    /// (a crash loop's backoff); with `history`, for an ended one `failed` (it exited, failed
    /// its health check or vanished), `rejected` (its container did not start) or
    /// `pull_failed` (its node could not pull its image).
    pub state: &'static str,
    /// `starting`, `healthy` or `unhealthy`, with a health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// An ended replica's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// An ended replica's exit code, when its container exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Why it is not serving, in words; absent when it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "crash-looping: failure 4 in a row (last exit code 3); the next replacement in 8 s")]
    pub reason: Option<String>,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The crash loop in words, with the wait left at `now`.
fn crash_looping(crash: &CrashLoop, now: SystemTime) -> String {
    let code = crash.last_exit_code.map_or_else(String::new, |c| format!(" (last exit code {c})"));
    let next = match crash.retry_at.duration_since(now) {
        Ok(wait) if !wait.is_zero() => format!("; the next replacement in {} s", wait.as_secs().max(1)),
        _ => "; the next replacement now".to_string(),
    };
    format!("crash-looping: failure {} in a row{code}{next}", crash.restarts)
}

fn reason(r: &Replica) -> Option<String> {
    if r.deregistered_at.is_some() {
        return Some("out of the endpoints, stopping".into());
    }
    match (r.state, r.health) {
        (ReplicaState::Running, Some(Health::Unhealthy)) => {
            Some("unhealthy: its health check failed its retries".into())
        }
        (ReplicaState::Running, Some(Health::Starting)) => Some("health check not passed yet".into()),
        (ReplicaState::Running, _) => None,
        // Placed: a crash loop's wait comes before placing, so this one is past it.
        (ReplicaState::Pending, _) => Some("starting".into()),
        (ReplicaState::Exited, _) => Some("its container exited; being replaced".into()),
        (ReplicaState::Lost, _) => Some(format!("lost with node {}; replaced elsewhere", r.node)),
    }
}

/// The image each kept revision's replicas run, by revision.
fn images_by_revision(revisions: &[Revision]) -> HashMap<u64, String> {
    revisions.iter().map(|r| (r.number, image_to_run(&r.template, r.image_digest.as_deref()).to_string())).collect()
}

/// What `replicas` says about a deployment at `now`: its replicas, then those it is short of.
fn statuses(
    d: &Deployment,
    replicas: &[Replica],
    images: &HashMap<u64, String>,
    now: SystemTime,
) -> Vec<ReplicaStatusView> {
    let mut views: Vec<ReplicaStatusView> = replicas
        .iter()
        .map(|r| ReplicaStatusView {
            replica: Some(r.id.0),
            node: Some(r.node.to_string()),
            revision: r.revision,
            image: images.get(&r.revision).cloned(),
            state: r.state.as_str(),
            health: r.health.map(Health::as_str),
            container_id: r.container_id.clone(),
            started_at_ms: r.started_at.map(millis),
            ended_at_ms: None,
            exit_code: None,
            reason: reason(r),
        })
        .collect();
    let active = replicas.iter().filter(|r| r.state.is_active()).count();
    let missing = usize::try_from(d.spec.replicas).unwrap_or(usize::MAX).saturating_sub(active);
    let unplaced = d.unplaced.as_ref().map_or(0, |u| usize::try_from(u.count).unwrap_or(usize::MAX)).min(missing);
    let short = |state: &'static str, reason: String| ReplicaStatusView {
        replica: None,
        node: None,
        revision: d.revision,
        image: images.get(&d.revision).cloned(),
        state,
        health: None,
        container_id: None,
        started_at_ms: None,
        ended_at_ms: None,
        exit_code: None,
        reason: Some(reason),
    };
    if let Some(u) = &d.unplaced {
        views.extend((0..unplaced).map(|_| short("unplaced", u.reason.clone())));
    }
    let waiting = missing - unplaced;
    let why_waiting = match &d.crash_loop {
        Some(crash) if crash.is_backing_off(now) => crash_looping(crash, now),
        _ => "to be placed".to_string(),
    };
    views.extend((0..waiting).map(|_| short("waiting", why_waiting.clone())));
    views
}

/// An ended replica, as kept.
fn ended(e: &ReplicaExit, images: &HashMap<u64, String>) -> ReplicaStatusView {
    let state = match e.reason {
        EndReason::NotStarted { .. } => "rejected",
        EndReason::PullFailed { .. } => "pull_failed",
        _ => "failed",
    };
    ReplicaStatusView {
        replica: Some(e.replica.0),
        node: Some(e.node.to_string()),
        revision: e.revision,
        image: images.get(&e.revision).cloned(),
        state,
        health: None,
        container_id: None,
        started_at_ms: e.started_at.map(millis),
        ended_at_ms: Some(millis(e.ended_at)),
        exit_code: e.reason.exit_code(),
        reason: Some(e.reason.to_string()),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReplicasQuery {
    /// The replicas that ended badly too (after the current ones, newest first): two kept for
    /// each replica the deployment runs, each with why it ended.
    #[param(value_type = Option<bool>)]
    history: Option<String>,
}

#[utoipa::path(get, path = "/v1/deployments/{name}/replicas", tag = "deployments", params(("name" = String, Path, description = "Deployment name"), ReplicasQuery),
    responses((status = 200, description = "Each replica (by id) with its state and why it does not serve, then one entry per replica the deployment is short of (`unplaced` or `waiting`, with the reason), then with `history` the ended ones, newest first (`failed` or `rejected`, with why)", body = [ReplicaStatusView]),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 422, description = "`history` that is not true or false (the field is named)", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn list(
    path: web::Path<String>,
    query: web::Query<ReplicasQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    // Exactly a JSON boolean, as the document says (`?history=` is no answer).
    let history = match query.history.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::BadRequest {
                code: "invalid_value",
                message: format!("invalid history: {other:?} is not true or false"),
                field: Some("history".into()),
            });
        }
    };
    let deployment = state.store.get_deployment(&name).await?;
    let mut replicas = state.store.list_replicas(ReplicaFilter::deployment(&name)).await?;
    replicas.sort_by_key(|r| r.id);
    let images = images_by_revision(&state.store.list_revisions(&name).await?);
    let mut views = statuses(&deployment, &replicas, &images, SystemTime::now());
    if history {
        views.extend(state.store.list_exits(&name, false).await?.iter().map(|e| ended(e, &images)));
    }
    Ok(HttpResponse::Ok().json(views))
}
