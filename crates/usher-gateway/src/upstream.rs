//! Kept-alive HTTP/1.1 connections to the upstream, each driven by the request that
//! uses it instead of a task of its own.
//!
//! hyper-util's pooled client runs every connection in a spawned task and hands each
//! request and response across a channel to it: three task wake-ups per proxied request,
//! often across the two cores (issue 9: the reverse proxy was 0.8 × nginx, whose one
//! event loop pays none of them). Here the request's own task polls the connection —
//! while it waits for the answer, and then from the response body, which the server
//! polls to send it on — and puts it back in the pool at the body's end. WebSocket
//! upgrades take a fresh connection of their own, run as a task (the tunnel outlives
//! the request).

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept at most per core; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused: upstreams close
/// idle connections themselves after a while, and a request should not find out.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the upstream: {0}")]
    Connect(#[source] std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("the upstream closed the connection without answering")]
    Closed,
}

struct Conn {
    send: http1::SendRequest<Body>,
    conn: http1::Connection<TokioIo<TcpStream>, Body>,
}

impl Conn {
    /// Whether a pooled connection can take a request now: it has not been closed by
    /// the upstream (polling reads the end of stream) and it wants a message. Polled
    /// with the caller's context, which polls it again while the request is sent.
    fn usable(&mut self, cx: &mut Context<'_>) -> bool {
        match self.conn.poll_without_shutdown(cx) {
            Poll::Ready(_) => false,
            Poll::Pending => matches!(self.send.poll_ready(cx), Poll::Ready(Ok(()))),
        }
    }
}

/// A connection lives in a box of its own: it is ~700 bytes (hyper's state and
/// buffers), and every request moved it — out of the pool, through the futures of
/// the send, into the answer's body and back — where a box moves a pointer (issue 9:
/// copying was a tenth of the reverse proxy's own work; boxed, a proxied request
/// costs 3% less CPU, `usher-bench --compare`).
type Boxed = Box<Conn>;

struct Idle {
    conn: Boxed,
    since: Instant,
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
    pub fn new(upstream: &Uri, threads: usize) -> Option<Arc<Self>> {
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
    fn take(&self) -> Option<Boxed> {
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

    fn put(&self, conn: Boxed) {
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

    async fn connect(&self) -> Result<Boxed, UpstreamError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Box::new(Conn { send, conn }))
    }

    /// A pooled connection that can take a request now.
    async fn take_usable(&self) -> Option<Boxed> {
        while let Some(mut c) = self.take() {
            if poll_fn(|cx| Poll::Ready(c.usable(cx))).await {
                return Some(c);
            }
        }
        None
    }

    /// Sends `req` (origin-form URI, `Host` set) and answers with the upstream's
    /// response, whose body drives the connection and returns it to the pool at its end.
    ///
    /// A pooled connection the upstream closed before the request left is not an error:
    /// the request, still whole, goes out once more on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let (mut conn, pooled) = match self.take_usable().await {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let resp = match attempt(&mut conn, req).await {
            Ok(resp) => resp,
            Err(Failed::Unsent(req, _)) if pooled => {
                conn = self.connect().await?;
                attempt(&mut conn, *req).await.map_err(Failed::into_error)?
            }
            Err(e) => return Err(e.into_error()),
        };
        Ok(resp.map(|body| {
            Body::new(Driven {
                body,
                conn: Some(conn),
                pool: self.clone(),
                conn_finished: false,
            })
        }))
    }

    /// A request that asks to upgrade (WebSocket): on a connection of its own, run as a
    /// task so that it can become the tunnel.
    pub async fn send_upgrade(
        &self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let Conn { mut send, conn } = *self.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended");
            }
        });
        Ok(send.send_request(req).await?)
    }
}

/// Why one attempt gave no answer.
enum Failed {
    /// The connection closed before the request left: it can be sent again.
    Unsent(Box<Request<Body>>, hyper::Error),
    Other(UpstreamError),
}

impl Failed {
    fn into_error(self) -> UpstreamError {
        match self {
            Self::Unsent(_, e) => e.into(),
            Self::Other(e) => e,
        }
    }
}

/// Sends `req` on `conn`, polling the connection until the answer's head is in.
async fn attempt(conn: &mut Conn, req: Request<Body>) -> Result<Response<Incoming>, Failed> {
    let Conn { send, conn } = conn;
    let mut answer = std::pin::pin!(send.try_send_request(req));
    let answered = poll_fn(|cx| {
        // The connection first: it writes the request and reads the answer, which the
        // answer's future then finds.
        let finished = conn.poll_without_shutdown(cx).is_ready();
        match answer.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            // The connection is done and no answer came: closed mid-request.
            Poll::Pending if finished => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match answered {
        Some(Ok(resp)) => Ok(resp),
        Some(Err(mut e)) => match e.take_message() {
            Some(req) => Err(Failed::Unsent(Box::new(req), e.into_error())),
            None => Err(Failed::Other(e.into_error().into())),
        },
        None => Err(Failed::Other(UpstreamError::Closed)),
    }
}

/// The upstream's response body, which polls its connection as it is read and hands
/// the connection back to the pool once the whole body has been read.
struct Driven {
    body: Incoming,
    conn: Option<Boxed>,
    pool: Arc<Pool>,
    /// The connection finished (closed, or an error): not polled again, not reused.
    conn_finished: bool,
}

impl Driven {
    fn release(&mut self) {
        if let Some(c) = self.conn.take()
            && !self.conn_finished
        {
            self.pool.put(c);
        }
    }
}

impl hyper::body::Body for Driven {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // The body first: a small answer's body came in with its head, and the
        // connection already handed it over — polling the connection then only finds
        // nothing to read (each poll runs hyper's whole dispatch loop: 7.8 socket reads
        // tried per proxied request, `usher-bench --instructions`). Only a body still
        // waiting needs the connection to read on (and to wake this task when it has).
        let mut frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending()
            && !this.conn_finished
            && let Some(c) = &mut this.conn
        {
            if c.conn.poll_without_shutdown(cx).is_ready() {
                this.conn_finished = true;
            }
            frame = Pin::new(&mut this.body).poll_frame(cx);
        }
        if let Poll::Ready(None) = frame {
            this.release();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Driven {
    /// A body the server never had to read (HEAD, 204, 304, an empty 200) still leaves
    /// its connection reusable; one dropped half-read does not (it is closed).
    fn drop(&mut self) {
        if hyper::body::Body::is_end_stream(&self.body) {
            self.release();
        }
    }
}
