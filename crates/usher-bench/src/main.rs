//! `usher-bench`: runs each scenario against its baseline, alternating, on loopback,
//! and prints medians and ratios measured in the same run — absolute figures drift on
//! a shared 2-core machine, ratios hold.
//!
//!     cargo run --release -p usher-bench -- [--quick] [--sessions N] [--scenario NAME]
//!
//! Needs `wrk` and `nginx` (Debian packages) and a release build of `usher`, which it
//! makes with cargo first.

mod compare;
mod flood;
mod history;
mod instructions;
mod login;
mod paced;
mod scale;

use anyhow::{Context, bail};
use clap::Parser;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use usher_core::{SessionKind, SessionPolicy, SystemClock, User, Username};
use usher_engine::{Engine, EngineConfig, RequestInfo};
use usher_store::StoreUrl;

#[derive(Parser)]
struct Args {
    /// Short runs, for CI: proves the harness works, not the figures.
    #[arg(long)]
    quick: bool,
    /// Distinct sessions the load rotates through.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Seconds per measured run (default 10, or 2 with --quick).
    #[arg(long)]
    seconds: Option<u64>,
    /// Alternating rounds per scenario.
    #[arg(long)]
    rounds: Option<usize>,
    /// Only this scenario: forward-auth, auth-endpoint, reverse-proxy, anonymous-flood,
    /// history, million, login.
    #[arg(long)]
    scenario: Option<String>,
    /// anonymous-flood: cookieless requests (default 1,000,000; 20,000 with --quick).
    #[arg(long)]
    cookieless: Option<u64>,
    /// anonymous-flood: lazy anonymous visitors (default 200,000; 5,000 with --quick).
    #[arg(long)]
    anonymous: Option<u64>,
    /// anonymous-flood: the server's sessions.max_anonymous (default 100,000; 2,000 with --quick).
    #[arg(long)]
    max_anonymous: Option<u64>,
    /// history: events generated (default 10,000,000; 200,000 with --quick).
    #[arg(long)]
    history_events: Option<u64>,
    /// history: users generated (default 100,000; 1,000 with --quick).
    #[arg(long)]
    history_users: Option<u64>,
    /// Keep the working directory (stores, logs, nginx.conf) and print its path, to
    /// profile against the same data afterwards.
    #[arg(long)]
    keep: bool,
    /// Another `usher` binary (an earlier commit's) to load at the same time as this
    /// build's, on copies of the same sessions, reporting the ratio of their CPU time per
    /// request: `/usher/auth/request`, or the reverse proxy with `--scenario
    /// reverse-proxy`. Default 6 rounds of 8 s.
    #[arg(long, value_name = "USHER_BINARY")]
    compare: Option<PathBuf>,
    /// Bench this `usher` binary (an earlier commit's, kept aside) instead of the
    /// workspace's release build: the same scenarios and baselines, to set two builds'
    /// ratios side by side from runs in a row.
    #[arg(long, value_name = "USHER_BINARY")]
    usher: Option<PathBuf>,
    /// Instructions per request under valgrind's callgrind, the bare server's and
    /// `/usher/auth/request`'s (or the reverse proxy's, to a bare upstream, with
    /// `--scenario reverse-proxy`), with Usher's heaviest functions: repeatable
    /// whatever the machine's neighbours do (needs valgrind).
    #[arg(long, conflicts_with = "compare")]
    instructions: bool,
    /// auth-endpoint: only the latency, paced at this many requests a second (Usher's
    /// and the bare server's), without the throughput runs that otherwise set the rate.
    #[arg(long, value_name = "REQUESTS_PER_S")]
    rate: Option<f64>,
}

/// A child process killed when dropped.
pub(crate) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn wait_port(port: u16) -> anyhow::Result<()> {
    wait_port_within(port, Duration::from_secs(20))
}

