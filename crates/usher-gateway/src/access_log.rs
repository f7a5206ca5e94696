//! The access log: one line per request, Combined Log Format plus the public session id
//! and the response time (or one JSON object per line), written by a background task so
//! the request path only formats a line and hands it over.
//!
//! Every field a client controls is escaped (quotes, backslashes, control and non-ASCII
//! bytes as `\xHH`), so a User-Agent cannot forge a line. The session token is never
//! logged: only the public session id.

use crate::app::AppState;
use crate::client::ClientContext;
use crate::gate::Identity;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use usher_core::{SessionId, Username};
use usher_engine::Metrics;

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

/// Lines waiting for the writer; past this, lines are dropped and counted.
const QUEUE: usize = 16 * 1024;

/// Who a request was for; handlers attach it to their response for the log.
#[derive(Debug, Clone)]
pub struct AccessInfo {
    pub session: SessionId,
    pub user: Option<Username>,
}

impl AccessInfo {
    /// Attaches who the request was for to its answer, for the log to name. Nothing
    /// when the log is off: the first extension of a response costs a map and a box,
    /// on every request of the app (issue 9).
    pub fn attach(state: &AppState, identity: &Identity, resp: &mut Response) {
        if state.access_log.is_none() {
            return;
        }
        if let Some(info) = Self::of(identity) {
            resp.extensions_mut().insert(info);
        }
    }

    /// Who `identity` names, for the log: `None` without a session.
    pub(crate) fn of(identity: &Identity) -> Option<Self> {
        identity.session.as_ref().map(|s| Self {
            session: s.id,
            user: s.user.clone(),
        })
    }
}

pub struct AccessLog {
    tx: mpsc::Sender<String>,
    json: bool,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    /// Starts the writer; `None` when the log is off.
    pub fn start(
        target: &AccessLogTarget,
        json: bool,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Option<Self>> {
        let (tx, rx) = mpsc::channel(QUEUE);
        match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => {
                tokio::spawn(write_lines(rx, None));
            }
            AccessLogTarget::File(path) => {
                // Open once now, so a bad path is an error at start, not a silent loss.
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                tokio::spawn(write_lines(rx, Some(path.clone())));
            }
        }
        Ok(Some(Self { tx, json, metrics }))
    }

    fn send(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.metrics.access_log_dropped.inc();
        }
    }
}

async fn open(path: &PathBuf) -> Option<tokio::fs::File> {
    match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the access log");
            None
        }
    }
}

/// Writes lines as they come, flushing whenever the queue runs dry; a file is reopened
/// on SIGHUP, so log rotation can move it away.
async fn write_lines(mut rx: mpsc::Receiver<String>, path: Option<PathBuf>) {
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &path {
        Some(p) => match open(p).await {
            Some(f) => Box::new(f),
            None => return,
        },
        None => Box::new(tokio::io::stdout()),
    };
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let reopen = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = rx.recv() => {
                let Some(line) = line else { break };
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                while let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(more.as_bytes());
                    buf.push(b'\n');
                    if buf.len() > 60 * 1024 {
                        break;
                    }
                }
                if out.write_all(&buf).await.is_err() || out.flush().await.is_err() {
                    tracing::warn!("writing the access log failed");
                }
                buf.clear();
            }
            _ = reopen => {
                if let Some(p) = &path
                    && let Some(f) = open(p).await
                {
                    out = Box::new(f);
                    tracing::info!(path = %p.display(), "access log reopened");
                }
            }
        }
    }
    let _ = out.flush().await;
}

/// Escapes a client-controlled string for a quoted log field.
fn escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// Wraps every request: the client context is computed once here and reused by the
/// handlers; the line is formatted after the response head is known.
pub async fn middleware(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
    else {
        return next.run(req).await;
    };
    let head = crate::head::Head::scan(req.headers());
    let Some((pending, ctx)) = Pending::begin(&state, peer, &req, &head) else {
        return next.run(req).await;
    };
    req.extensions_mut().insert(ctx);
    let resp = next.run(req).await;
    pending.finish(&state, &resp);
    resp
}

/// One request's line, begun when the request arrives and written when its answer is
/// known; the server's fast path for forward auth logs through it too.
pub(crate) struct Pending {
    started: Instant,
    at: usher_core::Timestamp,
    ip: std::net::IpAddr,
    method: http::Method,
    uri: String,
    version: http::Version,
    referer: String,
    user_agent: String,
}

impl Pending {
    /// `None` when the access log is off; else the line begun and the request's client.
    pub(crate) fn begin<B>(
        state: &AppState,
        peer: SocketAddr,
        req: &http::Request<B>,
        head: &crate::head::Head<'_>,
    ) -> Option<(Self, ClientContext)> {
        state.access_log.as_ref()?;
        let ctx = ClientContext::new(state, peer, head, req.uri());
        let pending = Self {
            started: Instant::now(),
            at: state.engine.clock().now(),
            ip: ctx.ip(),
            method: req.method().clone(),
            uri: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            version: req.version(),
            referer: req
                .headers()
                .get(header::REFERER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
            user_agent: ctx.user_agent.clone(),
        };
        Some((pending, ctx))
    }

    pub(crate) fn finish(self, state: &AppState, resp: &Response) {
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let info = resp.extensions().get::<AccessInfo>();
        self.finish_with(state, resp.status().as_u16(), bytes, info);
    }

    /// [`Pending::finish`] from what the answer was: its status, its length (`-` when
    /// unknown) and who it was for.
    pub(crate) fn finish_with(
        self,
        state: &AppState,
        status: u16,
        bytes: &str,
        info: Option<&AccessInfo>,
    ) {
        let Some(log) = &state.access_log else {
            return;
        };
        let Self {
            started,
            at,
            ip,
            method,
            uri,
            version,
            referer,
            user_agent: ua,
        } = self;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        let user = info.and_then(|i| i.user.as_ref()).map(Username::as_str);
        let session = info.map(|i| i.session.as_str());
        let line = if log.json {
            serde_json::json!({
                "time": at.to_string(),
                "client_ip": ip.to_string(),
                "user": user,
                "method": method.as_str(),
                "uri": uri,
                "protocol": format!("{version:?}"),
                "status": status,
                "bytes": bytes.parse::<u64>().ok(),
                "referer": referer,
                "user_agent": ua,
                "session": session,
                "duration_ms": (millis * 1000.0).round() / 1000.0,
            })
            .to_string()
        } else {
            let mut l = String::with_capacity(256);
            let time = at.strftime("%d/%b/%Y:%H:%M:%S %z");
            let _ = write!(l, "{ip} - {} [{time}] \"", user.unwrap_or("-"));
            escape(&mut l, method.as_str());
            l.push(' ');
            escape(&mut l, &uri);
            let _ = write!(l, " {version:?}\" {status} {bytes} \"");
            escape(&mut l, &referer);
            l.push_str("\" \"");
            escape(&mut l, &ua);
            let _ = write!(l, "\" {} {millis:.3}ms", session.unwrap_or("-"));
            l
        };
        log.send(line);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_forges_no_lines() {
        let mut out = String::new();
        super::escape(&mut out, "a\"b\\c\r\n[ERROR] fake\u{1b}[31mé");
        assert_eq!(out, "a\\\"b\\\\c\\x0D\\x0A[ERROR] fake\\x1B[31m\\xC3\\xA9");
    }
}
