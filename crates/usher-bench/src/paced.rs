//! Latency at a fixed request rate (issue 9: "p99 ≤ 1 ms at half of that load"). wrk
//! from Debian only drives as fast as it can, so this sends `rate` requests a second
//! from 64 keep-alive connections and times every answer from the moment its request
//! was due — a request due while its connection still waits for the previous answer
//! counts that wait too, as wrk2 does (timed from the write, an overloaded server's
//! queueing would not show).
//!
//! The driver shares the 2 cores with the server, so it is made to cost as little as
//! it can: requests formatted once, answers read off the socket with only their status
//! line and length parsed, on one current-thread runtime. (The hyper client it replaced
//! spent more CPU per request than the bare server it measured, and the machine's
//! queueing then showed as the server's latency: p99 ≈ 3 ms for the bare server too.)
//!
//! The requests leave on a schedule kept by a pacer thread, every `1 / rate` seconds in
//! turn over the connections, released in batches every 100 µs. tokio's timers have a
//! 1 ms grain: ticked by them, the connections' requests all left on the same
//! millisecond, a burst of ~70 at half load that the server drained in ~250 µs, and the
//! last of each burst waited for all the others — traffic no set of clients sends.
//!
//! The driver and the pacer run at real-time priority when the system allows it (root,
//! here): with three busy threads on two cores, a woken driver otherwise waits for a
//! time slice (~3 ms under EEVDF) before it reads an answer that has long arrived, and
//! that wait was counted as the server's: the bare server measured p99 3.5–3.7 ms at
//! half load, 1.0–1.6 ms with the driver raised. Their work per request is a few µs, so
//! raising them takes next to nothing from the server — as a load generator on another
//! machine would. They are threads of their own, which end with the run.
//!
//! Even so one run's p99 swings several-fold (0.4–7 ms for the bare server at the same
//! rate, on one machine): the host takes the cores away for milliseconds now and then,
//! and p99 is the slowest 1%. So each side runs in alternating rounds and the report
//! gives medians, beside [`stalls`], what the idle machine loses on its own.

use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: u32 = 64;

/// Sent but not counted, at the start: connections' first requests, buffers growing,
/// the kernel still tidying after the throughput runs before — the first second of a
/// run was slower for the bare server too (as wrk2 leaves out its calibration).
pub const WARM_UP: Duration = Duration::from_secs(1);

/// How often at most the pacer wakes: the requests due meanwhile leave together.
const BATCH: Duration = Duration::from_micros(100);

/// Real-time priority (FIFO, the lowest level) for the calling thread, if allowed.
fn raise() -> bool {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .is_ok()
}

