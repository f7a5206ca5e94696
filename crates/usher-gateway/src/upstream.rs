//! Kept-alive HTTP/1.1 connections to the upstream, spoken by hand ([`wire`]) and
//! driven by the request that uses them instead of a task of their own.
//!
//! hyper-util's pooled client runs every connection in a spawned task and hands each
//! request and response across a channel to it: three task wake-ups per proxied request,
//! often across the two cores (issue 9: the reverse proxy was 0.8 × nginx, whose one
//! event loop pays none of them). hyper's own connection, polled by the request, cost
//! a third of a proxied request's instructions still. Here the request writes its head
//! in one system call, reads the answer's head, and the answer's body — which the server
//! polls to send it on — reads the rest and puts the connection back in the pool at
//! its end. A WebSocket upgrade takes a fresh connection, which becomes the tunnel.

pub mod wire;

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Response, StatusCode};
use hyper::body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wire::{Decoder, Parsed, RequestBody, ResponseHead, Step, WireError};

/// Idle connections kept at most per core; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused: upstreams close
/// idle connections themselves after a while, and a request should not find out.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Room made in a connection's buffer before each read.
const READ_BUF: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the upstream: {0}")]
    Connect(#[source] io::Error),
    #[error("the upstream connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("the upstream's answer is not HTTP/1.1 as Usher reads it: {0}")]
    Wire(#[from] WireError),
    #[error("the upstream closed the connection without answering")]
    Closed,
    #[error("the client's request body broke off: {0}")]
    ClientBody(axum::Error),
}

/// One connection, and what has been read from it but not yet used.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn open(authority: &str) -> Result<Self, UpstreamError> {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(READ_BUF),
        })
    }

    /// Whether an idle connection can take a request: nothing has arrived on it since
    /// its last answer — neither its end (the upstream closed it) nor bytes nobody
    /// asked for. The socket's readiness says so without a system call, mostly.
    fn usable(&mut self, cx: &mut Context<'_>) -> bool {
        match self.stream.poll_read_ready(cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read_buf(&mut self.buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Reads what has arrived into the buffer: `Ok(0)` at the connection's end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_BUF / 4 {
            self.buf.reserve(READ_BUF);
        }
        // Through `AsyncRead`, not `try_read_buf`: a read that leaves room in the
        // buffer tells tokio the socket is drained, so the next `usable` sees it idle
        // without asking the kernel. With `try_read_buf` the readiness outlived the
        // answer and every reuse cost a `recvfrom` that said EAGAIN (strace: 3 reads
        // per proxied request, nginx 2).
        std::pin::pin!(tokio::io::AsyncReadExt::read_buf(
            &mut self.stream,
            &mut self.buf
        ))
        .poll(cx)
    }

    /// Writes the request — its head, then its body if it has one — and reads the
    /// answer's head.
    async fn exchange(
        &mut self,
        req: &Outgoing,
        body: Option<Body>,
    ) -> Result<ResponseHead, Failure> {
        self.stream
            .write_all(&req.head)
            .await
            .map_err(Failure::Unsent)?;
        let Some(body) = body else {
            return self.read_head(req, Ok(())).await;
        };
        // The body goes out while the answer is watched for: an app may answer before
        // it has read the whole body (a 413, a 401) and then read no more of it, and a
        // proxy that only listens once it has written all would wait for ever.
        let written = {
            let Conn { stream, buf } = &mut *self;
            let (mut rd, mut wr) = stream.split();
            let write = write_body(&mut wr, body, req.body);
            tokio::pin!(write);
            loop {
                tokio::select! {
                    biased;
                    w = &mut write => break w,
                    r = tokio::io::AsyncReadExt::read_buf(&mut rd, buf) => match r {
                        Ok(n) if n > 0 => {
                            match wire::parse_response_head(buf, req.is_head, req.upgrade) {
                                // Answered before the body was all sent: what the app
                                // makes of the rest is unknown, so the connection is
                                // not used again.
                                Ok(Parsed::Head(mut head)) => {
                                    head.reusable = false;
                                    return Ok(head);
                                }
                                Ok(Parsed::Interim(len)) => buf.advance(len), // 100 Continue
                                Ok(Parsed::Partial) => {}
                                Err(e) => return Err(Failure::Other(e.into())),
                            }
                        }
                        // The app closed, or the connection failed, mid-body: what it
                        // said before that, if anything, is read below.
                        Ok(_) => break Err(UpstreamError::Closed),
                        Err(e) => break Err(e.into()),
                    },
                }
            }
        };
        // A body that cannot all be written may still have an answer (the upstream
        // refused it early, and closed): the answer is what the client gets.
        self.read_head(req, written).await
    }

    /// Reads the answer's head, after the request went out (`written`: whether its
    /// body went out whole).
    async fn read_head(
        &mut self,
        req: &Outgoing,
        written: Result<(), UpstreamError>,
    ) -> Result<ResponseHead, Failure> {
        // An interim answer (103) counts as an answer: the request reached the app.
        let mut interim = false;
        loop {
            match wire::parse_response_head(&mut self.buf, req.is_head, req.upgrade) {
                Ok(Parsed::Head(head)) => return Ok(head),
                Ok(Parsed::Interim(len)) => {
                    self.buf.advance(len);
                    interim = true;
                    continue;
                }
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(Failure::Other(e.into())),
            }
            let read = poll_fn(|cx| self.poll_fill(cx)).await;
            if matches!(read, Ok(n) if n > 0) {
                continue;
            }
            // The connection ended before a whole head.
            written.map_err(Failure::Other)?;
            let silent = !interim && self.buf.is_empty();
            return Err(match read {
                Ok(_) if silent => Failure::Unanswered,
                Err(e) if silent && e.kind() == io::ErrorKind::ConnectionReset => {
                    Failure::Unanswered
                }
                Ok(_) => Failure::Other(UpstreamError::Closed),
                Err(e) => Failure::Other(e.into()),
            });
        }
    }
}

