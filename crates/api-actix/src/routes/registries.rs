//! `/v1/registries`: the logins engines pull private images with. Admin only. A password goes
//! in and never comes out: answers, the audit record and the logs carry the server and the
//! username alone, and the store keeps the password sealed.

use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::{Password, RegistryCredential, RegistryLogin, RegistryStore};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::body::read_json;
use crate::error::{ApiError, ErrorBody};

/// `POST /v1/registries`. (No `Debug`: nothing may print the password.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryBody {
    /// `host[:port]`, as image references name it.
    #[schema(schema_with = crate::grammar::registry_server_schema)]
    pub server: String,
    /// 1 to 255 characters, no ':' or NUL.
    #[schema(pattern = "^[^:\\u0000]{1,255}$")]
    pub username: String,
    /// Write-only: never returned. 1 to 4096 characters.
    #[schema(format = Password, write_only, min_length = 1, max_length = 4096)]
    pub password: String,
}

/// A registry login as shown: never its password.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryView {
    pub server: String,
    pub username: String,
}

impl From<RegistryLogin> for RegistryView {
    fn from(l: RegistryLogin) -> Self {
        RegistryView { server: l.server, username: l.username }
    }
}

fn registries(state: &ApiState) -> Result<&dyn RegistryStore, ApiError> {
    state.registries.as_deref().ok_or_else(|| ApiError::NotFound("this server keeps no registry logins".into()))
}

#[utoipa::path(post, path = "/v1/registries", tag = "registries", request_body = RegistryBody,
    responses((status = 201, description = "Kept (replacing the login of the same server); the password is not returned", body = RegistryView),
        (status = 400, description = "Malformed JSON, unknown field or wrong type (the field is named)", body = ErrorBody),
        (status = 422, description = "A server that is not host[:port], an empty username or password (the field is named)", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn put(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: RegistryBody = read_json(&req, payload, state.body_limit).await?;
    let credential = RegistryCredential::new(&body.server, &body.username, Password::new(body.password))?;
    let view = RegistryView::from(credential.login.clone());
    registries(&state)?.put_registry(credential).await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/v1/registries", tag = "registries",
    responses((status = 200, description = "Every registry login, by server: server and username only", body = [RegistryView]),
        (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let listed: Vec<RegistryView> = registries(&state)?.list_registries().await?.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(listed))
}

#[utoipa::path(delete, path = "/v1/registries/{server}", tag = "registries", params(("server" = String, Path, description = "host[:port]")),
    responses((status = 204, description = "Forgotten"), (status = 404, description = "No login for this server", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody), (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn remove(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    registries(&state)?.remove_registry(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}
