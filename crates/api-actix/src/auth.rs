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
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads only (GET).
    Reader,
}

/// The accepted tokens, as digests: a memory dump or a log line never shows a usable token.
#[derive(Clone, Default)]
pub struct Tokens {
    digests: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("count", &self.digests.len()).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, token: &str, role: Role) -> Self {
        self.digests.push((digest(token), role));
        self
    }

    /// The role of a presented token. Looks at every entry whatever matches, so the time taken
    /// says nothing about which (or whether any) token was close.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let presented = digest(token);
        let mut found = None;
        for (stored, role) in &self.digests {
            if bool::from(stored.ct_eq(&presented)) {
                found = Some(*role);
            }
        }
        found
    }
}

/// Middleware: 401 (with `WWW-Authenticate`) without a valid token, 403 for a reader on a
/// mutating route. Refusals are answered here as responses (not errors), so they look the
/// same to every client and test harness.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match authorize(&req) {
        Ok(role) => {
            req.extensions_mut().insert(role);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => Ok(req.into_response(refusal.error_response()).map_into_right_body()),
    }
}

fn authorize(req: &ServiceRequest) -> Result<Role, ApiError> {
    let tokens =
        req.app_data::<web::Data<Tokens>>().ok_or_else(|| ApiError::Internal("no tokens configured".into()))?;
    let header = Authorization::<Bearer>::parse(req)
        .map_err(|_| ApiError::Unauthorized("missing or malformed bearer token".into()))?;
    let role = tokens.role_of(header.as_ref().token()).ok_or_else(|| ApiError::Unauthorized("invalid token".into()))?;
    let reads_only = matches!(*req.method(), Method::GET | Method::HEAD);
    if role == Role::Reader && !reads_only {
        return Err(ApiError::Forbidden("the reader role may only read".into()));
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_token() {
        let tokens = Tokens::new().with("a".repeat(40).as_str(), Role::Admin).with("r", Role::Reader);
        assert_eq!(tokens.role_of(&"a".repeat(40)), Some(Role::Admin));
        assert_eq!(tokens.role_of("r"), Some(Role::Reader));
        assert_eq!(tokens.role_of("x"), None);
        assert_eq!(tokens.role_of(""), None);
        assert!(!format!("{tokens:?}").contains("aaaa"));
    }
}
