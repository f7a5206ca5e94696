//! The gate: every request outside Usher's prefix. A live session passes (to the
//! upstream, or to the demo page); anything else is sent to sign in. The forward-auth
//! endpoints ask the same question through [`decide`], so every policy applies to both.

use crate::access_log::AccessInfo;
use crate::app::AppState;
use crate::client::ClientContext;
use crate::error::HttpError;
use crate::head::Head;
use crate::{anonymous, cookie, demo};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;
use usher_core::{Token, User};

use usher_engine::sessions::{Authenticated, LiveSession};

/// Who a request is for, as the app and the access log see it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub user: Option<Arc<User>>,
    /// `None` for a visitor who has no session (yet), or a request not tracked.
    pub session: Option<Arc<LiveSession>>,
    /// Proven by an `Authorization` credential, whose secret the app then never sees.
    pub credential: bool,
}

impl From<Authenticated> for Identity {
    fn from(a: Authenticated) -> Self {
        Self {
            credential: a.session.kind == usher_core::SessionKind::Api,
            user: a.user,
            session: Some(a.session),
        }
    }
}

/// What the gate decides for one request.
pub enum Verdict {
    /// A signed-in user, or a visitor of a public path (with their anonymous session
    /// when they have one, and a cookie to set when they are to get one).
    Pass {
        identity: Identity,
        set_cookie: Option<HeaderValue>,
    },
    SignIn,
}

impl Verdict {
    fn pass(identity: Identity) -> Self {
        Self::Pass {
            identity,
            set_cookie: None,
        }
    }
}

/// The one decision every surface (reverse proxy, nginx, Traefik, Caddy) shares; it
/// counts the request on its session unless `tracking.ignore` says not to. `path` is
/// the path of the request as the client sent it, `None` when it is not known (a
/// forward-auth request from an untrusted peer): then no path is public.
pub async fn decide(
    state: &AppState,
    ctx: &ClientContext,
    head: &Head<'_>,
    path: Option<&str>,
) -> Result<Verdict, HttpError> {
    let started = std::time::Instant::now();
    let track = tracked(state, ctx, path);
    let verdict = check(state, ctx, head, path, track).await;
    settle(state, ctx, head, track, started, verdict)
}

/// [`decide`] without waiting, for the common request: a cookie naming a session in
/// memory. `None` when deciding needs more (the store, an API client's credential, a
/// public path's anonymous visitor): nothing has been counted then, and [`decide`]
/// takes it from the start.
pub fn decide_now(
    state: &AppState,
    ctx: &ClientContext,
    head: &Head<'_>,
    path: Option<&str>,
) -> Option<Result<Verdict, HttpError>> {
    let started = std::time::Instant::now();
    let (token, _) = state.cookie_token(ctx, head)?;
    let auth = state.engine.find_in_memory(&token)?;
    let track = tracked(state, ctx, path);
    let verdict = session_verdict(state, ctx, path, track, auth);
    Some(settle(state, ctx, head, track, started, Ok(verdict)))
}

/// Whether the request counts on its session (`tracking.ignore`).
fn tracked(state: &AppState, ctx: &ClientContext, path: Option<&str>) -> bool {
    !state
        .settings
        .rules
        .is_ignored(path, &ctx.user_agent, ctx.ip())
}

/// The metrics of a decision, and what is counted apart for cookieless requests.
fn settle(
    state: &AppState,
    ctx: &ClientContext,
    head: &Head<'_>,
    track: bool,
    started: std::time::Instant,
    verdict: Result<Verdict, HttpError>,
) -> Result<Verdict, HttpError> {
    let metrics = state.engine.metrics();
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => {
            metrics.outcomes.error.inc();
            return Err(e);
        }
    };
    metrics
        .check_seconds
        .observe(started.elapsed().as_secs_f64());
    let outcome = match &verdict {
        Verdict::Pass { identity, .. } if identity.user.is_some() => &metrics.outcomes.allowed,
        Verdict::Pass { .. } => &metrics.outcomes.public,
        Verdict::SignIn => &metrics.outcomes.denied,
    };
    // No cookie and no credential at all: a ping or a script, not a person (yet).
    // Counted apart, so it never becomes a session.
    if track && !head.has_cookie() && head.authorization.is_none() {
        state
            .engine
            .cookieless()
            .record(ctx.ip(), &ctx.user_agent, state.engine.clock().now());
    }
    outcome.inc();
    Ok(verdict)
}

/// A live session the cookie names: it passes — an anonymous one on public paths only —
/// and the request is counted on it.
fn session_verdict(
    state: &AppState,
    ctx: &ClientContext,
    path: Option<&str>,
    track: bool,
    auth: Authenticated,
) -> Verdict {
    if auth.user.is_none() && !path.is_some_and(|p| state.settings.rules.is_public(p)) {
        return Verdict::SignIn;
    }
    if track {
        state.engine.record(&auth, &ctx.request_info());
    }
    Verdict::pass(auth.into())
}