/// Writes a request's body to `out`, framed as `framing` says.
async fn write_body(
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut body: Body,
    framing: RequestBody,
) -> Result<(), UpstreamError> {
    use http_body_util::BodyExt;
    let chunked = framing == RequestBody::Chunked;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(UpstreamError::ClientBody)?;
        // Trailers are not passed on (nor asked for: Usher removes `TE`).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let mut piece = wire::chunk_size_line(data.len())
                .chain(data)
                .chain(&b"\r\n"[..]);
            out.write_all_buf(&mut piece).await?;
        } else {
            out.write_all(&data).await?;
        }
    }
    if chunked {
        out.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// A request as it goes out: its head written ([`wire::HeadWriter`]), its body's
/// framing known.
pub struct Outgoing {
    head: BytesMut,
    body: RequestBody,
    /// Its method is idempotent (RFC 9110 §9.2.2): without a body, it may go out again
    /// when a kept-alive connection closed under it without a byte of answer.
    idempotent: bool,
    is_head: bool,
    upgrade: bool,
}

impl Outgoing {
    /// `head`: the request line and fields, written by the proxy; `upgrade`: it asks
    /// to switch protocols (WebSocket).
    pub fn new(head: wire::HeadWriter, method: &Method, body: &Body, upgrade: bool) -> Self {
        use hyper::body::Body as _;
        let framing = if body.is_end_stream() {
            RequestBody::Empty
        } else {
            match body.size_hint().exact() {
                Some(0) => RequestBody::Empty,
                Some(n) => RequestBody::Length(n),
                None => RequestBody::Chunked,
            }
        };
        Self {
            head: head.finish(method, framing),
            body: framing,
            idempotent: matches!(
                *method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            ),
            is_head: *method == Method::HEAD,
            upgrade,
        }
    }
}

/// Why an exchange gave no answer.
enum Failure {
    /// The request could not be written: the connection was closed before it left.
    Unsent(io::Error),
    /// Written, and the connection closed without a byte of answer.
    Unanswered,
    Other(UpstreamError),
}

impl From<Failure> for UpstreamError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unsent(e) => e.into(),
            Failure::Unanswered => Self::Closed,
            Failure::Other(e) => e,
        }
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A WebSocket's connection to the upstream once it answered 101, with the bytes it
/// sent after its answer's head.
pub struct Tunnel {
    pub stream: TcpStream,
    pub early: Bytes,
}

