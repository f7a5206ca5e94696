//! The server loop: binds, serves with hyper-util (so header-read timeouts and
//! upgrades are ours to set), and shuts down gracefully — stop accepting, let requests
//! in flight finish within the drain timeout, then flush every pending count.

use crate::GatewaySettings;
use crate::access_log::AccessLog;
use crate::app::{AppState, router};
use crate::client::ClientContext;
use crate::connections::{Connections, InFlight, Opened, Tracked};
use crate::cores::Cores;
use crate::csrf::CsrfKey;
use crate::forward::Endpoint;
use crate::gate::{Answer, Forwarding};
use crate::head::Head;
use crate::proxy::Proxy;
use axum::extract::ConnectInfo;
use axum::response::Response;
use futures_util::future::Either;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;
use usher_core::Clock;
use usher_engine::sessions::Tasks;
use usher_engine::{Accounts, Engine, EngineConfig, EngineError, PasswordHasher};
use usher_store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot listen on {addr}: {source} (is another server using that port? pick another with --listen)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot open the access log: {0} (check log.access)")]
    AccessLog(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("upstream.url must name a host, such as http://127.0.0.1:3000")]
    Upstream,
}

pub struct Server {
    listener: TcpListener,
    /// `server.metrics_listen`, when metrics are kept off the public address.
    metrics_listener: Option<TcpListener>,
    state: Arc<AppState>,
    tasks: Tasks,
    /// The serving threads, when `server.threads` is set: running before the server
    /// says it listens.
    cores: Option<Cores>,
}

impl Server {
    /// Loads the engine from `store`, binds `listen` (port 0 picks a free port) and
    /// starts the background tasks. Serving starts with [`Server::run_until`].
    pub async fn build(
        listen: SocketAddr,
        settings: GatewaySettings,
        engine_config: EngineConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        let candidate = usher_core::ids::os_random::<32>().map_err(EngineError::from)?;
        let secret = store
            .secret("csrf", &candidate)
            .await
            .map_err(EngineError::from)?;
        let engine = Engine::load(store.clone(), clock.clone(), engine_config).await?;
        // Half the cores at most hash passwords: a burst of sign-ins then leaves the
        // rest to the requests already signed in (issue 9: no login may stall others).
        let parallel = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        let accounts = Accounts::new(store, clock, PasswordHasher::new(parallel)?);
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: listen,
                source,
            })?;
        let proxy = settings
            .upstream
            .clone()
            .map(|u| {
                Proxy::new(u, &settings.cookie_name, settings.threads.unwrap_or(0))
                    .ok_or(ServerError::Upstream)
            })
            .transpose()?;
        let access_log = AccessLog::start(
            &settings.access_log,
            settings.access_log_json,
            engine.metrics().clone(),
        )
        .map_err(|e| ServerError::AccessLog(e.to_string()))?;
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let cookie_names = [false, true].map(|https| {
            crate::cookie::cookie_name(
                &settings.cookie_name,
                https,
                settings.cookie_domain.as_deref(),
            )
        });
        let tasks = engine.start();
        let state = Arc::new(AppState {
            engine,
            accounts,
            settings,
            csrf: CsrfKey::new(secret),
            proxy,
            draining: AtomicBool::new(false),
            access_log,
            api_clients: Default::default(),
            malformed_ip_logged: AtomicBool::new(false),
            cookie_names,
        });
        let cores = state.settings.threads.map(Cores::start).transpose()?;
        Ok(Self {
            listener,
            metrics_listener,
            state,
            tasks,
            cores,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then drains and flushes.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Self {
            listener,
            metrics_listener,
            state,
            tasks,
            cores,
        } = self;
        let metrics_task = metrics_listener.map(|l| {
            let app = axum::Router::new()
                .route("/metrics", axum::routing::get(crate::health::metrics))
                .with_state(state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::warn!(error = %e, "the metrics listener stopped");
                }
            })
        });
        let app = router(state.clone());
        let mut builder = Builder::new(TokioExecutor::new());
        // No timer for HTTP/1: hyper's header-read timeout is then off, and
        // `Connections` keeps it instead, without a timer per request (issue 9). Without
        // one or the other a slowloris client would hold its connection forever.
        builder.http1().max_buf_size(64 * 1024);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        let connections = Arc::new(Connections::new(state.settings.header_read_timeout));
        let sweep = tokio::spawn({
            let connections = connections.clone();
            async move { connections.sweep().await }
        });
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let (app, state, builder) = (app.clone(), state.clone(), builder.clone());
            let opened = connections.open();
            match &cores {
                None => {
                    tokio::spawn(serve_connection(stream, peer, opened, state, app, builder));
                }
                Some(cores) => {
                    // Off this runtime's event loop, onto the serving thread's.
                    let stream = match stream.into_std() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(error = %e, peer = %peer, "accepted connection lost");
                            continue;
                        }
                    };
                    cores.serve(async move {
                        match tokio::net::TcpStream::from_std(stream) {
                            Ok(s) => serve_connection(s, peer, opened, state, app, builder).await,
                            Err(e) => {
                                tracing::debug!(error = %e, peer = %peer, "cannot serve an accepted connection");
                            }
                        }
                    });
                }
            }
        }
        drop(listener);
        state.draining.store(true, Ordering::Release);
        tracing::info!("shutting down: finishing requests in flight");
        if tokio::time::timeout(state.settings.drain_timeout, connections.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight after the drain timeout; closing them");
        }
        sweep.abort();
        if let Some(t) = metrics_task {
            t.abort();
        }
        tasks.shutdown().await?;
        if let Some(cores) = cores {
            cores.stop().await;
        }
        tracing::info!("pending request counts written; bye");
        Ok(())
    }
}

