//! Rows as every SQL backend returns them (plain integers, text and bytes, decoded by
//! sqlx's generic `FromRow`), and their one conversion into domain types.

use crate::{Change, ChangeKind, Result, StoreError, Touch};
use std::net::IpAddr;
use usher_core::{
    EndReason, Event, EventKind, Group, SessionId, SessionKind, SessionRecord, Timestamp,
    TokenHash, User, Username,
};

pub(crate) const SESSION_COLUMNS: &str = "id, token_hash, user_name, kind, ip, first_ip, user_agent, client, host, requests, created_at, last_access_at, ended_at, end_reason, ended_by";
pub(crate) const EVENT_COLUMNS: &str =
    "id, at, kind, user_name, session_id, ip, user_agent, actor, detail";
pub(crate) const TOKEN_COLUMNS: &str = "id, name, owner, created_at, last_used_at, revoked_at";
pub(crate) const USER_COLUMNS: &str =
    "name, display_name, email, disabled, password_hash, created_at, last_login_at";

/// Touches applied per statement: one statement for a whole flush would be one
/// unbounded parameter.
pub(crate) const TOUCHES_PER_STATEMENT: usize = 1_000;

/// A flush's touches, one per session: touches of the same session (dirtied again while
/// a flush drained the queue) are merged — requests added, the latest access and the
/// later client kept — because a batched UPDATE applies one source row per target row.
pub(crate) fn merged(touches: &[Touch]) -> std::borrow::Cow<'_, [Touch]> {
    let mut seen = std::collections::HashMap::with_capacity(touches.len());
    if touches.iter().all(|t| seen.insert(t.id, ()).is_none()) {
        return touches.into();
    }
    let mut at = std::collections::HashMap::with_capacity(touches.len());
    let mut out: Vec<Touch> = Vec::with_capacity(touches.len());
    for t in touches {
        match at.get(&t.id) {
            Some(&i) => {
                let m: &mut Touch = &mut out[i];
                m.requests = m.requests.saturating_add(t.requests);
                m.last_access_at = m.last_access_at.max(t.last_access_at);
                m.ip = t.ip;
                m.user_agent.clone_from(&t.user_agent);
                m.client.clone_from(&t.client);
                m.host.clone_from(&t.host);
            }
            None => {
                at.insert(t.id, out.len());
                out.push(t.clone());
            }
        }
    }
    out.into()
}

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn ts(v: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(v).map_err(|e| StoreError::Corrupt(format!("timestamp {v}: {e}")))
}

fn ip(s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("ip address {s:?}")))
}

fn session_id(s: &str) -> Result<SessionId> {
    SessionId::parse(s).map_err(|_| StoreError::Corrupt(format!("session id {s:?}")))
}

fn username(s: &str) -> Result<Username> {
    Username::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: String,
    token_hash: Vec<u8>,
    user_name: Option<String>,
    kind: String,
    ip: String,
    first_ip: String,
    user_agent: String,
    client: String,
    host: String,
    requests: i64,
    created_at: i64,
    last_access_at: i64,
    ended_at: Option<i64>,
    end_reason: Option<String>,
    ended_by: Option<String>,
}

impl SessionRow {
    pub(crate) fn into_record(self) -> Result<SessionRecord> {
        let mut record = LiveRow {
            id: &self.id,
            token_hash: &self.token_hash,
            user_name: self.user_name.as_deref(),
            kind: &self.kind,
            ip: &self.ip,
            first_ip: &self.first_ip,
            user_agent: &self.user_agent,
            client: &self.client,
            host: &self.host,
            requests: self.requests,
            created_at: self.created_at,
            last_access_at: self.last_access_at,
        }
        .into_record()?;
        record.ended_at = self.ended_at.map(ts).transpose()?;
        record.end_reason = self
            .end_reason
            .map(|r| {
                EndReason::parse(&r).ok_or_else(|| StoreError::Corrupt(format!("end reason {r:?}")))
            })
            .transpose()?;
        record.ended_by = self.ended_by;
        Ok(record)
    }
}