/// [`wait_port`], for a server that takes longer to start (under valgrind).
pub(crate) fn wait_port_within(port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {port}");
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    Ok(())
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Creates `n` sessions in a fresh store and returns their cookies.
async fn seed(db: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let url = StoreUrl::parse(&format!("sqlite://{}", db.display()))?;
    let store = usher_store::open(&url).await?;
    let clock = Arc::new(SystemClock);
    let name = Username::parse("bench")?;
    let user = User::new(name, usher_core::Clock::now(&SystemClock));
    store.user_create(&user, "bench").await?;
    let engine = Engine::load(
        store,
        clock,
        EngineConfig {
            policy: SessionPolicy::default(),
            flush_interval: Duration::from_secs(1),
            concurrency: Default::default(),
            retention: jiff::SignedDuration::from_hours(400 * 24),
            max_anonymous: 100_000,
        },
    )
    .await?;
    let req = RequestInfo {
        ip: "127.0.0.1".parse()?,
        user_agent: "usher-bench",
        host: "bench.example",
    };
    let mut cookies = Vec::with_capacity(n);
    for _ in 0..n {
        let (token, _) = engine.create(Some(&user), SessionKind::Web, &req).await?;
        cookies.push(format!("usher_session={}", token.encode()));
    }
    Ok(cookies)
}

/// A wrk script that sends each request with the next cookie of the list.
fn wrk_script(dir: &Path, cookies: &[String]) -> anyhow::Result<PathBuf> {
    let mut lua = String::from("local cookies = {\n");
    for c in cookies {
        writeln!(lua, "  \"{c}\",")?;
    }
    // The requests are formatted once per wrk thread (`init`), not per request: the
    // driver shares the 2 cores with the server, and formatting each request in Lua
    // cost wrk a third of its rate against the bare server.
    lua.push_str(
        "}\nlocal requests = {}\ninit = function(args)\n  for j, c in ipairs(cookies) do\n    \
         requests[j] = wrk.format(nil, nil, { [\"Cookie\"] = c })\n  end\nend\n\
         local i = 0\nrequest = function()\n  i = i % #requests + 1\n  return requests[i]\nend\n",
    );
    let path = dir.join("cookies.lua");
    std::fs::write(&path, lua)?;
    Ok(path)
}

#[derive(Clone, Copy)]
struct Measured {
    rps: f64,
    /// CPU time (user + system) the servers spent per request, in µs: what a request
    /// costs, whatever share of the cores the load generator took (NaN: not measured).
    cpu_us: f64,
    p99_ms: f64,
    /// Share of the machine's CPU time the host gave to others during the run.
    steal: f64,
}

/// The machine's CPU time so far, and how much of it was stolen by the host
/// (`/proc/stat`: a shared VM's neighbours take 30–40% of it at times, which is why
/// only ratios of adjacent runs are compared).
fn cpu_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    (fields.iter().sum(), fields.get(7).copied().unwrap_or(0))
}

/// wrk against `url` for `seconds`, started: `connections` over `threads` threads,
/// each request from `script` when given. [`wrk_finish`] reads what it printed.
pub(crate) fn wrk_start(
    url: &str,
    seconds: u64,
    script: Option<&Path>,
    threads: u32,
    connections: u32,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .args(["--latency", "-d"])
        .arg(format!("{seconds}s"));
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url)
        .stdout(Stdio::piped())
        .spawn()
        .context("running wrk (apt-get install wrk)")
}

/// What one wrk run measured.
pub(crate) struct WrkOutput {
    pub rps: f64,
    /// Requests answered in all.
    pub requests: f64,
    pub p99_ms: f64,
}

/// Waits for a run of [`wrk_start`]; any answer but 2xx fails it.
pub(crate) fn wrk_finish(child: Child, url: &str) -> anyhow::Result<WrkOutput> {
    let out = child.wait_with_output().context("waiting for wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        bail!("{url}: non-2xx answers under load:\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk printed no rate:\n{text}"))?;
    // "  123456 requests in 10.00s, 12.34MB read"
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse::<f64>().ok())
        .with_context(|| format!("wrk printed no request count:\n{text}"))?;
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_latency(v.trim()))
        .unwrap_or(f64::NAN);
    Ok(WrkOutput {
        rps,
        requests,
        p99_ms,
    })
}

/// One wrk run (2 threads, 64 connections); with the CPU time the server processes
/// `pids` spent per request (NaN when `pids` is empty).
pub(crate) fn wrk(
    url: &str,
    seconds: u64,
    script: Option<&Path>,
    pids: &[u32],
) -> anyhow::Result<Measured> {
    let (total_before, stolen_before) = cpu_times();
    let cpu_before = cpu_seconds(pids);
    let out = wrk_finish(wrk_start(url, seconds, script, 2, 64)?, url)?;
    let cpu = cpu_seconds(pids) - cpu_before;
    let (total, stolen) = cpu_times();
    let steal = stolen.saturating_sub(stolen_before) as f64
        / total.saturating_sub(total_before).max(1) as f64;
    Ok(Measured {
        rps: out.rps,
        cpu_us: if pids.is_empty() {
            f64::NAN
        } else {
            cpu * 1e6 / out.requests.max(1.0)
        },
        p99_ms: out.p99_ms,
        steal,
    })
}