pub struct Latency {
    /// The driver and the pacer ran at real-time priority (see the module's note).
    pub realtime: bool,
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Sends `rate` requests a second to `url` (`http://host:port/path`) for `seconds`,
/// each with the next of `cookies`; fails on any answer but 200.
pub fn run(url: &str, cookies: &[String], rate: f64, seconds: u64) -> anyhow::Result<Latency> {
    let uri: http::Uri = url.parse()?;
    let authority = uri
        .authority()
        .context("the URL names no host")?
        .to_string();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let requests: Vec<Vec<u8>> = cookies
        .iter()
        .map(|c| {
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nCookie: {c}\r\n\r\n").into_bytes()
        })
        .collect();
    if requests.is_empty() {
        bail!("no cookies to send");
    }
    let gap = Duration::from_secs_f64(1.0 / rate.max(1.0));
    // Each connection's requests, as the instants the pacer released them: a request
    // released while its connection still waits for the previous answer waits in this
    // queue, and that wait is counted (wrk2's correction for coordinated omission).
    let (releases, queues): (Vec<_>, Vec<_>) = (0..CONNECTIONS)
        .map(|_| tokio::sync::mpsc::unbounded_channel::<Instant>())
        .unzip();
    // Sent once every connection is open: the pacer starts then.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Instant>();
    let pacer = std::thread::spawn(move || {
        let realtime = raise();
        let Ok(started) = ready_rx.recv() else {
            return realtime;
        };
        let end = started + WARM_UP + Duration::from_secs(seconds);
        let mut i: u64 = 0;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            // Every request whose time has come: on time to within the batch.
            while started + gap.mul_f64(i as f64) <= now {
                let _ = releases[(i % u64::from(CONNECTIONS)) as usize].send(now);
                i += 1;
            }
            let next = started + gap.mul_f64(i as f64);
            std::thread::park_timeout(next.saturating_duration_since(now).max(BATCH));
        }
        // Dropping the senders ends the connections once their queues are empty.
        realtime
    });
    // Its own thread, raised for the run (see the module's note); it ends with it.
    let driver = std::thread::spawn(move || {
        let realtime = raise();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let micros: Vec<u32> = rt.block_on(async {
            let requests = Arc::new(requests);
            let mut streams = Vec::new();
            for _ in 0..CONNECTIONS {
                let stream = TcpStream::connect(&authority).await?;
                stream.set_nodelay(true)?;
                streams.push(stream);
            }
            // Only requests released after the warm-up count.
            let measured_from = Instant::now() + WARM_UP;
            let mut tasks = Vec::new();
            for ((c, mut stream), mut queue) in streams.into_iter().enumerate().zip(queues) {
                let requests = requests.clone();
                tasks.push(tokio::spawn(async move {
                    let mut times = Vec::new();
                    let mut buf = Vec::with_capacity(4096);
                    let mut i = c;
                    while let Some(released) = queue.recv().await {
                        let req = &requests[i % requests.len()];
                        i += CONNECTIONS as usize;
                        stream.write_all(req).await?;
                        let status = read_answer(&mut stream, &mut buf).await?;
                        if status != 200 {
                            bail!("answer {status} at a paced rate");
                        }
                        if released >= measured_from {
                            times.push(
                                u32::try_from(released.elapsed().as_micros()).unwrap_or(u32::MAX),
                            );
                        }
                    }
                    Ok::<_, anyhow::Error>(times)
                }));
            }
            let _ = ready_tx.send(measured_from - WARM_UP);
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            Ok::<_, anyhow::Error>(all)
        })?;
        Ok::<_, anyhow::Error>((realtime, micros))
    });
    let driven = driver
        .join()
        .map_err(|_| anyhow::anyhow!("the paced driver panicked"));
    // A driver that failed before the start never set the pacer going: it sees the
    // channel closed and ends. One that failed later drops the queues; the pacer runs
    // out its time sending into them.
    let paced_realtime = pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacer panicked"))?;
    let (realtime, mut micros) = driven??;
    let realtime = realtime && paced_realtime;
    let elapsed = seconds.max(1) as f64;
    micros.sort_unstable();
    let at = |q: f64| {
        let i = ((micros.len() as f64 * q) as usize).min(micros.len().saturating_sub(1));
        f64::from(micros.get(i).copied().unwrap_or(0)) / 1000.0
    };
    Ok(Latency {
        realtime,
        rate: micros.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: micros.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
    })
}

/// Reads one whole answer (a `Content-Length` body; the servers measured send one) and
/// gives its status.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).context("a head that is not text")?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .context("no status line")?;
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .map_or(Ok(0), |(_, v)| v.trim().parse())
                .context("a bad content-length")?;
            let whole = head_end + 4 + length;
            while buf.len() < whole {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("the server closed the connection mid-answer");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How much the machine itself stalls a thread that never sleeps: the floor under any
/// server's tail latency here. On a shared virtual machine the host takes its cores
/// away now and then for milliseconds; a request due meanwhile waits whatever the
/// server does (on one such machine: 0.1–0.9% of the time, up to 25 ms at once, with
/// nothing else running).
pub struct Stalls {
    /// Share of the time the spinning threads lost in gaps of ≥ 200 µs.
    pub share: f64,
    /// Gaps of ≥ 1 ms a second, summed over the cores.
    pub over_1ms_per_s: f64,
    pub max_ms: f64,
}

/// One thread per core spins on the clock for `seconds` and notes every gap between
/// two reads of ≥ 200 µs (a read takes ~30 ns: a gap is time the thread did not run).
pub fn stalls(seconds: f64) -> Stalls {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let span = Duration::from_secs_f64(seconds);
    let spinners: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let (mut last, mut lost, mut over_1ms, mut max) =
                    (start, Duration::ZERO, 0u64, Duration::ZERO);
                while last - start < span {
                    let now = Instant::now();
                    let gap = now - last;
                    if gap >= Duration::from_micros(200) {
                        lost += gap;
                        over_1ms += u64::from(gap >= Duration::from_millis(1));
                        max = max.max(gap);
                    }
                    last = now;
                }
                (lost, over_1ms, max)
            })
        })
        .collect();
    let (mut lost, mut over_1ms, mut max) = (Duration::ZERO, 0, Duration::ZERO);
    for s in spinners {
        // A spinner cannot panic; one that did counts as no stall.
        let (l, o, m) = s.join().unwrap_or_default();
        lost += l;
        over_1ms += o;
        max = max.max(m);
    }
    Stalls {
        share: lost.as_secs_f64() / (seconds * cores as f64),
        over_1ms_per_s: over_1ms as f64 / seconds,
        max_ms: max.as_secs_f64() * 1000.0,
    }
}
