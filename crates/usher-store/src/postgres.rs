//! The PostgreSQL backend, for several Usher nodes sharing one database.
//!
//! Commits are synchronous (PostgreSQL's default `synchronous_commit = on`): an
//! acknowledged login or end is on disk. Appends to the change feed take a
//! transaction-scoped advisory lock first, because identity values are handed out at
//! insert time but become visible at commit: without the lock, a reader could see
//! entry 11 commit before 10 and move its cursor past 10 for good.

use crate::rows::{SESSION_COLUMNS, SessionRow};
use crate::{LiveAfter, LiveCursor, LivePage, Result, StoreError, Touch};
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

    fn live_page_done(&self, page: LivePage) {
        drop(page);
    }

    /// One reading: the server's own parallelism is its business.
    async fn live_split(&self, _parts: u32) -> Result<Vec<LiveCursor>> {
        Ok(vec![LiveCursor::default()])
    }

    /// Live sessions by id (the engine loads them all at start), through the index of
    /// live ones (`sessions_live`, there since migration 0001).
    async fn live_page(&self, from: &LiveCursor, limit: u32) -> Result<LivePage> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE ended_at IS NULL AND id > $1 ORDER BY id LIMIT $2"
        );
        let after = match &from.0 {
            LiveAfter::Id(id) => id.as_str(),
            LiveAfter::Start | LiveAfter::Row(_) | LiveAfter::Rows { .. } => "",
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

    /// The inactive-users report's rows; the planner finds the index of sign-ins itself.
    async fn inactive_rows(&self, since_ms: i64) -> Result<Vec<crate::rows::InactiveRow>> {
        let sql = crate::rows::inactive_users_sql("users u");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(since_ms)
            .fetch_all(self.reader())
            .await?)
    }

    /// A flush of request counts alone needs no path of its own here: the batch below is
    /// already one statement.
    async fn touches_alone(&self, touches: Vec<Touch>) -> Result<Result<u64, Vec<Touch>>> {
        Ok(Err(touches))
    }

    /// Up to a thousand sessions' activity in one UPDATE, the batch bound as arrays:
    /// one round trip to the server instead of one per session.
    async fn touch_batch(
        tx: &mut Transaction<'static, Postgres>,
        touches: &[Touch],
    ) -> Result<u64> {
        let mut ids = Vec::with_capacity(touches.len());
        let mut requests = Vec::with_capacity(touches.len());
        let mut at = Vec::with_capacity(touches.len());
        let mut ips = Vec::with_capacity(touches.len());
        let mut agents = Vec::with_capacity(touches.len());
        let mut clients = Vec::with_capacity(touches.len());
        let mut hosts = Vec::with_capacity(touches.len());
        for t in touches {
            ids.push(t.id.as_str());
            requests.push(i64::try_from(t.requests).unwrap_or(i64::MAX));
            at.push(crate::rows::ms(t.last_access_at));
            ips.push(t.ip.to_string());
            agents.push(&*t.user_agent);
            clients.push(&*t.client);
            hosts.push(&*t.host);
        }
        let r = sqlx::query(
            "UPDATE sessions SET requests = sessions.requests + t.requests,
                 last_access_at = GREATEST(sessions.last_access_at, t.at),
                 ip = t.ip, user_agent = t.ua, client = t.client, host = t.host
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                         $6::text[], $7::text[]) AS t(id, requests, at, ip, ua, client, host)
             WHERE sessions.id = t.id AND sessions.ended_at IS NULL",
        )
        .bind(ids)
        .bind(requests)
        .bind(at)
        .bind(ips)
        .bind(agents)
        .bind(clients)
        .bind(hosts)
        .execute(&mut **tx)
        .await?;
        Ok(r.rows_affected())
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
