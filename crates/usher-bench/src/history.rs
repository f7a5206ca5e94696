//! The history scenario (issue 6): a SQLite store with ten million events and a hundred
//! thousand users, then the two reads administrators make — one user's last 100 events,
//! and the inactive-users report — timed through the real `Store` (medians of repeated
//! runs). The data is generated inside SQLite in one transaction per table (going
//! through `Store::event_record` would take hours and measure nothing of interest).

use anyhow::Context;
use sqlx::Connection;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;
use usher_store::{EventQuery, StoreUrl};

pub struct Sizes {
    pub events: u64,
    pub users: u64,
}

/// Milliseconds of each of `runs` calls of `f(i)`, sorted.
async fn timed<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        f(i).await?;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

pub async fn run(dir: &Path, sizes: &Sizes) -> anyhow::Result<String> {
    let db = dir.join("history.db");
    let url = StoreUrl::parse(&format!("sqlite://{}", db.display()))?;
    // The real schema and migrations first.
    drop(usher_store::open(&url).await?);
    let started = Instant::now();
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let (events, users) = (sizes.events as i64, sizes.users as i64);
    // Times in ms: a year of history before 2026-11-01, evenly spread.
    let end: i64 = 1_793_491_200_000;
    let span: i64 = 365 * 86_400_000;
    let mut tx = c.begin().await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1)
         INSERT INTO users (name, display_name, email, disabled, password_hash, created_at, last_login_at)
         SELECT 'user' || i, 'User ' || i, '', 0, NULL, $2 - $3,
                CASE WHEN i % 10 = 0 THEN $2 - $3 + i ELSE $2 - (i % 1000) * 1000 END
         FROM n",
    )
    .bind(users)
    .bind(end)
    .bind(span)
    .execute(&mut *tx)
    .await?;
    // One session per user: the inactive tenth signed in long ago and went quiet.
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_name, kind, ip, first_ip, user_agent, client, host,
             requests, created_at, last_access_at, ended_at, end_reason, ended_by)
         SELECT printf('s%011d', rowid), randomblob(32), name, 'web',
                '10.0.0.1', '10.' || (rowid % 250) || '.0.1', 'Mozilla/5.0 bench', 'Firefox', 'app',
                10, last_login_at, last_login_at + 60000, last_login_at + 120000, 'logout', name
         FROM users",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1)
         INSERT INTO events (at, kind, user_name, session_id, ip, user_agent, actor, detail)
         SELECT $2 - $3 + i * ($3 / $1),
                CASE i % 4 WHEN 0 THEN 'login' WHEN 1 THEN 'logout' WHEN 2 THEN 'expired' ELSE 'login_failed' END,
                'user' || (i % $4), NULL, '10.' || (i % 250) || '.' || (i / 250 % 250) || '.1',
                'Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0',
                'user' || (i % $4), NULL
         FROM n",
    )
    .bind(events)
    .bind(end)
    .bind(span)
    .bind(users)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(&mut c).await?;
    c.close().await?;
    let seeded = started.elapsed();

    let store = usher_store::open(&url)
        .await
        .context("reopening the store")?;
    let per_user = timed(50, |i| {
        let store = store.clone();
        async move {
            let q = EventQuery {
                user: Some(format!("user{}", (i as u64 * 7919) % sizes.users)),
                limit: 100,
                ..Default::default()
            };
            let page = store.events(&q).await?;
            let want = (sizes.events / sizes.users).min(100) as usize;
            anyhow::ensure!(page.items.len() == want, "expected {want} events");
            Ok(page.items.len())
        }
    })
    .await?;
    let since = jiff::Timestamp::from_millisecond(end - 30 * 86_400_000)?;
    let mut found = 0;
    let report = timed(11, |_| {
        let store = store.clone();
        async move { Ok(store.inactive_users(since).await?.len()) }
    })
    .await?;
    found = found.max(store.inactive_users(since).await?.len());
    let by_kind = timed(11, |_| {
        let store = store.clone();
        async move {
            let q = EventQuery {
                kind: Some(usher_core::EventKind::LoginFailed),
                limit: 100,
                ..Default::default()
            };
            Ok(store.events(&q).await?.items.len())
        }
    })
    .await?;
    let net = timed(11, |_| {
        let store = store.clone();
        async move {
            let q = EventQuery {
                ip: Some("10.7.0.0/16".parse()?),
                limit: 100,
                ..Default::default()
            };
            Ok(store.events(&q).await?.items.len())
        }
    })
    .await?;
    let med = |v: &[f64]| v[v.len() / 2];
    let max = |v: &[f64]| v[v.len() - 1];
    let size_mib = std::fs::metadata(&db)?.len() as f64 / (1024.0 * 1024.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} events, {} users, one ended session each ({size_mib:.0} MiB SQLite file, seeded in {:.0?}).\n\n\
         | read | median | max | target |\n|---|---|---|---|\n\
         | one user's last 100 events (50 users) | {:.2} ms | {:.2} ms | ≤ 50 ms |\n\
         | inactive report, since 30 days before the newest login ({found} of {} users) | {:.1} ms | {:.1} ms | ≤ 50 ms |\n\
         | latest 100 `login_failed` events | {:.2} ms | {:.2} ms | |\n\
         | latest 100 events from 10.7.0.0/16 (scanned, not indexed) | {:.1} ms | {:.1} ms | |",
        sizes.events,
        sizes.users,
        seeded,
        med(&per_user),
        max(&per_user),
        sizes.users,
        med(&report),
        max(&report),
        med(&by_kind),
        max(&by_kind),
        med(&net),
        max(&net),
    );
    Ok(out)
}