/// User + system CPU seconds the processes `pids` (all their threads) have used.
/// `/proc/PID/stat` counts in USER_HZ ticks, 100 a second on Linux whatever the kernel's
/// own tick: 10 ms grain, against the seconds of CPU a run takes.
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command name (which may hold spaces), from field 3 on:
            // utime and stime are fields 14 and 15.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            f.iter().sum::<u64>() as f64 / 100.0
        })
        .sum()
}

/// The pids of `pid`'s children (nginx's workers).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn parse_latency(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[derive(Clone)]
struct Row {
    scenario: &'static str,
    baseline: &'static str,
    base: Vec<Measured>,
    usher: Vec<Measured>,
    target: &'static str,
}

/// The `usher` binary benched: `--usher`, or the workspace's release build.
static USHER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub(crate) fn usher_bin() -> PathBuf {
    USHER
        .get()
        .cloned()
        .unwrap_or_else(|| workspace_root().join("target/release/usher"))
}

/// Starts the release `usher serve` on `port` with the store `db` and extra variables.
pub(crate) fn start_usher_with(
    dir: &Path,
    db: &Path,
    port: u16,
    env: &[(&str, String)],
) -> anyhow::Result<Proc> {
    start_usher_bin(&usher_bin(), dir, db, port, env)
}

/// [`start_usher_with`] for the `usher` binary at `bin`.
pub(crate) fn start_usher_bin(
    bin: &Path,
    dir: &Path,
    db: &Path,
    port: u16,
    env: &[(&str, String)],
) -> anyhow::Result<Proc> {
    let proc = Proc(
        usher_command(bin, dir, db, port, env)?
            .spawn()
            .context("starting usher")?,
    );
    if let Err(e) = wait_port(port) {
        let log =
            std::fs::read_to_string(dir.join(format!("usher-{port}.log"))).unwrap_or_default();
        bail!("{e}; usher said:\n{log}");
    }
    Ok(proc)
}

/// The command [`start_usher_bin`] runs (its log in `dir/usher-PORT.log`).
pub(crate) fn usher_command(
    bin: &Path,
    dir: &Path,
    db: &Path,
    port: u16,
    env: &[(&str, String)],
) -> anyhow::Result<Command> {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store"])
        .arg(format!("sqlite://{}", db.display()))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("USHER_LOG_ACCESS", "off")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            dir.join(format!("usher-{port}.log")),
        )?);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(cmd)
}

