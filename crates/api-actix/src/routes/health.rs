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
    let store_ok = state.store.list_nodes_brief().await.is_ok();
    let loops = state.control.loop_health();
    let leadership = state.control.leadership();
    let body = json!({
        "store": store_ok,
        "role": if leadership.is_leader() { "leader" } else { "follower" },
        "leader": leadership.leader(),
        "heartbeat": loops.heartbeat,
        "rebalancer": loops.rebalancer,
        "reconciler": loops.reconciler,
    });
    // A follower serves the API as well as the leader: ready once its store answers and it
    // knows a leader (not before its first election round). The leader is ready once its loops
    // run (its first heartbeat has told which nodes are up).
    let role_ready = if leadership.is_leader() { loops.all_running() } else { leadership.leader().is_some() };
    if store_ok && role_ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
