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

/// Every route and its methods (`{}` matches one path segment): a known path asked with
/// another method is a 405 naming the allowed ones, anything else a 404.
const ROUTES: &[(&str, &[&str])] = &[
    ("/create", &["POST"]),
    ("/status", &["GET"]),
    ("/status/summary", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/v1/deployments", &["GET", "POST"]),
    ("/v1/deployments/{}", &["GET", "PATCH", "DELETE"]),
    ("/v1/deployments/{}/rebalance", &["POST"]),
    ("/v1/nodes", &["GET", "POST"]),
    ("/v1/nodes/{}", &["GET", "DELETE"]),
    ("/v1/nodes/{}/drain", &["POST"]),
    ("/v1/tokens", &["POST"]),
    ("/v1/audit", &["GET"]),
    ("/v1/events", &["GET"]),
    ("/v1/events/stream", &["GET"]),
    ("/ui", &["GET"]),
    ("/ui/", &["GET"]),
    ("/ui/app.js", &["GET"]),
    ("/ui/style.css", &["GET"]),
];

fn allowed_methods(path: &str) -> Option<&'static [&'static str]> {
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES.iter().find_map(|(pattern, methods)| {
        let expected: Vec<&str> = pattern.split('/').collect();
        let matches = expected.len() == segments.len()
            && expected.iter().zip(&segments).all(|(e, s)| *e == "{}" && !s.is_empty() || e == s);
        matches.then_some(*methods)
    })
}

pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    match allowed_methods(req.path()) {
        Some(methods) => Err(ApiError::MethodNotAllowed { method: req.method().to_string(), allowed: methods }),
        None => Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path()))),
    }
}

/// A path segment as a validated name, or a 404 (a bad name cannot exist).
pub fn path_name<T: std::str::FromStr>(raw: &str, kind: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(format!("{kind} {raw:?} not found")))
}

/// A numeric query parameter: absent, a number, or a 422 naming it.
pub(crate) fn query_number<T: std::str::FromStr>(
    field: &'static str,
    raw: Option<&str>,
) -> Result<Option<T>, ApiError> {
    raw.map(|v| {
        v.trim().parse().map_err(|_| ApiError::BadRequest {
            code: "invalid_value",
            message: format!("invalid {field}: {v:?} is not a non-negative integer"),
            field: Some(field.into()),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::allowed_methods;

    #[test]
    fn known_paths_name_their_methods() {
        assert_eq!(allowed_methods("/v1/deployments/web"), Some(&["GET", "PATCH", "DELETE"][..]));
        assert_eq!(allowed_methods("/v1/nodes/n1/drain"), Some(&["POST"][..]));
        assert_eq!(allowed_methods("/v1/deployments//rebalance"), None);
        assert_eq!(allowed_methods("/v2/anything"), None);
    }
}
