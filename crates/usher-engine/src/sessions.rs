//! The live session index and its background work.
//!
//! Every request is checked against an in-memory index (a sharded `DashMap` keyed by
//! the token hash): no I/O and no global lock on the request path. What a request
//! changes (count, last access, client) lives in atomics on the session and is written
//! behind by the flusher, one transaction per flush. Creating and ending a session is
//! durable in the store before the caller is answered; other nodes and the CLI learn of
//! ends through the store's change feed.

use crate::columns::{self, Columns};
use crate::index::TokenKey;
use crate::intern::{ClientText, Interner};
use crate::{EngineError, Metrics};
use dashmap::DashMap;
use jiff::SignedDuration;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use usher_core::query::{Limit, Order, SortKey};
use usher_core::user_agent;
use usher_core::{
    ClientSnapshot, Clock, EndReason, Listable, NewSession, SessionId, SessionInfo, SessionKind,
    SessionPolicy, SessionQuery, SessionRecord, Timestamp, Token, TokenHash, User, Username,
};
use usher_store::{ChangeKind, EndSessions, LazySession, LivePage, SessionSelector, Store, Touch};

/// Sessions a flush collects between two yields to the other tasks of its worker.
const YIELD_EVERY: usize = 256;
/// Ends logged one line each up to this many at once; past it, one line with the count.
const LOG_EACH_UP_TO: usize = 20;
/// Live sessions read per query at start. Small pages: the rows a page decodes are
/// garbage once admitted, and glibc keeps what a reading thread freed resident in that
/// thread's arena — 10,000 a page left ~12 MiB behind after a million (issue 9).
const LOAD_PAGE: u32 = 1_000;
/// Pages read ahead of the admission at start. One: with two parts read at once on
/// the blocking pool's threads, four ahead (of 2,000) left ~10 MiB more resident after
/// a million than one (of 1,000) — 207 against 196 bytes a session (issue 9).
const LOAD_AHEAD: usize = 1;
/// Parts of the store read at once at start.
const LOAD_PARTS: u32 = 2;
/// How often the change feed is read: well inside the 1 s promise of SPEC §2.
const FEED_INTERVAL: Duration = Duration::from_millis(200);
/// How often idle and absolute timeouts are swept.
const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How long an ended session's id is remembered against stale store reads.
const TOMBSTONE_TTL: SignedDuration = SignedDuration::from_mins(10);
/// How long a token the store did not know is answered "unknown" without asking again.
/// A signed-in token is 256 random bits made at login, so no one asks for one before
/// it exists. An anonymous cookie does exist before its session: it is adopted through
/// the store (`adopt_anonymous` never consults this), and other nodes learn of it from
/// the change feed — only a request in the ~200 ms before that is not tied to it.
const UNKNOWN_TTL: SignedDuration = SignedDuration::from_mins(1);
/// Most unknown tokens remembered at once.
const UNKNOWN_MAX: usize = 100_000;
/// Change-feed entries older than this are pruned; every node has read them long ago.
const FEED_RETENTION: SignedDuration = SignedDuration::from_hours(1);

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub policy: SessionPolicy,
    pub flush_interval: Duration,
    pub concurrency: usher_core::ConcurrencyPolicy,
    /// How long history (events, ended sessions) is kept (`history.retention`).
    pub retention: SignedDuration,
    /// Most live anonymous sessions (`sessions.max_anonymous`, 0 = no cap); past it
    /// the least recently used anonymous ones are evicted, never a signed-in user's.
    pub max_anonymous: u64,
}

/// What one request tells the engine about its client.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub ip: IpAddr,
    pub user_agent: &'a str,
    pub host: &'a str,
}

/// The columns of every live session's changing facts.
type Cols = Columns<LiveSession>;

/// The address a session started from, for the few whose address has changed since:
/// the others started where they are, and a field for it would cost every session
/// 17 bytes (issue 9: memory per session).
type FirstIps = DashMap<SessionId, IpAddr, crate::index::Fast>;

/// `now - d` in microseconds; further back than time goes is the earliest instant.
fn micros_before(now: Timestamp, d: SignedDuration) -> i64 {
    now.checked_sub(d).map_or(i64::MIN, |t| t.as_microsecond())
}

/// The ids in `ended` that end for `reason`.
fn ending_for(ended: &[(EndReason, SessionId)], reason: EndReason) -> Vec<SessionId> {
    ended
        .iter()
        .filter(|(r, _)| *r == reason)
        .map(|(_, id)| *id)
        .collect()
}

/// `query` in the columns' terms, if they hold all it asks about: the filters but
/// user and text, the sorts by count and by last access (the console's own).
fn by_columns(query: &SessionQuery, now: Timestamp) -> Option<(columns::Filter, columns::Key)> {
    if query.user.is_some() || query.q.is_some() {
        return None;
    }
    let key = match query.sort {
        SortKey::Requests => columns::Key::Requests,
        SortKey::LastAccess => columns::Key::LastAccess,
        _ => return None,
    };
    let filter = columns::Filter {
        no_user: query.anonymous,
        api: query.kind.map(|k| k == SessionKind::Api),
        net: query.ip.as_ref().map(columns::Net::of),
        // Further back than time goes: every session is within it.
        since_us: query.active_within.map(|d| micros_before(now, d)),
    };
    Some((filter, key))
}

fn reason_code(r: EndReason) -> u8 {
    match r {
        EndReason::Logout => 1,
        EndReason::IdleTimeout => 2,
        EndReason::AbsoluteTimeout => 3,
        EndReason::Killed => 4,
        EndReason::Evicted => 5,
        EndReason::UserDisabled => 6,
    }
}

fn code_reason(c: u8) -> Option<EndReason> {
    EndReason::ALL.into_iter().find(|r| reason_code(*r) == c)
}

/// One session in memory: what never changes, and the unflushed part of its activity.
/// Its count, last access, address and state live in the engine's columns
/// ([`crate::columns`]) at `slot`, so the methods reading them take the columns.
#[derive(Debug)]
pub struct LiveSession {
    pub id: SessionId,
    pub(crate) token_key: TokenKey,
    pub user: Option<Username>,
    pub kind: SessionKind,
    /// Microseconds since the epoch (a `Timestamp` takes twice the room).
    created_us: i64,
    slot: u32,
    /// The part of the request count no writer has claimed yet (saturating at
    /// 2^32 - 1: only a store down for hours under heavy load could get there).
    unflushed: AtomicU32,
    dirty: AtomicBool,
    /// Shared with every session of the same client ([`crate::intern`]). Held while the
    /// address changes, so two requests never write it at once.
    client: Mutex<Arc<ClientText>>,
}

