//! The anonymous-flood scenario (issue 5): a million cookieless requests with distinct
//! User-Agents, then a couple of hundred thousand lazy anonymous visitors (each takes
//! the cookie and comes back once), against a server that also holds the signed-in
//! sessions of the other scenarios. It reports resident memory at each step and checks
//! that every signed-in session still works after the flood.

use crate::{Proc, free_port, metric, rss_kib, wait_port, wrk};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Flood {
    pub cookieless: u64,
    pub anonymous: u64,
    pub max_anonymous: u64,
}

/// What a flood client does with each answer.
#[derive(Clone, Copy)]
enum Visitor {
    /// A ping: no cookie kept, a new User-Agent every time.
    Ping,
    /// Takes the cookie and comes back once with it.
    Returning,
}

/// Sends exactly `total` requests from 32 concurrent keep-alive clients and fails on
/// any answer but 200. (wrk counts time, not requests.)
fn drive(
    rt: &tokio::runtime::Runtime,
    url: &str,
    total: u64,
    visitor: Visitor,
) -> anyhow::Result<f64> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let uri: http::Uri = url.parse()?;
    let started = Instant::now();
    rt.block_on(async {
        let client: Client<_, Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (client, next, uri) = (client.clone(), next.clone(), uri.clone());
            tasks.push(tokio::spawn(async move {
                let mut jar: Option<String> = None;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let mut req = http::Request::get(uri.clone());
                    match visitor {
                        Visitor::Ping => req = req.header("user-agent", format!("ping/{n}")),
                        Visitor::Returning => {
                            req = req.header("user-agent", "Mozilla/5.0 flood");
                            if let Some(c) = jar.take() {
                                req = req.header("cookie", c);
                            }
                        }
                    }
                    let resp = client.request(req.body(Empty::new())?).await?;
                    if resp.status() != 200 {
                        anyhow::bail!("answer {} during the flood", resp.status());
                    }
                    if let Visitor::Returning = visitor {
                        jar = resp
                            .headers()
                            .get("set-cookie")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.split(';').next())
                            .map(str::to_owned);
                    }
                    resp.into_body().collect().await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(started.elapsed().as_secs_f64())
}

pub fn run(
    dir: &Path,
    db: &Path,
    signed_in: usize,
    script: &Path,
    f: &Flood,
) -> anyhow::Result<String> {
    let port = free_port()?;
    let child = Command::new(crate::usher_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store"])
        .arg(format!("sqlite://{}", db.display()))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("USHER_LOG_ACCESS", "off")
        .env("USHER_SESSIONS_MAX_ANONYMOUS", f.max_anonymous.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("usher-flood.log"))?)
        .spawn()
        .context("starting usher")?;
    let proc = Proc(child);
    wait_port(port)?;
    let usher = SocketAddr::from(([127, 0, 0, 1], port));
    let pid = proc.0.id();
    let url = format!("http://{usher}/favicon.ico");
    let start_rss = rss_kib(pid)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // What the server said, when a step fails.
    let said = || {
        let log = std::fs::read_to_string(dir.join("usher-flood.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    // Pings: a new User-Agent every time (the aggregate must stay bounded).
    let t = drive(&rt, &url, f.cookieless, Visitor::Ping)
        .with_context(|| format!("cookieless step; usher said:\n{}", said()))?;
    let after_pings = rss_kib(pid)?;
    let cookieless_clients = metric(usher, "usher_cookieless_clients ")?;

    // Visitors: take the cookie, come back once with it.
    let t2 = drive(&rt, &url, f.anonymous * 2, Visitor::Returning)
        .with_context(|| format!("anonymous step; usher said:\n{}", said()))?;
    // Let the flusher write the last of them.
    std::thread::park_timeout(std::time::Duration::from_secs(2));
    let after_visitors = rss_kib(pid)?;
    let anon_live = metric(
        usher,
        "usher_sessions_active{type=\"web\",authenticated=\"false\"}",
    )?;
    let evicted = metric(usher, "usher_sessions_ended_total{reason=\"evicted\"}")?;
    let signed_live = metric(
        usher,
        "usher_sessions_active{type=\"web\",authenticated=\"true\"}",
    )?;
    // Every signed-in session still passes: wrk fails the run on any non-2xx.
    wrk(
        &format!("http://{usher}/usher/auth/request"),
        2,
        Some(script),
        &[],
    )
    .context("a signed-in session was refused after the flood")?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| step | resident memory | notes |\n|---|---|---|\n\
         | started, {signed_in} signed-in sessions loaded | {:.1} MiB | |\n\
         | after {} cookieless requests ({t:.0} s) | {:.1} MiB | {cookieless_clients} distinct clients kept (bound 10,000) |\n\
         | after {} lazy anonymous visitors ({t2:.0} s) | {:.1} MiB | {anon_live} anonymous live (max_anonymous = {}), {evicted} evicted; {signed_live} signed-in live, all still accepted |",
        start_rss as f64 / 1024.0,
        f.cookieless,
        after_pings as f64 / 1024.0,
        f.anonymous,
        after_visitors as f64 / 1024.0,
        f.max_anonymous,
    );
    if signed_live < signed_in as f64 {
        bail!("signed-in sessions were lost in the flood: {signed_live} of {signed_in}\n{out}");
    }
    if anon_live > f.max_anonymous as f64 {
        bail!("more anonymous sessions than max_anonymous:\n{out}");
    }
    Ok(out)
}
