//! One log event per request, inside tracing-actix-web's request span (method, route, target,
//! client, request id): changes at info, reads at debug (a dashboard or a scraper polls).
//! Headers are never recorded, so no token reaches the log; tokens are never taken from the
//! query string either.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

pub struct AccessLog;

/// When the request arrived, for its duration in the log line.
#[derive(Clone, Copy)]
struct Arrived(std::time::Instant);

impl RootSpanBuilder for AccessLog {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Arrived(std::time::Instant::now()));
        tracing_actix_web::root_span!(request)
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        // Not DefaultRootSpanBuilder's: it logs every 4xx (a client's mistake) as a warning.
        if let Ok(response) = outcome {
            span.record("http.status_code", response.status().as_u16());
        }
        let _inside = span.enter();
        match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let ms = response
                    .request()
                    .extensions()
                    .get::<Arrived>()
                    .map_or(0.0, |a| a.0.elapsed().as_secs_f64() * 1000.0);
                if let Some(error) = response.response().error().filter(|_| status >= 500) {
                    tracing::error!(status, ms, %error, "request failed");
                } else if response.request().method() == Method::GET {
                    tracing::debug!(status, ms, "request");
                } else {
                    tracing::info!(status, ms, "request");
                }
            }
            Err(error) => tracing::warn!(%error, "request failed"),
        }
    }
}
