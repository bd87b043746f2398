//! `/v1/stacks`: a Compose file's services applied as one stack (`PUT`, idempotent: the same
//! file again changes nothing), listed, and deleted together. A stack is the set of
//! deployments whose template carries its label; nothing else is stored.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::stack::{self, StackAction, StackStep};
use orchestrator_core::{Change, Deployment, Error, StackName};
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::{IntoParams, ToSchema};

use super::{caller, path_name};
use crate::ApiState;
use crate::body::read_json;
use crate::dto::DeploymentView;
use crate::error::{ApiError, ErrorBody};
use crate::stack_dto::StackFile;
use crate::summary::{ready_by_deployment, replica_counts};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Delete the stack's deployments whose service the file no longer has (kept otherwise).
    prune: Option<bool>,
    /// Answer what would change, change nothing.
    dry_run: Option<bool>,
}

/// What applying did (or, in a dry run, would do) to one service's deployment.
#[derive(Debug, Serialize, ToSchema)]
pub struct StackStepView {
    pub service: String,
    pub deployment: String,
    /// `create`, `update`, `unchanged`, `delete` (gone from the file, `prune`) or `keep` (gone
    /// from the file, no `prune`).
    #[schema(example = "update")]
    pub action: &'static str,
    /// An update's changed fields, in the create's words (`image`, `env`, `replicas`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<&'static str>,
    /// The deployment's revision after a create or update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The rollout an update's new template started (wait for it as for any rollout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<u64>,
}

