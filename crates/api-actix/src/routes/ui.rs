//! The dashboard at `/ui/`: three static files compiled into the binary (no build step, no
//! CDN). They hold no cluster data, so they are served without a token; the page asks for one
//! and reads everything through the API like any client.

use actix_web::http::{Method, header};
use actix_web::{HttpResponse, web};

use super::path;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// Only our own files, no inline script or style, and the API on the same origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        // Small, and they change with the binary: always revalidated.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

pub async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/ui/")).finish()
}

pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(path("/ui").on(Method::GET, redirect).done())
        .service(path("/ui/").on(Method::GET, index).done())
        .service(path("/ui/app.js").on(Method::GET, script).done())
        .service(path("/ui/style.css").on(Method::GET, style).done());
}
