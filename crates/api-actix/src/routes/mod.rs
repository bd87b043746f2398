//! Handlers, one module per resource.

pub mod access;
pub mod deployments;
pub mod endpoints;
pub mod events;
pub mod health;
pub mod logs;
pub mod nodes;
pub mod registries;
pub mod replicas;
pub mod rollouts;
pub mod stacks;
pub mod status;
pub mod ui;

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpRequest, Responder, web};

use crate::error::ApiError;

/// One path with its handlers. Any other method there is a 405 whose `Allow` lists exactly the
/// methods registered, so the route table is the only list of them.
pub(crate) struct Path {
    methods: Vec<&'static str>,
    resource: actix_web::Resource,
}

/// The routes of `path`, to add with [`Path::on`] and register with [`Path::done`].
pub(crate) fn path(path: &'static str) -> Path {
    Path { methods: Vec::new(), resource: web::resource(path) }
}

impl Path {
    pub(crate) fn on<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.methods.push(static_name(&method));
        self.resource = self.resource.route(web::method(method).to(handler));
        self
    }

    pub(crate) fn done(self) -> actix_web::Resource {
        let allowed = self.methods;
        self.resource.default_service(web::to(move |req: HttpRequest| {
            let allowed = allowed.clone();
            async move {
                Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed {
                    method: req.method().to_string(),
                    allowed,
                })
            }
        }))
    }
}

/// The name of a method the API serves (the standard ones only are registered).
fn static_name(method: &Method) -> &'static str {
    [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS]
        .iter()
        .zip(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        .find_map(|(m, name)| (m == method).then_some(name))
        .expect("routes are registered with standard methods")
}

/// The id of the token that made the request (never the token), for the record of a change.
pub(crate) fn caller(req: &HttpRequest) -> Option<String> {
    use actix_web::HttpMessage;
    req.extensions().get::<crate::Caller>().map(|c| c.token_id.clone())
}

/// No route for this path, whatever the method.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())))
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