impl LiveSession {
    pub fn created_at(&self) -> Timestamp {
        Timestamp::from_microsecond(self.created_us).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn requests(&self, cols: &Cols) -> u64 {
        cols.requests(self.slot)
    }

    fn last_access_at(&self, cols: &Cols) -> Timestamp {
        Timestamp::from_microsecond(cols.last_access_us(self.slot))
            .unwrap_or_else(|_| self.created_at())
    }

    /// Reads a word from each part of the session a scan looks at, with plain loads,
    /// so that a scan can bring a batch of sessions into the cache at once.
    pub(crate) fn warm(&self) -> u64 {
        u64::from(self.slot)
            ^ u64::from(self.id.as_str().as_bytes()[0])
            ^ self.created_us.cast_unsigned()
    }

    fn is_live(&self, cols: &Cols) -> bool {
        cols.state(self.slot) == columns::LIVE
    }

    /// Marks the session as ending for `reason`, unless it is ending already.
    fn mark_ended(&self, cols: &Cols, reason: EndReason) {
        cols.end(self.slot, reason_code(reason));
    }

    /// A visitor who has not signed in.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none() && self.kind == SessionKind::Web
    }

    /// Records one request: the caller has already decided the session is valid.
    fn touch(
        &self,
        cols: &Cols,
        now: Timestamp,
        req: &RequestInfo<'_>,
        strings: &Interner,
        first_ips: &FirstIps,
    ) -> bool {
        cols.touch(self.slot, now.as_microsecond());
        self.add_unflushed(1);
        if let Ok(mut text) = self.client.lock() {
            if let Some(was) = cols.set_ip(self.slot, columns::from_ip(req.ip)) {
                first_ips
                    .entry(self.id)
                    .or_insert_with(|| columns::to_ip(was));
            }
            // Compare before copying: the same client sends the same strings, so the
            // common case allocates nothing.
            let ua = user_agent::truncate(req.user_agent);
            if *text.user_agent != *ua || *text.host != *req.host {
                *text = strings.client(ua, req.host, "");
            }
        }
        !self.dirty.swap(true, Ordering::AcqRel)
    }

    /// The unflushed activity, claimed for writing: after this the session is clean,
    /// and no other writer (the flusher, an end) can claim the same requests. A writer
    /// whose transaction fails hands its claim back with [`LiveSession::unclaim`].
    fn take_touch(&self, cols: &Cols) -> Option<Touch> {
        self.dirty.store(false, Ordering::Release);
        let delta = u64::from(self.unflushed.swap(0, Ordering::AcqRel));
        let Some((ip, text)) = self.client(cols) else {
            self.unclaim(delta);
            return None;
        };
        Some(Touch {
            id: self.id,
            requests: delta,
            last_access_at: self.last_access_at(cols),
            ip,
            user_agent: text.user_agent.clone(),
            client: text.shared_summary().clone(),
            host: text.host.clone(),
        })
    }

    /// The client's current address and text (`None` only if a panic poisoned it).
    fn client(&self, cols: &Cols) -> Option<(IpAddr, Arc<ClientText>)> {
        let text = self.client.lock().ok()?;
        Some((columns::to_ip(cols.ip(self.slot)), text.clone()))
    }

    /// The parsed client summary, computed once per User-Agent.
    pub fn client_summary(&self) -> String {
        self.client
            .lock()
            .map(|t| t.summary().to_owned())
            .unwrap_or_default()
    }

    /// The client's address, its User-Agent and host, and its summary.
    fn client_strings(&self, cols: &Cols) -> (IpAddr, String, String, String) {
        match self.client(cols) {
            Some((ip, t)) => (
                ip,
                t.user_agent.to_string(),
                t.host.to_string(),
                t.summary().to_owned(),
            ),
            None => (
                columns::to_ip(cols.ip(self.slot)),
                String::new(),
                String::new(),
                String::new(),
            ),
        }
    }

    /// A snapshot for lists and the API; `first_ip` if the address has changed.
    fn info(&self, cols: &Cols, policy: &SessionPolicy, first_ip: Option<IpAddr>) -> SessionInfo {
        let policy = policy.of(self.user.is_none());
        let (ip, user_agent, host, client) = self.client_strings(cols);
        let last = self.last_access_at(cols);
        SessionInfo {
            id: self.id,
            user: self.user.clone(),
            kind: self.kind,
            ip,
            first_ip: first_ip.unwrap_or(ip),
            user_agent,
            client,
            host,
            requests: self.requests(cols),
            created_at: self.created_at(),
            last_access_at: last,
            expires_at: policy.expires_at(self.created_at(), last),
        }
    }

    /// What the store needs to write a lazy session for the first time; `token_hash`
    /// is the full hash kept beside it until then.
    fn lazy_record(&self, cols: &Cols, token_hash: TokenHash) -> LazySession {
        let (ip, user_agent, host, client) = self.client_strings(cols);
        LazySession {
            session: NewSession {
                id: self.id,
                token_hash,
                user: None,
                kind: self.kind,
                created_at: self.created_at(),
                limit: None,
                client: ClientSnapshot {
                    ip,
                    user_agent,
                    host,
                },
            },
            client,
        }
    }

    fn unclaim(&self, requests: u64) {
        self.add_unflushed(u32::try_from(requests).unwrap_or(u32::MAX));
    }

    /// Saturates rather than wraps: claims handed back through a long store outage
    /// pile up, and past 2^32 the count written later is short, never wrong the other way.
    fn add_unflushed(&self, n: u32) {
        let _ = self
            .unflushed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_add(n))
            });
    }
}

/// A session seen with its columns, as a list's filters and sorts see it.
struct Viewed<'a> {
    s: &'a LiveSession,
    cols: &'a Cols,
}

impl Listable for Viewed<'_> {
    fn id(&self) -> SessionId {
        self.s.id
    }
    fn user(&self) -> Option<&Username> {
        self.s.user.as_ref()
    }
    fn kind(&self) -> SessionKind {
        self.s.kind
    }
    fn ip(&self) -> IpAddr {
        columns::to_ip(self.cols.ip(self.s.slot))
    }
    fn client(&self) -> Cow<'_, str> {
        Cow::Owned(self.s.client_summary())
    }
    fn requests(&self) -> u64 {
        self.s.requests(self.cols)
    }
    fn created_at(&self) -> Timestamp {
        self.s.created_at()
    }
    fn last_access_at(&self) -> Timestamp {
        self.s.last_access_at(self.cols)
    }
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    index: crate::index::Index,
    columns: Cols,
    /// Hashes user names to the columns' user keys.
    user_keys: crate::index::Fast,
    first_ips: FirstIps,
    /// foldhash: names are the administrators' own (only a user with a session here
    /// is in it), and its hashing was a tenth of admitting a million at start.
    users: DashMap<Username, Arc<User>, crate::index::Fast>,
    /// Sessions ended lately, so a store read that raced the end cannot re-admit one.
    tombstones: DashMap<SessionId, Timestamp, crate::index::Fast>,
    /// Tokens the store did not know (or knew as ended), so a client repeating a junk
    /// or stale cookie costs a memory lookup, not a store read, per request.
    unknown: DashMap<TokenHash, Timestamp, crate::index::Fast>,
    /// The lazy sessions not written yet, with their full token hash: the index keeps
    /// only a key ([`TokenKey`]), the store needs the whole hash. Being here is what
    /// makes a session lazy: the flusher writes it, and an end before that is memory's
    /// alone.
    lazy_tokens: DashMap<SessionId, TokenHash, crate::index::Fast>,
    dirty_tx: mpsc::UnboundedSender<Arc<LiveSession>>,
    dirty_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arc<LiveSession>>>,
    dirty_count: AtomicU64,
    feed_cursor: AtomicI64,
    metrics: Arc<Metrics>,
    cookieless: crate::clients::CookielessClients,
    timeline: crate::timeline::Timeline,
    /// Live anonymous sessions in the index (for `max_anonymous`).
    anonymous: AtomicI64,
    strings: Interner,
    /// Held by the one request evicting anonymous sessions past the cap.
    evicting: tokio::sync::Mutex<()>,
}

