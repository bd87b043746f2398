//! Reading JSON bodies: bounded size, `application/json` only, unknown fields refused, and the
//! offending field named in the error (serde_path_to_error).

use actix_web::HttpRequest;
use actix_web::web::{self, BytesMut};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest { code: "bad_body", message: e.to_string(), field: None })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    // serde would also read a struct from a JSON array, by position; every body is an object.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::BadRequest {
            code: "invalid_field",
            message: "request body: expected a JSON object".into(),
            field: None,
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let field = match (path.as_str(), unknown_field(&message), missing_field(&message)) {
            (_, Some(unknown), _) => Some(unknown),
            // Missing: serde's path is that of the object it is missing from.
            ("." | "", None, Some(missing)) => Some(missing),
            (path, None, Some(missing)) => Some(format!("{path}.{missing}")),
            ("." | "", None, None) => None,
            (path, None, None) => Some(path.to_string()),
        };
        let code = if inner.is_syntax() || inner.is_eof() { "malformed_json" } else { "invalid_field" };
        ApiError::BadRequest { code, message: format!("request body: {inner}"), field }
    })
}

/// serde names an unknown field only in its message: "unknown field `x`, expected ...".
fn unknown_field(message: &str) -> Option<String> {
    quoted_after(message, "unknown field `")
}

/// ... and a missing one the same way: "missing field `x` at line 1 column 15".
fn missing_field(message: &str) -> Option<String> {
    quoted_after(message, "missing field `")
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest[..rest.find('`')?].to_string())
}
