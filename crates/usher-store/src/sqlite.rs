//! The SQLite backend: one file, WAL, `synchronous = FULL`.
//!
//! Writes go through a pool of one connection and start with `BEGIN IMMEDIATE`, so a
//! transaction never has to upgrade a read lock (which SQLite answers with an instant
//! SQLITE_BUSY); other processes (the CLI) queue on `busy_timeout`. Reads use their own
//! pool and never wait for the writer, thanks to WAL.

use crate::{
    Change, ChangeKind, EndSessions, EndedSessions, EventQuery, Result, SessionSelector, Store,
    StoreError, Touch,
};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use usher_core::{
    EndReason, Event, EventKind, Group, NewSession, SessionId, SessionKind, SessionRecord,
    Timestamp, TokenHash, User, Username,
};

pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(v: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(v).map_err(|e| StoreError::Corrupt(format!("timestamp {v}: {e}")))
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                if db.is_unique_violation() {
                    return StoreError::Conflict(db.message().to_owned());
                }
                // Primary result codes: BUSY 5, LOCKED 6, READONLY 8, IOERR 10, FULL 13, CANTOPEN 14.
                let primary = db
                    .code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .map(|c| c & 0xff);
                match primary {
                    Some(5 | 6 | 8 | 10 | 13 | 14) => {
                        StoreError::Unavailable(db.message().to_owned())
                    }
                    _ => StoreError::Other(e.to_string()),
                }
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Other(format!("migration failed: {e}"))
    }
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
}

fn parse_ip(s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("ip address {s:?}")))
}

fn session_from_row(row: &SqliteRow) -> Result<SessionRecord> {
    let id: String = row.try_get("id")?;
    let hash: Vec<u8> = row.try_get("token_hash")?;
    let user: Option<String> = row.try_get("user_name")?;
    let kind: String = row.try_get("kind")?;
    let reason: Option<String> = row.try_get("end_reason")?;
    let ended_at: Option<i64> = row.try_get("ended_at")?;
    let requests: i64 = row.try_get("requests")?;
    Ok(SessionRecord {
        id: SessionId::parse(&id).map_err(|_| StoreError::Corrupt(format!("session id {id:?}")))?,
        token_hash: TokenHash::from_slice(&hash)
            .ok_or_else(|| StoreError::Corrupt(format!("token hash of {id}")))?,
        user: user
            .map(|u| Username::parse(&u))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        kind: SessionKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("session kind {kind:?}")))?,
        ip: parse_ip(row.try_get("ip")?)?,
        first_ip: parse_ip(row.try_get("first_ip")?)?,
        user_agent: row.try_get("user_agent")?,
        client: row.try_get("client")?,
        host: row.try_get("host")?,
        requests: u64::try_from(requests).unwrap_or(0),
        created_at: ts(row.try_get("created_at")?)?,
        last_access_at: ts(row.try_get("last_access_at")?)?,
        ended_at: ended_at.map(ts).transpose()?,
        end_reason: reason
            .map(|r| {
                EndReason::parse(&r).ok_or_else(|| StoreError::Corrupt(format!("end reason {r:?}")))
            })
            .transpose()?,
        ended_by: row.try_get("ended_by")?,
    })
}

fn event_from_row(row: &SqliteRow) -> Result<Event> {
    let kind: String = row.try_get("kind")?;
    let session: Option<String> = row.try_get("session_id")?;
    let ip: Option<String> = row.try_get("ip")?;
    Ok(Event {
        at: ts(row.try_get("at")?)?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?,
        user: row.try_get("user_name")?,
        session: session.and_then(|s| SessionId::parse(&s).ok()),
        ip: ip.map(|s| parse_ip(&s)).transpose()?,
        user_agent: row.try_get("user_agent")?,
        actor: row.try_get("actor")?,
        detail: row.try_get("detail")?,
    })
}

const SESSION_COLUMNS: &str = "id, token_hash, user_name, kind, ip, first_ip, user_agent, client, host, requests, created_at, last_access_at, ended_at, end_reason, ended_by";