/// Serves one accepted connection until it closes.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    opened: Opened,
    state: Arc<AppState>,
    app: axum::Router,
    builder: Arc<Builder<TokioExecutor>>,
) {
    let _ = stream.set_nodelay(true);
    let conn_state = opened.conn().clone();
    let lane = crate::lane::serve(stream, state.clone(), peer, conn_state.clone());
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = conn_state.begin();
        match early(&state, peer, req) {
            Early::Answered(resp) => Either::Left(Either::Left(std::future::ready(Ok(
                resp.map(|body| Tracked::new(body, in_flight))
            )))),
            Early::Forwarding(forwarding, pending, head_only) => Either::Left(Either::Right(
                forwarded(state.clone(), forwarding, pending, head_only, in_flight),
            )),
            Early::Later(req) => {
                Either::Right(serve_one(state.clone(), app.clone(), peer, req, in_flight))
            }
        }
    });
    let conn = crate::lane::Connection::new(lane, move |io| {
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned()
    });
    match opened.watch(conn).await {
        Some(Err(e)) => {
            tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
        }
        None => {
            tracing::debug!(peer = %peer, "closed: no request head within server.header_read_timeout");
        }
        Some(Ok(())) => {}
    }
}

/// Requests the server answers without the router.
pub(crate) enum Direct {
    /// `/auth/request` or `/auth/forward`: asked once for every request of the app
    /// behind nginx, Traefik or Caddy.
    ForwardAuth(Endpoint),
    /// Anything outside the prefix: the app's own requests, through the gate.
    Gate,
}

impl Direct {
    /// `None`: one of Usher's own paths, for the router.
    pub(crate) fn of(prefix: &str, path: &str) -> Option<Self> {
        match path.strip_prefix(prefix) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                Endpoint::named(rest).map(Self::ForwardAuth)
            }
            _ => Some(Self::Gate),
        }
    }
}

/// How far a request got while it was handed over (by hyper, or by the lane).
pub(crate) enum Early<B> {
    Answered(Response),
    /// Passed, its head written for the upstream: the answer comes from there.
    Forwarding(Forwarding, Option<crate::access_log::Pending>, bool),
    /// Not decided: nothing counted, the request back for the way that may wait.
    Later(Request<B>),
}

/// A request decided while hyper hands it over, when that needs no waiting: a cookie
/// naming a session in memory — nearly every request of the app, whether it asks
/// through forward auth or comes through the reverse proxy. hyper reads on from the
/// connection before it first polls the service's future, and while a request is held
/// its headers, slices of hyper's read buffer, make that read allocate a new buffer
/// instead of reusing the old: a malloc and a free of 8 KiB on every request (issue 9).
/// Decided here, the request is gone by then.
fn early(state: &AppState, peer: SocketAddr, req: Request<Incoming>) -> Early<Incoming> {
    let Some(direct) = Direct::of(&state.settings.prefix, req.uri().path()) else {
        return Early::Later(req);
    };
    match direct {
        Direct::ForwardAuth(endpoint) => match forward_auth_now(state, peer, &req, endpoint) {
            Some((pending, decision)) => {
                let head_only = req.method() == http::Method::HEAD;
                let resp = decision.into_response(state);
                Early::Answered(finish(state, pending, head_only, resp))
            }
            None => Early::Later(req),
        },
        Direct::Gate => gate_now(state, peer, req),
    }
}

/// [`early`] for a request outside the prefix (the gate); the lane ([`crate::lane`]),
/// which has routed the requests it reads itself, asks it directly.
pub(crate) fn gate_now<B>(state: &AppState, peer: SocketAddr, req: Request<B>) -> Early<B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let head_only = req.method() == http::Method::HEAD;
    let (pending, ctx, verdict) = {
        let head = Head::scan(req.headers());
        let (pending, ctx) = begin(state, peer, &req, &head);
        let Some(verdict) = crate::gate::decide_now(state, &ctx, &head, Some(req.uri().path()))
        else {
            return Early::Later(req);
        };
        (pending, ctx, verdict)
    };
    let req = req.map(axum::body::Body::new);
    match crate::gate::respond(state, &ctx, verdict, req) {
        Answer::Now(resp) => Early::Answered(finish(state, pending, head_only, resp)),
        Answer::Upstream(forwarding) => Early::Forwarding(forwarding, pending, head_only),
    }
}

