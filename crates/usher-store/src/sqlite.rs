//! The SQLite backend: one file, WAL, `synchronous = FULL`.
//!
//! Writes go through a pool of one connection and start with `BEGIN IMMEDIATE`, so a
//! transaction never has to upgrade a read lock (which SQLite answers with an instant
//! SQLITE_BUSY); other processes (the CLI) queue on `busy_timeout`. Reads use their own
//! pool and never wait for the writer, thanks to WAL.

use crate::{Result, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::path::Path;
use std::time::Duration;
use usher_core::{SessionId, SessionRecord};

pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
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
            .busy_timeout(Duration::from_secs(5));
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
        Ok(Self { writer, reader })
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Live sessions after `after` by id, the whole page as ONE row that SQLite builds
    /// as a JSON array. sqlx hands every row over from its worker thread; for the
    /// million sessions loaded at start that handing over was most of the restart
    /// (issue 9), one row per page is not.
    async fn live_page(&self, after: Option<&SessionId>, limit: u32) -> Result<Vec<SessionRecord>> {
        let page: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(id, hex(token_hash), user_name, kind, ip, first_ip,
                 user_agent, client, host, requests, created_at, last_access_at) ORDER BY id)
             FROM (SELECT * FROM sessions WHERE ended_at IS NULL AND id > $1 ORDER BY id LIMIT $2)",
        )
        .bind(after.map_or("", SessionId::as_str))
        .bind(i64::from(limit))
        .fetch_one(self.reader())
        .await?;
        page.map_or_else(|| Ok(Vec::new()), |p| crate::rows::live_page(&p))
    }

    /// SQLite serialises writers already: change-feed order is commit order.
    async fn before_change(_tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        Ok(())
    }
}

crate::sql::impl_sql_store!(sqlite_store, super::SqliteStore, sqlx::Sqlite);
