//! Every failure as `{"error": {"code", "message", "field"?}}` with the right status code.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use orchestrator_core::Error as CoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String, field: Option<String> },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed here (allowed: {})", allowed.join(", "))]
    MethodNotAllowed { method: String, allowed: Vec<&'static str> },
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unavailable(String),
    /// A mutation that waited too long before its server started on it (see `ApiState::request_max_age`).
    #[error("{0}")]
    Stale(String),
    /// Answered with `Retry-After`: another server leads, or none does yet.
    #[error("{0}")]
    NotLeader(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The body of every 4xx and 5xx answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `invalid_value`, `bad_json`, `not_found`, `conflict`, ...
    code: &'static str,
    /// For people.
    message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Stale(_) => "stale_request",
            ApiError::NotLeader(_) => "not_leader",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { code: "invalid_value", .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Stale(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let field = match self {
            ApiError::BadRequest { field, .. } => field.clone(),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            response
                .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"orchestrator\"")));
        }
        if let ApiError::MethodNotAllowed { allowed, .. } = self {
            response.insert_header((header::ALLOW, allowed.join(", ")));
        }
        if matches!(self, ApiError::NotLeader(_)) {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        response.json(ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string(), field } })
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        match error {
            CoreError::Invalid { field, message } => ApiError::BadRequest {
                code: "invalid_value",
                message: format!("invalid {field}: {message}"),
                field: Some(field),
            },
            e @ CoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            e @ (CoreError::AlreadyExists { .. } | CoreError::Conflict(_) | CoreError::InsufficientCapacity { .. }) => {
                ApiError::Conflict(e.to_string())
            }
            e @ (CoreError::Timeout { .. } | CoreError::Unreachable { .. }) => ApiError::Unavailable(e.to_string()),
            e @ CoreError::NotLeader { .. } => ApiError::NotLeader(e.to_string()),
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::Internal(other.to_string())
            }
        }
    }
}
