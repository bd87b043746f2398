//! `GET /status`: the cluster from the store alone, so a slow node never slows it. Whole (the
//! seed's route, cached per store revision), filtered to one deployment or node, or paged by
//! deployment; and `GET /status/summary`, the cluster in numbers.

use std::collections::HashSet;
use std::convert::Infallible;

use actix_web::HttpMessage;
use actix_web::body::SizedStream;
use actix_web::http::header::{self, AcceptEncoding, ContentType, Encoding, HeaderValue, Preference, Quality};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::Stream;
use orchestrator_core::{ClusterStore, Deployment, DeploymentName, NodeName, Replica, ReplicaFilter};
use serde::Deserialize;
use utoipa::IntoParams;

use super::query_number;
use crate::ApiState;
use crate::dto::{StatusSummary, StatusView};
use crate::error::{ApiError, ErrorBody};
use crate::snapshot::{Document, last_failures, view};
use crate::summary::cached_summary;

/// Deployments per page when `cursor` comes without `limit`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Only this deployment, and the nodes its replicas run on.
    #[param(value_type = Option<String>, pattern = "^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$", min_length = 1, max_length = 63)]
    deployment: Option<String>,
    /// Only the replicas on this node: the node, and each deployment with replicas there,
    /// listing (and counting as `actual`) only those.
    #[param(value_type = Option<String>, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", min_length = 1, max_length = 63)]
    node: Option<String>,
    /// A page of at most this many deployments, in name order (1..=1,000; 100 when only
    /// `cursor` is given).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Deployments after this name: the previous page's `next_cursor`.
    #[param(value_type = Option<String>, pattern = "^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$", min_length = 1, max_length = 63)]
    cursor: Option<String>,
}

/// The parsed query; all `None`: the whole cluster.
#[derive(Debug, Default)]
struct Scope {
    deployment: Option<DeploymentName>,
    node: Option<NodeName>,
    /// Set when paged.
    limit: Option<u32>,
    cursor: Option<DeploymentName>,
}

fn name<T: std::str::FromStr>(field: &'static str, raw: Option<&str>) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.map(|v| {
        v.parse().map_err(|e| ApiError::BadRequest {
            code: "invalid_value",
            message: format!("invalid {field}: {e}"),
            field: Some(field.into()),
        })
    })
    .transpose()
}

impl Scope {
    fn parse(query: &StatusQuery) -> Result<Self, ApiError> {
        let limit = query_number::<u32>("limit", query.limit.as_deref())?;
        if let Some(n) = limit.filter(|n| !(1..=MAX_PAGE).contains(n)) {
            return Err(ApiError::BadRequest {
                code: "invalid_value",
                message: format!("invalid limit: {n} is not in 1..={MAX_PAGE}"),
                field: Some("limit".into()),
            });
        }
        let cursor = name("cursor", query.cursor.as_deref())?;
        Ok(Self {
            deployment: name("deployment", query.deployment.as_deref())?,
            node: name("node", query.node.as_deref())?,
            limit: limit.or(cursor.is_some().then_some(DEFAULT_PAGE)),
            cursor,
        })
    }

    fn is_whole_cluster(&self) -> bool {
        self.deployment.is_none() && self.node.is_none() && self.limit.is_none()
    }
}

