//! `/usher/me`: a signed-in user's own sessions — which browser, which address, since
//! when — and the means to end the others (for instance when a limit on sessions says
//! there are too many).

use crate::app::AppState;
use crate::client::ClientContext;
use crate::csrf;
use crate::error::HttpError;
use crate::gate;
use crate::pages::render;
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, Uri, header};
use std::sync::Arc;
use usher_core::clock::ago;
use usher_core::{EndReason, SessionId};
use usher_store::SessionSelector;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/me", get(page))
        .route("/me/end", axum::routing::post(end))
}

#[derive(Template)]
#[template(path = "me.html")]
struct MePage<'a> {
    prefix: &'a str,
    user: &'a str,
    csrf: &'a str,
    /// id, client, ip, since, last used, is this one
    sessions: Vec<(String, String, String, String, String, bool)>,
    /// Ended in the last week: id, client, ip, when, why (e.g. replaced by a newer
    /// sign-in when a limit on sessions evicted it).
    ended: Vec<(String, String, String, String, String)>,
}

/// Why a session ended, as its owner reads it.
fn why(reason: Option<EndReason>, by: Option<&str>) -> String {
    match reason {
        Some(EndReason::Evicted) => {
            "replaced by a newer sign-in (the limit on sessions per user)".to_owned()
        }
        Some(EndReason::Logout) => "signed out".to_owned(),
        Some(EndReason::IdleTimeout) => "unused for too long".to_owned(),
        Some(EndReason::AbsoluteTimeout) => "reached its maximum age".to_owned(),
        Some(EndReason::Killed) => format!("ended by {}", by.unwrap_or("an administrator")),
        Some(EndReason::UserDisabled) => "account disabled".to_owned(),
        None => String::new(),
    }
}

async fn page(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (token, auth) = match state.session(&ctx, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return gate::unauthenticated(&state, &ctx, &headers, &uri),
        Err(e) => return HttpError::from(e).into_response(),
    };
    let Some(user) = auth.user.clone() else {
        return gate::unauthenticated(&state, &ctx, &headers, &uri);
    };
    let now = state.engine.clock().now();
    let sessions = state
        .engine
        .sessions_of(&user.name)
        .into_iter()
        .map(|s| {
            (
                s.id.to_string(),
                s.client,
                s.ip.to_string(),
                ago(s.created_at, now),
                ago(s.last_access_at, now),
                s.id == auth.session.id,
            )
        })
        .collect();
    let week_ago = now - jiff::SignedDuration::from_hours(7 * 24);
    let ended = match state.engine.store().sessions_of_user(&user.name).await {
        Ok(records) => records
            .into_iter()
            .filter_map(|r| {
                let at = r.ended_at.filter(|t| *t > week_ago)?;
                Some((
                    r.id.to_string(),
                    r.client,
                    r.ip.to_string(),
                    ago(at, now),
                    why(r.end_reason, r.ended_by.as_deref()),
                ))
            })
            .take(20)
            .collect(),
        Err(e) => return HttpError::from(usher_engine::EngineError::from(e)).into_response(),
    };
    let csrf = state.csrf.token("me", token.hash().as_bytes());
    render(
        StatusCode::OK,
        &MePage {
            prefix: state.prefix(),
            user: user.name.as_str(),
            csrf: &csrf,
            sessions,
            ended,
        },
    )
}

async fn end(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let (token, auth) = match state.session(&ctx, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return gate::unauthenticated(&state, &ctx, &headers, &uri),
        Err(e) => return HttpError::from(e).into_response(),
    };
    let Some(user) = auth.user.clone() else {
        return HttpError::Forbidden("Sign in first.".into()).into_response();
    };
    let form = crate::form::pairs(&body);
    let field = |k: &str| crate::form::first(&form, k);
    let ok = field("csrf").is_some_and(|t| state.csrf.verify("me", token.hash().as_bytes(), t));
    if !ok || !csrf::same_origin(&headers, &ctx.host) {
        return HttpError::Forbidden(
            "This form has expired or was sent from another site. Reload the page and try again."
                .into(),
        )
        .into_response();
    }
    // Only one's own sessions, and never the one making the request.
    let own: Vec<SessionId> = state
        .engine
        .sessions_of(&user.name)
        .iter()
        .map(|s| s.id)
        .collect();
    let ids: Vec<SessionId> = if field("others") == Some("yes") {
        own.into_iter()
            .filter(|id| *id != auth.session.id)
            .collect()
    } else {
        match field("id").and_then(|i| SessionId::parse(i).ok()) {
            Some(id) if own.contains(&id) && id != auth.session.id => vec![id],
            _ => {
                return HttpError::BadRequest("That is not one of your other sessions.".into())
                    .into_response();
            }
        }
    };
    if !ids.is_empty()
        && let Err(e) = state
            .engine
            .end(
                SessionSelector::Ids(ids),
                EndReason::Logout,
                user.name.as_str(),
            )
            .await
    {
        return HttpError::from(e).into_response();
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        gate::location(&format!("{}/me", state.prefix())),
    );
    r
}
