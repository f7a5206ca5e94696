//! The PostgreSQL backend, for several Usher nodes sharing one database.
//!
//! Commits are synchronous (PostgreSQL's default `synchronous_commit = on`): an
//! acknowledged login or end is on disk. Appends to the change feed take a
//! transaction-scoped advisory lock first, because identity values are handed out at
//! insert time but become visible at commit: without the lock, a reader could see
//! entry 11 commit before 10 and move its cursor past 10 for good.

use crate::rows::{SESSION_COLUMNS, SessionRow};
use crate::{LiveAfter, LiveCursor, LivePage, Result, StoreError};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// Arbitrary key of the advisory lock that orders change-feed appends.
const CHANGE_FEED_LOCK: i64 = 0x5553_4845_5201;

pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad PostgreSQL URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    async fn write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// Live sessions by id (the engine loads them all at start), through the index of
    /// live ones (migration 0004).
    async fn live_page(&self, from: &LiveCursor, limit: u32) -> Result<LivePage> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE ended_at IS NULL AND id > $1 ORDER BY id LIMIT $2"
        );
        let after = match &from.0 {
            LiveAfter::Id(id) => id.as_str(),
            LiveAfter::Start | LiveAfter::Row(_) => "",
        };
        let sessions = sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?
            .into_iter()
            .map(SessionRow::into_record)
            .collect::<Result<Vec<_>>>()?;
        let next = sessions
            .last()
            .filter(|_| sessions.len() == limit as usize)
            .map(|s| LiveCursor(LiveAfter::Id(s.id)));
        Ok(LivePage { sessions, next })
    }

    async fn before_change(tx: &mut Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHANGE_FEED_LOCK)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

crate::sql::impl_sql_store!(pg_store, super::PgStore, sqlx::Postgres);
