//! `/v1/tokens` (make a token; shown once) and `/v1/audit` (who changed what). Admin only.

use std::time::SystemTime;

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::{ApiToken, Role};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::ApiState;
use crate::auth::digest;
use crate::body::read_json;
use crate::dto::{AuditView, CreateToken, CreatedToken};
use crate::error::{ApiError, ErrorBody};

#[utoipa::path(post, path = "/v1/tokens", tag = "access", request_body = CreateToken,
    responses((status = 201, description = "The token, shown this once", body = CreatedToken), (status = 400, description = "Malformed JSON, unknown field or wrong type (the field is named)", body = ErrorBody), (status = 422, description = "A value out of range or badly formed (the field is named)", body = ErrorBody), (status = 413, description = "Body over the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn create_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: CreateToken = read_json(&req, payload, state.body_limit).await?;
    let role: Role = body.role.parse()?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| ApiError::Internal(format!("no randomness from the OS: {e}")))?;
    let token = hex::encode(secret);
    let digest = hex::encode(digest(&token));
    // The id is public (audit log, listings): a prefix of the digest, which says nothing
    // usable about the token.
    let id = format!("tok-{}", &digest[..12]);
    state.access.add_token(ApiToken { id: id.clone(), role, digest, created_at: SystemTime::now() }).await?;
    Ok(HttpResponse::Created().json(CreatedToken { id, role: role.as_str(), token }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Newest entries first, at most this many (1..=10,000, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "access", params(AuditQuery),
    responses((status = 200, description = "Mutations, newest first", body = [AuditView]), (status = 400, description = "An unknown query parameter", body = ErrorBody), (status = 422, description = "`limit` out of range (the field is named)", body = ErrorBody), (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "A reader token on a mutating route", body = ErrorBody)))]
pub async fn audit(query: web::Query<AuditQuery>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let limit = super::query_number::<u32>("limit", query.limit.as_deref())?.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_value",
            message: "invalid limit: must be 1..=10000".into(),
            field: Some("limit".into()),
        });
    }
    let entries = state.access.list_audit(limit).await?;
    Ok(HttpResponse::Ok().json(entries.iter().map(AuditView::from).collect::<Vec<_>>()))
}
