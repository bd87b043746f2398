//! `GET /status`: the whole cluster from the store alone, so a slow node never slows it.

use std::convert::Infallible;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, ContentType, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::Stream;

use crate::ApiState;
use crate::dto::StatusView;
use crate::error::{ApiError, ErrorBody};

#[utoipa::path(get, path = "/status", tag = "seed",
    responses((status = 200, description = "Every node and every deployment with its replicas, from the store (gzip when accepted)", body = StatusView), (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn status(state: web::Data<ApiState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let leader = state.control.leadership().leader().map(str::to_string);
    let document = state.status.get(state.store.as_ref(), leader).await?;
    let mut response = HttpResponse::Ok();
    response
        .content_type(ContentType::json())
        .insert_header((header::VARY, HeaderValue::from_static("accept-encoding")));
    let body = if accepts_gzip(&request) {
        response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        document.gzip.clone()
    } else {
        document.json.clone()
    };
    Ok(response.body(in_slices(body)))
}

/// The shared buffer as a stream of slices (no copy): actix copies a whole body into its write
/// buffer, which for a 1.7 MB document meant a fresh 1.7 MB allocation per response; slices
/// keep that buffer small and reused.
fn in_slices(body: Bytes) -> SizedStream<impl Stream<Item = Result<Bytes, Infallible>>> {
    const SLICE: usize = 64 * 1024;
    let len = body.len();
    let slices = (0..len).step_by(SLICE).map(move |start| Ok(body.slice(start..len.min(start + SLICE))));
    SizedStream::new(len as u64, futures::stream::iter(slices))
}

/// `Accept-Encoding` lists gzip without refusing it (`gzip;q=0`).
fn accepts_gzip(request: &HttpRequest) -> bool {
    request.headers().get_all(header::ACCEPT_ENCODING).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("q=0"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        },
    )
}
