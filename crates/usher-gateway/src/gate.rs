//! The gate: every request outside Usher's prefix. A live session passes (to the
//! upstream, or to the demo page); anything else is sent to sign in.

use crate::app::AppState;
use crate::client::ClientContext;
use crate::demo;
use crate::error::HttpError;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use std::sync::Arc;

pub async fn handle(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    req: Request,
) -> Response {
    let found = match state.session(&ctx, req.headers()).await {
        Ok(found) => found,
        Err(e) => return HttpError::from(e).into_response(),
    };
    let Some((_, auth)) = found else {
        return unauthenticated(&state, &ctx, &req);
    };
    match &state.proxy {
        Some(proxy) => proxy.forward(req, &ctx, &auth).await,
        None => demo::page(&state, &auth),
    }
}

/// Browsers are sent to the login page and come back here after; API clients get 401.
pub fn unauthenticated(state: &AppState, ctx: &ClientContext, req: &Request) -> Response {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let xhr = req
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"xmlhttprequest"));
    let had_cookie = crate::cookie::read(req.headers(), &state.cookie_name(ctx)).is_some();
    let mut response = if wants_html && !xhr {
        let rd = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let location = format!("{}/login?rd={}", state.prefix(), encode(rd));
        let mut r = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        let body = serde_json::json!({
            "error": {
                "code": "unauthenticated",
                "message": format!("sign in at {}/login first", state.prefix()),
            }
        });
        let mut r = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"usher\""),
        );
        r
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if had_cookie {
        // The cookie names no live session: drop it rather than send it forever.
        response
            .headers_mut()
            .append(header::SET_COOKIE, state.clear_session_cookie(ctx));
    }
    response
}

pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
