//! `GET /openapi.json` and the docs page at `/docs/`, derived from the handlers' annotations and
//! the wire types, so the document cannot drift from the code.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::{
    access, deployments, endpoints, events, health, logs, nodes, registries, replicas, rollouts, stacks, status,
};
use crate::{dto, rollout_dto, template_dto};

#[derive(OpenApi)]
#[openapi(
    info(title = "orchestrator", description = "Places and keeps N replicas of a Docker image on a set of Docker Engine nodes."),
    paths(
        deployments::seed_create,
        status::status,
        status::summary,
        deployments::create,
        deployments::list,
        deployments::get,
        rollouts::update,
        deployments::delete,
        deployments::rebalance,
        deployments::revisions,
        rollouts::rollback,
        rollouts::list,
        rollouts::get,
        rollouts::pause,
        rollouts::resume,
        endpoints::list,
        logs::logs,
        replicas::list,
        stacks::apply,
        stacks::list,
        stacks::get,
        stacks::delete,
        nodes::list,
        nodes::add,
        nodes::get,
        nodes::update,
        nodes::remove,
        nodes::drain,
        access::create_token,
        access::audit,
        registries::put,
        registries::list,
        registries::remove,
        events::list,
        events::stream,
        health::healthz,
        health::readyz,
    ),
    // The request objects `grammar` refers to by name (it adds rules beside the reference).
    components(schemas(
        ErrorBody, ErrorDetail, dto::CreateDeployment, logs::LogMarkerView,
        template_dto::HealthcheckRequest, template_dto::PortRequest, rollout_dto::UpdatePolicyRequest,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "seed", description = "The original design's routes: `POST /create` is `POST /v1/deployments`."),
        (name = "deployments"), (name = "stacks", description = "Compose files applied as groups of deployments"), (name = "nodes"), (name = "access"), (name = "registries"), (name = "events"), (name = "health"),
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer <token>` (admin or reader).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// `GET /openapi.json`, built on first use: most servers never serve it, and building it at
/// start-up cost an idle server about a megabyte.
pub async fn document() -> HttpResponse {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default().into());
    HttpResponse::Ok().content_type(ContentType::json()).body(body.clone())
}