impl StackStepView {
    fn new(step: &StackStep) -> Self {
        Self {
            service: step.service.clone(),
            deployment: step.deployment.to_string(),
            action: step.action.as_str(),
            changed: match &step.action {
                StackAction::Update { changed } => changed.clone(),
                _ => Vec::new(),
            },
            revision: None,
            rollout: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StackSummaryView {
    pub name: String,
    /// Its deployments, by name.
    pub deployments: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StackView {
    pub name: String,
    /// Its deployments, without replica details (`actual` counted by the store).
    pub deployments: Vec<DeploymentView>,
}

/// The deployments of each stack, by stack name.
fn by_stack(deployments: &[Deployment]) -> BTreeMap<&str, Vec<&Deployment>> {
    let mut stacks: BTreeMap<&str, Vec<&Deployment>> = BTreeMap::new();
    for d in deployments {
        if let Some(name) = stack::stack_of(d) {
            stacks.entry(name).or_default().push(d);
        }
    }
    stacks
}

/// An error of a service's deployment, named by its path in the file.
fn in_service(service: &str, e: Error) -> Error {
    match e {
        Error::Invalid { field, message } => {
            let (head, rest) = field.split_once('.').unwrap_or((field.as_str(), ""));
            let field = match head {
                "resources" => format!("services.{service}.deploy.resources.limits.{rest}"),
                _ => format!("services.{service}.{field}"),
            };
            Error::Invalid { field, message }
        }
        other => other,
    }
}

#[utoipa::path(put, path = "/v1/stacks/{name}", tag = "stacks", request_body = StackFile,
    params(("name" = String, Path, description = "Stack name (a DNS label); its deployments are named STACK_SERVICE"), ApplyQuery),
    responses((status = 200, description = "Each service's deployment and what was done to it (in a dry run, what would be): created, updated (a new template rolls out with the service's update_config), unchanged, deleted (`prune`) or kept", body = [StackStepView]),
        (status = 400, description = "Malformed JSON, or a query parameter not true or false", body = ErrorBody),
        (status = 422, description = "A key the subset does not take, or a bad value: the path in the file is named (`services.web.ports[1]`); nothing was applied", body = ErrorBody),
        (status = 409, description = "A service's deployment name is taken outside the stack, or a deployment changed meanwhile", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn apply(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ApplyQuery>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let stack = StackName::new(path.as_str()).map_err(|e| match e {
        Error::Invalid { message, .. } => Error::invalid("name", message),
        other => other,
    })?;
    let file: StackFile = read_json(&req, payload, state.body_limit).await?;
    let services = file.into_services(&stack, &state.limits)?;
    if services.iter().any(|s| !s.spec.template.resources.is_empty()) {
        let engines = super::deployments::known_engines(state.store.as_ref()).await?;
        for s in &services {
            super::deployments::fits_engines(&s.spec.template.resources, &engines)
                .map_err(|e| in_service(&s.service, e))?;
        }
    }
    let existing = state.store.list_deployments().await?;
    let steps = stack::plan(&stack, services, &existing, query.prune.unwrap_or(false))?;
    let mut views: Vec<StackStepView> = steps.iter().map(StackStepView::new).collect();
    if query.dry_run.unwrap_or(false) {
        return Ok(HttpResponse::Ok().json(views));
    }
    let by = caller(&req);
    for (step, view) in steps.into_iter().zip(views.iter_mut()) {
        let change = Change { by: by.clone(), cause: Some(format!("stack {stack} applied")), restores: None };
        let done = match (step.action, step.spec, step.version) {
            (StackAction::Create, Some(spec), _) => {
                Some(state.control.create_deployment(&step.deployment, spec, change).await?)
            }
            (StackAction::Update { .. }, Some(spec), Some(version)) => {
                Some(state.control.update_deployment(&step.deployment, spec, version, change).await?)
            }
            (StackAction::Delete, _, _) => {
                state.control.delete_deployment(&step.deployment).await?;
                None
            }
            _ => None,
        };
        if let Some(d) = done {
            view.revision = Some(d.revision);
            view.rollout = d.rollout;
        }
    }
    info!(stack = %stack, services = views.len(), "stack applied via API");
    Ok(HttpResponse::Ok().json(views))
}

#[utoipa::path(get, path = "/v1/stacks", tag = "stacks",
    responses((status = 200, description = "Every stack, with its deployments' names", body = [StackSummaryView]), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let deployments = state.store.list_deployments().await?;
    let views: Vec<StackSummaryView> = by_stack(&deployments)
        .into_iter()
        .map(|(name, ds)| StackSummaryView {
            name: name.to_string(),
            deployments: ds.iter().map(|d| d.name.to_string()).collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// The stack's deployments; 404 when it has none.
async fn members(state: &ApiState, raw: &str) -> Result<(StackName, Vec<Deployment>), ApiError> {
    let stack = path_name::<StackName>(raw, "stack")?;
    let deployments: Vec<Deployment> = state
        .store
        .list_deployments()
        .await?
        .into_iter()
        .filter(|d| stack::stack_of(d) == Some(stack.as_str()))
        .collect();
    if deployments.is_empty() {
        return Err(ApiError::NotFound(format!("stack {stack:?} not found")));
    }
    Ok((stack, deployments))
}

#[utoipa::path(get, path = "/v1/stacks/{name}", tag = "stacks", params(("name" = String, Path, description = "Stack name")),
    responses((status = 200, description = "The stack's deployments", body = StackView), (status = 404, description = "No deployment is of this stack", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn get(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let (stack, deployments) = members(&state, &path).await?;
    let counts = replica_counts(&state).await?;
    let running = ready_by_deployment(&counts, &deployments);
    let views =
        deployments.iter().map(|d| DeploymentView::counted(d, running.get(&d.name).copied().unwrap_or(0))).collect();
    Ok(HttpResponse::Ok().json(StackView { name: stack.to_string(), deployments: views }))
}

#[utoipa::path(delete, path = "/v1/stacks/{name}", tag = "stacks", params(("name" = String, Path, description = "Stack name")),
    responses((status = 204, description = "Every deployment of the stack deleted, containers removed"), (status = 404, description = "No deployment is of this stack", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn delete(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let (stack, deployments) = members(&state, &path).await?;
    for d in &deployments {
        match state.control.delete_deployment(&d.name).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    info!(stack = %stack, deployments = deployments.len(), "stack deleted via API");
    Ok(HttpResponse::NoContent().finish())
}
