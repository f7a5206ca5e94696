//! Signing in and out.
//!
//! The login form is bound to a pre-session cookie (login CSRF); a successful login
//! always issues a new token (no fixation) and ends the session the browser had. Logout
//! is a POST with a token bound to the session; GET only shows the confirmation.

use crate::app::AppState;
use crate::client::ClientContext;
use crate::csrf::{self, LOGIN_COOKIE};
use crate::error::HttpError;
use crate::pages::{LoginPage, LogoutPage, MessagePage, render};
use crate::redirect::RedirectTarget;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::collections::HashMap;
use std::sync::Arc;
use usher_core::SessionKind;
use usher_engine::EngineError;
use usher_engine::accounts::LoginOutcome;
use usher_store::SessionSelector;
use usher_store::StoreError;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login", get(login_get).post(login_post))
        .route("/logout", get(logout_get).post(logout_post))
}

/// Form or query fields; a field given twice keeps its first value.
fn fields(raw: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in crate::form::pairs(raw) {
        out.entry(k).or_insert(v);
    }
    out
}

fn require_form(headers: &HeaderMap) -> Result<(), HttpError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if ok {
        Ok(())
    } else {
        Err(HttpError::BadRequest(
            "send the form as application/x-www-form-urlencoded, as the sign-in page does".into(),
        ))
    }
}

fn target(state: &AppState, ctx: &ClientContext, rd: Option<&String>) -> RedirectTarget {
    rd.and_then(|rd| {
        RedirectTarget::parse(rd, &ctx.host, ctx.https, &state.settings.allowed_redirects)
    })
    .unwrap_or_else(RedirectTarget::root)
}

/// The pre-session nonce from the login cookie, if it is well formed.
fn login_nonce(headers: &HeaderMap) -> Option<[u8; 32]> {
    let text = crate::cookie::read(headers, LOGIN_COOKIE)?;
    let mut out = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut out) {
        Ok(32) => Some(out),
        _ => None,
    }
}

