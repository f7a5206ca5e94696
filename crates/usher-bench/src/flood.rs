//! The anonymous-flood scenario (issue 5): a million cookieless requests with distinct
//! User-Agents, then a couple of hundred thousand lazy anonymous visitors (each takes
//! the cookie and comes back once), against a server that also holds the signed-in
//! sessions of the other scenarios. It reports resident memory at each step and checks
//! that every signed-in session still works after the flood.

use crate::{Proc, free_port, wait_port, workspace_root, wrk};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Flood {
    pub cookieless: u64,
    pub anonymous: u64,
    pub max_anonymous: u64,
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Runs exactly `total` requests split over wrk's threads, each thread stopping at
/// its share. `lua` defines `request` and may use `count` (requests answered so far).
fn wrk_count(url: &str, dir: &Path, name: &str, total: u64, lua: &str) -> anyhow::Result<f64> {
    let threads = 2;
    let per = total / threads;
    let script = format!(
        "local limit = {per}\ncount = 0\n{lua}\n\
         local seen = response\n\
         response = function(status, headers, body)\n  \
           if status >= 400 then print('status ' .. status) end\n  \
           if seen then seen(status, headers, body) end\n  \
           count = count + 1\n  if count >= limit then wrk.thread:stop() end\nend\n"
    );
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, script)?;
    let started = Instant::now();
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d600s", "-s"])
        .arg(&path)
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("status 4") || text.contains("status 5") || text.contains("Non-2xx") {
        bail!("{url}: error answers during the flood:\n{text}");
    }
    Ok(started.elapsed().as_secs_f64())
}

fn metric(usher: SocketAddr, line_prefix: &str) -> anyhow::Result<f64> {
    let out = Command::new("curl")
        .args(["-s", &format!("http://{usher}/usher/metrics")])
        .output()
        .context("curl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

pub fn run(
    dir: &Path,
    db: &Path,
    signed_in: usize,
    script: &Path,
    f: &Flood,
) -> anyhow::Result<String> {
    let port = free_port()?;
    let child = Command::new(workspace_root().join("target/release/usher"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store"])
        .arg(format!("sqlite://{}", db.display()))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("USHER_LOG_ACCESS", "off")
        .env("USHER_SESSIONS_MAX_ANONYMOUS", f.max_anonymous.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting usher")?;
    let proc = Proc(child);
    wait_port(port)?;
    let usher = SocketAddr::from(([127, 0, 0, 1], port));
    let pid = proc.0.id();
    let url = format!("http://{usher}/favicon.ico");
    let start_rss = rss_kib(pid)?;

    // Pings: no cookie kept, a new User-Agent every time (the aggregate must stay bounded).
    let pings = "local id = 0\nrequest = function()\n  id = id + 1\n  \
                 return wrk.format(nil, nil, { ['User-Agent'] = 'ping/' .. id .. '-' .. math.random(1e9) })\nend\n";
    let t = wrk_count(&url, dir, "pings.lua", f.cookieless, pings)?;
    let after_pings = rss_kib(pid)?;
    let cookieless_clients = metric(usher, "usher_cookieless_clients ")?;

    // Visitors: take the cookie, come back once with it.
    let visitors = "local jar = {}\n\
        request = function()\n  local c = table.remove(jar)\n  \
          if c then return wrk.format(nil, nil, { ['Cookie'] = c }) end\n  \
          return wrk.format(nil, nil, {})\nend\n\
        response = function(status, headers, body)\n  \
          local sc = headers['set-cookie'] or headers['Set-Cookie']\n  \
          if sc then table.insert(jar, (sc:match('^[^;]+'))) end\nend\n";
    let t2 = wrk_count(&url, dir, "visitors.lua", f.anonymous * 2, visitors)?;
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
