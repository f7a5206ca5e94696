//! Serving threads (`server.threads`, off by default): one single-threaded runtime per
//! thread, each with its own event loop, and every connection served from start to end
//! on one of them, as nginx's workers.
//!
//! On tokio's work-stealing runtime the worker that reads a socket's readiness is often
//! not the one that runs the task, and an idle one is woken to steal it: cross-core
//! wake-ups on every request (issue 9). Here the accept loop hands each new connection
//! to the thread with the fewest open ones (once per connection, not per request), and
//! from then on its requests, its upstream connections ([`crate::upstream`] pools them
//! per thread) and their wake-ups stay on that thread: 3–4% less CPU per request
//! (`usher-bench --compare`). The price is the tail: a connection waits while its
//! thread's CPU is taken by something else, where the shared runtime moves the work to
//! a free CPU — at 42k req/s paced on 2 shared cores, p99 52 ms against 5.9 ms. Hence
//! opt-in, for machines that serve little else. (Pinning each thread to a CPU of its
//! own was tried and is worse: with the load generator busy on one of the two CPUs,
//! that CPU's thread fell behind and its connections had nowhere else to go — p50
//! 136 ms at 40k req/s paced, where the unpinned threads gave 1.4 ms.)
//!
//! The threads outlive the server's drain: a store connection opened from a request is
//! registered with that thread's event loop, and the final flush may still use it, so
//! they are stopped last.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// The index of the core this thread serves, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The core the calling thread serves, or `None` off the cores (the main runtime).
pub(crate) fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

struct Core {
    handle: Handle,
    /// Connections being served on this core.
    open: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The serving threads, stopped by [`Cores::stop`] (or, abruptly, when dropped).
pub(crate) struct Cores {
    cores: Vec<Core>,
    /// Where the search for the least busy core starts: ties go round the cores.
    next: AtomicUsize,
}

impl Cores {
    /// Starts `n` serving threads (at least one).
    pub(crate) fn start(n: usize) -> std::io::Result<Self> {
        let mut cores = Vec::with_capacity(n.max(1));
        for index in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("usher-core-{index}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(Some(index)));
                    // Parked here the runtime still runs its event loop and timers, and
                    // the tasks spawned onto it from the accept loop.
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            cores.push(Core {
                handle,
                open: Arc::default(),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Self {
            cores,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `serve` on the core with the fewest open connections, until it ends. It is
    /// first polled there, inside that core's runtime (where a socket it opens or
    /// adopts is registered).
    pub(crate) fn serve(&self, serve: impl Future<Output = ()> + Send + 'static) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.cores.len();
        let core = (0..n)
            .map(|i| &self.cores[(start + i) % n])
            .min_by_key(|c| c.open.load(Ordering::Relaxed))
            .unwrap_or(&self.cores[0]);
        let open = core.open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        let counted = Counted(open);
        core.handle.spawn(async move {
            let _counted = counted;
            serve.await;
        });
    }

    /// Stops every core (dropping what still runs on them) and waits for their threads.
    pub(crate) async fn stop(mut self) {
        let threads: Vec<_> = self
            .cores
            .iter_mut()
            .filter_map(|c| c.thread.take())
            .collect();
        // Dropped, the cores are told to stop.
        drop(self);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        for c in &mut self.cores {
            if let Some(s) = c.stop.take() {
                let _ = s.send(());
            }
        }
    }
}

/// One open connection on a core's count, until dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_least_busy_core_and_run_there() {
        let cores = Cores::start(2).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (hold, held) = tokio::sync::watch::channel(());
        // Three long connections: two cores, so the third joins one of the first two.
        for _ in 0..3 {
            let tx = tx.clone();
            let mut held = held.clone();
            cores.serve(async move {
                let _ = tx.send(current());
                let _ = held.changed().await;
            });
        }
        let mut on = Vec::new();
        for _ in 0..3 {
            on.push(rx.recv().await.unwrap().expect("runs on a core"));
        }
        on.sort_unstable();
        assert!(on == [0, 0, 1] || on == [0, 1, 1], "{on:?}");
        assert_eq!(
            cores
                .cores
                .iter()
                .map(|c| c.open.load(Ordering::Relaxed))
                .sum::<usize>(),
            3
        );
        // As they end, their cores' counts go back to zero.
        drop(hold);
        for c in &cores.cores {
            while c.open.load(Ordering::Relaxed) != 0 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(current(), None, "the test's own thread is not a core");
        cores.stop().await;
    }
}
