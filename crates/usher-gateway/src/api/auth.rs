//! Who is calling the API. A bearer API token of an admin, or an admin's session cookie
//! with `X-CSRF-Token` on unsafe methods: an ambient cookie alone never changes
//! anything (SEC-22), and a page on another site cannot read the token to send it.

use super::ApiError;
use crate::app::AppState;
use crate::client::ClientContext;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use http::request::Parts;
use http::{Method, header};
use std::sync::Arc;
use usher_core::{Token, User};

/// API tokens are `ush_` and 43 base64url characters: recognisable to secret scanners.
pub const API_TOKEN_PREFIX: &str = "ush_";

/// An authenticated administrator.
pub struct Admin {
    pub user: User,
    /// The session the call came with, when it came with a cookie.
    pub session: Option<(usher_core::TokenHash, usher_core::SessionId)>,
}

impl Admin {
    pub fn name(&self) -> &str {
        self.user.name.as_str()
    }
}

fn require_admin(user: User) -> Result<User, ApiError> {
    if user.disabled {
        return Err(ApiError::unauthenticated("this account is disabled"));
    }
    if !user.is_admin() {
        return Err(ApiError::forbidden(
            "the API is for members of the admins group",
        ));
    }
    Ok(user)
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let secret = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|v| v.trim().strip_prefix(API_TOKEN_PREFIX))
                .and_then(Token::parse)
                .ok_or_else(|| {
                    ApiError::unauthenticated("use `Authorization: Bearer ush_…` with an API token")
                })?;
            let store = state.engine.store();
            let token = store
                .token_by_hash(&secret.hash())
                .await?
                .ok_or_else(|| ApiError::unauthenticated("unknown or revoked API token"))?;
            let owner = store
                .user_get(&token.owner)
                .await?
                .ok_or_else(|| ApiError::unauthenticated("the token's owner no longer exists"))?;
            let user = require_admin(owner)?;
            let (store, id, now) = (store.clone(), token.id.clone(), state.engine.clock().now());
            // Off the request's path: when a token was last used is bookkeeping.
            tokio::spawn(async move {
                if let Err(e) = store.token_used(&id, now).await {
                    tracing::debug!(error = %e, "recording a token's use failed");
                }
            });
            return Ok(Self {
                user,
                session: None,
            });
        }
        let ctx = ClientContext::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::unauthenticated("no client context"))?;
        let (token, auth) = state
            .session(&ctx, &parts.headers)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("sign in, or send an API token"))?;
        let user = auth
            .user
            .as_deref()
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("sign in, or send an API token"))?;
        let user = require_admin(user)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let ok = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| state.csrf.verify("api", token.hash().as_bytes(), t));
            if !ok || !crate::csrf::same_origin(&parts.headers, &ctx.host) {
                return Err(ApiError::forbidden(
                    "with a session cookie, changes need the X-CSRF-Token header (GET /usher/api/v1/me gives it)",
                ));
            }
        }
        Ok(Self {
            user,
            session: Some((token.hash(), auth.session.id)),
        })
    }
}

/// `GET /me`: who is calling, and (for a cookie session) the CSRF token for changes.
#[utoipa::path(get, path = "/me", tag = "auth",
    responses((status = 200, description = "The caller", body = super::doc::Me),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody)))]
pub async fn me(State(state): State<Arc<AppState>>, admin: Admin) -> Json<serde_json::Value> {
    let csrf = admin
        .session
        .as_ref()
        .map(|(hash, _)| state.csrf.token("api", hash.as_bytes()));
    Json(serde_json::json!({
        "user": admin.user.name,
        "groups": admin.user.groups,
        "session": admin.session.as_ref().map(|(_, id)| id),
        "csrf_token": csrf,
    }))
}
