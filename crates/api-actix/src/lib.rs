//! The orchestrator's HTTP API: the seed's `POST /create` and `GET /status`, the resource API
//! under `/v1`, health probes, and bearer-token authentication with two roles.
//!
//! Architecture invariant: depends only on orchestrator-core. Request and response types (the
//! wire format) live here and are converted to and from core types at the handler.

#![forbid(unsafe_code)]

mod auth;
mod body;
mod dto;
mod error;
mod grammar;
mod metrics;
mod openapi;
mod per_revision;
mod rollout_dto;
mod routes;
mod snapshot;
mod stack_dto;
mod summary;
mod template_dto;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use orchestrator_core::{AccessStore, ClusterStore, ContainerRuntime, ControlPlane, Limits, RegistryStore};
use utoipa_swagger_ui::SwaggerUi;

pub use auth::{Caller, Tokens};
pub use error::ApiError;
pub use metrics::Metrics;
pub use openapi::ApiDoc;
pub use orchestrator_core::Role;

/// Default bound on a request body.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares. Made with [`ApiState::new`], then adjusted field by field.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn ClusterStore>,
    pub access: Arc<dyn AccessStore>,
    pub control: Arc<dyn ControlPlane>,
    /// The engines, for what only they know (bound ports, health): reads only, so a follower
    /// answers them too.
    pub engines: Arc<dyn ContainerRuntime>,
    pub limits: Limits,
    pub body_limit: usize,
    /// Serves `/metrics` when set.
    pub metrics: Option<Metrics>,
    /// `/metrics` without a token (for scrapers on a trusted network).
    pub metrics_public: bool,
    /// A mutation whose `X-Request-Start` (set by the load balancer, docs/ha/haproxy.cfg) is
    /// older than this when its handling begins is refused (408): its server was paused with
    /// it in the socket, the proxy gave up on it and may have retried it elsewhere.
    pub request_max_age: Duration,
    /// Registry logins (`/v1/registries`); `None`: this server keeps none.
    pub registries: Option<Arc<dyn RegistryStore>>,
    /// One per server, shared by its workers: `/status` and `/status/summary` (built without
    /// a leader, which each answer sets).
    status: Arc<per_revision::PerRevision<snapshot::Document>>,
    summary: Arc<per_revision::PerRevision<dto::StatusSummary>>,
    /// What the summary and `GET /v1/deployments` count.
    replica_counts: Arc<per_revision::PerRevision<Vec<orchestrator_core::ReplicaCount>>>,
}

impl ApiState {
    /// Default limits, no `/metrics`.
    pub fn new(
        store: Arc<dyn ClusterStore>,
        access: Arc<dyn AccessStore>,
        control: Arc<dyn ControlPlane>,
        engines: Arc<dyn ContainerRuntime>,
    ) -> Self {
        Self {
            store,
            access,
            control,
            engines,
            limits: Limits::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            metrics: None,
            metrics_public: false,
            request_max_age: Duration::from_secs(4),
            registries: None,
            status: Arc::default(),
            summary: Arc::default(),
            replica_counts: Arc::default(),
        }
    }
}

