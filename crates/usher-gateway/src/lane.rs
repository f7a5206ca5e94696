//! The fast lane: requests answered straight off the socket, ahead of hyper. nginx,
//! Traefik and Caddy ask `/auth/request` or `/auth/forward` once for every request of
//! the app they guard, on kept-alive connections that carry nothing else, and as a
//! reverse proxy Usher carries every request of the app; for those hyper's own work —
//! its dispatcher, the request and response it builds, its buffers — was half of what a
//! forward-auth request cost Usher's process in user time (issue 9: forward auth at
//! 0.78 × the bare hyper server's requests/s).
//!
//! The lane takes only what it can answer without doubt: an HTTP/1.1 head that
//! `httparse` (hyper's own parser) reads whole, an origin-form path that is a
//! forward-auth endpoint or outside Usher's prefix, no body (no `Content-Length` but 0,
//! no `Transfer-Encoding`), no `Upgrade` or `Expect`, and a cookie naming a session in
//! memory. On anything else — a request it cannot decide without waiting, a malformed
//! head, HTTP/1.0, HTTP/2's preface, Usher's own pages — it hands the connection, with
//! every byte it has read and not answered, to hyper for the rest of the connection's
//! life: no request is answered two ways, and hyper answers what is malformed as it
//! always did. What the lane answers it writes as hyper would ([`write_response`]).
//!
//! While the upstream is waited for, the lane does not read from the client: a client
//! that leaves is noticed when its answer is written, so a long poll whose client left
//! holds its upstream connection until the app answers.

use crate::app::AppState;
use crate::connections::Conn;
use crate::forward::{Decision, Endpoint};
use crate::server::Early;
use crate::upstream::wire;
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The most headers a request in the lane may have; more go to hyper.
const MAX_HEADERS: usize = 48;
/// A head not whole by this many bytes goes to hyper, which reads on up to its own
/// limit and answers 431 past it.
const MAX_HEAD: usize = 16 * 1024;
/// Room made in the read buffer before each read.
const READ_BUF: usize = 8 * 1024;

/// How the lane left a connection.
pub(crate) enum Exit {
    /// Closed: by the client, after `Connection: close`, or for the server's drain.
    Closed,
    /// For hyper, with what was read and not answered.
    HandOver(Prefixed),
}

/// Serves `stream` in the lane for as long as it can.
pub(crate) async fn serve(
    mut stream: TcpStream,
    state: Arc<AppState>,
    peer: SocketAddr,
    conn: Arc<Conn>,
) -> io::Result<Exit> {
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    // The requests answered in `out` and not yet written: busy until then.
    let mut in_flight = Vec::new();
    loop {
        // Every whole request already read, answered in order (pipelining).
        let mut close = false;
        loop {
            if buf.is_empty() {
                break;
            }
            let taken = match take(&mut buf, &state) {
                Taken::Partial if buf.len() < MAX_HEAD => break,
                Taken::Partial | Taken::NotOurs => {
                    stream.write_all(&out).await?;
                    return Ok(Exit::HandOver(Prefixed { buf, io: stream }));
                }
                Taken::Ours(taken) => taken,
            };
            // Busy from here until its answer is written (see `Conn::begin`).
            let busy = conn.begin();
            let ending = match answer(taken, &state, peer, &mut stream, &mut out).await? {
                Ok(ending) => ending,
                Err(head) => {
                    // Not decided without waiting: nothing was counted, and hyper takes
                    // it from its head.
                    drop(busy);
                    put_back(&head, &mut buf);
                    stream.write_all(&out).await?;
                    return Ok(Exit::HandOver(Prefixed { buf, io: stream }));
                }
            };
            in_flight.push(busy);
            state.engine.metrics().fast_lane.inc();
            if ending == Ending::Close {
                close = true;
                break;
            }
        }
        flush(&mut stream, &mut out).await?;
        in_flight.clear();
        if close {
            let _ = stream.shutdown().await;
            return Ok(Exit::Closed);
        }
        // The next bytes; a drain closes a connection between requests, as hyper does.
        if buf.capacity() - buf.len() < READ_BUF / 4 {
            buf.reserve(READ_BUF);
        }
        let n = poll_fn(|cx| {
            if buf.is_empty() && conn.stopping() {
                return Poll::Ready(Ok(0));
            }
            poll_read(&mut stream, &mut buf, cx)
        })
        .await?;
        if n == 0 {
            // The client closed (or the drain): a partial head left behind is dropped,
            // as hyper drops one.
            return Ok(Exit::Closed);
        }
    }
}

