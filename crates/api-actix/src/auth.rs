//! Bearer tokens with two roles. Tokens are kept only as SHA-256 digests and compared in
//! constant time; the `Authorization` header is parsed by actix-web-httpauth.

use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::Header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use actix_web_httpauth::headers::authorization::{Authorization, Bearer};
use orchestrator_core::{AuditEntry, Role};
use sha2::{Digest, Sha256};
use std::time::SystemTime;
use subtle::ConstantTimeEq;

use crate::ApiState;
use crate::error::ApiError;

/// Who is calling: the token's public id (for the audit log) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
}

/// Tokens given at start (flags, environment, files), as digests: a memory dump or a log line
/// never shows a usable token. Tokens made through the API live in the store, also as digests.
#[derive(Clone, Default)]
pub struct Tokens {
    digests: Vec<([u8; 32], Caller)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("count", &self.digests.len()).finish()
    }
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a start-up token; it appears in the audit log as `bootstrap-<role>`.
    pub fn with(mut self, token: &str, role: Role) -> Self {
        self.digests.push((digest(token), Caller { token_id: format!("bootstrap-{role}"), role }));
        self
    }

    /// The caller a presented token stands for. Looks at every entry whatever matches, so the
    /// time taken says nothing about which (or whether any) token was close.
    pub fn caller(&self, presented: &[u8; 32]) -> Option<Caller> {
        let mut found = None;
        for (stored, caller) in &self.digests {
            if bool::from(stored.ct_eq(presented)) {
                found = Some(caller.clone());
            }
        }
        found
    }
}

/// Routes only an admin may use, even to read.
fn admin_only(path: &str) -> bool {
    path.starts_with("/v1/audit") || path.starts_with("/v1/tokens") || path.starts_with("/v1/registries")
}

/// Middleware: 401 (with `WWW-Authenticate`) without a valid token, 403 for a reader on a
/// mutating or admin-only route; every mutation attempt is written to the audit log. Refusals
/// are answered here as responses (not errors), so they look the same to every client.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD);
    let action = format!("{} {}", req.method(), req.path());
    let state = req.app_data::<web::Data<ApiState>>().cloned();
    let decision = match authorize(&req, mutating).await {
        Ok(caller) if mutating => match state.as_ref().map(|s| stale(&req, s.request_max_age)) {
            Some(Some(refusal)) => Err((caller.token_id, refusal)),
            _ => Ok(caller),
        },
        other => other,
    };
    let (caller_id, response) = match decision {
        Ok(caller) => {
            let id = caller.token_id.clone();
            req.extensions_mut().insert(caller);
            (id, next.call(req).await?.map_into_left_body())
        }
        Err((who, refusal)) => (who, req.into_response(refusal.error_response()).map_into_right_body()),
    };
    if mutating && let Some(state) = state {
        let entry =
            AuditEntry { at: SystemTime::now(), token_id: caller_id, action, status: response.status().as_u16() };
        if let Err(e) = state.access.append_audit(entry).await {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
    Ok(response)
}

/// A refusal when the load balancer took the request (`X-Request-Start: t=<ms since the
/// epoch>`, HAProxy's usual header) longer ago than `max_age`.
fn stale(req: &ServiceRequest, max_age: std::time::Duration) -> Option<ApiError> {
    let header = req.headers().get("x-request-start")?.to_str().ok()?;
    let millis: u64 = header.trim().trim_start_matches("t=").parse().ok()?;
    let taken = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    let age = SystemTime::now().duration_since(taken).ok()?;
    (age > max_age).then(|| {
        ApiError::Stale(format!(
            "this request waited {:.1}s before its server started on it (more than {}s): not acted on; \
             the load balancer gave up on it (and may have sent it elsewhere)",
            age.as_secs_f64(),
            max_age.as_secs()
        ))
    })
}

/// The caller, or who was refused (for the audit log) and why.
async fn authorize(req: &ServiceRequest, mutating: bool) -> Result<Caller, (String, ApiError)> {
    let anonymous = |e| ("anonymous".to_string(), e);
    let tokens = req
        .app_data::<web::Data<Tokens>>()
        .ok_or_else(|| anonymous(ApiError::Internal("no tokens configured".into())))?;
    let header = Authorization::<Bearer>::parse(req)
        .map_err(|_| anonymous(ApiError::Unauthorized("missing or malformed bearer token".into())))?;
    let presented = digest(header.as_ref().token());
    let caller = match tokens.caller(&presented) {
        Some(caller) => Some(caller),
        None => match req.app_data::<web::Data<ApiState>>() {
            // A random 256-bit token's digest is looked up by value: timing reveals nothing
            // an attacker could use to guess it.
            Some(state) => state
                .access
                .token_by_digest(&hex::encode(presented))
                .await
                .map_err(|e| anonymous(ApiError::from(e)))?
                .map(|t| Caller { token_id: t.id, role: t.role }),
            None => None,
        },
    };
    let caller = caller.ok_or_else(|| anonymous(ApiError::Unauthorized("invalid token".into())))?;
    if caller.role == Role::Reader && (mutating || admin_only(req.path())) {
        return Err((caller.token_id, ApiError::Forbidden("this needs the admin role".into())));
    }
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_by_token() {
        let tokens = Tokens::new().with(&"a".repeat(40), Role::Admin).with("r", Role::Reader);
        assert_eq!(tokens.caller(&digest(&"a".repeat(40))).map(|c| c.role), Some(Role::Admin));
        assert_eq!(tokens.caller(&digest("r")).map(|c| c.token_id), Some("bootstrap-reader".into()));
        assert_eq!(tokens.caller(&digest("x")), None);
        assert_eq!(tokens.caller(&digest("")), None);
        assert!(!format!("{tokens:?}").contains("aaaa"));
    }
}
