//! Latency at a fixed request rate (issue 9: "p99 ≤ 1 ms at half of that load"). wrk
//! from Debian only drives as fast as it can, so this sends `rate` requests a second
//! from 64 keep-alive connections, each on its own tick, and times every answer from
//! the moment its request was sent. Ticks are tokio's (1 ms grain), so requests leave
//! in small bursts rather than perfectly spread: if anything, that is harder on the
//! server than a smooth arrival.

use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: u32 = 64;

pub struct Latency {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Sends `rate` requests a second to `url` for `seconds`, each with the next of
/// `cookies`; fails on any answer but 200.
pub fn run(
    rt: &tokio::runtime::Runtime,
    url: &str,
    cookies: &[String],
    rate: f64,
    seconds: u64,
) -> anyhow::Result<Latency> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let uri: http::Uri = url.parse()?;
    let cookies: Arc<Vec<String>> = Arc::new(cookies.to_vec());
    let period = Duration::from_secs_f64(f64::from(CONNECTIONS) / rate.max(1.0));
    let started = Instant::now();
    let mut micros: Vec<u32> = rt.block_on(async {
        let client: Client<_, Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..CONNECTIONS {
            let (client, uri, cookies) = (client.clone(), uri.clone(), cookies.clone());
            tasks.push(tokio::spawn(async move {
                // Spread the connections' ticks over one period.
                let first = tokio::time::Instant::now() + period * c / CONNECTIONS;
                let mut tick = tokio::time::interval_at(first, period);
                let mut times = Vec::new();
                let mut i = c as usize;
                while tick.tick().await < end {
                    let cookie = &cookies[i % cookies.len()];
                    i += CONNECTIONS as usize;
                    let req = http::Request::get(uri.clone())
                        .header("cookie", cookie)
                        .body(Empty::new())?;
                    let sent = Instant::now();
                    let resp = client.request(req).await?;
                    if resp.status() != 200 {
                        anyhow::bail!("answer {} at a paced rate", resp.status());
                    }
                    resp.into_body().collect().await?;
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
    let elapsed = started.elapsed().as_secs_f64();
    micros.sort_unstable();
    let at = |q: f64| {
        let i = ((micros.len() as f64 * q) as usize).min(micros.len().saturating_sub(1));
        f64::from(micros.get(i).copied().unwrap_or(0)) / 1000.0
    };
    Ok(Latency {
        rate: micros.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: micros.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
    })
}