async fn insert_event(tx: &mut Transaction<'static, Sqlite>, e: &Event) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (at, kind, user_name, session_id, ip, user_agent, actor, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(ms(e.at))
    .bind(e.kind.as_str())
    .bind(e.user.as_deref())
    .bind(e.session.as_ref().map(SessionId::as_str))
    .bind(e.ip.map(|ip| ip.to_string()))
    .bind(e.user_agent.as_deref())
    .bind(e.actor.as_deref())
    .bind(e.detail.as_deref())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_change(
    tx: &mut Transaction<'static, Sqlite>,
    at: Timestamp,
    kind: &ChangeKind,
) -> Result<()> {
    let (k, subject) = match kind {
        ChangeKind::SessionEnded(id) => ("session_ended", id.as_str().to_owned()),
        ChangeKind::UserChanged(name) => ("user_changed", name.as_str().to_owned()),
    };
    sqlx::query("INSERT INTO changes (at, kind, subject) VALUES (?, ?, ?)")
        .bind(ms(at))
        .bind(k)
        .bind(subject)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn apply_touches(tx: &mut Transaction<'static, Sqlite>, touches: &[Touch]) -> Result<u64> {
    let mut updated = 0;
    for t in touches {
        // `ended_at IS NULL`: a late touch never revives an ended session.
        // MAX(): last access never moves backwards, whatever order flushes land in.
        let r = sqlx::query(
            "UPDATE sessions SET requests = requests + ?, last_access_at = MAX(last_access_at, ?),
                 ip = ?, user_agent = ?, client = ?, host = ?
             WHERE id = ? AND ended_at IS NULL",
        )
        .bind(i64::try_from(t.requests).unwrap_or(i64::MAX))
        .bind(ms(t.last_access_at))
        .bind(t.ip.to_string())
        .bind(&t.user_agent)
        .bind(&t.client)
        .bind(&t.host)
        .bind(t.id.as_str())
        .execute(&mut **tx)
        .await?;
        updated += r.rows_affected();
    }
    Ok(updated)
}

async fn end_in_tx(
    tx: &mut Transaction<'static, Sqlite>,
    end: &EndSessions,
) -> Result<EndedSessions> {
    apply_touches(tx, &end.touches).await?;
    let rows = match &end.selector {
        SessionSelector::Ids(ids) => {
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(row) = sqlx::query(
                    "SELECT id, user_name, ip, user_agent FROM sessions WHERE id = ? AND ended_at IS NULL",
                )
                .bind(id.as_str())
                .fetch_optional(&mut **tx)
                .await?
                {
                    rows.push(row);
                }
            }
            rows
        }
        SessionSelector::User(name) => {
            sqlx::query(
                "SELECT id, user_name, ip, user_agent FROM sessions WHERE user_name = ? AND ended_at IS NULL",
            )
            .bind(name.as_str())
            .fetch_all(&mut **tx)
            .await?
        }
    };
    let mut ended = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        let sid =
            SessionId::parse(&id).map_err(|_| StoreError::Corrupt(format!("session id {id:?}")))?;
        sqlx::query(
            "UPDATE sessions SET ended_at = ?, end_reason = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL",
        )
        .bind(ms(end.at))
        .bind(end.reason.as_str())
        .bind(&end.actor)
        .bind(&id)
        .execute(&mut **tx)
        .await?;
        let ip: String = row.try_get("ip")?;
        let mut event = Event::new(end.at, EventKind::for_end(end.reason));
        event.user = row.try_get("user_name")?;
        event.session = Some(sid);
        event.ip = ip.parse().ok();
        event.user_agent = row.try_get("user_agent")?;
        event.actor = Some(end.actor.clone());
        event.detail = Some(end.reason.as_str().to_owned());
        insert_event(tx, &event).await?;
        insert_change(tx, end.at, &ChangeKind::SessionEnded(sid)).await?;
        ended.push(sid);
    }
    Ok(ended)
}