/// Registers every route, behind authentication (except the health probes), on an actix `App`:
/// `App::new().configure(|cfg| api_actix::configure(cfg, state, tokens))`.
pub fn configure(cfg: &mut web::ServiceConfig, state: ApiState, tokens: Tokens) {
    use actix_web::http::Method;
    use routes::{
        access, deployments, endpoints, events, health, logs, nodes, path, registries, replicas, rollouts, stacks,
        status,
    };
    if state.metrics_public {
        cfg.service(path("/metrics").on(Method::GET, metrics::metrics).done());
    }
    // The API's description, public like any published API reference: no cluster data in it,
    // and a browser cannot send a bearer token when it opens a page.
    cfg.service(path("/openapi.json").on(Method::GET, openapi::document).done())
        .service(SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::from("/openapi.json")));
    // The dashboard's files: public for the same reason (the page asks for a token).
    cfg.configure(routes::ui::configure);
    // A query string that does not fit its handler's parameters: the same JSON error as the rest.
    let query = web::QueryConfig::default().error_handler(|e, _| {
        ApiError::BadRequest { code: "bad_query", message: format!("query string: {e}"), field: None }.into()
    });
    cfg.app_data(query)
        .app_data(web::Data::new(state))
        // Public like the probes they are; another method is a 405 here, before any token check.
        .service(path("/healthz").on(Method::GET, health::healthz).done())
        .service(path("/readyz").on(Method::GET, health::readyz).done())
        .service(
            web::scope("")
                .wrap(actix_web::middleware::from_fn(auth::require_token))
                .app_data(web::Data::new(tokens))
                .service(path("/create").on(Method::POST, deployments::seed_create).done())
                .service(path("/status").on(Method::GET, status::status).done())
                .service(path("/status/summary").on(Method::GET, status::summary).done())
                .service(
                    path("/v1/deployments")
                        .on(Method::GET, deployments::list)
                        .on(Method::POST, deployments::create)
                        .done(),
                )
                .service(
                    path("/v1/deployments/{name}")
                        .on(Method::GET, deployments::get)
                        .on(Method::PATCH, rollouts::update)
                        .on(Method::DELETE, deployments::delete)
                        .done(),
                )
                .service(path("/v1/deployments/{name}/rebalance").on(Method::POST, deployments::rebalance).done())
                .service(path("/v1/deployments/{name}/revisions").on(Method::GET, deployments::revisions).done())
                .service(path("/v1/deployments/{name}/rollback").on(Method::POST, rollouts::rollback).done())
                .service(path("/v1/deployments/{name}/rollouts").on(Method::GET, rollouts::list).done())
                .service(path("/v1/deployments/{name}/rollouts/{id}").on(Method::GET, rollouts::get).done())
                .service(path("/v1/deployments/{name}/rollouts/{id}/pause").on(Method::POST, rollouts::pause).done())
                .service(path("/v1/deployments/{name}/rollouts/{id}/resume").on(Method::POST, rollouts::resume).done())
                .service(path("/v1/deployments/{name}/endpoints").on(Method::GET, endpoints::list).done())
                .service(path("/v1/deployments/{name}/logs").on(Method::GET, logs::logs).done())
                .service(path("/v1/deployments/{name}/replicas").on(Method::GET, replicas::list).done())
                .service(path("/v1/stacks").on(Method::GET, stacks::list).done())
                .service(
                    path("/v1/stacks/{name}")
                        .on(Method::GET, stacks::get)
                        .on(Method::PUT, stacks::apply)
                        .on(Method::DELETE, stacks::delete)
                        .done(),
                )
                .service(path("/v1/nodes").on(Method::GET, nodes::list).on(Method::POST, nodes::add).done())
                .service(
                    path("/v1/nodes/{name}")
                        .on(Method::GET, nodes::get)
                        .on(Method::PATCH, nodes::update)
                        .on(Method::DELETE, nodes::remove)
                        .done(),
                )
                .service(path("/v1/nodes/{name}/drain").on(Method::POST, nodes::drain).done())
                .service(path("/v1/tokens").on(Method::POST, access::create_token).done())
                .service(
                    path("/v1/registries").on(Method::GET, registries::list).on(Method::POST, registries::put).done(),
                )
                .service(path("/v1/registries/{server}").on(Method::DELETE, registries::remove).done())
                .service(path("/v1/audit").on(Method::GET, access::audit).done())
                .service(path("/v1/events").on(Method::GET, events::list).done())
                .service(path("/v1/events/stream").on(Method::GET, events::stream).done())
                .service(path("/metrics").on(Method::GET, metrics::metrics).done())
                // Unknown paths, behind the token check like the rest.
                .default_service(web::to(routes::not_found)),
        );
}