async fn check(
    state: &AppState,
    ctx: &ClientContext,
    head: &Head<'_>,
    path: Option<&str>,
    track: bool,
) -> Result<Verdict, HttpError> {
    let engine = &state.engine;
    // Asked only when no signed-in session settles it (at most once per request).
    let public = || path.is_some_and(|p| state.settings.rules.is_public(p));
    let req = ctx.request_info();
    // The cookie names a signed-in session (a bare token) or an anonymous one.
    let mut returned: Option<Token> = None;
    if let Some((token, issued)) = state.cookie_token(ctx, head) {
        if let Some(auth) = engine.find(&token).await? {
            return Ok(session_verdict(state, ctx, path, track, auth));
        }
        if issued {
            returned = Some(token);
        }
    }
    // No cookie session: an API client may have sent a credential instead.
    // The paths below are boxed: they await the store (or argon2), and their futures
    // would make the future of every request — hyper moves it into place each time —
    // kilobytes larger (issue 9).
    if let Some(identity) =
        Box::pin(state.api_clients.authenticate(state, ctx, head, track)).await?
    {
        return Ok(Verdict::pass(identity));
    }
    if !public() {
        return Ok(Verdict::SignIn);
    }
    if !state.settings.anonymous_sessions || !track {
        return Ok(Verdict::pass(Identity::default()));
    }
    // Lazy: the session starts when a cookie Usher handed out comes back.
    if let Some(token) = &returned
        && let Some(auth) = Box::pin(engine.adopt_anonymous(token, &req)).await?
    {
        return Ok(Verdict::pass(auth.into()));
    }
    let (_, value) =
        anonymous::issue(state.csrf.key_bytes()).map_err(|e| HttpError::Internal(e.to_string()))?;
    Ok(Verdict::Pass {
        identity: Identity::default(),
        set_cookie: Some(state.session_cookie(ctx, &value)),
    })
}

/// A request outside Usher's prefix that came through the router; the server loop
/// answers the rest itself (issue 9: the router costs about a quarter of a request
/// this cheap), with [`decide`] and [`answer`] as here.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    req: Request,
) -> Response {
    let verdict = {
        let head = Head::scan(req.headers());
        decide(&state, &ctx, &head, Some(req.uri().path())).await
    };
    answer(&state, ctx, verdict, req).await
}

/// What the gate answers `req` once [`decide`] has given its `verdict`.
pub(crate) async fn answer(
    state: &AppState,
    ctx: ClientContext,
    verdict: Result<Verdict, HttpError>,
    req: Request,
) -> Response {
    match respond(state, &ctx, verdict, req) {
        Answer::Now(r) => r,
        Answer::Upstream(f) => f.send(state).await,
    }
}

/// The gate's answer: at once, or the upstream's, once it comes.
pub(crate) enum Answer {
    Now(Response),
    Upstream(Forwarding),
}

/// A request that passed, ready to go upstream, and what its answer then carries.
pub(crate) struct Forwarding {
    prepared: crate::proxy::Prepared,
    identity: Identity,
    set_cookie: Option<HeaderValue>,
}

impl Forwarding {
    pub(crate) async fn send(self, state: &AppState) -> Response {
        let Self {
            prepared,
            identity,
            set_cookie,
        } = self;
        // Made by `respond` only when there is a proxy; the page, never reached, keeps
        // this total without a panic.
        let r = match &state.proxy {
            Some(proxy) => proxy.send(prepared).await,
            None => demo::page(state, &identity),
        };
        passed(state, &identity, set_cookie, r)
    }
}

/// [`answer`] up to the wait for the upstream: everything that needs the request.
pub(crate) fn respond(
    state: &AppState,
    ctx: &ClientContext,
    verdict: Result<Verdict, HttpError>,
    req: Request,
) -> Answer {
    match verdict {
        Ok(Verdict::Pass {
            identity,
            set_cookie,
        }) => match &state.proxy {
            Some(proxy) => match proxy.prepare(req, ctx, &identity) {
                Some(prepared) => Answer::Upstream(Forwarding {
                    prepared,
                    identity,
                    set_cookie,
                }),
                None => {
                    let refused = crate::proxy::Proxy::unforwardable();
                    Answer::Now(passed(state, &identity, set_cookie, refused))
                }
            },
            None => {
                let page = demo::page(state, &identity);
                Answer::Now(passed(state, &identity, set_cookie, page))
            }
        },
        Ok(Verdict::SignIn) => Answer::Now(unauthenticated(state, ctx, req.headers(), req.uri())),
        Err(e) => Answer::Now(e.into_response()),
    }
}

/// The answer to a request that passed: with the anonymous cookie to set, if any, and
/// who it was for, for the access log.
fn passed(
    state: &AppState,
    identity: &Identity,
    set_cookie: Option<HeaderValue>,
    mut r: Response,
) -> Response {
    if let Some(c) = set_cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    AccessInfo::attach(state, identity, &mut r);
    r
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
    // A cookie that names no live session is dropped rather than sent forever — except
    // a visitor's anonymous one, which still opens the public paths.
    let stale_cookie = cookie::read(headers, state.cookie_name(ctx)).is_some_and(|v| {
        !anonymous::read(state.csrf.key_bytes(), v).is_some_and(|(_, genuine)| genuine)
    });
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
    if stale_cookie {
        response
            .headers_mut()
            .append(header::SET_COOKIE, state.clear_session_cookie(ctx));
    }
    response
}

pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