fn login_cookie(state: &AppState, ctx: &ClientContext, value: &str, max_age: u32) -> HeaderValue {
    let secure = if ctx.https { "; Secure" } else { "" };
    let c = format!(
        "{LOGIN_COOKIE}={value}; Path={}/login; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        state.prefix()
    );
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn login_form(
    state: &AppState,
    ctx: &ClientContext,
    headers: &HeaderMap,
    status: StatusCode,
    rd: &str,
    username: &str,
    error: Option<&str>,
) -> Result<Response, HttpError> {
    let (nonce, fresh) = match login_nonce(headers) {
        Some(n) => (n, false),
        None => (
            usher_core::ids::os_random::<32>().map_err(|e| HttpError::Internal(e.to_string()))?,
            true,
        ),
    };
    let token = state.csrf.token("login", &nonce);
    let mut r = render(
        status,
        &LoginPage {
            prefix: state.prefix(),
            csrf: &token,
            rd,
            username,
            error,
        },
    );
    if fresh {
        r.headers_mut().append(
            header::SET_COOKIE,
            login_cookie(state, ctx, &URL_SAFE_NO_PAD.encode(nonce), 3600),
        );
    }
    Ok(r)
}

fn login_metric(state: &AppState, result: &'static str) {
    state
        .engine
        .metrics()
        .logins
        .get_or_create(&[("result", result)])
        .inc();
}

async fn login_get(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let q = fields(query.unwrap_or_default().as_bytes());
    let rd = target(&state, &ctx, q.get("rd"));
    login_form(
        &state,
        &ctx,
        &headers,
        StatusCode::OK,
        rd.as_str(),
        "",
        None,
    )
}

async fn login_post(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    require_form(&headers)?;
    let form = fields(&body);
    let rd = target(&state, &ctx, form.get("rd"));
    let bound = login_nonce(&headers).is_some_and(|nonce| {
        form.get("csrf")
            .is_some_and(|t| state.csrf.verify("login", &nonce, t))
    });
    if !bound || !csrf::same_origin(&headers, &ctx.host) {
        return Err(HttpError::Forbidden(
            "This sign-in form has expired or was sent from another site. Reload the sign-in page and try again.".into(),
        ));
    }
    let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
        return Err(HttpError::BadRequest(
            "the form needs both `username` and `password`".into(),
        ));
    };
    // Unknown user, wrong password, disabled account: one answer for all.
    let refused = || {
        login_form(
            &state,
            &ctx,
            &headers,
            StatusCode::UNAUTHORIZED,
            rd.as_str(),
            username,
            Some("Wrong user name or password."),
        )
    };
    let outcome = state
        .accounts
        .verify_login(username, password, ctx.ip(), &ctx.user_agent)
        .await?;
    let user = match outcome {
        LoginOutcome::Ok(user) => user,
        LoginOutcome::Refused => {
            tracing::info!(ip = %ctx.ip(), "login refused");
            login_metric(&state, "failure");
            return refused();
        }
        LoginOutcome::Throttled(wait) => {
            login_metric(&state, "throttled");
            let secs = wait.as_secs().max(1);
            let message = format!(
                "Too many failed sign-ins for this account or from this address. Wait {secs} s, then try again."
            );
            let mut r = login_form(
                &state,
                &ctx,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                rd.as_str(),
                username,
                Some(&message),
            )?;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Ok(r);
        }
    };
    // A new token every time: whatever session this browser had (signed in, or
    // anonymous before signing in) ends here.
    if let Some(old) = state.cookie_session(&ctx, &headers).await? {
        state
            .engine
            .end(
                SessionSelector::Ids(vec![old.session.id]),
                usher_core::EndReason::Logout,
                user.name.as_str(),
            )
            .await?;
    }
    let created = state
        .engine
        .create(Some(&user), SessionKind::Web, &ctx.request_info())
        .await;
    let (token, live) = match created {
        Ok(c) => c,
        // Disabled (or removed) while the password was being checked.
        Err(EngineError::Store(StoreError::Conflict(_))) => {
            return refused();
        }
        Err(EngineError::Store(StoreError::LimitReached(max))) => {
            login_metric(&state, "limited");
            let message = format!(
                "You already have {max} active session(s), the most allowed. End one of them from {}/me on the device you used, or ask an administrator to end it.",
                state.prefix()
            );
            return login_form(
                &state,
                &ctx,
                &headers,
                StatusCode::CONFLICT,
                rd.as_str(),
                username,
                Some(&message),
            );
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(session = %live.id, user = %user.name, ip = %ctx.ip(), "login");
    login_metric(&state, "success");
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.extensions_mut().insert(crate::access_log::AccessInfo {
        session: live.id,
        user: Some(user.name.clone()),
    });
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(rd.as_str()).unwrap_or_else(|_| HeaderValue::from_static("/")),
    );
    h.append(
        header::SET_COOKIE,
        state.session_cookie(&ctx, &token.encode()),
    );
    h.append(header::SET_COOKIE, login_cookie(&state, &ctx, "", 0));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn logout_get(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let q = fields(query.unwrap_or_default().as_bytes());
    let rd = target(&state, &ctx, q.get("rd"));
    let login = format!("{}/login", state.prefix());
    let Some((token, auth)) = state.session(&ctx, &headers).await? else {
        return Ok(render(
            StatusCode::OK,
            &MessagePage {
                prefix: state.prefix(),
                title: "Signed out",
                message: "You are not signed in.",
                link: Some(&login),
                link_text: "Sign in",
            },
        ));
    };
    let csrf = state.csrf.token("logout", token.hash().as_bytes());
    let user = auth
        .user
        .as_ref()
        .map(|u| u.name.as_str())
        .unwrap_or("an anonymous visitor");
    Ok(render(
        StatusCode::OK,
        &LogoutPage {
            prefix: state.prefix(),
            user,
            session_id: auth.session.id.as_str(),
            csrf: &csrf,
            rd: rd.as_str(),
        },
    ))
}

async fn logout_post(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    require_form(&headers)?;
    let form = fields(&body);
    let mut location = format!("{}/login", state.prefix());
    if let Some((token, auth)) = state.session(&ctx, &headers).await? {
        let ok = form
            .get("csrf")
            .is_some_and(|t| state.csrf.verify("logout", token.hash().as_bytes(), t));
        if !ok || !csrf::same_origin(&headers, &ctx.host) {
            return Err(HttpError::Forbidden(
                "This log-out form has expired or was sent from another site. Open the log-out page again.".into(),
            ));
        }
        let actor = auth
            .user
            .as_ref()
            .map(|u| u.name.to_string())
            .unwrap_or_else(|| "anonymous".into());
        state
            .engine
            .end(
                SessionSelector::Ids(vec![auth.session.id]),
                usher_core::EndReason::Logout,
                &actor,
            )
            .await?;
        tracing::info!(session = %auth.session.id, user = %actor, "logout");
        if let Some(rd) = form.get("rd").filter(|rd| rd.as_str() != "/") {
            location = target(&state, &ctx, Some(rd)).as_str().to_owned();
        }
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/")),
    );
    h.append(header::SET_COOKIE, state.clear_session_cookie(&ctx));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
