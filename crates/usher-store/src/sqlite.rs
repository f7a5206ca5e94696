//! The SQLite backend: one file, WAL, `synchronous = FULL`.
//!
//! Writes go through a pool of one connection and start with `BEGIN IMMEDIATE`, so a
//! transaction never has to upgrade a read lock (which SQLite answers with an instant
//! SQLITE_BUSY); other processes (the CLI) queue on `busy_timeout`. Reads use their own
//! pool and never wait for the writer, thanks to WAL.

use crate::{LiveAfter, LiveCursor, LivePage, Result, StoreError, Touch};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
    /// The connections a load reads its pages with (one per part of a split reading),
    /// kept from one page to the next (opening one a page cost a schema read each, and
    /// its memory map started cold); closed after a part's last page, so that the
    /// file's mapped pages leave memory.
    bulk: Arc<std::sync::Mutex<Vec<rusqlite::Connection>>>,
    /// Pages the engine has admitted, reused by the thread that reads the next page: its
    /// rows' text goes into their strings, and what is left is freed there. Freed by
    /// the admitting thread instead, each free took the reader's allocator arena lock
    /// while the reader was allocating the next page — that contention was a fifth of
    /// a restart's CPU (issue 9).
    spent: Arc<std::sync::Mutex<Vec<LivePage>>>,
    /// The connection a flush that only counts requests writes with (see
    /// [`SqliteStore::touches_alone`]), opened on the first such flush.
    flusher: Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged login or kill survives power loss, not just a crash.
            // Batching keeps the fsync count to about one per flush interval.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            path: path.to_owned(),
            bulk: Arc::default(),
            spent: Arc::default(),
            flusher: Arc::default(),
        })
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Live sessions in table (rowid) order (the engine loads them all at start), read
    /// with rusqlite on a blocking thread: sqlx hands every row over from its worker
    /// thread, and for a million sessions that handing over was most of the restart
    /// (issue 9). Here the rows are decoded where SQLite steps through them.
    async fn live_page(&self, from: &LiveCursor, limit: u32) -> Result<LivePage> {
        let path = self.path.clone();
        let (after, until) = match from.0 {
            LiveAfter::Row(row) => (row, None),
            LiveAfter::Rows { after, until } => (after, Some(until)),
            LiveAfter::Start | LiveAfter::Id(_) => (0, None),
        };
        let bulk = self.bulk.clone();
        let spent = self.spent.clone();
        tokio::task::spawn_blocking(move || {
            let spare: Vec<LivePage> = std::mem::take(&mut *lock(&spent));
            let kept = lock(&bulk).pop();
            let c = match kept {
                Some(c) => c,
                None => open_bulk(&path)?,
            };
            let spare = spare.into_iter().flat_map(|p| p.sessions);
            let page = read_live_page(&c, after, until, limit, spare)?;
            if page.next.is_some() {
                lock(&bulk).push(c);
            }
            Ok(page)
        })
        .await
        .map_err(|e| StoreError::Other(format!("reading live sessions: {e}")))?
    }

    /// Ranges of rows holding about as many live sessions each, cut evenly between the
    /// first live row and the table's last row: sessions are written in time order, so
    /// the live ones lie mostly among the newest rows. A skewed split still reads every
    /// session once, only less at the same time.
    async fn live_split(&self, parts: u32) -> Result<Vec<LiveCursor>> {
        let bounds: (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT rowid FROM sessions INDEXED BY sessions_live
                     WHERE ended_at IS NULL ORDER BY rowid LIMIT 1),
                    (SELECT max(rowid) FROM sessions)",
        )
        .fetch_one(self.reader())
        .await?;
        let (Some(first), Some(last)) = bounds else {
            return Ok(vec![LiveCursor::default()]);
        };
        let parts = i64::from(parts.max(1));
        let from = first - 1;
        let step = ((last - from) / parts).max(1);
        let mut cursors = Vec::new();
        let mut after = 0;
        for i in 1..=parts {
            let until = if i == parts {
                i64::MAX
            } else {
                from + step * i
            };
            if until > after {
                cursors.push(LiveCursor(LiveAfter::Rows { after, until }));
                after = until;
            }
        }
        Ok(cursors)
    }

    fn live_page_done(&self, page: LivePage) {
        // The last page has no next reading to free it.
        if page.next.is_none() {
            drop(std::mem::take(&mut *lock(&self.spent)));
            drop(page);
        } else {
            lock(&self.spent).push(page);
        }
    }

    /// The inactive-users report's rows (issue 6: ≤ 50 ms for 10,000 of 100,000 users),
    /// read with rusqlite on a blocking thread. Two things made it 56–79 ms: SQLite
    /// walked all the users in name order to test each one's last sign-in instead of
    /// reading the few through `users_by_last_login` (`IS NULL OR <` is two ranges of
    /// that index, which it only joins when told to), and sqlx handed each of the ten
    /// thousand rows over from its worker thread.
    async fn inactive_rows(&self, since_ms: i64) -> Result<Vec<crate::rows::InactiveRow>> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let c = open_rusqlite(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY, &[])?;
            let sql = crate::rows::inactive_users_sql("users u INDEXED BY users_by_last_login");
            let mut stmt = c.prepare(&sql).map_err(bulk_error)?;
            let rows = stmt
                .query_map([since_ms], |r| {
                    Ok(crate::rows::InactiveRow {
                        name: r.get(0)?,
                        display_name: r.get(1)?,
                        email: r.get(2)?,
                        disabled: r.get(3)?,
                        created_at: r.get(4)?,
                        last_login_at: r.get(5)?,
                        last_login_ip: r.get(6)?,
                        last_activity_at: r.get(7)?,
                    })
                })
                .map_err(bulk_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(bulk_error)
        })
        .await
        .map_err(|e| StoreError::Other(format!("reading inactive users: {e}")))?
    }

    /// A flush that only counts requests — the one that runs every second under load —
    /// written with rusqlite on a blocking thread: one prepared UPDATE stepped once per
    /// session, in one `BEGIN IMMEDIATE` transaction. Through sqlx the batch had to go
    /// as JSON (see `touch_batch`), and SQLite's JSON functions took about half of every
    /// flush — with 10,000 active sessions a flush took ~140 ms of the two cores each
    /// second, and the requests being counted waited for it (issue 9). The writer's
    /// settings are the sqlx writer's: `synchronous = FULL`, foreign keys on, and
    /// `busy_timeout` to queue behind it.
    ///
    /// All of it runs on the blocking thread, merging the touches too: on the async
    /// worker that called, checking and copying ten thousand touches (each with three
    /// strings then) held up that worker's requests ~2 ms each second (issue 9: p99).
    async fn touches_alone(&self, touches: Vec<Touch>) -> Result<Result<u64, Vec<Touch>>> {
        let path = self.path.clone();
        let flusher = self.flusher.clone();
        tokio::task::spawn_blocking(move || {
            let touches = crate::rows::merged(&touches);
            let mut slot = lock(&flusher);
            let c = match &mut *slot {
                Some(c) => c,
                None => slot.insert(open_flusher(&path)?),
            };
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(bulk_error)?;
            let mut updated = 0u64;
            {
                let mut stmt = tx
                    .prepare(
                        "UPDATE sessions SET requests = requests + ?1,
                             last_access_at = max(last_access_at, ?2),
                             ip = ?3, user_agent = ?4, client = ?5, host = ?6
                         WHERE id = ?7 AND ended_at IS NULL",
                    )
                    .map_err(bulk_error)?;
                let mut ip = String::new();
                for t in touches.iter() {
                    use std::fmt::Write as _;
                    ip.clear();
                    let _ = write!(ip, "{}", t.ip);
                    let n = stmt
                        .execute(rusqlite::params![
                            i64::try_from(t.requests).unwrap_or(i64::MAX),
                            crate::rows::ms(t.last_access_at),
                            ip,
                            &*t.user_agent,
                            &*t.client,
                            &*t.host,
                            t.id.as_str(),
                        ])
                        .map_err(bulk_error)?;
                    updated += n as u64;
                }
            }
            tx.commit().map_err(bulk_error)?;
            Ok(Ok(updated))
        })
        .await
        .map_err(|e| StoreError::Other(format!("writing request counts: {e}")))?
    }

    /// Up to a thousand sessions' activity in one UPDATE, the batch as one JSON array
    /// of rows: sqlx runs each SQLite statement on its worker thread, and a statement
    /// per session made every flush thousands of round trips between threads, which on
    /// two cores took time from the requests being counted (issue 9).
    async fn touch_batch(tx: &mut Transaction<'static, Sqlite>, touches: &[Touch]) -> Result<u64> {
        let rows: Vec<_> = touches
            .iter()
            .map(|t| {
                (
                    t.id.as_str(),
                    i64::try_from(t.requests).unwrap_or(i64::MAX),
                    crate::rows::ms(t.last_access_at),
                    t.ip.to_string(),
                    &*t.user_agent,
                    &*t.client,
                    &*t.host,
                )
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| StoreError::Other(e.to_string()))?;
        // MATERIALIZED: the JSON is parsed once and each row then finds its session by
        // id. Joined directly, SQLite 3.51 chose to walk the live sessions and read the
        // whole array again for each of them — 4.4 s for 1,000 touches instead of 13 ms.
        let r = sqlx::query(
            "WITH t(t_id, t_requests, t_at, t_ip, t_ua, t_client, t_host) AS MATERIALIZED (
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
                        value ->> 5, value ->> 6
                 FROM json_each($1))
             UPDATE sessions SET requests = requests + t_requests,
                 last_access_at = max(last_access_at, t_at),
                 ip = t_ip, user_agent = t_ua, client = t_client, host = t_host
             FROM t
             WHERE sessions.id = t_id AND sessions.ended_at IS NULL",
        )
        .bind(json)
        .execute(&mut **tx)
        .await?;
        Ok(r.rows_affected())
    }

    /// SQLite serialises writers already: change-feed order is commit order.
    async fn before_change(_tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        Ok(())
    }
}

