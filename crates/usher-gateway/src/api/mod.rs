//! The REST API, `/usher/api/v1`: JSON in and out, for administrators (a bearer API
//! token, or an admin's session cookie plus `X-CSRF-Token` on unsafe methods). The
//! console and the CLI use the same engine functions; there is no private data path.

mod auth;
mod doc;
mod error;
pub(crate) mod history;
mod sessions;
mod tokens;
mod users;

pub use auth::{API_TOKEN_PREFIX, Admin};
pub use error::ApiError;

use crate::app::AppState;
use axum::Router;
use axum::routing::{delete, get, post};
use http::HeaderMap;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/openapi.json", get(doc::openapi))
        .route("/me", get(auth::me))
        .route("/sessions", get(sessions::list))
        .route("/sessions.csv", get(sessions::csv))
        .route("/sessions/end", post(sessions::end_matching))
        .route(
            "/sessions/{id}",
            get(sessions::get_one).delete(sessions::end_one),
        )
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{name}",
            get(users::get_one)
                .patch(users::update)
                .delete(users::remove),
        )
        .route("/users/{name}/sessions", delete(sessions::end_of_user))
        .route("/history", get(history::list))
        .route("/reports/inactive", get(history::inactive))
        .route("/clients", get(history::clients))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", delete(tokens::revoke))
        .fallback(|| async { ApiError::not_found("no such API endpoint; see /usher/api/v1/") })
}

/// Reads a JSON body, saying precisely what is wrong with it.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    let invalid = |e: serde_json::Error| {
        ApiError::bad_request("invalid_body", format!("the JSON body is not valid: {e}"))
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    // Every body is an object; serde would also read a struct from an array.
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the JSON body must be an object",
        ));
    }
    serde_json::from_value(value).map_err(invalid)
}

/// For optional body fields: absent is `None`, but an explicit `null` is refused, as the
/// OpenAPI document says (`nullable: false`).
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Query pairs of a request, in order.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    crate::form::pairs(raw.unwrap_or("").as_bytes())
}
