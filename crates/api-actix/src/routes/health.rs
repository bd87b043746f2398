//! Probes for load balancers and orchestrators of the orchestrator.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::ApiState;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", security(),
    responses((status = 200, description = "The process is alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The store answers and the loops run: safe to send traffic here.
#[utoipa::path(get, path = "/readyz", tag = "health", security(),
    responses((status = 200, description = "Store reachable and every loop running"), (status = 503, description = "Not ready; the body says what")))]
pub async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    let store_ok = state.store.list_nodes().await.is_ok();
    let loops = state.control.loop_health();
    let body = json!({
        "store": store_ok,
        "heartbeat": loops.heartbeat,
        "rebalancer": loops.rebalancer,
        "reconciler": loops.reconciler,
    });
    if store_ok && loops.all_running() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
