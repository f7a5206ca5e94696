//! Forward auth: Usher as the `auth_request` of nginx (`/auth/request`) and the
//! ForwardAuth / forward_auth of Traefik and Caddy (`/auth/forward`), following the
//! conventions Authelia established and these proxies' users know.
//!
//! The original request is described by headers the proxy sets, and they are believed
//! only from a peer in `proxy.trusted` (oauth2-proxy GHSA-7x63-xv5r-3p2x): anyone else
//! could name any URL. A described URL that does not parse, carries userinfo or a
//! fragment (GHSA-pxq7-h93f-9jrg) is treated as unknown: the decision never depends on it,
//! and it is not offered as a place to return to.

use crate::app::AppState;
use crate::client::ClientContext;
use crate::error::HttpError;
use crate::gate::{self, Identity, Verdict};
use crate::head::Head;
use crate::identity;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{HeaderValue, Method, StatusCode, header};
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/auth/request", any(nginx))
        .route("/auth/forward", any(forward))
}

/// Longest original URL Usher will consider.
const MAX_URL: usize = 8 * 1024;

/// The request the proxy is asking about.
struct Original {
    url: Option<url::Url>,
    method: Option<String>,
}

fn header_str(value: Option<&HeaderValue>) -> Option<&str> {
    value
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Parses a described URL; `None` for anything that is not a plain http(s) URL.
fn original_url(text: &str) -> Option<url::Url> {
    if text.len() > MAX_URL || text.contains('#') || text.to_ascii_lowercase().contains("%23") {
        return None;
    }
    let url = url::Url::parse(text).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none();
    plain.then_some(url)
}

fn method(text: Option<&str>) -> Option<String> {
    text.and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .map(|m| m.as_str().to_owned())
}

/// nginx: `X-Original-URL` and `X-Original-Method`, else the `X-Forwarded-*` set.
fn from_nginx(ctx: &ClientContext, head: &Head) -> Original {
    if !ctx.peer_trusted {
        return Original {
            url: None,
            method: None,
        };
    }
    match header_str(head.x_original_url) {
        Some(u) => Original {
            url: original_url(u),
            method: method(header_str(head.x_original_method)),
        },
        None => from_forwarded(ctx, head),
    }
}

/// Traefik and Caddy: `X-Forwarded-Proto`, `-Host`, `-Uri`, `-Method`.
fn from_forwarded(ctx: &ClientContext, head: &Head) -> Original {
    if !ctx.peer_trusted {
        return Original {
            url: None,
            method: None,
        };
    }
    // No host, no URL: the other two are then not looked up.
    let url = header_str(head.x_forwarded_host).and_then(|host| {
        let proto = header_str(head.x_forwarded_proto).unwrap_or("http");
        let uri = header_str(head.x_forwarded_uri).unwrap_or("/");
        (uri.starts_with('/') && matches!(proto, "http" | "https"))
            .then(|| original_url(&format!("{proto}://{host}{uri}")))
            .flatten()
    });
    Original {
        url,
        method: method(header_str(head.x_forwarded_method)),
    }
}

/// Scheme and host the browser used, for an absolute login URL on the same host.
fn origin(ctx: &ClientContext) -> Option<(&'static str, &str)> {
    (!ctx.host.is_empty()).then_some((if ctx.https { "https" } else { "http" }, ctx.host.as_str()))
}

/// The context of the original request: its host and scheme decide the cookie's name
/// and where the session says it was used.
fn original_context(mut ctx: ClientContext, original: &Original) -> ClientContext {
    if let Some(url) = &original.url {
        ctx.https = url.scheme() == "https";
        if let Some(host) = url.host_str() {
            ctx.host = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            };
        }
    }
    ctx
}

/// 200: the proxy lets the request through with these identity headers. A visitor of a
/// public path may get their anonymous cookie here; the proxy passes it on
/// (`auth_request_set` + `add_header` in nginx, `addAuthCookiesToResponse` in Traefik).
fn allowed(state: &AppState, identity: &Identity, set_cookie: Option<HeaderValue>) -> Response {
    let mut r = StatusCode::OK.into_response();
    crate::access_log::AccessInfo::attach(state, identity, &mut r);
    *r.headers_mut() = identity::answer(identity);
    if let Some(c) = set_cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// Even a refusal carries every identity header, empty: a proxy that copies them on
/// any answer then never lets a client's own copy through.
fn with_empty_identity(mut r: Response) -> Response {
    identity::set(r.headers_mut(), None);
    r
}

/// The two forward-auth endpoints, which the server answers ahead of the router
/// ([`crate::server`]): they are on the path of every request of the guarded app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/auth/request`, nginx's `auth_request`.
    Nginx,
    /// `/auth/forward`, Traefik's ForwardAuth and Caddy's forward_auth.
    Forward,
}

impl Endpoint {
    /// The endpoint `rest`, a path with Usher's prefix taken off, names, if any.
    pub(crate) fn named(rest: &str) -> Option<Self> {
        match rest {
            "/auth/request" => Some(Self::Nginx),
            "/auth/forward" => Some(Self::Forward),
            _ => None,
        }
    }