/// A live session's columns as a bulk reader borrows them from the database.
pub(crate) struct LiveRow<'a> {
    pub(crate) id: &'a str,
    pub(crate) token_hash: &'a [u8],
    pub(crate) user_name: Option<&'a str>,
    pub(crate) kind: &'a str,
    pub(crate) ip: &'a str,
    pub(crate) first_ip: &'a str,
    pub(crate) user_agent: &'a str,
    pub(crate) client: &'a str,
    pub(crate) host: &'a str,
    pub(crate) requests: i64,
    pub(crate) created_at: i64,
    pub(crate) last_access_at: i64,
}

impl LiveRow<'_> {
    pub(crate) fn into_record(self) -> Result<SessionRecord> {
        let current = ip(self.ip)?;
        Ok(SessionRecord {
            token_hash: TokenHash::from_slice(self.token_hash)
                .ok_or_else(|| StoreError::Corrupt(format!("token hash of {}", self.id)))?,
            id: session_id(self.id)?,
            user: self.user_name.map(username).transpose()?,
            kind: SessionKind::parse(self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("session kind {:?}", self.kind)))?,
            ip: current,
            // Most sessions never move: one parse for both.
            first_ip: if self.first_ip == self.ip {
                current
            } else {
                ip(self.first_ip)?
            },
            user_agent: self.user_agent.to_owned(),
            client: self.client.to_owned(),
            host: self.host.to_owned(),
            requests: u64::try_from(self.requests).unwrap_or(0),
            created_at: ts(self.created_at)?,
            last_access_at: ts(self.last_access_at)?,
            ended_at: None,
            end_reason: None,
            ended_by: None,
        })
    }

    /// [`LiveRow::into_record`] into the text buffers of `spent`, a record read before
    /// and done with: a start reads a million rows, and three allocations a row (and
    /// their frees) were a tenth of its reading (issue 9).
    pub(crate) fn into_record_reusing(self, spent: SessionRecord) -> Result<SessionRecord> {
        fn refill(mut buf: String, s: &str) -> String {
            buf.clear();
            buf.push_str(s);
            buf
        }
        let (user_agent, client, host) = (self.user_agent, self.client, self.host);
        let mut record = LiveRow {
            user_agent: "",
            client: "",
            host: "",
            ..self
        }
        .into_record()?;
        record.user_agent = refill(spent.user_agent, user_agent);
        record.client = refill(spent.client, client);
        record.host = refill(spent.host, host);
        Ok(record)
    }
}

/// What ending a session needs to know about it for its event.
#[derive(sqlx::FromRow)]
pub(crate) struct EndingRow {
    pub(crate) id: String,
    pub(crate) user_name: Option<String>,
    pub(crate) ip: String,
    pub(crate) user_agent: String,
}

