//! The `Store` implementation shared by the SQL backends, written once as a macro
//! expanded for each backend's concrete sqlx types.
//!
//! The SQL is the common subset SQLite and PostgreSQL both speak: `$n` parameters,
//! `ON CONFLICT DO NOTHING`, `CASE` instead of `MAX()`/`GREATEST()`, `CAST` instead of
//! `::`. A backend provides `write()` (a write transaction), `reader()` (a pool), and
//! `before_change()` (anything to do before appending to the change feed),
//! `touch_batch()` (many sessions' activity in one statement: the dialects differ), and
//! `touches_alone()` (a flush of request counts alone its own way, or the touches back),
//! and `inactive_rows()` (the inactive-users report's rows: SQLite needs telling which
//! index to read).

macro_rules! impl_sql_store {
    ($module:ident, $store:ty, $db:ty) => {
        mod $module {
            use crate::rows::{
                ChangeRow, EVENT_COLUMNS, EndingRow, EventRow, InactiveRow, SESSION_COLUMNS, SessionRow,
                TOKEN_COLUMNS, TokenRow, USER_COLUMNS, UserRow, change_columns, ms,
            };
            use crate::{
                Change, ChangeKind, EndSessions, EndedSessions, EventPage, EventQuery, LazySession, Result,
                SessionSelector, Store, StoreError, Touch,
            };
            use async_trait::async_trait;
            use sqlx::{AssertSqlSafe, Transaction};
            use usher_core::{
                ApiToken, EndReason, Event, EventKind, InactiveUser, NewSession, OnLimit, SessionId, SessionKind,
                SessionRecord, Timestamp, TokenHash, User, Username,
            };

            type Tx = Transaction<'static, $db>;

            async fn insert_event(tx: &mut Tx, e: &Event) -> Result<()> {
                sqlx::query(
                    "INSERT INTO events (at, kind, user_name, session_id, ip, user_agent, actor, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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

            async fn insert_change(tx: &mut Tx, at: Timestamp, kind: &ChangeKind) -> Result<()> {
                <$store>::before_change(tx).await?;
                let (k, subject) = change_columns(kind);
                sqlx::query("INSERT INTO changes (at, kind, subject) VALUES ($1, $2, $3)")
                    .bind(ms(at))
                    .bind(k)
                    .bind(subject)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// `ended_at IS NULL` in each backend's batched UPDATE: a late touch never
            /// revives an ended session; last access never moves backwards.
            async fn apply_touches(tx: &mut Tx, touches: &[Touch]) -> Result<u64> {
                let mut updated = 0;
                for batch in crate::rows::merged(touches).chunks(crate::rows::TOUCHES_PER_STATEMENT) {
                    updated += <$store>::touch_batch(tx, batch).await?;
                }
                Ok(updated)
            }

            async fn end_in_tx(tx: &mut Tx, end: &EndSessions) -> Result<EndedSessions> {
                apply_touches(tx, &end.touches).await?;
                let rows: Vec<EndingRow> = match &end.selector {
                    SessionSelector::Ids(ids) => {
                        let mut rows = Vec::with_capacity(ids.len());
                        for id in ids {
                            let row = sqlx::query_as(
                                "SELECT id, user_name, ip, user_agent FROM sessions
                                 WHERE id = $1 AND ended_at IS NULL",
                            )
                            .bind(id.as_str())
                            .fetch_optional(&mut **tx)
                            .await?;
                            rows.extend(row);
                        }
                        rows
                    }
                    SessionSelector::User(name) => {
                        sqlx::query_as(
                            "SELECT id, user_name, ip, user_agent FROM sessions
                             WHERE user_name = $1 AND ended_at IS NULL",
                        )
                        .bind(name.as_str())
                        .fetch_all(&mut **tx)
                        .await?
                    }
                };
                let mut ended = Vec::with_capacity(rows.len());
                for row in rows {
                    let (sid, event) = row.event(end)?;
                    sqlx::query(
                        "UPDATE sessions SET ended_at = $1, end_reason = $2, ended_by = $3
                         WHERE id = $4 AND ended_at IS NULL",
                    )
                    .bind(ms(end.at))
                    .bind(end.reason.as_str())
                    .bind(&end.actor)
                    .bind(&row.id)
                    .execute(&mut **tx)
                    .await?;
                    // History is about people: an anonymous visitor's session leaves
                    // no events (a flood of them would bury the ones that matter).
                    if row.user_name.is_some() {
                        insert_event(tx, &event).await?;
                    }
                    insert_change(tx, end.at, &ChangeKind::SessionEnded(sid)).await?;
                    ended.push(sid);
                }
                Ok(ended)
            }

            /// Inserts a session row; `on_conflict` is appended to the statement.
            async fn insert_session(tx: &mut Tx, s: &NewSession, client: &str, on_conflict: &str) -> Result<u64> {
                let sql = format!(
                    "INSERT INTO sessions (id, token_hash, user_name, kind, ip, first_ip, user_agent, client, host,
                         requests, created_at, last_access_at)
                     VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, 0, $9, $9) {on_conflict}"
                );
                let r = sqlx::query(AssertSqlSafe(sql))
                    .bind(s.id.as_str())
                    .bind(&s.token_hash.as_bytes()[..])
                    .bind(s.user.as_ref().map(Username::as_str))
                    .bind(s.kind.as_str())
                    .bind(s.client.ip.to_string())
                    .bind(&s.client.user_agent)
                    .bind(client)
                    .bind(&s.client.host)
                    .bind(ms(s.created_at))
                    .execute(&mut **tx)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn write_groups(tx: &mut Tx, user: &User) -> Result<()> {
                sqlx::query("DELETE FROM user_groups WHERE user_name = $1")
                    .bind(user.name.as_str())
                    .execute(&mut **tx)
                    .await?;
                for g in &user.groups {
                    sqlx::query(
                        "INSERT INTO user_groups (user_name, group_name) VALUES ($1, $2)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(user.name.as_str())
                    .bind(g.as_str())
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            /// Ends every live session of a user who is being disabled or removed.
            fn end_all_of(name: &Username, actor: &str, at: Timestamp) -> EndSessions {
                EndSessions {
                    selector: SessionSelector::User(name.clone()),
                    reason: EndReason::UserDisabled,
                    actor: actor.to_owned(),
                    at,
                    touches: Vec::new(),
                }
            }

            fn user_event(kind: EventKind, name: &Username, actor: &str, at: Timestamp) -> Event {
                let mut event = Event::new(at, kind);
                event.user = Some(name.to_string());
                event.actor = Some(actor.to_owned());
                event
            }

            impl $store {
                async fn user_from_row(&self, row: UserRow) -> Result<User> {
                    let groups: Vec<String> = sqlx::query_scalar(
                        "SELECT group_name FROM user_groups WHERE user_name = $1 ORDER BY group_name",
                    )
                    .bind(row.name())
                    .fetch_all(self.reader())
                    .await?;
                    row.into_user(&groups)
                }

                async fn sessions_where(&self, filter: &'static str, arg: Option<&str>) -> Result<Vec<SessionRecord>> {
                    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions {filter}");
                    let mut q = sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql));
                    if let Some(arg) = arg {
                        q = q.bind(arg.to_owned());
                    }
                    q.fetch_all(self.reader())
                        .await?
                        .into_iter()
                        .map(SessionRow::into_record)
                        .collect()
                }
            }

            #[async_trait]
            impl Store for $store {
                async fn ping(&self) -> Result<()> {
                    sqlx::query("SELECT 1").execute(self.reader()).await?;
                    Ok(())
                }

                async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
                    let mut tx = self.write().await?;
                    sqlx::query(
                        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    )
                    .bind(name)
                    .bind(candidate)
                    .execute(&mut *tx)
                    .await?;
                    let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
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
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(user.name.as_str())
                    .bind(&user.display_name)
                    .bind(&user.email)
                    .bind(user.disabled)
                    .bind(user.password_hash.as_deref())
                    .bind(ms(user.created_at))
                    .bind(user.last_login_at.map(ms))
                    .execute(&mut *tx)
                    .await;
                    if let Err(e) = r {
                        return Err(match StoreError::from(e) {
                            StoreError::Conflict(_) => StoreError::Conflict(format!("user {}", user.name)),
                            other => other,
                        });
                    }
                    write_groups(&mut tx, user).await?;
                    insert_event(&mut tx, &user_event(EventKind::UserCreated, &user.name, actor, user.created_at)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn user_get(&self, name: &Username) -> Result<Option<User>> {
                    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
                    let row: Option<UserRow> = sqlx::query_as(AssertSqlSafe(sql))
                        .bind(name.as_str())
                        .fetch_optional(self.reader())
                        .await?;
                    match row {
                        Some(row) => Ok(Some(self.user_from_row(row).await?)),
                        None => Ok(None),
                    }
                }

                async fn user_list(&self) -> Result<Vec<User>> {
                    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
                    let rows: Vec<UserRow> = sqlx::query_as(AssertSqlSafe(sql))
                        .fetch_all(self.reader())
                        .await?;
                    // Every user's groups in one read, not one query per user.
                    let pairs: Vec<(String, String)> = sqlx::query_as(
                        "SELECT user_name, group_name FROM user_groups ORDER BY user_name, group_name",
                    )
                    .fetch_all(self.reader())
                    .await?;
                    let mut groups: std::collections::HashMap<String, Vec<String>> = Default::default();
                    for (user, group) in pairs {
                        groups.entry(user).or_default().push(group);
                    }
                    rows.into_iter()
                        .map(|row| {
                            let g = groups.remove(row.name()).unwrap_or_default();
                            row.into_user(&g)
                        })
                        .collect()
                }

                async fn user_count(&self) -> Result<u64> {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                        .fetch_one(self.reader())
                        .await?;
                    Ok(u64::try_from(n).unwrap_or(0))
                }

                async fn user_update(&self, user: &User, actor: &str, at: Timestamp) -> Result<()> {
                    let _ = actor;
                    let mut tx = self.write().await?;
                    // Profile columns only: the password, the status and the last login
                    // each have their own writer, so a stale copy cannot roll them back.
                    let r = sqlx::query("UPDATE users SET display_name = $1, email = $2 WHERE name = $3")
                        .bind(&user.display_name)
                        .bind(&user.email)
                        .bind(user.name.as_str())
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound(format!("user {}", user.name)));
                    }
                    write_groups(&mut tx, user).await?;
                    insert_change(&mut tx, at, &ChangeKind::UserChanged(user.name.clone())).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn user_set_password(&self, name: &Username, hash: &str, actor: &str, at: Timestamp) -> Result<()> {
                    let mut tx = self.write().await?;
                    let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
                        .bind(hash)
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound(format!("user {name}")));
                    }
                    insert_event(&mut tx, &user_event(EventKind::PasswordChanged, name, actor, at)).await?;
                    insert_change(&mut tx, at, &ChangeKind::UserChanged(name.clone())).await?;
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
                    let r = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
                        .bind(disabled)
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound(format!("user {name}")));
                    }
                    let ended = if disabled {
                        end_in_tx(&mut tx, &end_all_of(name, actor, at)).await?
                    } else {
                        Vec::new()
                    };
                    let kind = if disabled { EventKind::UserDisabled } else { EventKind::UserEnabled };
                    insert_event(&mut tx, &user_event(kind, name, actor, at)).await?;
                    insert_change(&mut tx, at, &ChangeKind::UserChanged(name.clone())).await?;
                    tx.commit().await?;
                    Ok(ended)
                }

                async fn user_remove(&self, name: &Username, actor: &str, at: Timestamp) -> Result<EndedSessions> {
                    let mut tx = self.write().await?;
                    let ended = end_in_tx(&mut tx, &end_all_of(name, actor, at)).await?;
                    let r = sqlx::query("DELETE FROM users WHERE name = $1")
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound(format!("user {name}")));
                    }
                    // Their tokens die with them: a later user of the same name must
                    // not inherit them.
                    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE owner = $2 AND revoked_at IS NULL")
                        .bind(ms(at))
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await?;
                    insert_event(&mut tx, &user_event(EventKind::UserRemoved, name, actor, at)).await?;
                    insert_change(&mut tx, at, &ChangeKind::UserChanged(name.clone())).await?;
                    tx.commit().await?;
                    Ok(ended)
                }

                async fn session_create(&self, s: &NewSession, client: &str) -> Result<EndedSessions> {
                    let mut tx = self.write().await?;
                    if let Some(user) = &s.user {
                        // First, and as a write: it takes the user's row lock, so a
                        // disable racing this login either lands before (and we refuse)
                        // or waits and then ends the session we create.
                        let r = sqlx::query(
                            "UPDATE users SET last_login_at = $1 WHERE name = $2 AND disabled = FALSE",
                        )
                        .bind(ms(s.created_at))
                        .bind(user.as_str())
                        .execute(&mut *tx)
                        .await?;
                        if r.rows_affected() == 0 {
                            return Err(StoreError::Conflict(format!(
                                "user {user} is disabled or gone; no session"
                            )));
                        }
                    }
                    let mut evicted = Vec::new();
                    if let (Some(user), Some(limit), SessionKind::Web) = (&s.user, s.limit, s.kind) {
                        // Under the user's row lock taken above: logins of one user
                        // count one after the other.
                        let live: Vec<String> = sqlx::query_scalar(
                            "SELECT id FROM sessions
                             WHERE user_name = $1 AND ended_at IS NULL AND kind = 'web'
                             ORDER BY last_access_at, created_at, id",
                        )
                        .bind(user.as_str())
                        .fetch_all(&mut *tx)
                        .await?;
                        let max = limit.max as usize;
                        if live.len() >= max {
                            if limit.on_limit == OnLimit::Deny {
                                return Err(StoreError::LimitReached(limit.max));
                            }
                            let oldest = live[..=live.len() - max]
                                .iter()
                                .filter_map(|id| SessionId::parse(id).ok())
                                .collect();
                            let end = EndSessions {
                                selector: SessionSelector::Ids(oldest),
                                reason: EndReason::Evicted,
                                actor: user.to_string(),
                                at: s.created_at,
                                touches: Vec::new(),
                            };
                            evicted = end_in_tx(&mut tx, &end).await?;
                        }
                    }
                    insert_session(&mut tx, s, client, "").await?;
                    if let Some(user) = &s.user {
                        let mut event = user_event(EventKind::Login, user, user.as_str(), s.created_at);
                        event.session = Some(s.id);
                        event.ip = Some(s.client.ip);
                        event.user_agent = Some(s.client.user_agent.clone());
                        insert_event(&mut tx, &event).await?;
                    }
                    insert_change(&mut tx, s.created_at, &ChangeKind::SessionCreated(s.id)).await?;
                    tx.commit().await?;
                    Ok(evicted)
                }

                async fn session_get(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
                    Ok(self.sessions_where("WHERE id = $1", Some(id.as_str())).await?.pop())
                }

                async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<SessionRecord>> {
                    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1");
                    sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql))
                        .bind(&hash.as_bytes()[..])
                        .fetch_optional(self.reader())
                        .await?
                        .map(SessionRow::into_record)
                        .transpose()
                }

                async fn sessions_live_page(&self, from: &crate::LiveCursor, limit: u32) -> Result<crate::LivePage> {
                    // Each backend reads these its fastest way: at start, a million of them.
                    self.live_page(from, limit).await
                }

                async fn sessions_live_split(&self, parts: u32) -> Result<Vec<crate::LiveCursor>> {
                    self.live_split(parts).await
                }

                fn sessions_live_page_done(&self, page: crate::LivePage) {
                    self.live_page_done(page);
                }

                async fn sessions_live(&self) -> Result<Vec<SessionRecord>> {
                    self.sessions_where("WHERE ended_at IS NULL", None).await
                }

                async fn sessions_live_count(&self) -> Result<u64> {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL")
                        .fetch_one(self.reader())
                        .await?;
                    Ok(u64::try_from(n).unwrap_or(0))
                }

                async fn sessions_of_user(&self, name: &Username) -> Result<Vec<SessionRecord>> {
                    self.sessions_where("WHERE user_name = $1 ORDER BY created_at DESC", Some(name.as_str()))
                        .await
                }

                async fn sessions_end(&self, end: &EndSessions) -> Result<EndedSessions> {
                    let mut tx = self.write().await?;
                    let ended = end_in_tx(&mut tx, end).await?;
                    tx.commit().await?;
                    Ok(ended)
                }

                async fn write_behind(&self, created: &[LazySession], touches: Vec<Touch>) -> Result<u64> {
                    if touches.is_empty() && created.is_empty() {
                        return Ok(0);
                    }
                    let touches = if created.is_empty() {
                        match self.touches_alone(touches).await? {
                            Ok(n) => return Ok(n),
                            Err(back) => back,
                        }
                    } else {
                        touches
                    };
                    let mut tx = self.write().await?;
                    for lazy in created {
                        // Another node may have adopted the same anonymous cookie first.
                        let n = insert_session(&mut tx, &lazy.session, &lazy.client, "ON CONFLICT DO NOTHING").await?;
                        if n > 0 {
                            insert_change(&mut tx, lazy.session.created_at, &ChangeKind::SessionCreated(lazy.session.id)).await?;
                        }
                    }
                    let n = apply_touches(&mut tx, &touches).await?;
                    tx.commit().await?;
                    Ok(n)
                }

                async fn event_record(&self, event: &Event) -> Result<()> {
                    let mut tx = self.write().await?;
                    insert_event(&mut tx, event).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn history_purge(&self, before: Timestamp) -> Result<u64> {
                    let mut total = 0;
                    for sql in [
                        "DELETE FROM events WHERE id IN
                             (SELECT id FROM events WHERE at < $1 ORDER BY id LIMIT 5000)",
                        "DELETE FROM sessions WHERE id IN
                             (SELECT id FROM sessions WHERE ended_at < $1 ORDER BY ended_at LIMIT 5000)",
                    ] {
                        loop {
                            let mut tx = self.write().await?;
                            let n = sqlx::query(sql)
                                .bind(ms(before))
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                            tx.commit().await?;
                            total += n;
                            if n < 5000 {
                                break;
                            }
                        }
                    }
                    Ok(total)
                }

                async fn sessions_at(&self, user: Option<&Username>, at: Timestamp) -> Result<Vec<SessionRecord>> {
                    let sql = format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions
                         WHERE (CAST($1 AS TEXT) IS NULL OR user_name = $1)
                           AND created_at <= $2 AND (ended_at IS NULL OR ended_at > $2)
                         ORDER BY created_at, id LIMIT 10000"
                    );
                    sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql))
                        .bind(user.map(Username::as_str))
                        .bind(ms(at))
                        .fetch_all(self.reader())
                        .await?
                        .into_iter()
                        .map(SessionRow::into_record)
                        .collect()
                }

                async fn events(&self, q: &EventQuery) -> Result<EventPage> {
                    // Ordered by id: the order events were written, which a cursor can
                    // follow while new ones arrive. Only the filters given are in the
                    // statement, so each can use its index.
                    let limit = if q.limit == 0 { 100 } else { q.limit.min(100_000) } as usize;
                    let exact_ip = q.ip.filter(|n| n.prefix_len() == n.max_prefix_len()).map(|n| n.addr());
                    // A network cannot be an index range over text addresses: it is
                    // applied to the rows read, at most SCAN_BUDGET of them per page.
                    let network = q.ip.filter(|n| n.prefix_len() != n.max_prefix_len());
                    const SCAN_BUDGET: usize = 50_000;
                    let chunk = if network.is_some() { 1000 } else { limit };
                    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE ");
                    let mut n = 0;
                    let mut param = |sql: &mut String, clause: &str| {
                        n += 1;
                        sql.push_str(&clause.replace('?', &format!("${n}")));
                        sql.push_str(" AND ");
                    };
                    if q.user.is_some() { param(&mut sql, "user_name = ?"); }
                    if q.kind.is_some() { param(&mut sql, "kind = ?"); }
                    if exact_ip.is_some() { param(&mut sql, "ip = ?"); }
                    if q.from.is_some() { param(&mut sql, "at >= ?"); }
                    if q.to.is_some() { param(&mut sql, "at < ?"); }
                    sql.push_str(&format!("id < ${} ORDER BY id DESC LIMIT ${}", n + 1, n + 2));
                    let mut cursor = q.before.unwrap_or(i64::MAX);
                    let mut items = Vec::new();
                    let mut scanned = 0;
                    loop {
                        let mut query = sqlx::query_as::<_, EventRow>(AssertSqlSafe(sql.clone()));
                        if let Some(u) = &q.user { query = query.bind(u.clone()); }
                        if let Some(k) = q.kind { query = query.bind(k.as_str()); }
                        if let Some(ip) = exact_ip { query = query.bind(ip.to_string()); }
                        if let Some(f) = q.from { query = query.bind(ms(f)); }
                        if let Some(t) = q.to { query = query.bind(ms(t)); }
                        let rows = query
                            .bind(cursor)
                            .bind(i64::try_from(chunk).unwrap_or(1000))
                            .fetch_all(self.reader())
                            .await?;
                        let got = rows.len();
                        for row in rows {
                            let event = row.into_event()?;
                            cursor = event.id;
                            let wanted = network.is_none_or(|net| event.ip.is_some_and(|ip| net.contains(&ip)));
                            if wanted {
                                items.push(event);
                                if items.len() == limit {
                                    return Ok(EventPage { items, next_cursor: Some(cursor) });
                                }
                            }
                        }
                        scanned += got;
                        if got < chunk {
                            return Ok(EventPage { items, next_cursor: None });
                        }
                        if scanned >= SCAN_BUDGET {
                            return Ok(EventPage { items, next_cursor: Some(cursor) });
                        }
                    }
                }

                async fn inactive_users(&self, since: Timestamp) -> Result<Vec<InactiveUser>> {
                    let rows: Vec<InactiveRow> = self.inactive_rows(ms(since)).await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for row in rows {
                        let u = row.into_inactive()?;
                        // Signed in before `since` but still using the app: not inactive.
                        if u.last_activity_at.is_none_or(|a| a < since) {
                            out.push(u);
                        }
                    }
                    Ok(out)
                }

                async fn token_create(&self, token: &ApiToken, hash: &TokenHash) -> Result<()> {
                    let mut tx = self.write().await?;
                    sqlx::query(
                        "INSERT INTO api_tokens (id, name, owner, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&token.id)
                    .bind(&token.name)
                    .bind(token.owner.as_str())
                    .bind(&hash.as_bytes()[..])
                    .bind(ms(token.created_at))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiToken>> {
                    let sql = format!(
                        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
                    );
                    let row: Option<TokenRow> = sqlx::query_as(AssertSqlSafe(sql))
                        .bind(&hash.as_bytes()[..])
                        .fetch_optional(self.reader())
                        .await?;
                    row.map(TokenRow::into_token).transpose()
                }

                async fn token_list(&self) -> Result<Vec<ApiToken>> {
                    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id");
                    let rows: Vec<TokenRow> = sqlx::query_as(AssertSqlSafe(sql))
                        .fetch_all(self.reader())
                        .await?;
                    rows.into_iter().map(TokenRow::into_token).collect()
                }

                async fn token_revoke(&self, id: &str, at: Timestamp) -> Result<bool> {
                    let mut tx = self.write().await?;
                    let r = sqlx::query(
                        "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                    )
                    .bind(ms(at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn token_used(&self, id: &str, at: Timestamp) -> Result<()> {
                    let mut tx = self.write().await?;
                    sqlx::query(
                        "UPDATE api_tokens SET last_used_at = $1
                         WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                    )
                    .bind(ms(at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn change_head(&self) -> Result<i64> {
                    // Pruning always keeps the newest entry, so MAX(seq) never moves back.
                    Ok(sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM changes")
                        .fetch_one(self.reader())
                        .await?)
                }

                async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
                    let rows: Vec<ChangeRow> = sqlx::query_as(
                        "SELECT seq, kind, subject FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                    )
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                    rows.into_iter().map(ChangeRow::into_change).collect()
                }

                async fn changes_prune(&self, before: Timestamp) -> Result<u64> {
                    let mut tx = self.write().await?;
                    let r = sqlx::query(
                        "DELETE FROM changes WHERE at < $1 AND seq < (SELECT MAX(seq) FROM changes)",
                    )
                    .bind(ms(before))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(r.rows_affected())
                }
            }
        }
    };
}

pub(crate) use impl_sql_store;
