//! Handlers, one module per resource.

pub mod access;
pub mod deployments;
pub mod events;
pub mod health;
pub mod nodes;
pub mod status;
pub mod ui;

use actix_web::HttpRequest;

use crate::error::ApiError;

pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())))
}

/// A path segment as a validated name, or a 404 (a bad name cannot exist).
pub fn path_name<T: std::str::FromStr>(raw: &str, kind: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(format!("{kind} {raw:?} not found")))
}