crate::sql::impl_sql_store!(sqlite_store, super::SqliteStore, sqlx::Sqlite);

/// Nothing under these locks is left half-changed by a panic.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bulk_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

/// One page of live sessions after rowid `after`, on its own read-only connection (WAL:
/// it never waits for the writer). By rowid, not by id: ids are random, so id order
/// visits the table's pages at random — a restart with a million took 7.5 s instead of
/// 2.3 (issue 9). `INDEXED BY`: the live sessions' own index, never the whole table.
/// How long a writer queues behind another — the sqlx writer, the flush's connection,
/// the CLI in another process — before the store counts as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A rusqlite connection to the store's file that waits for other writers as the sqlx
/// ones do, with `pragmas` set.
fn open_rusqlite(
    path: &Path,
    flags: rusqlite::OpenFlags,
    pragmas: &[(&str, &dyn rusqlite::ToSql)],
) -> Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        flags | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(bulk_error)?;
    c.busy_timeout(BUSY_TIMEOUT).map_err(bulk_error)?;
    for (name, value) in pragmas {
        c.pragma_update(None, name, value).map_err(bulk_error)?;
    }
    Ok(c)
}

/// A read-only connection for [`read_live_page`], reading the file through a memory
/// map (no copy of each page into SQLite's cache).
fn open_bulk(path: &Path) -> Result<rusqlite::Connection> {
    open_rusqlite(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        &[("mmap_size", &(1i64 << 32))],
    )
}

