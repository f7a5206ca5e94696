//! The server's connections: the header-read timeout (slowloris) and the graceful drain
//! at shutdown, with nothing shared between connections on the request path.
//!
//! hyper's own header-read timeout makes a timer per request and drops it once the head
//! is read: two trips through the runtime's one timer-wheel lock per request, and a
//! lookup of the runtime handle (issue 9: ~1.5% of a forward-auth request's CPU). And
//! hyper-util's `GracefulShutdown` has every connection poll one shared watch channel on
//! every wake, taking that channel's mutex. Here each connection owns its state; a sweep
//! every eighth of the timeout (every quarter second at most) closes the connections that
//! have waited too long for a request head, and the shared list is touched only when a
//! connection opens or closes, and by the sweep.

use futures_util::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A connection that can be asked to finish its request in flight and close: hyper's
/// (through hyper-util's trait, which is sealed), or a test's.
pub(crate) trait Drain: Future {
    fn drain(self: Pin<&mut Self>);
}

impl<C: hyper_util::server::graceful::GracefulConnection> Drain for C {
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The connections being served.
pub(crate) struct Connections {
    shared: Arc<Shared>,
}

struct Shared {
    open: Mutex<Open>,
    /// Told when the last connection closes during a shutdown.
    closed: Notify,
    /// How long a connection may wait for a request head (between requests too).
    timeout_ms: u64,
    /// Milliseconds since `epoch`, as of the last sweep: the request path reads this
    /// instead of the clock.
    now_ms: AtomicU64,
    /// tokio's clock, so that a test can pause it.
    epoch: Instant,
}

#[derive(Default)]
struct Open {
    next: u64,
    conns: HashMap<u64, Arc<Conn>>,
    closing: bool,
}

/// One connection's state, written by its own task and read by the sweep.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    /// Asked to finish what it is doing and close (shutdown).
    stop: AtomicBool,
    /// The sweep found it waiting too long; its own poll decides (see [`Watched`]).
    expire: AtomicBool,
    waker: AtomicWaker,
    /// Requests received whose answers are not yet fully sent.
    in_flight: AtomicU32,
    /// When it began waiting for a request head, in `now_ms` time (while none is in flight).
    waiting_since: AtomicU64,
}

fn lock(m: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    // Nothing here leaves the list half-changed; a panicked holder's list is whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
}

impl Conn {
    fn wake(&self) {
        self.waker.wake();
    }

    /// Waiting for a request head for longer than the timeout.
    fn overdue(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self
                .shared
                .now_ms()
                .saturating_sub(self.waiting_since.load(Ordering::Relaxed))
                >= self.shared.timeout_ms
    }

    /// The server is shutting down: close once the request in flight is answered.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// A request head has arrived: the connection is busy until the returned guard is
    /// dropped — with the answer's body, once hyper has sent it all (a long stream is
    /// not a slow client), or with the request's future if it is abandoned.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// See [`Conn::begin`].
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        // Stamped before the count drops, so the sweep never sees "idle" with a stale
        // stamp from before this request.
        conn.waiting_since
            .store(conn.shared.now_ms(), Ordering::Relaxed);
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connections {
    /// `header_read_timeout`: how long a connection may take to send a request head,
    /// and how long a kept-alive connection may sit idle.
    pub(crate) fn new(header_read_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                open: Mutex::default(),
                closed: Notify::new(),
                timeout_ms: u64::try_from(header_read_timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
                now_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// Registers a new connection; serve it with [`Opened::watch`].
    pub(crate) fn open(&self) -> Opened {
        let shared = &self.shared;
        let conn = Arc::new(Conn {
            shared: shared.clone(),
            stop: AtomicBool::new(false),
            expire: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            in_flight: AtomicU32::new(0),
            waiting_since: AtomicU64::new(shared.now_ms()),
        });
        let id = {
            let mut open = lock(&shared.open);
            if open.closing {
                conn.stop.store(true, Ordering::Release);
            }
            open.next += 1;
            let id = open.next;
            open.conns.insert(id, conn.clone());
            id
        };
        Opened(Registered { conn, id })
    }

    /// Closes the connections that have waited too long for a request head, looking
    /// every eighth of the timeout (every quarter second at most), until dropped. Run it
    /// beside the accept loop.
    pub(crate) async fn sweep(&self) {
        let shared = &self.shared;
        let tick = Duration::from_millis((shared.timeout_ms / 8).clamp(10, 250));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = u64::try_from(shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            shared.now_ms.store(now, Ordering::Relaxed);
            let open = lock(&shared.open);
            for conn in open.conns.values() {
                if conn.overdue() {
                    conn.expire.store(true, Ordering::Release);
                    conn.wake();
                }
            }
        }
    }

    /// Asks every connection to close once its request in flight is answered, and
    /// completes when all have closed.
    pub(crate) async fn shutdown(&self) {
        {
            let mut open = lock(&self.shared.open);
            open.closing = true;
            for conn in open.conns.values() {
                conn.stop.store(true, Ordering::Release);
                conn.wake();
            }
        }
        loop {
            let closed = self.shared.closed.notified();
            tokio::pin!(closed);
            // Registered before the check: a close in between still wakes us.
            closed.as_mut().enable();
            if lock(&self.shared.open).conns.is_empty() {
                return;
            }
            closed.await;
        }
    }
}

/// A registered connection, not yet being served.
pub(crate) struct Opened(Registered);

impl Opened {
    /// The state its requests mark themselves busy on ([`Conn::begin`]).
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.0.conn
    }

    /// Serves `conn` until it ends (`Some` of its result), is closed for waiting too
    /// long for a request head (`None`), or has drained after a shutdown.
    pub(crate) fn watch<C: Drain>(self, conn: C) -> Watched<C> {
        Watched {
            inner: Box::pin(conn),
            stopping: false,
            registered: self.0,
        }
    }
}

/// A connection on the list, taken off when dropped (with its future, however it ended).
struct Registered {
    conn: Arc<Conn>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let shared = &self.conn.shared;
        let mut open = lock(&shared.open);
        open.conns.remove(&self.id);
        if open.closing && open.conns.is_empty() {
            shared.closed.notify_waiters();
        }
    }
}

/// A connection served under [`Connections`].
pub(crate) struct Watched<C> {
    inner: Pin<Box<C>>,
    stopping: bool,
    registered: Registered,
}

impl<C: Drain> Future for Watched<C> {
    type Output = Option<C::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let conn = &this.registered.conn;
        // This connection's own waker slot: no other connection's poll touches it.
        conn.waker.register(cx.waker());
        if !this.stopping && conn.stop.load(Ordering::Acquire) {
            this.stopping = true;
            this.inner.as_mut().drain();
        }
        if let Poll::Ready(out) = this.inner.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        // Decided here, after the connection has read what it could: a head that
        // arrived in time has begun a request, and the connection is no longer overdue.
        if conn.expire.swap(false, Ordering::AcqRel) && conn.overdue() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// An answer's body that keeps its connection busy until hyper has sent it all.
pub(crate) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that never ends by itself, and closes once asked to drain.
    #[derive(Default)]
    struct Idle {
        draining: bool,
    }

