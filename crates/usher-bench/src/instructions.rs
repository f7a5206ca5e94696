//! `--instructions`: what a request costs in instructions, counted by valgrind's
//! callgrind — the bare server's `/` and Usher's `/usher/auth/request` (or, with
//! `--scenario reverse-proxy`, Usher's proxying to a bare upstream that runs natively
//! and is not counted), each under the same wrk load. Times on this shared 2-core
//! machine swing by ±15% from run to run; an instruction count does not move with the
//! neighbours, so a change of a few percent in Usher's own work shows (issue 9:
//! "profile … callgrind for repeatable instruction counts"). What it cannot see: the kernel's share (most of a request on
//! loopback), cache misses, and CPU features valgrind hides — SHA-NI among them, so
//! the token's SHA-256 counts ~3,500 instructions here and a few hundred cycles
//! natively.
//!
//! Each server starts with instrumentation off (loading sessions is not a request),
//! is warmed up for a second, then counted while wrk runs; the dump is read and the
//! server killed. Usher's flush interval is set to an hour: a flush costs the same
//! each interval whatever the rate, and under valgrind's slow rate it would be spread
//! over a twentieth of the requests. The dumps stay in the working directory for
//! `callgrind_annotate` (with `--keep`).

use crate::{
    Proc, baseline_command, free_port, usher_command, wait_port_within, wrk_finish, wrk_start,
};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One server's count.
struct Counted {
    requests: f64,
    instructions: f64,
    dump: PathBuf,
}

impl Counted {
    fn per_request(&self) -> f64 {
        self.instructions / self.requests.max(1.0)
    }
}

/// `db` is seeded; `script` sends its cookies. Returns the report.
/// `kept`: the working directory (and the dumps in it) outlives the run.
pub(crate) fn run(
    dir: &Path,
    db: &Path,
    script: &Path,
    seconds: u64,
    proxy: bool,
    kept: bool,
) -> anyhow::Result<String> {
    let bare = {
        let port = free_port()?;
        count(
            baseline_command(port),
            port,
            &format!("http://127.0.0.1:{port}/"),
            &dir.join("bare.callgrind"),
            script,
            seconds,
        )?
    };
    // The reverse proxy's upstream: a bare server, not counted (it runs natively).
    let upstream = if proxy {
        Some(crate::start_baseline()?)
    } else {
        None
    };
    let usher = {
        let port = free_port()?;
        let bin = crate::usher_bin();
        let mut env = vec![("USHER_STORE_FLUSH_INTERVAL", "1h".to_owned())];
        if let Some((_, addr)) = &upstream {
            env.push(("USHER_UPSTREAM_URL", format!("http://{addr}")));
        }
        let path = if proxy { "/" } else { "/usher/auth/request" };
        count(
            usher_command(&bin, dir, db, port, &env)?,
            port,
            &format!("http://127.0.0.1:{port}{path}"),
            &dir.join("usher.callgrind"),
            script,
            seconds,
        )?
    };
    let mut out =
        String::from("| server | requests counted | instructions per request |\n|---|---|---|\n");
    let usher_name = if proxy {
        "usher reverse proxy `/` → a bare upstream (not counted)"
    } else {
        "usher `/usher/auth/request`"
    };
    for (name, c) in [("bare hyper server `/`", &bare), (usher_name, &usher)] {
        writeln!(
            out,
            "| {name} | {:.0} | {:.0} |",
            c.requests,
            c.per_request()
        )?;
    }
    writeln!(
        out,
        "\nUsher / bare: **{:.2}×** the instructions per request (user space only; wrk -t1 -c8 for {seconds} s each under `valgrind --tool=callgrind`). valgrind hides the CPU's SHA extensions, so SHA-256 is counted in software here (~3,500 a request); in real runs, with them, perf puts it at about 0.5% of a forward-auth request's CPU.\n\nUsher's heaviest functions, instructions per request (self):\n",
        usher.per_request() / bare.per_request().max(1.0),
    )?;
    for (ir, name) in heaviest(&usher.dump, 15)? {
        writeln!(out, "- {:.0} {name}", ir / usher.requests.max(1.0))?;
    }
    if kept {
        writeln!(
            out,
            "\nDumps: {} and {} (`callgrind_annotate --inclusive=yes FILE`).",
            usher.dump.display(),
            bare.dump.display()
        )?;
    } else {
        writeln!(
            out,
            "\nWith `--keep`, the dumps stay for `callgrind_annotate`."
        )?;
    }
    Ok(out)
}

/// Runs `cmd` under callgrind and counts the instructions of the requests wrk sends to
/// `url` for `seconds`.
fn count(
    cmd: Command,
    port: u16,
    url: &str,
    out: &Path,
    script: &Path,
    seconds: u64,
) -> anyhow::Result<Counted> {
    let mut wrapped = Command::new("valgrind");
    wrapped
        .args(["--tool=callgrind", "--instr-atstart=no"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(d) = cmd.get_current_dir() {
        wrapped.current_dir(d);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let proc = Proc(
        wrapped
            .spawn()
            .context("starting valgrind (apt-get install valgrind)")?,
    );
    // Loading the sessions under valgrind takes a while.
    wait_port_within(port, Duration::from_secs(300))?;
    let pid = proc.0.id().to_string();
    // Connections made, caches filled, per-thread state set up: not counted.
    wrk_finish(wrk_start(url, 1, Some(script), 1, 8)?, url)?;
    callgrind_control(&["-i", "on", &pid])?;
    let measured = wrk_finish(wrk_start(url, seconds, Some(script), 1, 8)?, url)?;
    callgrind_control(&["-d", &pid])?;
    // The dump is written by the server's own threads: wait for the file.
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let mut instructions = None;
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(&dump)
            && let Some(total) = text
                .lines()
                .find_map(|l| l.strip_prefix("totals:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
        {
            instructions = Some(total);
            break;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    drop(proc);
    let Some(instructions) = instructions else {
        bail!("callgrind wrote no dump at {}", dump.display());
    };
    Ok(Counted {
        requests: measured.requests,
        instructions,
        dump,
    })
}

fn callgrind_control(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running callgrind_control (apt-get install valgrind)")?;
    if !status.success() {
        bail!("callgrind_control {} failed", args.join(" "));
    }
    Ok(())
}

/// The `n` functions of `dump` with the most instructions of their own.
fn heaviest(dump: &Path, n: usize) -> anyhow::Result<Vec<(f64, String)>> {
    let out = Command::new("callgrind_annotate")
        .arg(dump)
        .output()
        .context("running callgrind_annotate")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "  340,943,432 (17.33%)  ???:sha2::sha256::compress256 [/path/usher]"
    Ok(text
        .lines()
        .filter_map(|l| {
            let (count, rest) = l.trim_start().split_once(" (")?;
            let ir: f64 = count.replace(',', "").parse().ok()?;
            let (_, name) = rest.split_once(")  ")?;
            let name = name.split(" [").next()?.trim_start_matches("???:");
            (!name.contains("PROGRAM TOTALS")).then(|| (ir, name.to_owned()))
        })
        .take(n)
        .collect())
}