    pub(crate) async fn answer(
        self,
        state: &AppState,
        ctx: ClientContext,
        head: &Head<'_>,
    ) -> Response {
        let (ctx, original) = self.original(ctx, head);
        let path = original.url.as_ref().map(url::Url::path);
        let verdict = gate::decide(state, &ctx, head, path).await;
        self.decision(state, &ctx, head, &original, verdict)
            .into_response(state)
    }

    /// [`Endpoint::answer`]'s decision when it can be made without waiting
    /// ([`gate::decide_now`]): `None` when it cannot, with nothing counted.
    pub(crate) fn decide_now(
        self,
        state: &AppState,
        ctx: ClientContext,
        head: &Head<'_>,
    ) -> Option<Decision> {
        let (ctx, original) = self.original(ctx, head);
        let path = original.url.as_ref().map(url::Url::path);
        let verdict = gate::decide_now(state, &ctx, head, path)?;
        Some(self.decision(state, &ctx, head, &original, verdict))
    }

    /// The request the proxy asks about, and the context it was made in.
    fn original(self, ctx: ClientContext, head: &Head<'_>) -> (ClientContext, Original) {
        let original = match self {
            Self::Nginx => from_nginx(&ctx, head),
            Self::Forward => from_forwarded(&ctx, head),
        };
        (original_context(ctx, &original), original)
    }

    /// Both endpoints let a request through alike; they refuse it each as its proxy
    /// understands.
    fn decision(
        self,
        state: &AppState,
        ctx: &ClientContext,
        head: &Head<'_>,
        original: &Original,
        verdict: Result<Verdict, HttpError>,
    ) -> Decision {
        let refusal = match verdict {
            Ok(Verdict::Pass {
                identity,
                set_cookie,
            }) => {
                return Decision::Pass {
                    identity,
                    set_cookie,
                };
            }
            Ok(Verdict::SignIn) => None,
            Err(e) => Some(e),
        };
        Decision::Refused(match self {
            Self::Nginx => nginx_refusal(state, ctx, original, refusal),
            Self::Forward => forward_refusal(state, ctx, head, original, refusal),
        })
    }
}

/// What forward auth answers: a pass (200 with the identity headers, and an anonymous
/// visitor's new cookie if any), which the fast lane writes straight from the identity
/// cache ([`identity::write_answer`]), or a refusal.
pub(crate) enum Decision {
    Pass {
        identity: Identity,
        set_cookie: Option<HeaderValue>,
    },
    Refused(Response),
}

impl Decision {
    pub(crate) fn into_response(self, state: &AppState) -> Response {
        match self {
            Self::Pass {
                identity,
                set_cookie,
            } => allowed(state, &identity, set_cookie),
            Self::Refused(r) => r,
        }
    }
}

async fn nginx(State(state): State<Arc<AppState>>, ctx: ClientContext, req: Request) -> Response {
    Endpoint::Nginx
        .answer(&state, ctx, &Head::scan(req.headers()))
        .await
}

async fn forward(State(state): State<Arc<AppState>>, ctx: ClientContext, req: Request) -> Response {
    Endpoint::Forward
        .answer(&state, ctx, &Head::scan(req.headers()))
        .await
}

/// nginx's answer to a request that must sign in (`None`) or could not be decided.
fn nginx_refusal(
    state: &AppState,
    ctx: &ClientContext,
    original: &Original,
    error: Option<HttpError>,
) -> Response {
    match error {
        // nginx turns this into a redirect with `error_page 401 =302 $redirection_url`;
        // it only accepts 2xx, 401 and 403 from an auth subrequest.
        None => {
            let rd = original.url.as_ref().map(url::Url::as_str);
            let mut r = gate::unauthorized_json(state);
            r.headers_mut().insert(
                header::LOCATION,
                gate::location(&gate::login_location(
                    state,
                    origin(ctx),
                    rd,
                    original.method.as_deref(),
                )),
            );
            with_empty_identity(r)
        }
        Some(e) => {
            // Fail closed within what nginx understands: 403, never a 5xx.
            tracing::warn!(error = %e, "forward auth could not decide");
            with_empty_identity(StatusCode::FORBIDDEN.into_response())
        }
    }
}

/// Traefik's and Caddy's answer to a request that must sign in (`None`) or could not be
/// decided.
fn forward_refusal(
    state: &AppState,
    ctx: &ClientContext,
    head: &Head<'_>,
    original: &Original,
    error: Option<HttpError>,
) -> Response {
    match error {
        None => {
            if !gate::is_browser(head.map()) {
                return with_empty_identity(gate::unauthorized_json(state));
            }
            let method = original.method.as_deref().unwrap_or("GET");
            // A browser that was not navigating (a form POST) must come back with GET.
            let status = if matches!(method, "GET" | "HEAD") {
                StatusCode::FOUND
            } else {
                StatusCode::SEE_OTHER
            };
            let rd = original.url.as_ref().map(url::Url::as_str);
            let mut r = status.into_response();
            r.headers_mut().insert(
                header::LOCATION,
                gate::location(&gate::login_location(state, origin(ctx), rd, Some(method))),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            with_empty_identity(r)
        }
        Some(e) => e.into_response(),
    }
}
