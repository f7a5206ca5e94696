//! The store seam: one trait every backend implements, the URL that picks a backend,
//! and the conformance suite every backend passes.
//!
//! Architecture invariant: only this crate names sqlx or SQL. Nothing outside it knows
//! which database is in use; callers see [`Store`] and [`StoreError`].

pub mod conformance;
mod error;
mod postgres;
mod rows;
#[macro_use]
mod sql;
mod sqlite;
mod url;

pub use error::StoreError;
pub use url::StoreUrl;

use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::Arc;
use usher_core::{
    ApiToken, EndReason, Event, EventKind, InactiveUser, NewSession, SessionId, SessionRecord,
    Timestamp, TokenHash, User, Username,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Write-behind activity of one session since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    pub id: SessionId,
    /// Requests since the last flush (added to the stored count).
    pub requests: u64,
    /// Latest access; the stored value only ever moves forward.
    pub last_access_at: Timestamp,
    pub ip: IpAddr,
    /// Shared, not copied: a flush carries ten thousand of these, and the engine holds
    /// one copy of each client's strings already.
    pub user_agent: Arc<str>,
    pub client: Arc<str>,
    pub host: Arc<str>,
}

/// Which sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSelector {
    Ids(Vec<SessionId>),
    User(Username),
}

/// A request to end sessions, durably, with their history events.
#[derive(Debug, Clone)]
pub struct EndSessions {
    pub selector: SessionSelector,
    pub reason: EndReason,
    /// Who ended them: a user name, `cli`, or `system`.
    pub actor: String,
    pub at: Timestamp,
    /// Activity not yet flushed for these sessions, applied first in the same transaction.
    pub touches: Vec<Touch>,
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    SessionCreated(SessionId),
    SessionEnded(SessionId),
    /// The user's profile, groups, password or status changed, or the user was removed.
    UserChanged(Username),
}

/// Filter for reading history, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub user: Option<String>,
    pub kind: Option<EventKind>,
    /// An address (a /32 or /128) or a whole network.
    pub ip: Option<ipnet::IpNet>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Only events older than this id (the cursor of the previous page).
    pub before: Option<i64>,
    pub limit: u32,
}

/// One page of history, newest first. `next_cursor` (the `before` of the next page) is
/// `None` at the end. A network filter is applied while reading, within a bounded
/// scan, so such a page can hold fewer than `limit` events and still have a next one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    pub items: Vec<Event>,
    pub next_cursor: Option<i64>,
}

/// Where a reading of the live sessions has got to. Opaque: each backend pages its own
/// fastest way (SQLite in table order, PostgreSQL by id). `default()` is the start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCursor(pub(crate) LiveAfter);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum LiveAfter {
    #[default]
    Start,
    Row(i64),
    Id(SessionId),
    /// Rows after `after`, up to and including `until`: one part of a split reading.
    Rows {
        after: i64,
        until: i64,
    },
}

/// One page of live sessions; `next` is `None` at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivePage {
    pub sessions: Vec<SessionRecord>,
    pub next: Option<LiveCursor>,
}

