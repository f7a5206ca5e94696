//! `--compare OTHER`: this build's Usher and another `usher` binary (an earlier
//! commit's, say) under the same load at the same time, each on its own copy of the
//! same sessions. Alternating runs on this shared 2-core machine swing by ±15% from
//! one run to the next; loaded together, both servers meet the same drift, and the
//! ratio of what a request costs each (CPU time per request) shows changes of a few
//! percent (issue 9).
//!
//!     git worktree add /tmp/before HEAD~1
//!     CARGO_TARGET_DIR=/tmp/before-target cargo build --release -p usher --manifest-path /tmp/before/Cargo.toml
//!     cargo run --release -p usher-bench -- --compare /tmp/before-target/release/usher [--scenario reverse-proxy]

use crate::{
    cpu_seconds, free_port, median, start_baseline, start_usher_bin, wrk_finish, wrk_start,
};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub(crate) struct Compare<'a> {
    pub other: &'a Path,
    pub this: PathBuf,
    /// The reverse proxy (to the bare server as the upstream) instead of
    /// `/usher/auth/request`.
    pub proxy: bool,
    pub rounds: usize,
    pub seconds: u64,
}

/// One side's share of a round: requests answered, CPU seconds spent.
struct Side {
    requests: f64,
    cpu: f64,
}

impl Side {
    fn us_per_request(&self) -> f64 {
        self.cpu * 1e6 / self.requests.max(1.0)
    }
}

/// `db` is seeded already; `script` sends its cookies. Returns the report.
pub(crate) fn run(c: &Compare, dir: &Path, db: &Path, script: &Path) -> anyhow::Result<String> {
    // Each server writes its own copy: two writers on one SQLite file would wait on
    // each other's flushes.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir)?;
    let other_db = other_dir.join("usher.db");
    snapshot(db, &other_db)?;
    let upstream = if c.proxy {
        Some(start_baseline()?)
    } else {
        None
    };
    let env: Vec<_> = upstream
        .iter()
        .map(|(_, addr)| ("USHER_UPSTREAM_URL", format!("http://{addr}")))
        .collect();
    let path = if c.proxy { "/" } else { "/usher/auth/request" };
    let (this_port, other_port) = (free_port()?, free_port()?);
    let this = start_usher_bin(&c.this, dir, db, this_port, &env)?;
    let other = start_usher_bin(c.other, &other_dir, &other_db, other_port, &env)?;
    let mut out = String::new();
    let mut ratios = Vec::new();
    let mut rates = Vec::new();
    for round in 1..=c.rounds {
        let (a, b) = together(
            [
                (this.0.id(), format!("http://127.0.0.1:{this_port}{path}")),
                (other.0.id(), format!("http://127.0.0.1:{other_port}{path}")),
            ],
            c.seconds,
            script,
        )?;
        let ratio = a.us_per_request() / b.us_per_request();
        writeln!(
            out,
            "- round {round}: this build {:.0} requests, {:.2} µs CPU/request; other {:.0} requests, {:.2} µs CPU/request; CPU ratio {ratio:.3}",
            a.requests,
            a.us_per_request(),
            b.requests,
            b.us_per_request(),
        )?;
        ratios.push(ratio);
        rates.push(a.requests / b.requests.max(1.0));
    }
    writeln!(
        out,
        "\n{}: CPU per request, this build / {}: **{:.3}** (median of {} rounds; requests answered {:.3}). Both loaded at once by a wrk -t1 -c32 each, on copies of the same sessions{}.",
        if c.proxy {
            "Reverse proxy to the bare server"
        } else {
            "`/usher/auth/request`"
        },
        c.other.display(),
        median(ratios),
        c.rounds,
        median(rates),
        if c.proxy {
            " (one bare hyper server is the upstream of both)"
        } else {
            ""
        }
    )?;
    Ok(out)
}

/// Two wrk runs at once, one per server; each server's requests and CPU time.
fn together(
    servers: [(u32, String); 2],
    seconds: u64,
    script: &Path,
) -> anyhow::Result<(Side, Side)> {
    let before: Vec<f64> = servers
        .iter()
        .map(|(pid, _)| cpu_seconds(&[*pid]))
        .collect();
    let runs = servers
        .iter()
        .map(|(_, url)| wrk_start(url, seconds, Some(script), 1, 32))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut sides = Vec::new();
    for ((run, (pid, url)), cpu_before) in runs.into_iter().zip(&servers).zip(before) {
        let out = wrk_finish(run, url)?;
        sides.push(Side {
            requests: out.requests,
            cpu: cpu_seconds(&[*pid]) - cpu_before,
        });
    }
    let b = sides.pop().context("two sides")?;
    let a = sides.pop().context("two sides")?;
    Ok((a, b))
}

/// A consistent copy of the SQLite store at `from`, written by SQLite itself (`VACUUM
/// INTO`): copying the files while the seeder's last connection was still checkpointing
/// gave a torn copy that the second server refused as malformed (seen twice).
pub(crate) fn snapshot(from: &Path, to: &Path) -> anyhow::Result<()> {
    use sqlx::Connection;
    let _ = std::fs::remove_file(to);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut c =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", from.display())).await?;
        sqlx::query("VACUUM INTO ?")
            .bind(to.to_string_lossy().into_owned())
            .execute(&mut c)
            .await
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        c.close().await?;
        Ok(())
    })
}
