//! Latency at a fixed request rate (issue 9: "p99 ≤ 1 ms at half of that load"). wrk
//! from Debian only drives as fast as it can, so this sends `rate` requests a second
//! from 64 keep-alive connections, each on its own tick, and times every answer from
//! the moment its request was written.
//!
//! The driver shares the 2 cores with the server, so it is made to cost as little as
//! it can: one thread, one current-thread runtime, requests formatted once, answers
//! read off the socket with only their status line and length parsed. (The hyper
//! client it replaced spent more CPU per request than the bare server it measured,
//! and the machine's queueing then showed as the server's latency: p99 ≈ 3 ms for the
//! bare server too.) Ticks are tokio's (1 ms grain), so requests leave in small
//! bursts rather than perfectly spread: if anything, that is harder on the server.
//!
//! The driver thread runs at real-time priority when the system allows it (root, here):
//! with three busy threads on two cores, a woken driver otherwise waits for a time slice
//! (~3 ms under EEVDF) before it reads an answer that has long arrived, and that wait
//! was counted as the server's: the bare server measured p99 3.5–3.7 ms at half load,
//! 1.0–1.6 ms with the driver raised. The driver's work per request is a few µs, so
//! raising it takes next to nothing from the server — as a load generator on another
//! machine would. It is a thread of its own, which ends with the run.

use anyhow::{Context, bail};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: u32 = 64;

pub struct Latency {
    /// The driver ran at real-time priority (see the module's note).
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
    let period = Duration::from_secs_f64(f64::from(CONNECTIONS) / rate.max(1.0));
    // Its own thread, raised for the run (see the module's note); it ends with it.
    let driver = std::thread::spawn(move || {
        use thread_priority::{
            RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        let realtime = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
        )
        .is_ok();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let started = Instant::now();
        let micros: Vec<u32> = rt.block_on(async {
            let requests = std::sync::Arc::new(requests);
            let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for c in 0..CONNECTIONS {
                let (authority, requests) = (authority.clone(), requests.clone());
                tasks.push(tokio::spawn(async move {
                    let mut stream = TcpStream::connect(&authority).await?;
                    stream.set_nodelay(true)?;
                    // Spread the connections' ticks over one period.
                    let first = tokio::time::Instant::now() + period * c / CONNECTIONS;
                    let mut tick = tokio::time::interval_at(first, period);
                    let mut times = Vec::new();
                    let mut buf = Vec::with_capacity(4096);
                    let mut i = c as usize;
                    while tick.tick().await < end {
                        let req = &requests[i % requests.len()];
                        i += CONNECTIONS as usize;
                        let sent = Instant::now();
                        stream.write_all(req).await?;
                        let status = read_answer(&mut stream, &mut buf).await?;
                        if status != 200 {
                            bail!("answer {status} at a paced rate");
                        }
                        times.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok::<_, anyhow::Error>(times)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            Ok::<_, anyhow::Error>(all)
        })?;
        Ok::<_, anyhow::Error>((realtime, started, micros))
    });
    let (realtime, started, mut micros) = driver
        .join()
        .map_err(|_| anyhow::anyhow!("the paced driver panicked"))??;
    let elapsed = started.elapsed().as_secs_f64();
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