/// The bare hyper server of `src/bin/baseline.rs`.
pub(crate) fn start_baseline() -> anyhow::Result<(Proc, SocketAddr)> {
    let port = free_port()?;
    let child = baseline_command(port)
        .spawn()
        .context("starting the baseline")?;
    let proc = Proc(child);
    wait_port(port)?;
    Ok((proc, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// The command [`start_baseline`] runs.
pub(crate) fn baseline_command(port: u16) -> Command {
    let mut cmd = Command::new(workspace_root().join("target/release/baseline"));
    cmd.arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Resident memory of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// A counter or gauge from Usher's `/usher/metrics`.
pub(crate) fn metric(usher: SocketAddr, line_prefix: &str) -> anyhow::Result<f64> {
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

/// nginx with four servers: the upstream (answers 200 itself), the baseline (proxies
/// to it), the ideal guard (an auth_request answered by nginx itself: the cost of
/// forward auth with a free auth server), and the guarded one (asks Usher, with the
/// shipped configuration).
struct Nginx {
    proc: NginxProc,
    base: u16,
    ideal: u16,
    guarded: u16,
}

/// nginx's master process, stopped when dropped. One worker per core, as the issue
/// asks of the baseline: a master is then needed, and killing it outright would leave
/// its workers serving — it is asked to stop (SIGTERM), and stops them first.
struct NginxProc(Child);

impl Drop for NginxProc {
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn start_nginx(dir: &Path, usher: SocketAddr, up: u16) -> anyhow::Result<Nginx> {
    let (base, guarded, ideal) = (free_port()?, free_port()?, free_port()?);
    let example = std::fs::read_to_string(workspace_root().join("docs/proxies/nginx.conf"))?
        .replace("127.0.0.1:8080", &usher.to_string())
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{up}"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{guarded};"));
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/nginx.log warn;\n\
         worker_rlimit_nofile 8192;\nevents {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n\
         client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
         upstream app {{ server 127.0.0.1:{up}; keepalive 64; }}\n\
         server {{ listen 127.0.0.1:{up}; location / {{ return 200 \"ok\\n\"; }} }}\n\
         server {{ listen 127.0.0.1:{base}; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n\
         server {{ listen 127.0.0.1:{ideal};\n\
           location = /internal/auth {{ internal; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass_request_body off; }}\n\
           location / {{ auth_request /internal/auth; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n\
         {example}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx (apt-get install nginx)")?;
    let proc = NginxProc(child);
    for port in [guarded, base, ideal] {
        wait_port(port)?;
    }
    // A listening port is the master's; the workers (whose CPU the runs count) follow.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..100 {
        if children(proc.0.id()).len() >= cores {
            break;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    Ok(Nginx {
        proc,
        base,
        ideal,
        guarded,
    })
}

fn report(rows: &[Row], sessions: usize, seconds: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | baseline | baseline req/s | usher req/s | ratio | usher p99 | server CPU µs/request, baseline → usher | CPU stolen | target |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let b = median(r.base.iter().map(|m| m.rps).collect());
        let u = median(r.usher.iter().map(|m| m.rps).collect());
        let p99 = median(r.usher.iter().map(|m| m.p99_ms).collect());
        // Each round's runs are seconds apart; rounds can be minutes apart, and the
        // machine's speed moves more than 2× in minutes. So the ratio is the median
        // of the rounds' ratios, not the ratio of the medians.
        let ratio = median(
            r.usher
                .iter()
                .zip(&r.base)
                .map(|(u, b)| u.rps / b.rps)
                .collect(),
        );
        let (cpu_b, cpu_u) = (
            median(r.base.iter().map(|m| m.cpu_us).collect()),
            median(r.usher.iter().map(|m| m.cpu_us).collect()),
        );
        let steal = median(
            r.usher
                .iter()
                .chain(&r.base)
                .map(|m| m.steal * 100.0)
                .collect(),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {b:.0} | {u:.0} | {ratio:.2} | {p99:.2} ms | {cpu_b:.1} → {cpu_u:.1} ({:.2}×) | {steal:.0}% | {} |",
            r.scenario,
            r.baseline,
            cpu_u / cpu_b,
            r.target
        );
    }
    let _ = writeln!(
        out,
        "\n{} sessions, {} round(s) of {seconds} s per side, medians (the ratio: the median of each round's ratio); wrk -t2 -c64 on loopback, every side sent the same requests (a cookie each, rotating over the sessions). Server CPU: user + system time of the server processes (Usher, nginx's workers, the bare server; /proc/PID/stat) per request answered — what a request costs, whatever share of the 2 cores wrk took. CPU stolen: the host's share of the machine's CPU time during the runs (/proc/stat), median.",
        sessions,
        rows.first().map_or(0, |r| r.usher.len())
    );
    out
}

/// Whether `--compare` or `--instructions` (`flag`) is to measure the reverse proxy
/// rather than `/usher/auth/request`: the two scenarios they know.
fn proxied(flag: &str, scenario: Option<&str>) -> anyhow::Result<bool> {
    match scenario {
        None | Some("auth-endpoint") => Ok(false),
        Some("reverse-proxy") => Ok(true),
        Some(s) => {
            bail!("{flag} measures auth-endpoint (the default) or reverse-proxy, not {s:?}")
        }
    }
}

/// `--rate`, checked: a positive number of requests a second, and only for the
/// auth-endpoint scenario — given to a full run it would skip the throughput runs
/// and write docs/BENCHMARKS.md without them.
fn paced_rate(rate: Option<f64>, scenario: Option<&str>) -> anyhow::Result<Option<f64>> {
    let Some(rate) = rate else { return Ok(None) };
    if scenario != Some("auth-endpoint") {
        bail!("--rate measures the auth endpoint's latency: add --scenario auth-endpoint");
    }
    if !(rate.is_finite() && rate >= 1.0) {
        bail!("--rate {rate}: give the requests a second, 1 or more (e.g. --rate 50000)");
    }
    Ok(Some(rate))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = args.seconds.unwrap_or(if args.quick { 2 } else { 10 });
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let sessions = if args.quick {
        args.sessions.min(1000)
    } else {
        args.sessions
    };
    // Checked before anything is built or seeded.
    let rate = paced_rate(args.rate, args.scenario.as_deref())?;
    let instructions_of_proxy = if args.instructions {
        proxied("--instructions", args.scenario.as_deref())?
    } else {
        false
    };
    let compare_with = args
        .compare
        .as_ref()
        .map(|other| {
            // Absolute: the server runs in a working directory of its own.
            std::fs::canonicalize(other)
                .with_context(|| format!("--compare {}: no such usher binary", other.display()))
        })
        .transpose()?;
    if let Some(bin) = &args.usher {
        // Absolute: the server runs in a working directory of its own.
        let bin = std::fs::canonicalize(bin)
            .with_context(|| format!("--usher {}: no such usher binary", bin.display()))?;
        let _ = USHER.set(bin);
    }
    let compare = match &compare_with {
        None => None,
        Some(other) => Some(compare::Compare {
            other,
            this: usher_bin(),
            proxy: proxied("--compare", args.scenario.as_deref())?,
            rounds: args.rounds.unwrap_or(6),
            seconds: args.seconds.unwrap_or(8),
        }),
    };
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "usher", "-p", "usher-bench"])
        .current_dir(workspace_root())
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p usher -p usher-bench failed");
    }
    let mut dir = tempfile::tempdir()?;
    if args.keep {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    let db = dir.path().join("usher.db");
    let rt = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let cookies = rt.block_on(seed(&db, sessions))?;
    eprintln!("seeded {sessions} sessions in {:.1?}", started.elapsed());
    let script = wrk_script(dir.path(), &cookies)?;
    if args.instructions {
        println!(
            "{}",
            instructions::run(
                dir.path(),
                &db,
                &script,
                seconds,
                instructions_of_proxy,
                args.keep
            )?
        );
        return Ok(());
    }
    if let Some(c) = &compare {
        println!("{}", compare::run(c, dir.path(), &db, &script)?);
        return Ok(());
    }
    // Usher proxies to the upstream that nginx serves (a fixed 200), so the reverse
    // proxy and nginx's proxy_pass are measured against the same app.
    let (usher_port, up) = (free_port()?, free_port()?);
    let usher = SocketAddr::from(([127, 0, 0, 1], usher_port));
    let nginx = start_nginx(dir.path(), usher, up)?;
    let usher_proc = start_usher_with(
        dir.path(),
        &db,
        usher_port,
        &[("USHER_UPSTREAM_URL", format!("http://127.0.0.1:{up}"))],
    )?;
    let (baseline_proc, baseline) = start_baseline()?;
    let want = |name: &str| args.scenario.as_deref().is_none_or(|s| s == name);
    // The reverse proxy is measured twice: on the shared runtime (the default), and
    // with `server.threads` = the cores, one event loop per core as nginx's workers
    // (`worker_processes auto`) — the same model as the nginx it is compared with. On
    // a copy of the store: two writers on one SQLite file wait on each other.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threaded = if want("reverse-proxy") {
        let threaded_dir = dir.path().join("threaded");
        std::fs::create_dir_all(&threaded_dir)?;
        let threaded_db = threaded_dir.join("usher.db");
        compare::snapshot(&db, &threaded_db)?;
        let port = free_port()?;
        let proc = start_usher_with(
            &threaded_dir,
            &threaded_db,
            port,
            &[
                ("USHER_UPSTREAM_URL", format!("http://127.0.0.1:{up}")),
                ("USHER_SERVER_THREADS", cores.to_string()),
            ],
        )?;
        Some((proc, SocketAddr::from(([127, 0, 0, 1], port))))
    } else {
        None
    };
    // Every server of the runs below, nginx's workers too: an idle one costs nothing,
    // so the sum is the CPU that one side's requests took (nginx is the upstream of
    // both sides of the proxy comparison).
    let master = nginx.proc.0.id();
    let mut servers = vec![usher_proc.0.id(), baseline_proc.0.id(), master];
    servers.extend(threaded.iter().map(|(p, _)| p.0.id()));
    servers.extend(children(master));

    let mut rows = Vec::new();
    if want("forward-auth") {
        let mut plain = Row {
            scenario: "nginx → usher auth_request → upstream",
            baseline: "nginx → upstream",
            base: Vec::new(),
            usher: Vec::new(),
            target: "(issue 7: report)",
        };
        let mut ideal = Row {
            scenario: "nginx → usher auth_request → upstream",
            baseline: "nginx → auth_request answered by nginx → upstream",
            base: Vec::new(),
            usher: Vec::new(),
            target: "(Usher's own share)",
        };
        for _ in 0..rounds {
            // Every side gets the same requests, cookies included: the driver's cost
            // per request is then the same on both sides of a ratio.
            plain.base.push(wrk(
                &format!("http://127.0.0.1:{}/", nginx.base),
                seconds,
                Some(&script),
                &servers,
            )?);
            ideal.base.push(wrk(
                &format!("http://127.0.0.1:{}/", nginx.ideal),
                seconds,
                Some(&script),
                &servers,
            )?);
            let m = wrk(
                &format!("http://127.0.0.1:{}/", nginx.guarded),
                seconds,
                Some(&script),
                &servers,
            )?;
            ideal.usher.push(m);
            plain.usher.push(m);
        }
        rows.push(plain);
        rows.push(ideal);
    }
    let mut notes = String::new();
    if want("auth-endpoint") {
        // The paced rates: half the throughput is the issue's load; a quarter shows how
        // much of the tail is the machine's queueing (the driver shares the cores).
        let rates = if let Some(rate) = rate {
            vec![(rate, format!("{rate:.0} req/s (--rate)"))]
        } else {
            let mut row = Row {
                scenario: "usher /usher/auth/request",
                baseline: "bare hyper server (200, no work)",
                base: Vec::new(),
                usher: Vec::new(),
                target: "≥ 0.85",
            };
            let mut own = Row {
                scenario: "usher /usher/auth/request",
                baseline: "usher /usher/healthz (same process, no session work)",
                base: Vec::new(),
                usher: Vec::new(),
                target: "(Usher's own share)",
            };
            let flushes = "usher_flush_duration_seconds_count";
            let (mut requests, mut txs, mut secs) = (0.0, 0.0, 0.0);
            for _ in 0..rounds {
                row.base.push(wrk(
                    &format!("http://{baseline}/"),
                    seconds,
                    Some(&script),
                    &servers,
                )?);
                own.base.push(wrk(
                    &format!("http://{usher}/usher/healthz"),
                    seconds,
                    Some(&script),
                    &servers,
                )?);
                let before = metric(usher, flushes)?;
                let m = wrk(
                    &format!("http://{usher}/usher/auth/request"),
                    seconds,
                    Some(&script),
                    &servers,
                )?;
                txs += metric(usher, flushes)? - before;
                requests += m.rps * seconds as f64;
                secs += seconds as f64;
                row.usher.push(m);
                own.usher.push(m);
            }
            let full = median(row.usher.iter().map(|m| m.rps).collect());
            rows.push(row);
            rows.push(own);
            let _ = writeln!(
                notes,
                "- SQLite write load while `/usher/auth/request` ran at {:.0} req/s over {} sessions: {txs:.0} flush transactions in {secs:.0} s = {:.2} per 1 s flush interval (target ≤ 1, whatever the request rate).",
                requests / secs,
                sessions,
                txs / secs
            );
            vec![
                (full / 2.0, "half that throughput".to_owned()),
                (full / 4.0, "a quarter of that throughput".to_owned()),
            ]
        };
        // What the machine alone takes from any server's tail, measured just before.
        let stalls = paced::stalls(if args.quick { 0.5 } else { 5.0 });
        let _ = writeln!(
            notes,
            "- The idle machine itself: a thread spinning on each core lost {:.2}% of its time in stalls of ≥ 200 µs, {:.1} stalls of ≥ 1 ms a second, the longest {:.1} ms (`paced::stalls`) — a request due in one waits, whatever the server.",
            stalls.share * 100.0,
            stalls.over_1ms_per_s,
            stalls.max_ms
        );
        // Each side runs `rounds` times, alternating with the other, and the medians are
        // given: one run's p99 swings several-fold with the machine's stalls above.
        // Each round with the CPU time its server took per request: paced, requests
        // arrive one by one and each may wake the server, so this is not wrk's figure.
        let timed = |pid: u32, url: &str, rate: f64| -> anyhow::Result<(paced::Latency, f64)> {
            let before = cpu_seconds(&[pid]);
            let latency = paced::run(url, &cookies, rate, seconds)?;
            let cpu = cpu_seconds(&[pid]) - before;
            // The warm-up's requests were served too.
            let sent = rate * (seconds as f64 + paced::WARM_UP.as_secs_f64());
            Ok((latency, cpu * 1e6 / sent.max(1.0)))
        };
        let (usher_pid, bare_pid) = (usher_proc.0.id(), baseline_proc.0.id());
        for (rate, name) in rates {
            let (mut ours, mut bare) = (Vec::new(), Vec::new());
            let (mut ours_cpu, mut bare_cpu) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let (l, cpu) = timed(
                    usher_pid,
                    &format!("http://{usher}/usher/auth/request"),
                    rate,
                )?;
                ours.push(l);
                ours_cpu.push(cpu);
                // The same driver at the same rate against the bare server: what the
                // machine and the driver alone cost.
                let (l, cpu) = timed(bare_pid, &format!("http://{baseline}/"), rate)?;
                bare.push(l);
                bare_cpu.push(cpu);
            }
            let realtime = ours.iter().chain(&bare).all(|l| l.realtime);
            let med = |v: &[paced::Latency], f: fn(&paced::Latency) -> f64| {
                median(v.iter().map(f).collect())
            };
            let each = |v: &[paced::Latency]| {
                v.iter()
                    .map(|l| format!("{:.2}", l.p99_ms))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                notes,
                "- Latency at {name}, paced from 64 connections by one driver thread, timed from when each request was due (`src/paced.rs`; it shares the 2 cores{}), medians of {rounds} round(s) per side, alternating: `/usher/auth/request` {:.0} req/s, p50 {:.3} ms, **p99 {:.3} ms** (each round: {}), p99.9 {:.3} ms, max {:.1} ms; the bare hyper server at the same rate: p50 {:.3} ms, **p99 {:.3} ms** (each round: {}), p99.9 {:.3} ms, max {:.1} ms (target p99 ≤ 1 ms at half). Server CPU per request while paced (median): Usher {:.1} µs, the bare server {:.1} µs.",
                if realtime {
                    ", at real-time priority"
                } else {
                    ", at normal priority: the system refused real-time"
                },
                med(&ours, |l| l.rate),
                med(&ours, |l| l.p50_ms),
                med(&ours, |l| l.p99_ms),
                each(&ours),
                med(&ours, |l| l.p999_ms),
                med(&ours, |l| l.max_ms),
                med(&bare, |l| l.p50_ms),
                med(&bare, |l| l.p99_ms),
                each(&bare),
                med(&bare, |l| l.p999_ms),
                med(&bare, |l| l.max_ms),
                median(ours_cpu),
                median(bare_cpu),
            );
        }
    }
    if let Some((_, threaded)) = &threaded {
        let mut row = Row {
            scenario: "usher reverse proxy → upstream (default: the shared runtime)",
            baseline: "nginx proxy_pass → the same upstream",
            base: Vec::new(),
            usher: Vec::new(),
            target: "≥ 0.9",
        };
        let mut per_core = Row {
            scenario: "usher reverse proxy → upstream, `server.threads` = the cores",
            ..row.clone()
        };
        for _ in 0..rounds {
            let base = wrk(
                &format!("http://127.0.0.1:{}/", nginx.base),
                seconds,
                Some(&script),
                &servers,
            )?;
            row.base.push(base);
            per_core.base.push(base);
            row.usher.push(wrk(
                &format!("http://{usher}/"),
                seconds,
                Some(&script),
                &servers,
            )?);
            per_core.usher.push(wrk(
                &format!("http://{threaded}/"),
                seconds,
                Some(&script),
                &servers,
            )?);
        }
        rows.push(row);
        rows.push(per_core);
    }
    let mut table = if rows.is_empty() {
        String::new()
    } else {
        report(&rows, sessions, seconds)
    };
    table.push_str(&notes);
    drop(nginx);
    if want("anonymous-flood") {
        let q = |v: Option<u64>, full: u64, quick: u64| {
            v.unwrap_or(if args.quick { quick } else { full })
        };
        let f = flood::Flood {
            cookieless: q(args.cookieless, 1_000_000, 20_000),
            anonymous: q(args.anonymous, 200_000, 5_000),
            max_anonymous: q(args.max_anonymous, 100_000, 2_000),
        };
        drop(usher_proc);
        table.push_str("\n### Anonymous flood (issue 5)\n\n");
        table.push_str(&flood::run(dir.path(), &db, sessions, &script, &f)?);
    }
    if want("login") {
        table.push_str("\n### Sign-ins (issue 9)\n\n");
        table.push_str(&login::run(&rt, dir.path(), seconds)?);
    }
    if want("million") {
        let n = if args.quick { 20_000 } else { 1_000_000 };
        table.push_str("\n### A million sessions (issue 9)\n\n");
        table.push_str(&scale::run(&rt, dir.path(), n)?);
    }
    if want("history") {
        let pick = |v: Option<u64>, full: u64, quick: u64| {
            v.unwrap_or(if args.quick { quick } else { full })
        };
        let sizes = history::Sizes {
            events: pick(args.history_events, 10_000_000, 200_000),
            users: pick(args.history_users, 100_000, 1_000),
        };
        table.push_str("\n### History in SQLite (issue 6)\n\n");
        table.push_str(&rt.block_on(history::run(dir.path(), &sizes))?);
    }
    println!("{table}");
    if !args.quick && args.scenario.is_none() {
        write_report(&table)?;
    }
    Ok(())
}

/// The full run's record: `docs/BENCHMARKS.md`, with the command and the machine.
fn write_report(table: &str) -> anyhow::Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let nginx = Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    let date = usher_core::Clock::now(&SystemClock).round(jiff::Unit::Minute)?;
    let text = format!(
        "# Benchmarks\n\n\
         Written by the full run of `usher-bench` (crates/usher-bench); do not edit by hand.\n\
         Each throughput scenario runs against its baseline alternately, in the same run, on\n\
         loopback; the tables give medians and their ratio — absolute figures drift on a\n\
         shared machine, ratios hold better. wrk, nginx, the baseline and Usher all share\n\
         the same cores, which caps every absolute figure.\n\n\
         ```\n\
         cargo run --release -p usher-bench                     # this file (takes ~20 min)\n\
         cargo run --release -p usher-bench -- --quick          # every scenario briefly (CI)\n\
         cargo run --release -p usher-bench -- --scenario NAME  # forward-auth, auth-endpoint,\n\
         \x20                                                      # reverse-proxy, anonymous-flood,\n\
         \x20                                                      # login, million, history\n\
         ```\n\n\
         Needs `wrk`, `nginx` and `curl` (`apt-get install wrk nginx curl`).\n\n\
         Machine: {cores} cores of {cpu}, Linux {kernel}, {nginx} (1 worker per core). Run {date}.\n\n\
         ## Throughput\n\n{table}\n"
    );
    std::fs::write(workspace_root().join("docs/BENCHMARKS.md"), text)?;
    eprintln!("wrote docs/BENCHMARKS.md");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_for_the_auth_endpoint_and_positive() {
        assert_eq!(paced_rate(None, None).unwrap(), None);
        assert_eq!(
            paced_rate(Some(5000.0), Some("auth-endpoint")).unwrap(),
            Some(5000.0)
        );
        for scenario in [None, Some("reverse-proxy")] {
            let e = paced_rate(Some(5000.0), scenario).unwrap_err().to_string();
            assert!(e.contains("--scenario auth-endpoint"), "{e}");
        }
        for bad in [0.0, -5.0, 0.5, f64::NAN, f64::INFINITY] {
            let e = paced_rate(Some(bad), Some("auth-endpoint"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("1 or more"), "{bad}: {e}");
        }
    }

    #[test]
    fn compare_and_instructions_know_two_scenarios() {
        assert!(!proxied("--compare", None).unwrap());
        assert!(!proxied("--compare", Some("auth-endpoint")).unwrap());
        assert!(proxied("--instructions", Some("reverse-proxy")).unwrap());
        let e = proxied("--instructions", Some("login"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--instructions") && e.contains("\"login\""),
            "{e}"
        );
    }
}