/// The session engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Handle on the engine's background tasks; [`Tasks::shutdown`] drains them.
pub struct Tasks {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    engine: Engine,
}

/// The outcome of checking a request's token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: Arc<LiveSession>,
    pub user: Option<Arc<User>>,
    /// When it was checked: the time [`Engine::record`] counts the request at (one
    /// clock read per request, not one per step).
    pub checked_at: Timestamp,
}

impl Engine {
    /// Loads every live session from the store into memory.
    pub async fn load(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let (dirty_tx, dirty_rx) = mpsc::unbounded_channel();
        // Read the feed head first: anything ended after it is replayed by the feed.
        let head = store.change_head().await?;
        let engine = Self {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                index: Default::default(),
                columns: Default::default(),
                user_keys: Default::default(),
                first_ips: Default::default(),
                users: DashMap::default(),
                tombstones: DashMap::default(),
                unknown: DashMap::default(),
                lazy_tokens: DashMap::default(),
                dirty_tx,
                dirty_rx: tokio::sync::Mutex::new(dirty_rx),
                dirty_count: AtomicU64::new(0),
                feed_cursor: AtomicI64::new(head),
                metrics: Arc::new(Metrics::new()),
                cookieless: Default::default(),
                timeline: Default::default(),
                anonymous: AtomicI64::new(0),
                strings: Interner::default(),
                evicting: tokio::sync::Mutex::new(()),
            }),
        };
        // In pages: a million rows held at once would stay in the allocator long after.
        // Tasks read page after page ahead of the admission, a few pages at most: the
        // reading never waits for an admission to ask for its next page. Where the store
        // can split the reading, two parts are read at once — reading is the longer
        // half of the work, and with the admission that keeps two cores busy.
        let (pages, mut arriving) = mpsc::channel::<Result<LivePage, EngineError>>(LOAD_AHEAD);
        let readers: Vec<_> = engine
            .inner
            .store
            .sessions_live_split(LOAD_PARTS)
            .await?
            .into_iter()
            .map(|start| {
                let store = engine.inner.store.clone();
                let pages = pages.clone();
                tokio::spawn(async move {
                    let mut from = Some(start);
                    while let Some(cursor) = from.take() {
                        let page = store
                            .sessions_live_page(&cursor, LOAD_PAGE)
                            .await
                            .map_err(EngineError::from);
                        from = page.as_ref().ok().and_then(|p| p.next.clone());
                        if pages.send(page).await.is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(pages);
        let live = engine.inner.store.sessions_live_count().await?;
        engine
            .inner
            .index
            .reserve(usize::try_from(live).unwrap_or(0));
        // Every user in one read when there are no more users than live sessions (it then
        // costs less than the sessions themselves): a query per user met admitted
        // sessions one round trip at a time — 1,000 users held up a million sessions'
        // start by 0.2 s (issue 9).
        let listed: Option<HashMap<Username, User>> =
            if engine.inner.store.user_count().await? <= live {
                let users = engine.inner.store.user_list().await?;
                Some(users.into_iter().map(|u| (u.name.clone(), u)).collect())
            } else {
                None
            };
        while let Some(page) = arriving.recv().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    readers.iter().for_each(JoinHandle::abort);
                    return Err(e);
                }
            };
            for record in &page.sessions {
                engine.admit_listed(record, listed.as_ref()).await?;
            }
            engine.inner.store.sessions_live_page_done(page);
        }
        for reader in readers {
            reader.await.map_err(|e| EngineError::Load(e.to_string()))?;
        }
        Ok(engine)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Live sessions and requests per minute over the last day.
    pub fn timeline(&self) -> &crate::timeline::Timeline {
        &self.inner.timeline
    }

    /// Adds this minute's point to the timeline.
    pub fn sample_timeline(&self) {
        let mut live = 0u64;
        self.inner.columns.for_each_live(|_, _| live += 1);
        let allowed = self
            .inner
            .metrics
            .requests
            .get_or_create(&[("outcome", "allowed")])
            .get();
        self.inner
            .timeline
            .record(self.inner.clock.now(), live, allowed);
    }

    /// Requests that came without a cookie or credential, per (IP, User-Agent).
    pub fn cookieless(&self) -> &crate::clients::CookielessClients {
        &self.inner.cookieless
    }

    /// Sets the live-session gauges from the index (called on scrape).
    pub fn update_gauges(&self) {
        let (mut web_user, mut web_anon, mut api_user, mut api_anon) = (0i64, 0i64, 0i64, 0i64);
        self.inner.columns.for_each_live(|_, status| {
            match (status & columns::API != 0, status & columns::NO_USER != 0) {
                (false, false) => web_user += 1,
                (false, true) => web_anon += 1,
                (true, false) => api_user += 1,
                (true, true) => api_anon += 1,
            }
        });
        self.inner
            .metrics
            .cookieless_clients
            .set(self.inner.cookieless.len() as i64);
        let g = &self.inner.metrics.sessions_active;
        g.get_or_create(&[("type", "web"), ("authenticated", "true")])
            .set(web_user);
        g.get_or_create(&[("type", "web"), ("authenticated", "false")])
            .set(web_anon);
        g.get_or_create(&[("type", "api"), ("authenticated", "true")])
            .set(api_user);
        g.get_or_create(&[("type", "api"), ("authenticated", "false")])
            .set(api_anon);
    }

    fn count_ended(&self, reason: EndReason, ids: &[SessionId], actor: &str) {
        if ids.is_empty() {
            return;
        }
        self.inner
            .metrics
            .sessions_ended
            .get_or_create(&[("reason", reason.as_str())])
            .inc_by(ids.len() as u64);
        // One line per session, unless a batch (an anonymous flood being evicted, a
        // sweep of timeouts) would flood the log: then one line says how many.
        if ids.len() <= LOG_EACH_UP_TO {
            for id in ids {
                tracing::info!(session = %id, reason = reason.as_str(), actor, "session ended");
            }
        } else {
            tracing::info!(
                count = ids.len(),
                reason = reason.as_str(),
                actor,
                "sessions ended"
            );
        }
    }

    fn store_failed(&self) {
        self.inner.metrics.store_errors.inc();
    }

    pub fn policy(&self) -> SessionPolicy {
        self.inner.config.policy
    }

    /// Number of live sessions in memory.
    pub fn live_count(&self) -> usize {
        self.inner.index.len()
    }

    /// Live sessions matching `query`: how many in all, and the requested page. Read
    /// from memory, where counts are fresher than the store's.
    pub fn list(&self, query: &SessionQuery) -> (u64, Vec<SessionInfo>) {
        let now = self.inner.clock.now();
        let cols = &self.inner.columns;
        if let Some((filter, key)) = by_columns(query, now) {
            return self.list_by_columns(query, &filter, key);
        }
        let mut page = query.page(now);
        if let Some(name) = &query.user {
            // One user's sessions, found by their key; the query model does the rest.
            for s in self.of_user(name).iter().filter(|s| s.is_live(cols)) {
                page.offer_as(&Viewed { s, cols }, || s.clone());
            }
        } else {
            // Filters and sorts the columns do not hold: each session read where it lies.
            self.inner.index.for_each(|s| {
                if s.is_live(cols) {
                    page.offer_as(&Viewed { s, cols }, || s.clone());
                }
            });
        }
        let (total, page) = page.finish();
        (total, page.iter().map(|s| self.info(s)).collect())
    }

    /// A list read off the columns alone, but for the sessions on the page (and any
    /// tied with the last of them, whose order is by id, as the store's).
    fn list_by_columns(
        &self,
        query: &SessionQuery,
        filter: &columns::Filter,
        key: columns::Key,
    ) -> (u64, Vec<SessionInfo>) {
        let cols = &self.inner.columns;
        let offset = usize::try_from(query.offset).unwrap_or(usize::MAX);
        let (keep, limit) = match query.limit {
            Limit::Count(n) => (Some(offset.saturating_add(n as usize)), n as usize),
            Limit::All => (None, usize::MAX),
        };
        let desc = query.order == Order::Desc;
        let top = cols.top(filter, key, desc, keep);
        let mut rows: Vec<(u64, Arc<LiveSession>)> = top
            .ranked
            .into_iter()
            .filter_map(|(rank, slot)| Some((rank, cols.owner(slot)?)))
            .collect();
        rows.sort_unstable_by(|(ra, a), (rb, b)| {
            let by_id = if desc {
                b.id.cmp(&a.id)
            } else {
                a.id.cmp(&b.id)
            };
            ra.cmp(rb).then(by_id)
        });
        let page = rows
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(_, s)| self.info(s))
            .collect();
        (top.total, page)
    }

    /// The column key of a user's name: never 0, which is no user's.
    fn user_key(&self, name: &Username) -> u32 {
        (self.inner.user_keys.hash_one(name.as_str()) as u32) | 1
    }

    /// The sessions of `name` in the index (live or ending), found through the columns
    /// without visiting anyone else's (a user's own sessions page at a million).
    fn of_user(&self, name: &Username) -> Vec<Arc<LiveSession>> {
        let cols = &self.inner.columns;
        let mut slots = Vec::new();
        cols.for_each_with_user_key(self.user_key(name), |slot| slots.push(slot));
        slots
            .into_iter()
            .filter_map(|slot| cols.owner(slot))
            .filter(|s| s.user.as_ref() == Some(name))
            .collect()
    }

    /// The live session `id` as lists show it.
    pub fn session_info(&self, id: &SessionId) -> Option<SessionInfo> {
        self.session(id).map(|s| self.info(&s))
    }

    fn info(&self, s: &LiveSession) -> SessionInfo {
        let first_ip = self.inner.first_ips.get(&s.id).map(|e| *e);
        s.info(&self.inner.columns, &self.inner.config.policy, first_ip)
    }

    /// The requests counted on a session so far, stored or not.
    pub fn requests(&self, session: &LiveSession) -> u64 {
        session.requests(&self.inner.columns)
    }

    /// Every live session of `user`, newest first.
    pub fn sessions_of(&self, user: &Username) -> Vec<SessionInfo> {
        let q = SessionQuery {
            user: Some(user.clone()),
            sort: usher_core::query::SortKey::Created,
            limit: usher_core::query::Limit::All,
            ..SessionQuery::default()
        };
        self.list(&q).1
    }

    /// Adds a stored live session to the index (with its user), unless it already ended.
    async fn admit(&self, record: &SessionRecord) -> Result<Option<Arc<LiveSession>>, EngineError> {
        self.admit_listed(record, None).await
    }

    /// [`Engine::admit`], finding a user not here yet in `listed` (users read at load)
    /// before asking the store.
    async fn admit_listed(
        &self,
        record: &SessionRecord,
        listed: Option<&HashMap<Username, User>>,
    ) -> Result<Option<Arc<LiveSession>>, EngineError> {
        if record.ended_at.is_some() {
            return Ok(None);
        }
        // One lookup for the common case (a user with sessions here already), which is
        // also the copy of the name the session shares.
        let known = record.user.as_ref().map(|name| {
            let shared = self.inner.users.get(name).map(|e| e.key().clone());
            (name, shared)
        });
        let user = match known {
            None => None,
            Some((_, Some(shared))) => Some(shared),
            Some((name, None)) => match match listed.and_then(|l| l.get(name).cloned()) {
                // Not listed: made after the list was read, or no list.
                None => self.inner.store.user_get(name).await?,
                found => found,
            } {
                Some(u) if !u.disabled => {
                    self.inner
                        .users
                        .insert(name.clone(), Arc::new(public_user(u)));
                    self.shared_name(Some(name))
                }
                // A session whose user is gone or disabled is not honoured; ending it
                // is the store's job when the user changed.
                _ => return Ok(None),
            },
        };
        let entry = self.index(self.live(record, user)?);
        // Insert first, then look for a tombstone (`forget` does the reverse): whichever
        // way a read of the store and an end interleave, an ended session stays out.
        if self.inner.tombstones.contains_key(&record.id) {
            self.forget(&[record.id]);
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// Puts a session in the index (unless its token is there already: then that one
    /// is returned) and counts it if anonymous.
    fn index(&self, live: Arc<LiveSession>) -> Arc<LiveSession> {
        // Listed before it is in the index, so that no removal can come in between
        // and leave it listed; one that loses a race for its token is unlisted again.
        self.inner.columns.set_indexed(live.slot, true);
        let (entry, new) = self.inner.index.insert(live.clone());
        if !new {
            self.inner.columns.set_indexed(live.slot, false);
        } else if entry.is_anonymous() {
            self.inner.anonymous.fetch_add(1, Ordering::Relaxed);
        }
        entry
    }

    /// A session in memory for `r`, with its slot in the columns. `user` is `r.user`,
    /// as the one copy of the name every session of the user shares.
    fn live(
        &self,
        r: &SessionRecord,
        user: Option<Username>,
    ) -> Result<Arc<LiveSession>, EngineError> {
        let cols = &self.inner.columns;
        let flags = if r.user.is_none() {
            columns::NO_USER
        } else {
            0
        } | if r.kind == SessionKind::Api {
            columns::API
        } else {
            0
        };
        let slot = cols.alloc(&columns::Facts {
            flags,
            requests: r.requests,
            created_us: r.created_at.as_microsecond(),
            last_access_us: r.last_access_at.as_microsecond(),
            ip: columns::from_ip(r.ip),
            user_key: r.user.as_ref().map_or(0, |n| self.user_key(n)),
        })?;
        let live = Arc::new(LiveSession {
            id: r.id,
            token_key: TokenKey::of(&r.token_hash),
            user,
            kind: r.kind,
            created_us: r.created_at.as_microsecond(),
            slot,
            unflushed: AtomicU32::new(0),
            dirty: AtomicBool::new(false),
            client: Mutex::new(self.inner.strings.client(&r.user_agent, &r.host, &r.client)),
        });
        cols.own(slot, Arc::downgrade(&live));
        if r.first_ip != r.ip {
            self.inner.first_ips.insert(r.id, r.first_ip);
        }
        Ok(live)
    }

    /// Checks a token and, if it names a live session, counts the request on it.
    pub async fn authenticate(
        &self,
        token: &Token,
        req: &RequestInfo<'_>,
    ) -> Result<Option<Authenticated>, EngineError> {
        let found = self.find(token).await?;
        if let Some(auth) = &found {
            self.record(auth, req);
        }
        Ok(found)
    }

    /// The live session a token names, without counting anything. The fast path
    /// touches only memory; a token unknown here is looked up in the store once (it may
    /// have been created by another node).
    pub async fn find(&self, token: &Token) -> Result<Option<Authenticated>, EngineError> {
        let hash = token.hash();
        let session = match self.inner.index.get(&hash) {
            Some(s) => s,
            // Boxed: the store's path would make every request's future larger, and
            // the request path moves that future around (issue 9).
            None => match Box::pin(self.find_stored(hash)).await? {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        Ok(self.check(session))
    }

    /// [`Engine::find`] without waiting: the session `token` names when it is in memory
    /// and still good, `None` otherwise — a token not in memory may still be in the
    /// store, which only [`Engine::find`] asks. It lets a request be answered before its
    /// future is first polled (see the gateway's server).
    pub fn find_in_memory(&self, token: &Token) -> Option<Authenticated> {
        let session = self.inner.index.get(&token.hash())?;
        self.check(session)
    }

    /// A token not in memory: another node's session, one made by the CLI — or junk,
    /// remembered as unknown for a while so that it is not looked up again.
    async fn find_stored(&self, hash: TokenHash) -> Result<Option<Arc<LiveSession>>, EngineError> {
        let now = self.inner.clock.now();
        if self
            .inner
            .unknown
            .get(&hash)
            .is_some_and(|at| now.duration_since(*at) < UNKNOWN_TTL)
        {
            return Ok(None);
        }
        self.inner.metrics.token_store_lookups.inc();
        let admitted = match self.inner.store.session_by_token(&hash).await? {
            Some(record) => self.admit(&record).await?,
            None => None,
        };
        if admitted.is_none() {
            self.remember_unknown(hash, now);
        }
        Ok(admitted)
    }

    /// Full, it takes no more until the reaper drops what is older than the TTL: a
    /// flood of distinct junk tokens then reads the store as it did without the cache,
    /// and no request ever pays for trimming it.
    fn remember_unknown(&self, hash: TokenHash, now: Timestamp) {
        if self.inner.unknown.len() < UNKNOWN_MAX {
            self.inner.unknown.insert(hash, now);
        }
    }

    /// Counts a request on the live session `id` (for clients tracked by something
    /// other than a cookie, such as API clients).
    pub fn touch(&self, id: &SessionId, req: &RequestInfo<'_>) -> Option<Authenticated> {
        let auth = self.check(self.session(id)?)?;
        self.record(&auth, req);
        Some(auth)
    }

    /// The live session `id`, checked as a request would be, without counting.
    pub fn peek(&self, id: &SessionId) -> Option<Authenticated> {
        self.check(self.session(id)?)
    }

    /// Counts one request on a session [`Engine::find`] returned.
    pub fn record(&self, auth: &Authenticated, req: &RequestInfo<'_>) {
        let session = &auth.session;
        let now = auth.checked_at;
        let (cols, strings) = (&self.inner.columns, &self.inner.strings);
        if session.touch(cols, now, req, strings, &self.inner.first_ips) {
            self.queue(session);
        }
    }

    /// Queues a session for the next flush. Only the interval triggers a flush, never
    /// the queue's length: one transaction per interval whatever the request rate (a
    /// session is queued at most once per flush, so the queue is bounded by the
    /// number of sessions).
    fn queue(&self, session: &Arc<LiveSession>) {
        if self.inner.dirty_tx.send(session.clone()).is_ok() {
            self.inner.dirty_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Is the session still good: live, within its timeouts, its user known here.
    fn check(&self, session: Arc<LiveSession>) -> Option<Authenticated> {
        let cols = &self.inner.columns;
        if !session.is_live(cols) {
            return None;
        }
        let now = self.inner.clock.now();
        if let Some(reason) = self.inner.config.policy.of(session.user.is_none()).verdict(
            session.created_at(),
            session.last_access_at(cols),
            now,
        ) {
            // Refused at once; the reaper makes it durable on its next sweep.
            session.mark_ended(cols, reason);
            return None;
        }
        let user = match &session.user {
            Some(name) => Some(self.inner.users.get(name)?.value().clone()),
            None => None,
        };
        Some(Authenticated {
            session,
            user,
            checked_at: now,
        })
    }

    /// A lazy anonymous session for a token Usher handed out earlier and the client has
    /// now sent back: made in memory and counted at once, written by the next flush.
    /// `None` when the token's session existed and has ended (the client then gets a
    /// new cookie, not the old session back).
    pub async fn adopt_anonymous(
        &self,
        token: &Token,
        req: &RequestInfo<'_>,
    ) -> Result<Option<Authenticated>, EngineError> {
        let hash = token.hash();
        if let Some(record) = self.inner.store.session_by_token(&hash).await? {
            let Some(s) = self.admit(&record).await? else {
                return Ok(None);
            };
            let found = self.check(s);
            if let Some(a) = &found {
                self.record(a, req);
            }
            return Ok(found);
        }
        let now = self.inner.clock.now();
        let ua = user_agent::truncate(req.user_agent).to_owned();
        let record = SessionRecord {
            id: SessionId::generate()?,
            token_hash: hash,
            user: None,
            kind: SessionKind::Web,
            ip: req.ip,
            first_ip: req.ip,
            client: String::new(),
            user_agent: ua,
            host: req.host.to_owned(),
            requests: 0,
            created_at: now,
            last_access_at: now,
            ended_at: None,
            end_reason: None,
            ended_by: None,
        };
        let live = self.live(&record, None)?;
        self.inner.lazy_tokens.insert(record.id, hash);
        // The lookup that led here remembered the cookie as unknown; now it is a
        // session, and a flood of new visitors would otherwise fill that cache.
        self.inner.unknown.remove(&hash);
        let session = self.index(live);
        if session.id != record.id {
            // Another request adopted the same cookie first: its session stands.
            self.inner.lazy_tokens.remove(&record.id);
        }
        let Some(auth) = self.check(session) else {
            return Ok(None);
        };
        // Queued even before any request is counted on it: the flusher writes it.
        if !auth.session.dirty.swap(true, Ordering::AcqRel) {
            self.queue(&auth.session);
        }
        self.record(&auth, req);
        self.evict_anonymous_past_cap().await?;
        Ok(Some(auth))
    }

    /// Keeps live anonymous sessions within `max_anonymous` by ending the least
    /// recently used ones (as `evicted`). It evicts 1% of the cap beyond the excess, so
    /// that a flood of visitors scans the index once per many sessions, not once each;
    /// requests arriving meanwhile wait for it.
    async fn evict_anonymous_past_cap(&self) -> Result<(), EngineError> {
        let max = self.inner.config.max_anonymous;
        let live = u64::try_from(self.inner.anonymous.load(Ordering::Relaxed)).unwrap_or(0);
        if max == 0 || live <= max {
            return Ok(());
        }
        // One evicts; the others wait for it and then find the count back under the
        // cap (so the cap holds under any number of visitors at once).
        let _guard = self.inner.evicting.lock().await;
        let cols = &self.inner.columns;
        let mut candidates: Vec<(i64, u32)> = Vec::new();
        cols.for_each_live(|slot, status| {
            if status & (columns::NO_USER | columns::API) == columns::NO_USER {
                candidates.push((cols.last_access_us(slot), slot));
            }
        });
        let count = candidates.len() as u64;
        if count <= max {
            return Ok(());
        }
        let evict = usize::try_from(count - max + max / 100).unwrap_or(usize::MAX);
        let evict = evict.min(candidates.len());
        if evict < candidates.len() {
            candidates.select_nth_unstable(evict);
        }
        let ids: Vec<SessionId> = candidates[..evict]
            .iter()
            .filter_map(|(_, slot)| Some(cols.owner(*slot)?.id))
            .collect();
        self.end(
            SessionSelector::Ids(ids),
            EndReason::Evicted,
            "max_anonymous",
        )
        .await?;
        Ok(())
    }

    /// Creates a session for `user` (durably, with its `login` event) and returns the
    /// token for the client.
    pub async fn create(
        &self,
        user: Option<&User>,
        kind: SessionKind,
        req: &RequestInfo<'_>,
    ) -> Result<(Token, Arc<LiveSession>), EngineError> {
        let token = Token::generate()?;
        let now = self.inner.clock.now();
        let ua = user_agent::truncate(req.user_agent).to_owned();
        let limit = user.and_then(|u| self.inner.config.concurrency.limit_for(u));
        let new = NewSession {
            id: SessionId::generate()?,
            token_hash: token.hash(),
            user: user.map(|u| u.name.clone()),
            kind,
            created_at: now,
            limit,
            client: ClientSnapshot {
                ip: req.ip,
                user_agent: ua.clone(),
                host: req.host.to_owned(),
            },
        };
        let summary = user_agent::summarize(&ua);
        let evicted = self.inner.store.session_create(&new, &summary).await?;
        if !evicted.is_empty() {
            self.forget(&evicted);
            self.count_ended(EndReason::Evicted, &evicted, "login");
        }
        if let Some(u) = user {
            // Keep what the change feed may have put here since `u` was read.
            self.inner
                .users
                .entry(u.name.clone())
                .or_insert_with(|| Arc::new(public_user(u.clone())));
        }
        let record = SessionRecord {
            id: new.id,
            token_hash: new.token_hash,
            user: new.user.clone(),
            kind,
            ip: req.ip,
            first_ip: req.ip,
            user_agent: ua,
            client: summary,
            host: new.client.host.clone(),
            requests: 0,
            created_at: now,
            last_access_at: now,
            ended_at: None,
            end_reason: None,
            ended_by: None,
        };
        let live = self.index(self.live(&record, self.shared_name(record.user.as_ref()))?);
        Ok((token, live))
    }

    /// The copy of `name` the users map holds, shared by all the user's sessions.
    fn shared_name(&self, name: Option<&Username>) -> Option<Username> {
        let name = name?;
        Some(
            self.inner
                .users
                .get(name)
                .map_or_else(|| name.clone(), |e| e.key().clone()),
        )
    }

    /// Ends sessions durably (with their unflushed activity and events), then drops
    /// them from memory. Returns the sessions this call ended.
    pub async fn end(
        &self,
        selector: SessionSelector,
        reason: EndReason,
        actor: &str,
    ) -> Result<Vec<SessionId>, EngineError> {
        let local: Vec<Arc<LiveSession>> = match &selector {
            SessionSelector::Ids(ids) => ids.iter().filter_map(|id| self.by_id(id)).collect(),
            SessionSelector::User(name) => self.of_user(name),
        };
        let mut touches = Vec::new();
        let mut claims = Vec::new();
        let cols = &self.inner.columns;
        for s in &local {
            if let Some(touch) = s.take_touch(cols) {
                claims.push((s.clone(), touch.requests));
                touches.push(touch);
            }
        }
        let end = EndSessions {
            selector,
            reason,
            actor: actor.to_owned(),
            at: self.inner.clock.now(),
            touches,
        };
        let mut ended = match self.inner.store.sessions_end(&end).await {
            Ok(ended) => ended,
            Err(e) => {
                self.store_failed();
                // Nothing was written: the activity is still owed to the store.
                for (s, claimed) in &claims {
                    s.unclaim(*claimed);
                    self.requeue(s);
                }
                return Err(e.into());
            }
        };
        for s in &local {
            s.mark_ended(cols, reason);
            // A lazy session the flusher has not written yet ends in memory alone.
            if self.inner.lazy_tokens.contains_key(&s.id) && !ended.contains(&s.id) {
                ended.push(s.id);
            }
        }
        self.forget(&ended);
        self.count_ended(reason, &ended, actor);
        Ok(ended)
    }

    fn by_id(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        self.inner.index.by_id(id)
    }

    /// Looks up a live session by its public id.
    pub fn session(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        self.by_id(id).filter(|s| s.is_live(&self.inner.columns))
    }

    /// Drops ended sessions from memory: their tokens are refused from now on.
    pub fn forget(&self, ids: &[SessionId]) {
        let now = self.inner.clock.now();
        for id in ids {
            self.inner.tombstones.insert(*id, now);
            self.inner.lazy_tokens.remove(id);
            self.inner.first_ips.remove(id);
            if let Some(s) = self.inner.index.remove(id) {
                if s.is_anonymous() {
                    self.inner.anonymous.fetch_sub(1, Ordering::Relaxed);
                }
                s.mark_ended(&self.inner.columns, EndReason::Killed);
                self.inner.columns.set_indexed(s.slot, false);
            }
        }
    }

    /// What this node knows of a user with live sessions; replaced (a new `Arc`) each
    /// time the user changes anywhere, so holders can tell their copy went stale.
    pub fn user(&self, name: &Username) -> Option<Arc<User>> {
        self.inner.users.get(name).map(|u| u.value().clone())
    }

    /// Replaces what the engine knows of a user (after a change here or elsewhere).
    pub async fn refresh_user(&self, name: &Username) -> Result<(), EngineError> {
        match self.inner.store.user_get(name).await? {
            Some(u) if !u.disabled => {
                self.inner
                    .users
                    .insert(name.clone(), Arc::new(public_user(u)));
            }
            _ => {
                self.inner.users.remove(name);
            }
        }
        Ok(())
    }

    fn requeue(&self, s: &Arc<LiveSession>) {
        if !s.dirty.swap(true, Ordering::AcqRel) && self.inner.dirty_tx.send(s.clone()).is_ok() {
            self.inner.dirty_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes every queued touch in one transaction. On failure the activity stays
    /// queued for the next flush (SQLite reports a failed COMMIT as not committed, so
    /// this cannot count twice).
    pub async fn flush(&self) -> Result<usize, EngineError> {
        let mut rx = self.inner.dirty_rx.lock().await;
        let mut batch: Vec<(Arc<LiveSession>, u64)> = Vec::new();
        let mut touches = Vec::new();
        let mut created = Vec::new();
        let cols = &self.inner.columns;
        // What is queued now, and no more: a session touched again while this runs is
        // queued again, and a flush that chased those would never end under load.
        let queued = rx.len();
        for n in 0..queued {
            // Collecting ten thousand touches takes milliseconds of one async worker;
            // the requests waiting on that worker go first now and then (issue 9: p99).
            if n % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
            let Ok(s) = rx.try_recv() else { break };
            self.inner.dirty_count.fetch_sub(1, Ordering::Relaxed);
            if !s.is_live(cols) {
                continue;
            }
            if let Some(hash) = self.inner.lazy_tokens.get(&s.id) {
                created.push((s.lazy_record(cols, *hash), s.slot));
            }
            if let Some(touch) = s.take_touch(cols) {
                batch.push((s, touch.requests));
                touches.push(touch);
            }
        }
        // The receiver stays locked until the write is done: a caller of `flush` that
        // finds the queue empty because a flush is in flight waits for that flush, so
        // "flush" always means "everything queued before this call is in the store".
        if touches.is_empty() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let (created, slots): (Vec<LazySession>, Vec<u32>) = created.into_iter().unzip();
        let written = touches.len();
        match self.inner.store.write_behind(&created, touches).await {
            Ok(_) => {
                // A lazy session ended while this write was in flight was ended in
                // memory alone (the store did not have it yet); now the store has it
                // live, so it is ended there too.
                let mut late: Vec<(EndReason, SessionId)> = Vec::new();
                for (c, slot) in created.iter().zip(slots) {
                    if self.inner.lazy_tokens.remove(&c.session.id).is_none() {
                        let reason = code_reason(cols.state(slot)).unwrap_or(EndReason::Killed);
                        late.push((reason, c.session.id));
                    }
                }
                let m = &self.inner.metrics;
                m.flush_seconds.observe(started.elapsed().as_secs_f64());
                m.flush_batch.observe(written as f64);
                self.end_in_store(late).await;
                Ok(written)
            }
            Err(e) => {
                self.store_failed();
                // Nothing was written: hand the claims back for the next flush.
                for (s, claimed) in &batch {
                    s.unclaim(*claimed);
                    self.requeue(s);
                }
                Err(e.into())
            }
        }
    }

    /// Ends in the store sessions that memory has ended already (by "system": who
    /// ended them is not kept past the end). A failure is only logged: memory refuses
    /// their tokens still, but the store keeps them live.
    async fn end_in_store(&self, ended: Vec<(EndReason, SessionId)>) {
        for reason in EndReason::ALL {
            let ids = ending_for(&ended, reason);
            if ids.is_empty() {
                continue;
            }
            let end = EndSessions {
                selector: SessionSelector::Ids(ids),
                reason,
                actor: "system".into(),
                at: self.inner.clock.now(),
                touches: Vec::new(),
            };
            if let Err(e) = self.inner.store.sessions_end(&end).await {
                self.store_failed();
                tracing::warn!(error = %e, "ending sessions written after their end failed");
            }
        }
    }

    /// Ends every session whose timeout has passed, or that a request found expired.
    pub async fn reap(&self) -> Result<usize, EngineError> {
        let now = self.inner.clock.now();
        let policy = self.inner.config.policy;
        let mut due: Vec<(EndReason, SessionId)> = Vec::new();
        let mut gone: Vec<SessionId> = Vec::new();
        let cols = &self.inner.columns;
        let before = |d: SignedDuration| micros_before(now, d);
        let mut maybe = Vec::new();
        cols.for_each_due(
            &columns::Due {
                idle_before_us: [
                    before(policy.of(false).idle_timeout),
                    before(policy.of(true).idle_timeout),
                ],
                created_before_us: before(policy.absolute_timeout),
            },
            |slot| maybe.push(slot),
        );
        for s in maybe.iter().filter_map(|slot| cols.owner(*slot)) {
            let reason = code_reason(cols.state(s.slot)).or_else(|| {
                policy
                    .of(s.user.is_none())
                    .verdict(s.created_at(), s.last_access_at(cols), now)
            });
            match reason {
                Some(r @ (EndReason::IdleTimeout | EndReason::AbsoluteTimeout)) => {
                    due.push((r, s.id));
                }
                // Ended some other way and already durable: only memory is left.
                Some(_) => gone.push(s.id),
                None => {}
            }
        }
        self.forget(&gone);
        cols.sweep();
        // A store read older than this cannot still be in flight.
        let horizon = now - TOMBSTONE_TTL;
        self.inner.tombstones.retain(|_, at| *at > horizon);
        let horizon = now - UNKNOWN_TTL;
        self.inner.unknown.retain(|_, at| *at > horizon);
        // A burst of new visitors can leave tens of thousands waiting for one slow
        // flush; the map keeps its peak's room unless given back once drained.
        if self.inner.lazy_tokens.is_empty() {
            self.inner.lazy_tokens.shrink_to_fit();
        }
        let mut ended = 0;
        for reason in [EndReason::AbsoluteTimeout, EndReason::IdleTimeout] {
            let ids = ending_for(&due, reason);
            if ids.is_empty() {
                continue;
            }
            for id in &ids {
                if let Some(s) = self.by_id(id) {
                    s.mark_ended(cols, reason);
                }
            }
            // Ended by timeout whether or not the store had it live: forget them either way.
            let done = self.end_marked(ids.clone(), reason).await?;
            ended += done;
            self.forget(&ids);
        }
        Ok(ended)
    }

    async fn end_marked(
        &self,
        ids: Vec<SessionId>,
        reason: EndReason,
    ) -> Result<usize, EngineError> {
        let mut touches = Vec::new();
        let mut claims = Vec::new();
        for id in &ids {
            if let Some(s) = self.by_id(id)
                && let Some(t) = s.take_touch(&self.inner.columns)
            {
                claims.push((s, t.requests));
                touches.push(t);
            }
        }
        let end = EndSessions {
            selector: SessionSelector::Ids(ids),
            reason,
            actor: "system".into(),
            at: self.inner.clock.now(),
            touches,
        };
        match self.inner.store.sessions_end(&end).await {
            Ok(ended) => {
                self.count_ended(reason, &ended, "system");
                Ok(ended.len())
            }
            Err(e) => {
                self.store_failed();
                for (s, claimed) in &claims {
                    s.unclaim(*claimed);
                }
                Err(e.into())
            }
        }
    }

    /// Deletes history older than the retention; returns how many rows went.
    pub async fn purge_history(&self) -> Result<u64, EngineError> {
        let before = self.inner.clock.now() - self.inner.config.retention;
        let n = self.inner.store.history_purge(before).await?;
        if n > 0 {
            tracing::info!(rows = n, before = %before, "purged history past its retention");
        }
        Ok(n)
    }

    /// Applies changes made elsewhere (another node, the CLI) since the last call.
    pub async fn follow_changes(&self) -> Result<usize, EngineError> {
        let cursor = self.inner.feed_cursor.load(Ordering::Acquire);
        let changes = self.inner.store.changes_since(cursor, 1000).await?;
        for change in &changes {
            match &change.kind {
                ChangeKind::SessionEnded(id) => self.forget(std::slice::from_ref(id)),
                // Made on another node: known here too, so that every node lists it.
                ChangeKind::SessionCreated(id) => {
                    if !self.inner.index.contains_id(id)
                        && let Some(record) = self.inner.store.session_get(id).await?
                    {
                        self.admit(&record).await?;
                    }
                }
                ChangeKind::UserChanged(name) => self.refresh_user(name).await?,
            }
            self.inner.feed_cursor.store(change.seq, Ordering::Release);
        }
        Ok(changes.len())
    }

    /// Starts the flusher, the reaper and the change-feed follower.
    pub fn start(&self) -> Tasks {
        let (stop, stopped) = watch::channel(false);
        let mut handles = Vec::new();

        let engine = self.clone();
        let mut rx = stopped.clone();
        let interval = self.inner.config.flush_interval;
        handles.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = rx.changed() => break,
                }
                if let Err(e) = engine.flush().await {
                    tracing::warn!(error = %e, "flushing request counts failed; will retry");
                }
            }
        }));

        let engine = self.clone();
        let mut rx = stopped.clone();
        handles.push(tokio::spawn(async move {
            let mut ticks = 0u64;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(REAP_INTERVAL) => {}
                    _ = rx.changed() => break,
                }
                if let Err(e) = engine.reap().await {
                    tracing::warn!(error = %e, "ending expired sessions failed; will retry");
                }
                // A point per minute, the first after the first whole minute (a point
                // taken a second after start would be a minute's worth of nothing).
                if (ticks + 1).is_multiple_of(60) {
                    engine.sample_timeline();
                    engine.inner.strings.prune();
                    // An address that changed as its session ended can outlive it.
                    let index = &engine.inner.index;
                    engine.inner.first_ips.retain(|id, _| index.contains_id(id));
                }
                // History retention: at start, then hourly; batched, so requests never
                // wait on it.
                if ticks.is_multiple_of(3600)
                    && let Err(e) = engine.purge_history().await
                {
                    tracing::warn!(error = %e, "purging old history failed; will retry");
                }
                ticks += 1;
                if ticks.is_multiple_of(600) {
                    let before = engine.inner.clock.now() - FEED_RETENTION;
                    if let Err(e) = engine.inner.store.changes_prune(before).await {
                        tracing::warn!(error = %e, "pruning the change feed failed");
                    }
                }
            }
        }));

        let engine = self.clone();
        let mut rx = stopped;
        handles.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(FEED_INTERVAL) => {}
                    _ = rx.changed() => break,
                }
                if let Err(e) = engine.follow_changes().await {
                    tracing::warn!(error = %e, "reading the change feed failed; will retry");
                }
            }
        }));

        Tasks {
            stop,
            handles,
            engine: self.clone(),
        }
    }
}

impl Tasks {
    /// Stops the background tasks and writes every pending touch.
    pub async fn shutdown(self) -> Result<(), EngineError> {
        let _ = self.stop.send(true);
        for h in self.handles {
            let _ = h.await;
        }
        self.engine.flush().await.map(|_| ())
    }
}

/// The user as the request path needs it: no password hash kept in memory.
pub fn public_user(mut u: User) -> User {
    u.password_hash = None;
    u
}

#[cfg(test)]
mod tests {
    /// Issue 9 asks ≤ 200 bytes per live session at a million. The session object is
    /// most of it (plus the allocator's header and two index pointers): a field added
    /// here is paid a million times, so it has to be worth it.
    #[test]
    fn a_live_session_stays_small() {
        let size = std::mem::size_of::<super::LiveSession>();
        eprintln!("LiveSession: {size} bytes");
        // 88 + 16 (the Arc's counts) + 8 (malloc's header) = a 112-byte chunk; the
        // columns hold 42 bytes more ([`crate::columns`]).
        assert!(size <= 88, "LiveSession grew to {size} bytes");
    }
}