    impl Future for Idle {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.draining {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Drain for Idle {
        fn drain(mut self: Pin<&mut Self>) {
            self.draining = true;
        }
    }

    fn long() -> Connections {
        Connections::new(Duration::from_secs(3600))
    }

    #[tokio::test]
    async fn shutdown_drains_every_connection_and_waits_for_all() {
        let conns = long();
        let tasks: Vec<_> = (0..50)
            .map(|_| tokio::spawn(conns.open().watch(Idle::default())))
            .collect();
        tokio::task::yield_now().await;
        assert!(tasks.iter().all(|t| !t.is_finished()));
        tokio::time::timeout(Duration::from_secs(5), conns.shutdown())
            .await
            .expect("shutdown completes once every connection has closed");
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(()), "drained, not timed out");
        }
        assert!(lock(&conns.shared.open).conns.is_empty());
    }

    #[tokio::test]
    async fn shutdown_waits_for_a_connection_that_is_slow_to_close() {
        /// Closes only after a second drain-time poll, like a request still in flight.
        struct Slow(u8);
        impl Future for Slow {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                match self.0 {
                    0 => Poll::Pending,
                    1 => {
                        self.0 = 2;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    _ => Poll::Ready(()),
                }
            }
        }
        impl Drain for Slow {
            fn drain(mut self: Pin<&mut Self>) {
                self.0 = 1;
            }
        }
        let conns = long();
        let task = tokio::spawn(conns.open().watch(Slow(0)));
        tokio::task::yield_now().await;
        tokio::time::timeout(Duration::from_secs(5), conns.shutdown())
            .await
            .expect("shutdown completes once the slow connection has closed");
        assert!(task.is_finished());
    }

    #[tokio::test]
    async fn a_connection_opened_after_shutdown_began_is_drained_at_once() {
        let conns = long();
        conns.shutdown().await;
        tokio::time::timeout(Duration::from_secs(5), conns.open().watch(Idle::default()))
            .await
            .expect("drained on its first poll");
    }

    #[tokio::test]
    async fn shutdown_with_no_connections_returns() {
        tokio::time::timeout(Duration::from_secs(5), long().shutdown())
            .await
            .unwrap();
    }

    /// The sweep's time is tokio's: paused, it moves only when the test advances it.
    #[tokio::test(start_paused = true)]
    async fn a_connection_waiting_too_long_for_a_head_is_closed_and_a_busy_one_is_not() {
        let conns = Arc::new(Connections::new(Duration::from_secs(10)));
        let sweeping = tokio::spawn({
            let conns = conns.clone();
            async move { conns.sweep().await }
        });
        let idle = tokio::spawn(conns.open().watch(Idle::default()));
        let busy_conn = conns.open();
        let in_flight = busy_conn.conn().begin();
        let busy = tokio::spawn(busy_conn.watch(Idle::default()));

        tokio::time::sleep(Duration::from_millis(9_500)).await;
        assert!(!idle.is_finished(), "closed before its timeout");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(idle.await.unwrap(), None, "closed for waiting too long");

        // A request in flight for longer than the timeout (a long answer) keeps its
        // connection; once it is answered, the connection has the whole timeout again.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!busy.is_finished());
        drop(in_flight);
        tokio::time::sleep(Duration::from_millis(9_500)).await;
        assert!(
            !busy.is_finished(),
            "the wait began when the answer was sent"
        );
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(busy.await.unwrap(), None);
        sweeping.abort();
    }
}
