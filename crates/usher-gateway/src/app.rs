//! The application as a plain function of its state: `router(state)`; each feature
//! module owns its routes and this root only merges them.

use crate::access_log::{self, AccessLog};
use crate::client::ClientContext;
use crate::cookie;
use crate::csrf::CsrfKey;
use crate::head::Head;
use crate::proxy::Proxy;
use crate::{GatewaySettings, admin, api, forward, gate, health, login, me, whoami};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use usher_core::Token;
use usher_engine::sessions::Authenticated;
use usher_engine::{Accounts, Engine, EngineError};

/// Largest body Usher's own forms and endpoints accept.
const USHER_BODY_LIMIT: usize = 64 * 1024;

pub struct AppState {
    pub engine: Engine,
    pub accounts: Accounts,
    pub settings: GatewaySettings,
    pub(crate) csrf: CsrfKey,
    pub(crate) proxy: Option<Proxy>,
    /// Set at shutdown: `/readyz` then answers 503 so balancers move away first.
    pub draining: AtomicBool,
    pub(crate) access_log: Option<AccessLog>,
    /// The session cookie's name over http and over https.
    pub(crate) cookie_names: [String; 2],
    pub(crate) api_clients: crate::api_clients::ApiClients,
    /// A malformed client IP header has been logged (it is logged once).
    pub(crate) malformed_ip_logged: AtomicBool,
}

impl AppState {
    /// The session cookie's name for this request (worked out once, at start, for
    /// http and for https: the request path allocates nothing for it).
    pub(crate) fn cookie_name(&self, ctx: &ClientContext) -> &str {
        &self.cookie_names[usize::from(ctx.https)]
    }

    /// The token in the session cookie, and whether it is an anonymous cookie Usher
    /// issued (which may be adopted as a lazy anonymous session).
    pub(crate) fn cookie_token(&self, ctx: &ClientContext, head: &Head) -> Option<(Token, bool)> {
        let value = cookie::read_in(head.cookies(), self.cookie_name(ctx))?;
        match Token::parse_bytes(value) {
            Some(t) => Some((t, false)),
            None => crate::anonymous::read(self.csrf.key_bytes(), std::str::from_utf8(value).ok()?),
        }
    }

    /// The live session (signed in or anonymous) the cookie names, not counting.
    pub(crate) async fn cookie_session(
        &self,
        ctx: &ClientContext,
        headers: &HeaderMap,
    ) -> Result<Option<Authenticated>, EngineError> {
        match self.cookie_token(ctx, &Head::scan(headers)) {
            Some((token, _)) => self.engine.find(&token).await,
            None => Ok(None),
        }
    }

    /// The signed-in session a request's cookie names, if it is live; counts the
    /// request on it. Anonymous sessions are the gate's business only: they never open
    /// Usher's own pages.
    pub(crate) async fn session(
        &self,
        ctx: &ClientContext,
        headers: &HeaderMap,
    ) -> Result<Option<(Token, Authenticated)>, EngineError> {
        let name = self.cookie_name(ctx);
        let Some(token) = cookie::read(headers, name).and_then(Token::parse) else {
            return Ok(None);
        };
        let Some(found) = self.engine.find(&token).await?.filter(|a| a.user.is_some()) else {
            return Ok(None);
        };
        self.engine.record(&found, &ctx.request_info());
        Ok(Some((token, found)))
    }

    pub(crate) fn session_cookie(&self, ctx: &ClientContext, value: &str) -> HeaderValue {
        let c = cookie::set(
            self.cookie_name(ctx),
            value,
            ctx.https,
            self.settings.cookie_domain.as_deref(),
        );
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    pub(crate) fn clear_session_cookie(&self, ctx: &ClientContext) -> HeaderValue {
        let c = cookie::clear(
            self.cookie_name(ctx),
            ctx.https,
            self.settings.cookie_domain.as_deref(),
        );
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.settings.prefix
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let prefix = state.settings.prefix.clone();
    let own = Router::new()
        .merge(login::router())
        .merge(health::router(state.settings.metrics_listen.is_none()))
        .merge(admin::router())
        .merge(whoami::router())
        .merge(me::router())
        .merge(forward::router())
        .nest("/api/v1", api::router())
        .route("/static/usher.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(USHER_BODY_LIMIT));
    Router::new()
        .nest(&prefix, own)
        .fallback(gate::handle)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log::middleware,
        ))
        .with_state(state)
}

async fn stylesheet() -> Response {
    let mut r = include_str!("../static/usher.css").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn script() -> Response {
    let mut r = include_str!("../static/console.js").into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn not_found() -> Response {
    crate::pages::error_page(StatusCode::NOT_FOUND, "There is no such Usher page.")
}
