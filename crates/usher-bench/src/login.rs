//! The login scenario (issue 9): how many argon2id sign-ins per second Usher completes,
//! and whether they stall anything else — `/usher/healthz`'s p99 is measured alone and
//! again while sign-ins run flat out.

use crate::{free_port, start_usher_with, wrk};
use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench-password-123";

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>;

/// One browser-like sign-in: the form (with its pre-session cookie), then the POST.
async fn sign_in(client: &Http, addr: SocketAddr) -> anyhow::Result<()> {
    let form = client
        .request(http::Request::get(format!("http://{addr}/usher/login")).body(Full::default())?)
        .await?;
    let cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("usher_login="))
        .and_then(|v| v.split(';').next())
        .context("no login cookie")?
        .to_owned();
    let html = String::from_utf8_lossy(&form.into_body().collect().await?.to_bytes()).into_owned();
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).context("no csrf field")? + marker.len();
    let csrf = &html[start..start + html[start..].find('"').context("csrf")?];
    let body = format!("username=admin&password={PASSWORD}&rd=%2F&csrf={csrf}");
    let r = client
        .request(
            http::Request::post(format!("http://{addr}/usher/login"))
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(bytes::Bytes::from(body)))?,
        )
        .await?;
    if r.status() != 303 {
        bail!("sign-in answered {}", r.status());
    }
    r.into_body().collect().await?;
    Ok(())
}

pub fn run(rt: &tokio::runtime::Runtime, dir: &Path, seconds: u64) -> anyhow::Result<String> {
    let dir = dir.join("login");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _usher = start_usher_with(
        &dir,
        &dir.join("usher.db"),
        port,
        &[("USHER_ADMIN_PASSWORD", PASSWORD.to_owned())],
    )?;
    let health = format!("http://{addr}/usher/healthz");
    let alone = wrk(&health, seconds, None, &[])?;

    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wrk_thread = {
        let health = health.clone();
        std::thread::spawn(move || wrk(&health, seconds, None, &[]))
    };
    let started = Instant::now();
    rt.block_on(async {
        let client: Http = Client::builder(TokioExecutor::new()).build_http();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (client, done, stop) = (client.clone(), done.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    sign_in(&client, addr).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), anyhow::Error>(())
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let during = wrk_thread
        .join()
        .map_err(|_| anyhow::anyhow!("wrk thread"))??;
    let logins = done.load(Ordering::Relaxed) as f64 / elapsed;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "argon2id m = 19,456 KiB, t = 2, p = 1 (OWASP's minimum), hashed on the blocking pool, at most half the cores at once; 4 clients signing in flat out for {seconds} s.\n\n\
         | measure | result |\n|---|---|\n\
         | sign-ins per second (form + POST, each one argon2id verification) | {logins:.1} |\n\
         | `/usher/healthz` alone: req/s, p99 | {:.0}, {:.2} ms |\n\
         | `/usher/healthz` during the sign-ins: req/s, p99 | {:.0}, {:.2} ms |",
        alone.rps, alone.p99_ms, during.rps, during.p99_ms,
    );
    Ok(out)
}