/// Answers one request the lane took, into `out` (or through it onto `stream`, for an
/// answer that streams). `Err`: it cannot be decided without waiting — nothing was
/// counted or written, and its head is given back.
async fn answer(
    taken: Parsed,
    state: &Arc<AppState>,
    peer: SocketAddr,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
) -> io::Result<Result<Ending, Bytes>> {
    let Parsed {
        head,
        req,
        route,
        head_only,
        close,
    } = taken;
    let resp = match route {
        Route::ForwardAuth(endpoint) => {
            let Some((pending, decision)) =
                crate::server::forward_auth_now(state, peer, &req, endpoint)
            else {
                return Ok(Err(head));
            };
            match decision {
                // The common answer, from the identity cache: no map, no response.
                Decision::Pass {
                    identity,
                    set_cookie: None,
                } => {
                    write_pass(out, &identity, close);
                    // Logged as `finish` logs the same answer made as a response: its
                    // length unknown to the log (`-`).
                    if let Some(p) = pending {
                        let info = crate::access_log::AccessInfo::of(&identity);
                        p.finish_with(state, 200, "-", info.as_ref());
                    }
                    return Ok(Ok(Ending::after(close)));
                }
                other => {
                    let resp = other.into_response(state);
                    crate::server::finish(state, pending, head_only, resp)
                }
            }
        }
        Route::Gate => {
            // With the body it does not have (an empty one is no allocation).
            let req = req.map(|()| axum::body::Body::empty());
            match crate::server::gate_now(state, peer, req) {
                Early::Later(_) => return Ok(Err(head)),
                Early::Answered(resp) => resp,
                Early::Forwarding(forwarding, pending, _) => {
                    // What is answered already goes out before the wait.
                    flush(stream, out).await?;
                    let resp = forwarding.send(state).await;
                    crate::server::finish(state, pending, head_only, resp)
                }
            }
        }
    };
    // The request's values, slices of `head`, are gone: so is `head` before the buffer
    // is read into again.
    drop(head);
    write_response(stream, out, resp, head_only, close)
        .await
        .map(Ok)
}

fn poll_read(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    // Through `AsyncRead`: a read that leaves room tells tokio the socket is drained,
    // so the next wait costs no read that says EAGAIN.
    let mut read = std::pin::pin!(tokio::io::AsyncReadExt::read_buf(stream, buf));
    read.as_mut().poll(cx)
}

/// What [`take`] made of the buffer's next request. (Returned on the stack and used at
/// once: boxing the request would cost an allocation per request.)
#[allow(clippy::large_enum_variant)]
enum Taken {
    Partial,
    NotOurs,
    Ours(Parsed),
}

/// A request the lane takes, split off the buffer.
struct Parsed {
    /// The head's bytes, which the request's values are slices of.
    head: Bytes,
    req: Request<()>,
    route: Route,
    head_only: bool,
    close: bool,
}

/// The requests the lane answers: those the server answers without the router.
#[derive(Clone, Copy)]
enum Route {
    ForwardAuth(Endpoint),
    /// The guarded app's own, through the gate to the reverse proxy (or the demo page).
    Gate,
}

/// Takes the next request head off `buf` if the lane can take it (and leaves `buf`
/// as it was if not).
fn take(buf: &mut BytesMut, state: &AppState) -> Taken {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Taken::Partial,
        Err(_) => return Taken::NotOurs,
    };
    let (Some(method), Some(path), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Taken::NotOurs;
    };
    // Origin form only: an absolute URI (or `*`) goes to hyper, which reads it as it
    // always did.
    if !path.starts_with('/') {
        return Taken::NotOurs;
    }
    // Routed on the path as `http::Uri` reads it (before `?`, and before a `#` that
    // httparse lets through), as the server routes what hyper reads.
    let route_path = path.split(['?', '#']).next().unwrap_or(path);
    let route = match crate::server::Direct::of(&state.settings.prefix, route_path) {
        Some(crate::server::Direct::ForwardAuth(endpoint)) => Route::ForwardAuth(endpoint),
        Some(crate::server::Direct::Gate) => Route::Gate,
        None => return Taken::NotOurs,
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Taken::NotOurs;
    };
    if method == Method::CONNECT {
        return Taken::NotOurs;
    }
    // Checked before anything is built: most of what is not the lane's goes here.
    let mut close = false;
    for h in parsed.headers.iter() {
        let name = h.name.as_bytes();
        // No body, and nothing that changes what the connection is.
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
            || (name.eq_ignore_ascii_case(b"content-length") && h.value.trim_ascii() != b"0")
        {
            return Taken::NotOurs;
        }
        if name.eq_ignore_ascii_case(b"connection") {
            for token in wire::elements(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    return Taken::NotOurs;
                }
            }
        }
    }
    // The values are slices of the head, as hyper makes them: no copies. They are all
    // dropped before the buffer is read into again, so that it is reused.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let path_at = at(path.as_bytes());
    let count = parsed.headers.len();
    let mut fields = [((0, 0), (0, 0)); MAX_HEADERS];
    for (f, h) in fields.iter_mut().zip(parsed.headers.iter()) {
        *f = (at(h.name.as_bytes()), at(h.value));
    }
    let head = buf.split_to(len).freeze();
    let slice = |(from, n): (usize, usize)| head.slice(from..from + n);
    let built = (|| {
        let mut map = HeaderMap::with_capacity(count);
        for &(name, value) in &fields[..count] {
            let name = HeaderName::from_bytes(&slice(name)).ok()?;
            map.append(name, HeaderValue::from_maybe_shared(slice(value)).ok()?);
        }
        Some((map, Uri::from_maybe_shared(slice(path_at)).ok()?))
    })();
    let Some((map, uri)) = built else {
        // What httparse reads and `http` does not (a path with `{`, say): hyper answers
        // it.
        put_back(&head, buf);
        return Taken::NotOurs;
    };
    let head_only = method == Method::HEAD;
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = map;
    Taken::Ours(Parsed {
        head,
        req,
        route,
        head_only,
        close,
    })
}

