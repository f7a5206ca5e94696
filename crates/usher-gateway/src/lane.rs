//! The fast lane: forward-auth requests answered straight off the socket, ahead of
//! hyper. nginx, Traefik and Caddy ask `/auth/request` or `/auth/forward` once for every
//! request of the app they guard, on kept-alive connections that carry nothing else; for
//! those hyper's own work — its dispatcher, the request and response it builds, its
//! buffers — was half of what a request cost Usher's process in user time (issue 9:
//! forward auth at 0.78 × the bare hyper server's requests/s).
//!
//! The lane takes only what it can answer without doubt: an HTTP/1.1 head that
//! `httparse` (hyper's own parser) reads whole, a forward-auth path, no body (no
//! `Content-Length` but 0, no `Transfer-Encoding`), no `Upgrade` or `Expect`, and a
//! cookie naming a session in memory. On anything else — a request it cannot decide
//! without waiting, a malformed head, HTTP/1.0, HTTP/2's preface, Usher's own pages —
//! it hands the connection, with every byte it has read and not answered, to hyper for
//! the rest of the connection's life: no request is answered two ways, and hyper
//! answers what is malformed as it always did.

use crate::app::AppState;
use crate::connections::Conn;
use crate::forward::{Decision, Endpoint};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
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
            match take(&mut buf, &state) {
                Taken::Partial if buf.len() < MAX_HEAD => break,
                Taken::Partial | Taken::NotOurs => {
                    stream.write_all(&out).await?;
                    return Ok(Exit::HandOver(Prefixed { buf, io: stream }));
                }
                Taken::Ours(taken) => {
                    // Busy from here until its answer is written (see `Conn::begin`).
                    let busy = conn.begin();
                    let Some((pending, decision)) = taken.decide(&state, peer) else {
                        drop(busy);
                        taken.put_back(&mut buf);
                        stream.write_all(&out).await?;
                        return Ok(Exit::HandOver(Prefixed { buf, io: stream }));
                    };
                    match decision {
                        // The common answer, from the identity cache: no map, no response.
                        Decision::Pass {
                            identity,
                            set_cookie: None,
                        } => {
                            write_pass(&mut out, &identity);
                            // Logged as `finish` logs the same answer made as a
                            // response: its length unknown to the log (`-`).
                            if let Some(p) = pending {
                                let info = crate::access_log::AccessInfo::of(&identity);
                                p.finish_with(&state, 200, "-", info.as_ref());
                            }
                        }
                        other => {
                            let resp = other.into_response(&state);
                            let resp =
                                crate::server::finish(&state, pending, taken.head_only, resp);
                            write_response(&mut out, resp, taken.head_only).await;
                        }
                    }
                    in_flight.push(busy);
                    if taken.close {
                        close = true;
                        break;
                    }
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
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
    endpoint: Endpoint,
    head_only: bool,
    close: bool,
}

impl Parsed {
    /// Puts the head back in front of what follows it, for hyper.
    fn put_back(self, buf: &mut BytesMut) {
        put_back(&self.head, buf);
    }

    /// The decision, when it can be made without waiting; `None` (nothing counted) when
    /// not.
    fn decide(
        &self,
        state: &AppState,
        peer: SocketAddr,
    ) -> Option<(Option<crate::access_log::Pending>, Decision)> {
        crate::server::forward_auth_now(state, peer, &self.req, self.endpoint)
    }
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
    let Some(rest) = path
        .split('?')
        .next()
        .and_then(|p| p.strip_prefix(state.settings.prefix.as_str()))
    else {
        return Taken::NotOurs;
    };
    let Some(endpoint) = Endpoint::named(rest) else {
        return Taken::NotOurs;
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
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
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
        endpoint,
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
fn write_pass(out: &mut Vec<u8>, identity: &crate::gate::Identity) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    crate::identity::write_answer(out, identity);
    out.extend_from_slice(b"content-length: 0\r\ndate: ");
    date(out);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends `resp` as HTTP/1.1 to `out`: its headers, `Content-Length` and `Date` as
/// hyper writes them, and its body (none for HEAD, its length kept).
async fn write_response(out: &mut Vec<u8>, resp: Response, head_only: bool) {
    let (parts, body) = resp.into_parts();
    // Usher's own answers: whole in memory, so this does not wait (and the common one,
    // a pass, has no body at all).
    let body = if body.size_hint().exact() == Some(0) {
        Bytes::new()
    } else {
        body.collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // A HEAD answer keeps the length its GET would have (see the server's `finish`).
    let mut length = body.len();
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            if head_only
                && name == http::header::CONTENT_LENGTH
                && let Some(n) = value.to_str().ok().and_then(|v| v.parse().ok())
            {
                length = n;
            }
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    date(out);
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
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
