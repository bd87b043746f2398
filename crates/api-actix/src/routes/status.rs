//! `GET /status`: the whole cluster from the store alone, so a slow node never slows it.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};

use crate::ApiState;
use crate::error::ApiError;

pub async fn status(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let body = state.status.get(state.store.as_ref()).await?;
    Ok(HttpResponse::Ok().content_type(ContentType::json()).body(body))
}
