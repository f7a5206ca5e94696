//! The gate: every request outside Usher's prefix. A live session passes (to the
//! upstream, or to the demo page); anything else is sent to sign in. The forward-auth
//! endpoints ask the same question through [`decide`], so every policy applies to both.

use crate::access_log::AccessInfo;
use crate::app::AppState;
use crate::client::ClientContext;
use crate::demo;
use crate::error::HttpError;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;
use usher_engine::sessions::Authenticated;

/// What the gate decides for one request.
pub enum Verdict {
    Pass(Authenticated),
    SignIn,
}

/// The one decision every surface (reverse proxy, nginx, Traefik, Caddy) shares: it
/// counts the request on its session.
pub async fn decide(
    state: &AppState,
    ctx: &ClientContext,
    headers: &HeaderMap,
) -> Result<Verdict, HttpError> {
    let started = std::time::Instant::now();
    let metrics = state.engine.metrics();
    let found = match state.session(ctx, headers).await {
        Ok(Some((_, auth))) => Ok(Some(auth)),
        // No cookie session: an API client may have sent a credential instead.
        Ok(None) => state.api_clients.authenticate(state, ctx, headers).await,
        Err(e) => Err(e),
    };
    let verdict = match found {
        Ok(Some(auth)) => Verdict::Pass(auth),
        Ok(None) => Verdict::SignIn,
        Err(e) => {
            metrics
                .requests
                .get_or_create(&[("outcome", "error")])
                .inc();
            return Err(e.into());
        }
    };
    metrics
        .check_seconds
        .observe(started.elapsed().as_secs_f64());
    let outcome = match verdict {
        Verdict::Pass(_) => "allowed",
        Verdict::SignIn => "denied",
    };
    // No cookie and no credential at all: a ping or a script, not a person. Counted
    // apart, so it never becomes a session.
    if matches!(verdict, Verdict::SignIn)
        && !headers.contains_key(http::header::COOKIE)
        && !headers.contains_key(http::header::AUTHORIZATION)
    {
        state
            .engine
            .cookieless()
            .record(ctx.ip(), &ctx.user_agent, state.engine.clock().now());
    }
    metrics
        .requests
        .get_or_create(&[("outcome", outcome)])
        .inc();
    Ok(verdict)
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    req: Request,
) -> Response {
    match decide(&state, &ctx, req.headers()).await {
        Ok(Verdict::Pass(auth)) => {
            let mut r = match &state.proxy {
                Some(proxy) => proxy.forward(req, &ctx, &auth).await,
                None => demo::page(&state, &auth),
            };
            r.extensions_mut().insert(AccessInfo::of(&auth));
            r
        }
        Ok(Verdict::SignIn) => unauthenticated(&state, &ctx, req.headers(), req.uri()),
        Err(e) => e.into_response(),
    }
}

/// A browser navigating (it accepts HTML and is not a script).
pub fn is_browser(headers: &HeaderMap) -> bool {
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let xhr = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"xmlhttprequest"));
    html && !xhr
}

/// Where to sign in, carrying `rd` (where to come back) and `rm` (the method of the
/// request that was refused). The login page is `gateway.login_url` when set (Usher on
/// a host of its own), else under the prefix on the request's own host — as an absolute
/// URL when `origin` (scheme, host) is given: nginx's `error_page` treats a path as an
/// internal redirect, not a redirect for the browser.
pub fn login_location(
    state: &AppState,
    origin: Option<(&str, &str)>,
    rd: Option<&str>,
    rm: Option<&str>,
) -> String {
    let mut out = match (&state.settings.login_url, origin) {
        (Some(url), _) => url.clone(),
        (None, Some((scheme, host))) => format!("{scheme}://{host}{}/login", state.prefix()),
        (None, None) => format!("{}/login", state.prefix()),
    };
    let mut sep = if out.contains('?') { '&' } else { '?' };
    for (key, value) in [("rd", rd), ("rm", rm)] {
        if let Some(v) = value {
            out.push(sep);
            out.push_str(key);
            out.push('=');
            out.push_str(&encode(v));
            sep = '&';
        }
    }
    out
}

/// A `Location` header value; Usher builds these itself, so one never fails to parse.
pub fn location(url: &str) -> HeaderValue {
    HeaderValue::from_str(url).unwrap_or_else(|_| HeaderValue::from_static("/"))
}

/// The JSON 401 for API clients.
pub fn unauthorized_json(state: &AppState) -> Response {
    let body = serde_json::json!({
        "error": {
            "code": "unauthenticated",
            "message": format!("sign in at {}/login first", state.prefix()),
        }
    });
    let mut r = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"usher\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Browsers are sent to the login page and come back here after; API clients get 401.
pub fn unauthenticated(
    state: &AppState,
    ctx: &ClientContext,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Response {
    let had_cookie = crate::cookie::read(headers, state.cookie_name(ctx)).is_some();
    let mut response = if is_browser(headers) {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        // With the login page on another host, only an absolute `rd` finds its way back.
        let rd = match state.settings.login_url {
            Some(_) => format!(
                "{}://{}{path}",
                if ctx.https { "https" } else { "http" },
                ctx.host
            ),
            None => path.to_owned(),
        };
        let mut r = StatusCode::FOUND.into_response();
        r.headers_mut().insert(
            header::LOCATION,
            location(&login_location(state, None, Some(&rd), None)),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else {
        unauthorized_json(state)
    };
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