/// The read-write connection of [`SqliteStore::touches_alone`], with the sqlx
/// writer's durability and checks.
fn open_flusher(path: &Path) -> Result<rusqlite::Connection> {
    open_rusqlite(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        &[("synchronous", &"FULL"), ("foreign_keys", &true)],
    )
}

fn read_live_page(
    c: &rusqlite::Connection,
    after: i64,
    until: Option<i64>,
    limit: u32,
    mut spare: impl Iterator<Item = usher_core::SessionRecord>,
) -> Result<LivePage> {
    let mut stmt = c
        .prepare(
            "SELECT id, token_hash, user_name, kind, ip, first_ip, user_agent, client, host,
                    requests, created_at, last_access_at, rowid
             FROM sessions INDEXED BY sessions_live
             WHERE ended_at IS NULL AND rowid > ?1 AND rowid <= ?3 ORDER BY rowid LIMIT ?2",
        )
        .map_err(bulk_error)?;
    let mut rows = stmt
        .query((after, limit, until.unwrap_or(i64::MAX)))
        .map_err(bulk_error)?;
    let mut sessions = Vec::with_capacity(limit.min(10_000) as usize);
    let mut last = after;
    while let Some(r) = rows.next().map_err(bulk_error)? {
        let row = live_row(r).map_err(bulk_error)?;
        sessions.push(match spare.next() {
            Some(spent) => row.into_record_reusing(spent)?,
            None => row.into_record()?,
        });
        last = r.get(12).map_err(bulk_error)?;
    }
    let next = (sessions.len() == limit as usize).then_some(LiveCursor(match until {
        Some(until) => LiveAfter::Rows { after: last, until },
        None => LiveAfter::Row(last),
    }));
    Ok(LivePage { sessions, next })
}

/// A row of `read_live_page`'s query, its text borrowed from SQLite.
fn live_row<'a>(r: &'a rusqlite::Row<'_>) -> rusqlite::Result<crate::rows::LiveRow<'a>> {
    let text = |i: usize| -> rusqlite::Result<&'a str> { Ok(r.get_ref(i)?.as_str()?) };
    Ok(crate::rows::LiveRow {
        id: text(0)?,
        token_hash: r.get_ref(1)?.as_blob()?,
        user_name: r.get_ref(2)?.as_str_or_null()?,
        kind: text(3)?,
        ip: text(4)?,
        first_ip: text(5)?,
        user_agent: text(6)?,
        client: text(7)?,
        host: text(8)?,
        requests: r.get(9)?,
        created_at: r.get(10)?,
        last_access_at: r.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flush's connection writes with the durability the sqlx writer promises
    /// (SECURITY.md: an acknowledged count survives power loss), and checks foreign keys.
    #[test]
    fn the_flush_connection_has_the_writers_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usher.db");
        // The store makes the file; the flush only ever opens it.
        assert!(open_flusher(&path).is_err(), "no file, no flush");
        drop(rusqlite::Connection::open(&path).unwrap());
        let c = open_flusher(&path).unwrap();
        let pragma =
            |name: &str| -> i64 { c.pragma_query_value(None, name, |r| r.get(0)).unwrap() };
        assert_eq!(pragma("synchronous"), 2, "FULL");
        assert_eq!(pragma("foreign_keys"), 1);
    }
}
