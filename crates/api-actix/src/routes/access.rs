//! `/v1/tokens` (make a token; shown once) and `/v1/audit` (who changed what). Admin only.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::{ApiToken, Role};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use crate::ApiState;
use crate::auth::digest;
use crate::body::read_json;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    role: String,
}

pub async fn create_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: CreateToken = read_json(&req, payload, state.body_limit).await?;
    let role: Role = body.role.parse()?;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = hex::encode(secret);
    let digest = hex::encode(digest(&token));
    // The id is public (audit log, listings): a prefix of the digest, which says nothing
    // usable about the token.
    let id = format!("tok-{}", &digest[..12]);
    state.access.add_token(ApiToken { id: id.clone(), role, digest, created_at: SystemTime::now() }).await?;
    Ok(HttpResponse::Created().json(json!({ "id": id, "role": role.as_str(), "token": token })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
}

pub async fn audit(query: web::Query<AuditQuery>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let entries = state.access.list_audit(limit).await?;
    let millis = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let view: Vec<_> = entries
        .iter()
        .map(|e| json!({ "at_ms": millis(e.at), "token_id": e.token_id, "action": e.action, "status": e.status }))
        .collect();
    Ok(HttpResponse::Ok().json(view))
}