async fn write_groups(tx: &mut Transaction<'static, Sqlite>, user: &User) -> Result<()> {
    sqlx::query("DELETE FROM user_groups WHERE user_name = ?")
        .bind(user.name.as_str())
        .execute(&mut **tx)
        .await?;
    for g in &user.groups {
        sqlx::query("INSERT OR IGNORE INTO user_groups (user_name, group_name) VALUES (?, ?)")
            .bind(user.name.as_str())
            .bind(g.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl SqliteStore {
    async fn user_from_row(&self, row: &SqliteRow) -> Result<User> {
        let name: String = row.try_get("name")?;
        let groups: Vec<String> = sqlx::query_scalar(
            "SELECT group_name FROM user_groups WHERE user_name = ? ORDER BY group_name",
        )
        .bind(&name)
        .fetch_all(&self.reader)
        .await?;
        let last_login: Option<i64> = row.try_get("last_login_at")?;
        Ok(User {
            name: Username::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            display_name: row.try_get("display_name")?,
            email: row.try_get("email")?,
            groups: groups
                .iter()
                .map(|g| Group::parse(g).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<_>>()?,
            disabled: row.try_get::<i64, _>("disabled")? != 0,
            password_hash: row.try_get("password_hash")?,
            created_at: ts(row.try_get("created_at")?)?,
            last_login_at: last_login.map(ts).transpose()?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(candidate)
            .execute(&mut *tx)
            .await?;
        let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(value)
    }

    async fn user_create(&self, user: &User, actor: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let r = sqlx::query(
            "INSERT INTO users (name, display_name, email, disabled, password_hash, created_at, last_login_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(user.name.as_str())
        .bind(&user.display_name)
        .bind(&user.email)
        .bind(i64::from(user.disabled))
        .bind(user.password_hash.as_deref())
        .bind(ms(user.created_at))
        .bind(user.last_login_at.map(ms))
        .execute(&mut *tx)
        .await;
        if let Err(e) = r {
            let e = StoreError::from(e);
            return Err(match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!("user {}", user.name)),
                other => other,
            });
        }
        write_groups(&mut tx, user).await?;
        let mut event = Event::new(user.created_at, EventKind::UserCreated);
        event.user = Some(user.name.to_string());
        event.actor = Some(actor.to_owned());
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_get(&self, name: &Username) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.reader)
            .await?;
        match row {
            Some(row) => Ok(Some(self.user_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    async fn user_list(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.user_from_row(row).await?);
        }
        Ok(out)
    }

    async fn user_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.reader)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn user_update(&self, user: &User, actor: &str, at: Timestamp) -> Result<()> {
        let mut tx = self.write().await?;
        let old: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE name = ?")
                .bind(user.name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old_hash) = old else {
            return Err(StoreError::NotFound(format!("user {}", user.name)));
        };
        sqlx::query(
            "UPDATE users SET display_name = ?, email = ?, password_hash = ?, last_login_at = ? WHERE name = ?",
        )
        .bind(&user.display_name)
        .bind(&user.email)
        .bind(user.password_hash.as_deref())
        .bind(user.last_login_at.map(ms))
        .bind(user.name.as_str())
        .execute(&mut *tx)
        .await?;
        write_groups(&mut tx, user).await?;
        if old_hash != user.password_hash {
            let mut event = Event::new(at, EventKind::PasswordChanged);
            event.user = Some(user.name.to_string());
            event.actor = Some(actor.to_owned());
            insert_event(&mut tx, &event).await?;
        }
        insert_change(&mut tx, at, &ChangeKind::UserChanged(user.name.clone())).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_set_disabled(
        &self,
        name: &Username,
        disabled: bool,
        actor: &str,
        at: Timestamp,
    ) -> Result<EndedSessions> {
        let mut tx = self.write().await?;
        let r = sqlx::query("UPDATE users SET disabled = ? WHERE name = ?")
            .bind(i64::from(disabled))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {name}")));
        }
        let ended = if disabled {
            end_in_tx(
                &mut tx,
                &EndSessions {
                    selector: SessionSelector::User(name.clone()),
                    reason: EndReason::UserDisabled,
                    actor: actor.to_owned(),
                    at,
                    touches: Vec::new(),
                },
            )
            .await?
        } else {
            Vec::new()
        };
        let kind = if disabled {
            EventKind::UserDisabled
        } else {
            EventKind::UserEnabled
        };
        let mut event = Event::new(at, kind);
        event.user = Some(name.to_string());
        event.actor = Some(actor.to_owned());
        insert_event(&mut tx, &event).await?;
        insert_change(&mut tx, at, &ChangeKind::UserChanged(name.clone())).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn user_remove(
        &self,
        name: &Username,
        actor: &str,
        at: Timestamp,
    ) -> Result<EndedSessions> {
        let mut tx = self.write().await?;
        let ended = end_in_tx(
            &mut tx,
            &EndSessions {
                selector: SessionSelector::User(name.clone()),
                reason: EndReason::UserDisabled,
                actor: actor.to_owned(),
                at,
                touches: Vec::new(),
            },
        )
        .await?;
        let r = sqlx::query("DELETE FROM users WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {name}")));
        }
        let mut event = Event::new(at, EventKind::UserRemoved);
        event.user = Some(name.to_string());
        event.actor = Some(actor.to_owned());
        insert_event(&mut tx, &event).await?;
        insert_change(&mut tx, at, &ChangeKind::UserChanged(name.clone())).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn session_create(&self, s: &NewSession, client: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let ip = s.client.ip.to_string();
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_name, kind, ip, first_ip, user_agent, client, host,
                 requests, created_at, last_access_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(s.id.as_str())
        .bind(&s.token_hash.as_bytes()[..])
        .bind(s.user.as_ref().map(Username::as_str))
        .bind(s.kind.as_str())
        .bind(&ip)
        .bind(&ip)
        .bind(&s.client.user_agent)
        .bind(client)
        .bind(&s.client.host)
        .bind(ms(s.created_at))
        .bind(ms(s.created_at))
        .execute(&mut *tx)
        .await?;
        if let Some(user) = &s.user {
            sqlx::query("UPDATE users SET last_login_at = ? WHERE name = ?")
                .bind(ms(s.created_at))
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?;
            let mut event = Event::new(s.created_at, EventKind::Login);
            event.user = Some(user.to_string());
            event.session = Some(s.id);
            event.ip = Some(s.client.ip);
            event.user_agent = Some(s.client.user_agent.clone());
            event.actor = Some(user.to_string());
            insert_event(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn session_get(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&hash.as_bytes()[..])
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn sessions_live(&self) -> Result<Vec<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE ended_at IS NULL");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    async fn sessions_of_user(&self, name: &Username) -> Result<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_name = ? ORDER BY created_at DESC"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name.as_str())
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    async fn sessions_end(&self, end: &EndSessions) -> Result<EndedSessions> {
        let mut tx = self.write().await?;
        let ended = end_in_tx(&mut tx, end).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn touches_apply(&self, touches: &[Touch]) -> Result<u64> {
        if touches.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write().await?;
        let n = apply_touches(&mut tx, touches).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn event_record(&self, event: &Event) -> Result<()> {
        let mut tx = self.write().await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events(&self, q: &EventQuery) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT * FROM events
             WHERE (?1 IS NULL OR user_name = ?1) AND (?2 IS NULL OR kind = ?2)
             ORDER BY at DESC, id DESC LIMIT ?3",
        )
        .bind(q.user.as_deref())
        .bind(q.kind.map(EventKind::as_str))
        .bind(i64::from(if q.limit == 0 { 100 } else { q.limit }))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn change_head(&self) -> Result<i64> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes")
            .fetch_one(&self.reader)
            .await?;
        // AUTOINCREMENT never reuses numbers, so an emptied table still moves forward
        // from sqlite_sequence.
        match n {
            Some(n) => Ok(n),
            None => Ok(sqlx::query_scalar(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
            )
            .fetch_one(&self.reader)
            .await?),
        }
    }

    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq")?;
            let kind: String = row.try_get("kind")?;
            let subject: String = row.try_get("subject")?;
            let kind = match kind.as_str() {
                "session_ended" => SessionId::parse(&subject)
                    .ok()
                    .map(ChangeKind::SessionEnded),
                "user_changed" => Username::parse(&subject).ok().map(ChangeKind::UserChanged),
                _ => None,
            };
            match kind {
                Some(kind) => out.push(Change { seq, kind }),
                None => return Err(StoreError::Corrupt(format!("change {seq}"))),
            }
        }
        Ok(out)
    }

    async fn changes_prune(&self, before: Timestamp) -> Result<u64> {
        let mut tx = self.write().await?;
        let r = sqlx::query("DELETE FROM changes WHERE at < ?")
            .bind(ms(before))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}
