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
mod metrics;
mod openapi;
mod routes;
mod snapshot;
mod summary;

use std::sync::Arc;

use actix_web::web;
use orchestrator_core::{AccessStore, ClusterStore, ControlPlane, Limits};
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
    pub limits: Limits,
    pub body_limit: usize,
    /// Serves `/metrics` when set.
    pub metrics: Option<Metrics>,
    /// `/metrics` without a token (for scrapers on a trusted network).
    pub metrics_public: bool,
    /// One per server, shared by its workers.
    status: Arc<snapshot::StatusCache>,
}

impl ApiState {
    /// Default limits, no `/metrics`.
    pub fn new(store: Arc<dyn ClusterStore>, access: Arc<dyn AccessStore>, control: Arc<dyn ControlPlane>) -> Self {
        Self {
            store,
            access,
            control,
            limits: Limits::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            metrics: None,
            metrics_public: false,
            status: Arc::default(),
        }
    }
}

/// Registers every route, behind authentication (except the health probes), on an actix `App`:
/// `App::new().configure(|cfg| api_actix::configure(cfg, state, tokens))`.
pub fn configure(cfg: &mut web::ServiceConfig, state: ApiState, tokens: Tokens) {
    if state.metrics_public {
        cfg.route("/metrics", web::get().to(metrics::metrics));
    }
    // The API's description, public like any published API reference: no cluster data in it,
    // and a browser cannot send a bearer token when it opens a page.
    cfg.route("/openapi.json", web::get().to(openapi::document))
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
        .service(
            web::resource("/healthz")
                .route(web::get().to(routes::health::healthz))
                .default_service(web::to(routes::not_found)),
        )
        .service(
            web::resource("/readyz")
                .route(web::get().to(routes::health::readyz))
                .default_service(web::to(routes::not_found)),
        )
        .service(
            web::scope("")
                .wrap(actix_web::middleware::from_fn(auth::require_token))
                .app_data(web::Data::new(tokens))
                .route("/create", web::post().to(routes::deployments::seed_create))
                .route("/status", web::get().to(routes::status::status))
                .route("/status/summary", web::get().to(routes::status::summary))
                .route("/v1/deployments", web::get().to(routes::deployments::list))
                .route("/v1/deployments", web::post().to(routes::deployments::create))
                .route("/v1/deployments/{name}", web::get().to(routes::deployments::get))
                .route("/v1/deployments/{name}", web::patch().to(routes::deployments::scale))
                .route("/v1/deployments/{name}", web::delete().to(routes::deployments::delete))
                .route("/v1/deployments/{name}/rebalance", web::post().to(routes::deployments::rebalance))
                .route("/v1/nodes", web::get().to(routes::nodes::list))
                .route("/v1/nodes", web::post().to(routes::nodes::add))
                .route("/v1/nodes/{name}", web::get().to(routes::nodes::get))
                .route("/v1/nodes/{name}", web::delete().to(routes::nodes::remove))
                .route("/v1/nodes/{name}/drain", web::post().to(routes::nodes::drain))
                .route("/v1/tokens", web::post().to(routes::access::create_token))
                .route("/v1/audit", web::get().to(routes::access::audit))
                .route("/v1/events", web::get().to(routes::events::list))
                .route("/v1/events/stream", web::get().to(routes::events::stream))
                .route("/metrics", web::get().to(metrics::metrics))
                .default_service(web::to(routes::not_found)),
        );
}
