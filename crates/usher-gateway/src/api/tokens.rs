//! API tokens: created for the calling admin and shown once; listed; revoked.

use super::{API_TOKEN_PREFIX, Admin, ApiError, json_body};
use crate::app::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use std::sync::Arc;
use usher_core::{ApiToken, SessionId, Token};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f]*[^\\x00-\\x20\\x7f][^\\x00-\\x1f\\x7f]*$"
    )]
    name: String,
}

#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, description = "Created; the secret is in `token`, shown only now", body = super::doc::TokenCreated),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 415, description = "the body is not JSON", body = super::doc::ErrorBody),
        (status = 503, description = "the store is unavailable", body = super::doc::ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let new: NewToken = json_body(&headers, &body)?;
    let name = new.name.as_str();
    if name.trim().is_empty()
        || name.chars().count() > 100
        || name.chars().any(|c| c.is_ascii_control())
    {
        return Err(ApiError::invalid(
            "name",
            "1 to 100 characters, no control characters",
        ));
    }
    let (token, secret) = issue(&state, name, admin.user.name.clone()).await?;
    let mut body = serde_json::to_value(&token).unwrap_or_default();
    body["token"] = serde_json::Value::String(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

/// Creates a token; returns it and its secret (`ush_…`), which is shown only now.
pub async fn issue(
    state: &AppState,
    name: &str,
    owner: usher_core::Username,
) -> Result<(ApiToken, String), ApiError> {
    let secret =
        Token::generate().map_err(|e| ApiError::from(usher_engine::EngineError::from(e)))?;
    let token = ApiToken {
        id: SessionId::generate()
            .map_err(|e| ApiError::from(usher_engine::EngineError::from(e)))?
            .to_string(),
        name: name.to_owned(),
        owner,
        created_at: state.engine.clock().now(),
        last_used_at: None,
        revoked_at: None,
    };
    state
        .engine
        .store()
        .token_create(&token, &secret.hash())
        .await?;
    Ok((token, format!("{API_TOKEN_PREFIX}{}", secret.encode())))
}

#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, description = "Every token (never its secret)", body = Vec<usher_core::ApiToken>),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(state.engine.store().token_list().await?))
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id", pattern = "^[a-z2-7]{12}$")),
    responses((status = 204, description = "Revoked"),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 404, description = "no such thing", body = super::doc::ErrorBody),
        (status = 503, description = "the store is unavailable", body = super::doc::ErrorBody)))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if SessionId::parse(&id).is_err() {
        return Err(ApiError::invalid(
            "id",
            "a token id is 12 characters of a-z and 2-7",
        ));
    }
    let now = state.engine.clock().now();
    if state.engine.store().token_revoke(&id, now).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no live token {id}")))
    }
}