/// Forward auth's decision on a request when it can be made without waiting, with the
/// request's access-log line begun (to [`finish`]); `None`, with nothing counted, when it
/// cannot. Asked by [`early`] and by the lane ([`crate::lane`]).
pub(crate) fn forward_auth_now<B>(
    state: &AppState,
    peer: SocketAddr,
    req: &Request<B>,
    endpoint: Endpoint,
) -> Option<(Option<crate::access_log::Pending>, crate::forward::Decision)> {
    let head = Head::scan(req.headers());
    let (pending, ctx) = begin(state, peer, req, &head);
    let decision = endpoint.decide_now(state, ctx, &head)?;
    Some((pending, decision))
}

/// The upstream's answer to a request [`early`] sent on its way.
async fn forwarded(
    state: Arc<AppState>,
    forwarding: Forwarding,
    pending: Option<crate::access_log::Pending>,
    head_only: bool,
    in_flight: InFlight,
) -> Result<Response<Tracked<axum::body::Body>>, Infallible> {
    let resp = forwarding.send(&state).await;
    let resp = finish(&state, pending, head_only, resp);
    Ok(resp.map(|body| Tracked::new(body, in_flight)))
}

/// The client context of a request answered without the router, and its access-log
/// line begun when the log is on.
fn begin<B>(
    state: &AppState,
    peer: SocketAddr,
    req: &Request<B>,
    head: &Head<'_>,
) -> (Option<crate::access_log::Pending>, ClientContext) {
    match crate::access_log::Pending::begin(state, peer, req, head) {
        Some((p, ctx)) => (Some(p), ctx),
        None => (None, ClientContext::new(state, peer, head, req.uri())),
    }
}

/// The answer to a request answered without the router: logged, and bodiless for HEAD.
pub(crate) fn finish(
    state: &AppState,
    pending: Option<crate::access_log::Pending>,
    head_only: bool,
    resp: Response,
) -> Response {
    if let Some(p) = pending {
        p.finish(state, &resp);
    }
    // As the router would: hyper drops a HEAD answer's body on HTTP/1, but on HTTP/2 a
    // body is a protocol error for the client.
    if head_only { without_body(resp) } else { resp }
}

/// One request [`early`] could not decide. The requests of the guarded app — through
/// the gate, or asked about by a proxy's forward auth — are answered here without the
/// router (its matching, nesting and boxed layers cost about a quarter of a request
/// this cheap — issue 9); Usher's own pages and API go through the router. The answer's body keeps the
/// connection busy (`in_flight`: not waiting for a head) until hyper has sent it.
async fn serve_one(
    state: Arc<AppState>,
    app: axum::Router,
    peer: SocketAddr,
    req: Request<Incoming>,
    in_flight: InFlight,
) -> Result<Response<Tracked<axum::body::Body>>, Infallible> {
    let resp = answer(state, app, peer, req).await;
    Ok(resp.map(|body| Tracked::new(body, in_flight)))
}

/// How far a request answered without the router got while its headers were read.
enum Step {
    Answered(Response),
    /// The gate's verdict, for the request itself (which the reverse proxy takes).
    Decided(
        ClientContext,
        Result<crate::gate::Verdict, crate::error::HttpError>,
    ),
}

async fn answer(
    state: Arc<AppState>,
    app: axum::Router,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response {
    if let Some(direct) = Direct::of(&state.settings.prefix, req.uri().path()) {
        let head_only = req.method() == http::Method::HEAD;
        // One pass over the headers serves the client context and the decision.
        let (pending, step) = {
            let head = Head::scan(req.headers());
            let (pending, ctx) = begin(&state, peer, &req, &head);
            let step = match direct {
                Direct::ForwardAuth(endpoint) => {
                    Step::Answered(endpoint.answer(&state, ctx, &head).await)
                }
                Direct::Gate => {
                    let path = Some(req.uri().path());
                    let verdict = crate::gate::decide(&state, &ctx, &head, path).await;
                    Step::Decided(ctx, verdict)
                }
            };
            (pending, step)
        };
        let resp = match step {
            Step::Answered(resp) => resp,
            // Boxed: the reverse proxy's future is kilobytes, and hyper moves the
            // service's future into place on every request — this one stays small.
            Step::Decided(ctx, verdict) => {
                let req = req.map(axum::body::Body::new);
                Box::pin(crate::gate::answer(&state, ctx, verdict, req)).await
            }
        };
        return finish(&state, pending, head_only, resp);
    }
    let mut req = req.map(axum::body::Body::new);
    req.extensions_mut().insert(ConnectInfo(peer));
    match Box::pin(app.oneshot(req)).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// A HEAD answer: the headers of the GET answer, its length kept, no body.
fn without_body(resp: Response) -> Response {
    use axum::body::HttpBody as _;
    let (mut parts, body) = resp.into_parts();
    if !parts.headers.contains_key(http::header::CONTENT_LENGTH)
        && let Some(n) = body.size_hint().exact()
    {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    }
    Response::from_parts(parts, axum::body::Body::empty())
}
