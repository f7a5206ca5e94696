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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let new: NewToken = json_body(&headers, &body)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
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

pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(state.engine.store().token_list().await?))
}

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