/// Result of [`Store::user_update`]-style changes that end sessions.
pub type EndedSessions = Vec<SessionId>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<()>;

    /// A named secret shared by every node: returns the stored value, storing
    /// `candidate` first if there is none.
    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>>;

    // --- users ---
    async fn user_create(&self, user: &User, actor: &str) -> Result<()>;
    async fn user_get(&self, name: &Username) -> Result<Option<User>>;
    async fn user_list(&self) -> Result<Vec<User>>;
    async fn user_count(&self) -> Result<u64>;
    /// Replaces the profile (display name, email) and the groups; nothing else.
    async fn user_update(&self, user: &User, actor: &str, at: Timestamp) -> Result<()>;
    /// Replaces the password hash and records `password_changed`.
    async fn user_set_password(
        &self,
        name: &Username,
        hash: &str,
        actor: &str,
        at: Timestamp,
    ) -> Result<()>;
    /// Disables (ending every live session with `user_disabled`) or re-enables a user.
    async fn user_set_disabled(
        &self,
        name: &Username,
        disabled: bool,
        actor: &str,
        at: Timestamp,
    ) -> Result<EndedSessions>;
    /// Removes a user, ending their sessions and revoking their API tokens.
    async fn user_remove(
        &self,
        name: &Username,
        actor: &str,
        at: Timestamp,
    ) -> Result<EndedSessions>;

    // --- sessions ---
    /// Creates a session and records its `login` event; durable when it returns.
    /// A session for a user who is disabled or gone is refused with `Conflict`. With a
    /// limit, the user's live web sessions are counted in the same transaction (so
    /// racing logins cannot exceed it): the least recently used are ended as `evicted`
    /// (returned), or the login is refused with `LimitReached`.
    async fn session_create(&self, session: &NewSession, client: &str) -> Result<EndedSessions>;
    async fn session_get(&self, id: &SessionId) -> Result<Option<SessionRecord>>;
    async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<SessionRecord>>;
    /// Every session that has not ended.
    async fn sessions_live(&self) -> Result<Vec<SessionRecord>>;
    /// At most `limit` live sessions from `from` on, each once across the pages of one
    /// reading: for loading a million of them at start without holding all their rows
    /// at once.
    async fn sessions_live_page(&self, from: &LiveCursor, limit: u32) -> Result<LivePage>;
    /// Up to `parts` starting points of readings that together give every live session
    /// once, each read page by page with [`Store::sessions_live_page`] — at the same
    /// time, on several cores, where the backend can (SQLite: ranges of rows).
    async fn sessions_live_split(&self, parts: u32) -> Result<Vec<LiveCursor>> {
        let _ = parts;
        Ok(vec![LiveCursor::default()])
    }
    /// A page of [`Store::sessions_live_page`] its reader is done with, handed back so
    /// that the backend frees it where it suits the backend.
    fn sessions_live_page_done(&self, page: LivePage) {
        drop(page);
    }
    /// How many sessions have not ended: what a reading of all of them will give, so a
    /// server can size its index once instead of growing it a million times.
    async fn sessions_live_count(&self) -> Result<u64>;
    async fn sessions_of_user(&self, name: &Username) -> Result<Vec<SessionRecord>>;
    /// Ends the selected live sessions, records one event each and a change-feed entry;
    /// durable when it returns. Returns the sessions that this call ended.
    async fn sessions_end(&self, end: &EndSessions) -> Result<EndedSessions>;
    /// One flush, in one transaction: first the anonymous sessions first seen since the
    /// last flush (lazy sessions are written behind; one whose token is already stored
    /// is skipped), then the touches. Touches of ended sessions are ignored,
    /// `last_access_at` never moves backwards. Returns the sessions updated.
    ///
    /// The touches are the store's: a backend may take them to a thread of its own.
    async fn write_behind(&self, created: &[LazySession], touches: Vec<Touch>) -> Result<u64>;

    // --- history ---
    async fn event_record(&self, event: &Event) -> Result<()>;
    /// Deletes events, and sessions that ended, from before `before` (history
    /// retention), in batches so that no request waits long; returns how many rows.
    async fn history_purge(&self, before: Timestamp) -> Result<u64>;
    /// The sessions (of `user`, or of everyone) that were live at `at`: created
    /// before it and not yet ended. At most 10,000, oldest first.
    async fn sessions_at(
        &self,
        user: Option<&Username>,
        at: Timestamp,
    ) -> Result<Vec<SessionRecord>>;
    /// Newest first.
    async fn events(&self, query: &EventQuery) -> Result<EventPage>;
    /// Users whose last login is before `since` (or who never logged in) and who made
    /// no request since then either, by name; with their last login IP and activity.
    async fn inactive_users(&self, since: Timestamp) -> Result<Vec<InactiveUser>>;

    // --- API tokens ---
    async fn token_create(&self, token: &ApiToken, hash: &TokenHash) -> Result<()>;
    /// A token that is not revoked, by the hash of its secret.
    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiToken>>;
    async fn token_list(&self) -> Result<Vec<ApiToken>>;
    /// Revokes a token; `false` when there is no such live token.
    async fn token_revoke(&self, id: &str, at: Timestamp) -> Result<bool>;
    async fn token_used(&self, id: &str, at: Timestamp) -> Result<()>;

    // --- change feed ---
    /// The newest sequence number (0 when empty).
    async fn change_head(&self) -> Result<i64>;
    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>>;
    /// Drops change-feed entries older than `before` (every reader is far past them).
    async fn changes_prune(&self, before: Timestamp) -> Result<u64>;
}

/// An anonymous session the flusher writes: no user, no login event, no limit.
#[derive(Debug, Clone)]
pub struct LazySession {
    pub session: NewSession,
    /// The parsed client summary.
    pub client: String,
}

/// Opens (creating and migrating) the store named by `url`.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    match url {
        StoreUrl::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        StoreUrl::Postgres { url } => Ok(Arc::new(postgres::PgStore::open(url).await?)),
    }
}