/// The connections to one upstream.
pub struct Pool {
    /// `host:port` to connect to.
    authority: String,
    /// The idle connections of each serving core ([`crate::cores`]), the last for
    /// requests served elsewhere: a connection's socket is registered with the event
    /// loop of the core that opened it, and used from another core every answer would
    /// be a wake-up across cores.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
}

impl Pool {
    /// `threads`: how many serving threads keep idle connections of their own.
    pub fn new(upstream: &http::Uri, threads: usize) -> Option<Arc<Self>> {
        let auth = upstream.authority()?;
        let authority = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
        Some(Arc::new(Self {
            authority,
            idle: (0..=threads).map(|_| Mutex::default()).collect(),
        }))
    }

    /// This core's idle connections.
    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let last = self.idle.len() - 1;
        let shard = crate::cores::current().map_or(last, |i| i.min(last));
        // The queue is consistent after any panic (a push or a pop), so a poisoned
        // lock is still a good one.
        self.idle[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Last in, first out: the warmest connection, and the cold ones age out. Aged
    /// ones are closed after the lock is let go (closing is a system call).
    fn take(&self) -> Option<Conn> {
        let mut aged = Vec::new();
        let found = {
            let mut idle = self.idle();
            loop {
                match idle.pop_back() {
                    Some(i) if i.since.elapsed() < IDLE_TIMEOUT => break Some(i.conn),
                    Some(i) => aged.push(i),
                    None => break None,
                }
            }
        };
        drop(aged);
        found
    }

    /// Back to the pool after a whole answer, when the connection can carry another.
    fn put(&self, conn: Conn) {
        let mut aged = Vec::new();
        let mut idle = self.idle();
        while idle
            .front()
            .is_some_and(|i| i.since.elapsed() >= IDLE_TIMEOUT)
        {
            aged.extend(idle.pop_front());
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle {
                conn,
                since: Instant::now(),
            });
            drop(idle);
        } else {
            drop(idle);
            drop(conn);
        }
        drop(aged);
    }

    /// A pooled connection that can take a request now.
    async fn take_usable(&self) -> Option<Conn> {
        while let Some(mut c) = self.take() {
            if poll_fn(|cx| Poll::Ready(c.usable(cx))).await {
                return Some(c);
            }
        }
        None
    }