impl EndingRow {
    pub(crate) fn event(&self, end: &crate::EndSessions) -> Result<(SessionId, Event)> {
        let sid = session_id(&self.id)?;
        let mut event = Event::new(end.at, EventKind::for_end(end.reason));
        event.user = self.user_name.clone();
        event.session = Some(sid);
        event.ip = self.ip.parse().ok();
        event.user_agent = Some(self.user_agent.clone());
        event.actor = Some(end.actor.clone());
        event.detail = Some(end.reason.as_str().to_owned());
        Ok((sid, event))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    at: i64,
    kind: String,
    user_name: Option<String>,
    session_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    actor: Option<String>,
    detail: Option<String>,
}

impl EventRow {
    pub(crate) fn into_event(self) -> Result<Event> {
        Ok(Event {
            id: self.id,
            at: ts(self.at)?,
            kind: EventKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("event kind {:?}", self.kind)))?,
            user: self.user_name,
            session: self.session_id.and_then(|s| SessionId::parse(&s).ok()),
            ip: self.ip.as_deref().map(ip).transpose()?,
            user_agent: self.user_agent,
            actor: self.actor,
            detail: self.detail,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    name: String,
    display_name: String,
    email: String,
    disabled: bool,
    password_hash: Option<String>,
    created_at: i64,
    last_login_at: Option<i64>,
}

impl UserRow {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn into_user(self, groups: &[String]) -> Result<User> {
        Ok(User {
            name: username(&self.name)?,
            display_name: self.display_name,
            email: self.email,
            groups: groups
                .iter()
                .map(|g| Group::parse(g).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<_>>()?,
            disabled: self.disabled,
            password_hash: self.password_hash,
            created_at: ts(self.created_at)?,
            last_login_at: self.last_login_at.map(ts).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: String,
    name: String,
    owner: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TokenRow {
    pub(crate) fn into_token(self) -> Result<usher_core::ApiToken> {
        Ok(usher_core::ApiToken {
            owner: username(&self.owner)?,
            id: self.id,
            name: self.name,
            created_at: ts(self.created_at)?,
            last_used_at: self.last_used_at.map(ts).transpose()?,
            revoked_at: self.revoked_at.map(ts).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ChangeRow {
    seq: i64,
    kind: String,
    subject: String,
}

impl ChangeRow {
    pub(crate) fn into_change(self) -> Result<Change> {
        let kind = match self.kind.as_str() {
            "session_created" => SessionId::parse(&self.subject)
                .ok()
                .map(ChangeKind::SessionCreated),
            "session_ended" => SessionId::parse(&self.subject)
                .ok()
                .map(ChangeKind::SessionEnded),
            "user_changed" => Username::parse(&self.subject)
                .ok()
                .map(ChangeKind::UserChanged),
            _ => None,
        };
        kind.map(|kind| Change {
            seq: self.seq,
            kind,
        })
        .ok_or_else(|| StoreError::Corrupt(format!("change {}", self.seq)))
    }
}

/// How a change is written: its kind and subject columns.
pub(crate) fn change_columns(kind: &ChangeKind) -> (&'static str, &str) {
    match kind {
        ChangeKind::SessionCreated(id) => ("session_created", id.as_str()),
        ChangeKind::SessionEnded(id) => ("session_ended", id.as_str()),
        ChangeKind::UserChanged(name) => ("user_changed", name.as_str()),
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InactiveRow {
    pub(crate) name: String,
    pub(crate) display_name: String,
    pub(crate) email: String,
    pub(crate) disabled: bool,
    pub(crate) created_at: i64,
    pub(crate) last_login_at: Option<i64>,
    pub(crate) last_login_ip: Option<String>,
    pub(crate) last_activity_at: Option<i64>,
}

/// The inactive-users report's rows: users who have not signed in since `$1` (or
/// never), with where their last sign-in came from and when they were last active.
/// `{users}` is where the users are read from: a backend may name an index there.
pub(crate) fn inactive_users_sql(users: &str) -> String {
    format!(
        "SELECT u.name, u.display_name, u.email, u.disabled, u.created_at, u.last_login_at,
             (SELECT s.first_ip FROM sessions s WHERE s.user_name = u.name
              ORDER BY s.created_at DESC LIMIT 1) AS last_login_ip,
             (SELECT MAX(s.last_access_at) FROM sessions s WHERE s.user_name = u.name)
              AS last_activity_at
         FROM {users}
         WHERE u.last_login_at IS NULL OR u.last_login_at < $1
         ORDER BY u.name"
    )
}

impl InactiveRow {
    pub(crate) fn into_inactive(self) -> Result<usher_core::InactiveUser> {
        Ok(usher_core::InactiveUser {
            name: usher_core::Username::parse(&self.name)
                .map_err(|e| StoreError::Corrupt(format!("user name {:?}: {e}", self.name)))?,
            display_name: self.display_name,
            email: self.email,
            disabled: self.disabled,
            created_at: ts(self.created_at)?,
            last_login_at: self.last_login_at.map(ts).transpose()?,
            last_login_ip: self.last_login_ip.as_deref().map(ip).transpose()?,
            last_activity_at: self.last_activity_at.map(ts).transpose()?,
        })
    }
}