#[utoipa::path(get, path = "/status", tag = "seed", params(StatusQuery),
    responses((status = 200, description = "Without parameters: every node and every deployment with its replicas, from the store (gzip when accepted). With `deployment` or `node`: only that part. With `limit`/`cursor`: a page of deployments in name order, `next_cursor` naming the next.", body = StatusView),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such deployment or node", body = ErrorBody),
        (status = 422, description = "A parameter out of range or badly formed (the field is named)", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn status(
    query: web::Query<StatusQuery>,
    state: web::Data<ApiState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let scope = Scope::parse(&query)?;
    let leader = state.control.leadership().leader().map(str::to_string);
    if !scope.is_whole_cluster() {
        return Ok(HttpResponse::Ok().json(part(state.store.as_ref(), leader, &scope).await?));
    }
    let store = state.store.as_ref();
    let document = state.status.get(store, leader, |leader| Document::build(store, leader)).await?;
    let mut response = HttpResponse::Ok();
    response
        .content_type(ContentType::json())
        .insert_header((header::VARY, HeaderValue::from_static("accept-encoding")));
    let body = if accepts_gzip(&request) {
        response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        document.gzip.clone()
    } else {
        document.json.clone()
    };
    Ok(response.body(in_slices(body)))
}

/// A filtered or paged view, read for this request: only the replicas in scope leave the
/// store (by the deployment and node indexes), never the whole table.
async fn part(store: &dyn ClusterStore, leader: Option<String>, scope: &Scope) -> Result<StatusView, ApiError> {
    let mut deployments: Vec<Deployment> = match &scope.deployment {
        Some(name) => vec![store.get_deployment(name).await?],
        None => store.list_deployments().await?,
    };
    deployments.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(node) = &scope.node {
        store.get_node(node).await?;
    }
    let filter = ReplicaFilter { deployment: scope.deployment.clone(), node: scope.node.clone(), active_only: true };
    let narrowed = filter.deployment.is_some() || filter.node.is_some();
    let mut replicas: Vec<Replica> = if narrowed { store.list_replicas(filter).await? } else { Vec::new() };
    if scope.node.is_some() {
        let here: HashSet<&DeploymentName> = replicas.iter().map(|r| &r.deployment).collect();
        deployments.retain(|d| here.contains(&d.name));
    }
    if let Some(cursor) = &scope.cursor {
        deployments.retain(|d| d.name > *cursor);
    }
    let mut next_cursor = None;
    if let Some(limit) = scope.limit.map(|n| n as usize) {
        if deployments.len() > limit {
            deployments.truncate(limit);
            next_cursor = deployments.last().map(|d| d.name.to_string());
        }
        let kept: HashSet<&DeploymentName> = deployments.iter().map(|d| &d.name).collect();
        replicas.retain(|r| kept.contains(&r.deployment));
    }
    if !narrowed {
        for d in &deployments {
            replicas.extend(store.list_replicas(ReplicaFilter::deployment(&d.name).active()).await?);
        }
    }
    let used: HashSet<&NodeName> = replicas.iter().map(|r| &r.node).chain(scope.node.iter()).collect();
    let mut nodes = store.list_nodes().await?;
    nodes.retain(|n| used.contains(&n.name));
    let failures = last_failures(store, &deployments).await?;
    let mut view = view(leader, &nodes, &deployments, &replicas, &failures);
    view.next_cursor = next_cursor;
    Ok(view)
}

#[utoipa::path(get, path = "/status/summary", tag = "seed",
    responses((status = 200, description = "The cluster in numbers: nodes by status and capacity, deployments and how many are degraded, replicas required, running and pending. Its size does not grow with the cluster.", body = StatusSummary),
        (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn summary(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut summary = cached_summary(&state).await?;
    summary.leader = state.control.leadership().leader().map(str::to_string);
    Ok(HttpResponse::Ok().json(summary))
}

/// The shared buffer as a stream of slices (no copy): actix copies a whole body into its write
/// buffer, which for a 1.7 MB document meant a fresh 1.7 MB allocation per response; slices
/// keep that buffer small and reused.
fn in_slices(body: Bytes) -> SizedStream<impl Stream<Item = Result<Bytes, Infallible>>> {
    const SLICE: usize = 64 * 1024;
    let len = body.len();
    let slices = (0..len).step_by(SLICE).map(move |start| Ok(body.slice(start..len.min(start + SLICE))));
    SizedStream::new(len as u64, futures::stream::iter(slices))
}

/// The client takes gzip: `Accept-Encoding`, parsed by actix-web (q-values in any of their
/// spellings, `q=0.0` included), gives gzip, or failing an entry for it, `*`, a non-zero
/// quality. A header that does not parse gets the plain document.
fn accepts_gzip(request: &HttpRequest) -> bool {
    let Some(accept) = request.get_header::<AcceptEncoding>() else { return false };
    let quality_of = |wanted: &Preference<Encoding>| accept.iter().find(|q| q.item == *wanted).map(|q| q.quality);
    quality_of(&Preference::Specific(Encoding::gzip()))
        .or_else(|| quality_of(&Preference::Any))
        .is_some_and(|q| q > Quality::ZERO)
}