    /// Sends `out` (and `body`, when it has one) and answers with the upstream's
    /// response, whose body reads the connection and returns it to the pool at its end.
    ///
    /// A pooled connection the upstream closed under the request is not an error when
    /// the request can safely go again ([`Outgoing::idempotent`]): it goes out once more
    /// on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        out: Outgoing,
        body: Body,
    ) -> Result<Response<Body>, UpstreamError> {
        let body = (out.body != RequestBody::Empty).then_some(body);
        let retry = body.is_none();
        let (mut conn, pooled) = match self.take_usable().await {
            Some(c) => (c, true),
            None => (Conn::open(&self.authority).await?, false),
        };
        let head = match conn.exchange(&out, body).await {
            Ok(head) => head,
            Err(Failure::Unsent(_)) if pooled && retry => self.again(&mut conn, &out).await?,
            Err(Failure::Unanswered) if pooled && retry && out.idempotent => {
                self.again(&mut conn, &out).await?
            }
            Err(f) => return Err(f.into()),
        };
        Ok(self.respond(conn, head))
    }

    async fn again(&self, conn: &mut Conn, out: &Outgoing) -> Result<ResponseHead, UpstreamError> {
        *conn = Conn::open(&self.authority).await?;
        Ok(conn.exchange(out, None).await?)
    }

    /// A request that asks to upgrade (WebSocket), on a connection of its own: the
    /// tunnel, when the upstream agrees (101).
    pub async fn send_upgrade(
        self: &Arc<Self>,
        out: Outgoing,
        body: Body,
    ) -> Result<(Response<Body>, Option<Tunnel>), UpstreamError> {
        let body = (out.body != RequestBody::Empty).then_some(body);
        let mut conn = Conn::open(&self.authority).await?;
        let head = conn.exchange(&out, body).await?;
        if head.status != StatusCode::SWITCHING_PROTOCOLS {
            return Ok((self.respond(conn, head), None));
        }
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        let tunnel = Tunnel {
            stream: conn.stream,
            early: conn.buf.freeze(),
        };
        Ok((resp, Some(tunnel)))
    }

    /// The answer to pass on. Its body, when all of it came in with the head (most
    /// answers), is taken at once and the connection goes straight back to the pool.
    fn respond(self: &Arc<Self>, mut conn: Conn, head: ResponseHead) -> Response<Body> {
        let ResponseHead {
            status,
            headers,
            body: kind,
            reusable,
        } = head;
        let mut decoder = Decoder::new(kind);
        let in_hand = decoder
            .remaining()
            .is_some_and(|n| conn.buf.len() as u64 >= n);
        let body = if in_hand {
            let body = match decoder.decode(&mut conn.buf) {
                Ok(Step::Data(bytes)) => Body::from(bytes),
                _ => Body::empty(),
            };
            self.finish(conn, reusable);
            body
        } else {
            Body::new(Streamed {
                conn: Some(conn),
                decoder,
                reusable,
                pool: self.clone(),
            })
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    /// A connection whose answer has been read whole: kept for the next request when
    /// it can carry one and nothing unasked-for followed the answer.
    fn finish(&self, conn: Conn, reusable: bool) {
        if reusable && conn.buf.is_empty() {
            self.put(conn);
        }
    }
}

/// An answer's body still arriving: read from the connection as the server asks for
/// it, the connection handed back to the pool once the whole body has been read (and
/// closed if the body is dropped half-read).
struct Streamed {
    conn: Option<Conn>,
    decoder: Decoder,
    reusable: bool,
    pool: Arc<Pool>,
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = &mut this.conn else {
                return Poll::Ready(None);
            };
            let step = match this.decoder.decode(&mut conn.buf) {
                Ok(Step::NeedMore) => match ready!(conn.poll_fill(cx)) {
                    Ok(0) => this
                        .decoder
                        .closed()
                        .map(|()| Step::Done)
                        .map_err(Into::into),
                    Ok(_) => continue,
                    Err(e) => Err(UpstreamError::Io(e)),
                },
                other => other.map_err(UpstreamError::from),
            };
            return Poll::Ready(match step {
                Ok(Step::Data(bytes)) => {
                    if this.decoder.is_done()
                        && let Some(conn) = this.conn.take()
                    {
                        this.pool.finish(conn, this.reusable);
                    }
                    Some(Ok(Frame::data(bytes)))
                }
                Ok(_) => {
                    if let Some(conn) = this.conn.take() {
                        this.pool
                            .finish(conn, this.reusable && this.decoder.is_done());
                    }
                    None
                }
                Err(e) => {
                    this.conn = None;
                    Some(Err(e))
                }
            });
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once an answer is read, the socket's readiness is spent: the pool's next
    /// `usable` check answers from it alone, without a read that says EAGAIN (with
    /// `try_read_buf` the readiness outlived the answer and every reuse asked the
    /// kernel). An upstream that closes still shows.
    #[tokio::test]
    async fn a_drained_connection_is_idle_without_another_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (conn, accepted) = tokio::join!(Conn::open(&addr), listener.accept());
        let (mut conn, (mut upstream, _)) = (conn.unwrap(), accepted.unwrap());
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        upstream.write_all(answer).await.unwrap();
        let n = poll_fn(|cx| conn.poll_fill(cx)).await.unwrap();
        assert_eq!(&conn.buf[..n], answer);
        conn.buf.clear();
        let ready = poll_fn(|cx| Poll::Ready(conn.stream.poll_read_ready(cx).is_ready())).await;
        assert!(!ready, "the readiness outlived the answer");
        assert!(poll_fn(|cx| Poll::Ready(conn.usable(cx))).await);
        drop(upstream);
        poll_fn(|cx| conn.stream.poll_read_ready(cx)).await.unwrap();
        assert!(
            !poll_fn(|cx| Poll::Ready(conn.usable(cx))).await,
            "a closed connection was taken for idle"
        );
    }
}