/// Puts a head split off `buf` back in front of it (a rare path: a copy).
fn put_back(head: &Bytes, buf: &mut BytesMut) {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(head);
    whole.extend_from_slice(buf);
    *buf = whole;
}

/// Appends a pass for `identity`: what [`write_response`] writes of the answer
/// `forward::Decision::into_response` makes of it (the same headers, from the same
/// cache, in the same order; a test holds them to it).
fn write_pass(out: &mut Vec<u8>, identity: &crate::gate::Identity, close: bool) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    crate::identity::write_answer(out, identity);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"content-length: 0\r\ndate: ");
    date(out);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Whether a connection carries on after an answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    KeepAlive,
    /// The request or the answer said `Connection: close`.
    Close,
}

impl Ending {
    /// After a request that asked to `close`, or not.
    fn after(close: bool) -> Self {
        if close { Self::Close } else { Self::KeepAlive }
    }
}

/// How an answer's body is framed on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    Length(u64),
    Chunked,
}

/// Past this many bytes waiting in `out`, a body's next piece waits for them to go.
const FLUSH_AT: usize = 64 * 1024;

/// Writes `resp` as HTTP/1.1, as hyper's server writes it — the same status line,
/// headers in the same order, the same framing (`Content-Length` when the length is
/// known, chunked when not, no body for HEAD, 204 and 304), a `Date` — so that an
/// answer reads the same whichever of the two sent it (a test compares them). Into
/// `out` while the body is at hand (Usher's own answers, and an upstream's whole answer
/// read with its head); a body still arriving goes out piece by piece as it comes, so
/// that a stream (server-sent events, a download) is not held back. `close`: the
/// request asked to close, which the answer then says.
async fn write_response(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    resp: Response,
    head_only: bool,
    close: bool,
) -> io::Result<Ending> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    if status.is_informational() {
        // Never made here (the lane takes no upgrade); hyper answers one with a 500.
        out.extend_from_slice(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\ndate: ");
        date(out);
        out.extend_from_slice(b"\r\n\r\n");
        return Ok(Ending::Close);
    }
    // What the body says of its length: none at all, exactly so much, or unknown.
    let length = if body.is_end_stream() {
        None
    } else {
        Some(body.size_hint().exact())
    };
    let can_have_length = !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let can_have_body = can_have_length && !head_only;
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut framing: Option<Framing> = None;
    let (mut wrote_date, mut ending) = (false, Ending::after(close));
    let mut connection_written = false;
    for (name, value) in &parts.headers {
        match *name {
            header::CONTENT_LENGTH => {
                if framing.is_some() {
                    // A second value: hyper writes the first only.
                    continue;
                }
                match length {
                    Some(Some(n)) => framing = Some(Framing::Length(n)),
                    Some(None) => match wire::content_length(value.as_bytes()) {
                        Some(n) => framing = Some(Framing::Length(n)),
                        // A length that says nothing: nothing can be framed by it.
                        None => {
                            return Err(io::Error::other(
                                "an answer's Content-Length is not a number",
                            ));
                        }
                    },
                    // No body: the length of a HEAD answer stays, any other goes.
                    None if head_only => framing = Some(Framing::Length(0)),
                    None => continue,
                }
            }
            // Hop-by-hop, never in what Usher answers (the proxy removes an
            // upstream's): the framing is this writer's.
            header::TRANSFER_ENCODING | header::TRAILER => continue,
            header::CONNECTION if !std::mem::replace(&mut connection_written, true) => {
                // One line for every value, as hyper writes it.
                let values = parts.headers.get_all(name);
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                let mut said_close = false;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(v.as_bytes());
                    said_close |=
                        wire::elements(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close"));
                }
                if said_close {
                    ending = Ending::Close;
                } else if close {
                    out.extend_from_slice(b", close");
                }
                out.extend_from_slice(b"\r\n");
                continue;
            }
            header::CONNECTION => continue,
            header::DATE => wrote_date = true,
            _ => {}
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close && !connection_written {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let framing = match framing {
        Some(f) => f,
        None => match length {
            Some(None) if can_have_body => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            Some(None) => Framing::Length(0),
            None | Some(Some(0)) => {
                if can_have_body {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            Some(Some(n)) => {
                if can_have_length {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Framing::Length(n)
            }
        },
    };
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !can_have_body {
        return Ok(ending);
    }
    let mut sent = 0u64;
    loop {
        // A piece not yet here: what is waiting goes out first.
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush(stream, out).await?;
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        // A body that breaks off cannot be finished: the connection ends with it, and
        // the client sees an answer cut short, as from hyper.
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            Framing::Length(n) if sent > n => {
                return Err(io::Error::other(
                    "an answer's body is longer than its length",
                ));
            }
            Framing::Length(_) => out.extend_from_slice(&data),
            Framing::Chunked => {
                out.extend_from_slice(&wire::chunk_size_line(data.len()));
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            }
        }
        if out.len() >= FLUSH_AT {
            flush(stream, out).await?;
        }
    }
    match framing {
        Framing::Length(n) if sent < n => {
            return Err(io::Error::other(
                "an answer's body is shorter than its length",
            ));
        }
        Framing::Length(_) => {}
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
    }
    Ok(ending)
}

async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

thread_local! {
    /// The `Date` value of the current second, written once a second per thread.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends the HTTP date of now.
fn date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *text = httpdate::fmt_http_date(now);
            *at = secs;
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// A connection handed to hyper: the bytes the lane read and did not answer come
/// first, then the socket.
pub(crate) struct Prefixed {
    buf: BytesMut,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.buf.is_empty() {
            let n = this.buf.len().min(out.remaining());
            out.put_slice(&this.buf[..n]);
            this.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Lane = Pin<Box<dyn Future<Output = io::Result<Exit>> + Send>>;

/// A connection served in the lane, then by hyper (`serve`, given what the lane read)
/// if the lane hands it over; drained as hyper's is ([`crate::connections::Drain`]).
pub(crate) struct Connection<H, F> {
    phase: Phase<H>,
    serve: Option<F>,
    draining: bool,
}

enum Phase<H> {
    Lane(Lane),
    Hyper(Pin<Box<H>>),
    Done,
}

impl<H, F> Connection<H, F> {
    pub(crate) fn new(
        lane: impl Future<Output = io::Result<Exit>> + Send + 'static,
        serve: F,
    ) -> Self {
        Self {
            phase: Phase::Lane(Box::pin(lane)),
            serve: Some(serve),
            draining: false,
        }
    }
}

impl<H, F> Future for Connection<H, F>
where
    H: crate::connections::Drain<Output = Result<(), BoxError>>,
    F: FnOnce(Prefixed) -> H + Unpin,
{
    type Output = Result<(), BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Lane(lane) => {
                    let exit = ready!(lane.as_mut().poll(cx));
                    this.phase = Phase::Done;
                    match exit {
                        Ok(Exit::Closed) => return Poll::Ready(Ok(())),
                        Err(e) => return Poll::Ready(Err(e.into())),
                        Ok(Exit::HandOver(io)) => {
                            let Some(serve) = this.serve.take() else {
                                return Poll::Ready(Ok(()));
                            };
                            let mut hyper = Box::pin(serve(io));
                            // A drain asked while in the lane holds for hyper too.
                            if this.draining {
                                hyper.as_mut().drain();
                            }
                            this.phase = Phase::Hyper(hyper);
                        }
                    }
                }
                Phase::Hyper(hyper) => return hyper.as_mut().poll(cx),
                Phase::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<H, F> crate::connections::Drain for Connection<H, F>
where
    H: crate::connections::Drain<Output = Result<(), BoxError>>,
    F: FnOnce(Prefixed) -> H + Unpin,
{
    fn drain(mut self: Pin<&mut Self>) {
        self.draining = true;
        // The lane sees the drain itself (`Conn::stopping`) when it next waits.
        if let Phase::Hyper(hyper) = &mut self.phase {
            hyper.as_mut().drain();
        }
    }
}
