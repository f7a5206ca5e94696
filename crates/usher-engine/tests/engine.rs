//! The engine against a real SQLite file, with a manual clock: counting, write-behind,
//! restart, timeouts, kills and changes made by another process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::SignedDuration;
use std::sync::Arc;
use std::time::Duration;
use usher_core::{
    Clock, EndReason, EventKind, ManualClock, SessionKind, SessionPolicy, Timestamp, Token,
    Username,
};
use usher_engine::{Accounts, Engine, EngineConfig, PasswordHasher, RequestInfo};
use usher_store::{EventQuery, SessionSelector, Store, StoreUrl};

struct Fixture {
    _dir: tempfile::TempDir,
    url: StoreUrl,
    store: Arc<dyn Store>,
    clock: ManualClock,
}

fn config() -> EngineConfig {
    EngineConfig {
        policy: SessionPolicy {
            idle_timeout: SignedDuration::from_secs(300),
            absolute_timeout: SignedDuration::from_secs(3600),
            anonymous_idle_timeout: SignedDuration::from_secs(60),
        },
        flush_interval: Duration::from_secs(1),
        concurrency: Default::default(),
        retention: SignedDuration::from_hours(24),
        max_anonymous: 3,
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::parse(&format!("sqlite://{}/usher.db", dir.path().display())).unwrap();
    let store = usher_store::open(&url).await.unwrap();
    let clock = ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap());
    Fixture {
        _dir: dir,
        url,
        store,
        clock,
    }
}

impl Fixture {
    async fn engine(&self) -> Engine {
        Engine::load(self.store.clone(), Arc::new(self.clock.clone()), config())
            .await
            .unwrap()
    }

    async fn user(&self, name: &str) -> usher_core::User {
        let accounts = Accounts::new(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            PasswordHasher::new(1).unwrap(),
        );
        accounts
            .create(Username::parse(name).unwrap(), None, false, "test")
            .await
            .unwrap()
    }
}

const REQ: RequestInfo<'static> = RequestInfo {
    ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10)),
    user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    host: "app.example",
};

#[tokio::test]
async fn requests_are_counted_and_written_behind_once() {
    let f = fixture().await;
    let alice = f.user("alice").await;
    let engine = f.engine().await;
    let (token, live) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    for _ in 0..10 {
        f.clock.advance(SignedDuration::from_secs(1));
        let a = engine.authenticate(&token, &REQ).await.unwrap().unwrap();
        assert_eq!(a.user.unwrap().name.as_str(), "alice");
    }
    assert_eq!(engine.requests(&live), 10);
    assert_eq!(
        f.store
            .session_get(&live.id)
            .await
            .unwrap()
            .unwrap()
            .requests,
        0,
        "not yet flushed"
    );
    assert_eq!(engine.flush().await.unwrap(), 1, "one session, one touch");
    let stored = f.store.session_get(&live.id).await.unwrap().unwrap();
    assert_eq!(stored.requests, 10);
    assert_eq!(stored.last_access_at, f.clock.now());
    assert_eq!(stored.client, "Firefox 131 on Linux");
    assert_eq!(
        engine.flush().await.unwrap(),
        0,
        "nothing new, nothing written"
    );
    engine.authenticate(&token, &REQ).await.unwrap().unwrap();
    engine.flush().await.unwrap();
    assert_eq!(
        f.store
            .session_get(&live.id)
            .await
            .unwrap()
            .unwrap()
            .requests,
        11
    );
}

#[tokio::test]
async fn sessions_survive_a_restart_and_keep_counting() {
    let f = fixture().await;
    let alice = f.user("alice").await;
    let token;
    {
        let engine = f.engine().await;
        let tasks = engine.start();
        let (t, _) = engine
            .create(Some(&alice), SessionKind::Web, &REQ)
            .await
            .unwrap();
        for _ in 0..5 {
            engine.authenticate(&t, &REQ).await.unwrap().unwrap();
        }
        tasks.shutdown().await.unwrap();
        token = t;
    }
    drop(f.store.clone());
    // A new process: reopen the file, reload the index.
    let store = usher_store::open(&f.url).await.unwrap();
    let engine = Engine::load(store, Arc::new(f.clock.clone()), config())
        .await
        .unwrap();
    let a = engine.authenticate(&token, &REQ).await.unwrap().unwrap();
    assert_eq!(engine.requests(&a.session), 6);
}

/// A start reads the live sessions page after page (2,000 a page) ahead of admitting
/// them: every one of several pages' worth comes back, once, with its user.
#[tokio::test]
async fn a_restart_loads_sessions_spanning_several_pages() {
    let f = fixture().await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    let many = EngineConfig {
        max_anonymous: 10_000,
        ..config()
    };
    let mut tokens = Vec::new();
    let mut users = Vec::new();
    {
        let engine = Engine::load(f.store.clone(), Arc::new(f.clock.clone()), many.clone())
            .await
            .unwrap();
        // Lazy anonymous sessions: thousands written by one flush.
        for _ in 0..4_100 {
            let t = Token::generate().unwrap();
            engine.adopt_anonymous(&t, &REQ).await.unwrap().unwrap();
            tokens.push(t);
        }
        for u in [&alice, &bob, &alice] {
            let (t, _) = engine
                .create(Some(u), SessionKind::Web, &REQ)
                .await
                .unwrap();
            users.push((t, u.name.clone()));
        }
        engine.flush().await.unwrap();
    }
    let engine = Engine::load(f.store.clone(), Arc::new(f.clock.clone()), many)
        .await
        .unwrap();
    assert_eq!(engine.live_count(), 4_103);
    for t in &tokens {
        let a = engine.find(t).await.unwrap().expect("an anonymous session");
        assert!(a.user.is_none());
    }
    for (t, name) in &users {
        let a = engine.find(t).await.unwrap().expect("a user's session");
        assert_eq!(&a.user.expect("with its user").name, name);
    }
}

#[tokio::test]
async fn idle_timeout_refuses_then_records_expiry() {
    let f = fixture().await;
    let engine = f.engine().await;
    let alice = f.user("alice").await;
    let (token, live) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    f.clock.advance(SignedDuration::from_secs(299));
    assert!(engine.authenticate(&token, &REQ).await.unwrap().is_some());
    f.clock.advance(SignedDuration::from_secs(299));
    assert!(
        engine.authenticate(&token, &REQ).await.unwrap().is_some(),
        "activity postpones idle"
    );
    f.clock.advance(SignedDuration::from_secs(300));
    assert!(engine.authenticate(&token, &REQ).await.unwrap().is_none());
    assert_eq!(engine.reap().await.unwrap(), 1);
    let stored = f.store.session_get(&live.id).await.unwrap().unwrap();
    assert_eq!(stored.end_reason, Some(EndReason::IdleTimeout));
    assert_eq!(stored.requests, 2, "activity before expiry is kept");
    assert_eq!(stored.ended_by.as_deref(), Some("system"));
    let expired = f
        .store
        .events(&EventQuery {
            kind: Some(EventKind::Expired),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(expired.len(), 1);
    assert_eq!(engine.live_count(), 0);
    assert!(
        engine.authenticate(&token, &REQ).await.unwrap().is_none(),
        "still refused from the store"
    );
}

#[tokio::test]
async fn absolute_timeout_ignores_activity() {
    let f = fixture().await;
    let engine = f.engine().await;
    let alice = f.user("alice").await;
    let (token, live) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    for _ in 0..59 {
        f.clock.advance(SignedDuration::from_secs(60));
        assert!(engine.authenticate(&token, &REQ).await.unwrap().is_some());
    }
    f.clock.advance(SignedDuration::from_secs(60));
    assert!(engine.authenticate(&token, &REQ).await.unwrap().is_none());
    engine.reap().await.unwrap();
    let stored = f.store.session_get(&live.id).await.unwrap().unwrap();
    assert_eq!(stored.end_reason, Some(EndReason::AbsoluteTimeout));
}

#[tokio::test]
async fn a_kill_is_immediate_durable_and_final() {
    let f = fixture().await;
    let alice = f.user("alice").await;
    let engine = f.engine().await;
    let (token, live) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    for _ in 0..3 {
        engine.authenticate(&token, &REQ).await.unwrap().unwrap();
    }
    let ended = engine
        .end(
            SessionSelector::Ids(vec![live.id]),
            EndReason::Killed,
            "root",
        )
        .await
        .unwrap();
    assert_eq!(ended, vec![live.id]);
    assert!(engine.authenticate(&token, &REQ).await.unwrap().is_none());
    // A flush after the kill must not resurrect or recount anything.
    engine.flush().await.unwrap();
    let stored = f.store.session_get(&live.id).await.unwrap().unwrap();
    assert_eq!(stored.requests, 3);
    assert_eq!(stored.end_reason, Some(EndReason::Killed));
    assert_eq!(stored.ended_by.as_deref(), Some("root"));
    // A fresh process does not load it either.
    let again = f.engine().await;
    assert!(again.authenticate(&token, &REQ).await.unwrap().is_none());
}

#[tokio::test]
async fn ends_made_by_another_process_reach_this_engine() {
    let f = fixture().await;
    let alice = f.user("alice").await;
    let engine = f.engine().await;
    let (t1, s1) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    let (t2, _) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    let (t3, _) = engine.create(None, SessionKind::Web, &REQ).await.unwrap();
    // "The CLI": a second engine over the same file ends one session by id.
    let cli = f.engine().await;
    cli.end(SessionSelector::Ids(vec![s1.id]), EndReason::Killed, "cli")
        .await
        .unwrap();
    assert!(
        engine.authenticate(&t1, &REQ).await.unwrap().is_some(),
        "not yet read the feed"
    );
    engine.follow_changes().await.unwrap();
    assert!(engine.authenticate(&t1, &REQ).await.unwrap().is_none());
    assert!(engine.authenticate(&t2, &REQ).await.unwrap().is_some());
    // Disabling the user elsewhere ends the rest of alice's sessions here.
    let accounts = Accounts::new(
        f.store.clone(),
        Arc::new(f.clock.clone()),
        PasswordHasher::new(1).unwrap(),
    );
    accounts
        .set_disabled(&alice.name, true, "cli")
        .await
        .unwrap();
    engine.follow_changes().await.unwrap();
    assert!(engine.authenticate(&t2, &REQ).await.unwrap().is_none());
    assert!(
        engine.authenticate(&t3, &REQ).await.unwrap().is_some(),
        "others untouched"
    );
}

#[tokio::test]
async fn sessions_created_by_another_node_are_found() {
    let f = fixture().await;
    let a = f.engine().await;
    let b = f.engine().await;
    let (token, _) = a.create(None, SessionKind::Web, &REQ).await.unwrap();
    assert!(b.authenticate(&token, &REQ).await.unwrap().is_some());
    let stranger = Token::generate().unwrap();
    assert!(b.authenticate(&stranger, &REQ).await.unwrap().is_none());
}

#[tokio::test]
async fn background_tasks_flush_and_drain_on_shutdown() {
    let f = fixture().await;
    let engine = f.engine().await;
    let tasks = engine.start();
    let (token, live) = engine.create(None, SessionKind::Web, &REQ).await.unwrap();
    for _ in 0..7 {
        engine.authenticate(&token, &REQ).await.unwrap().unwrap();
    }
    tasks.shutdown().await.unwrap();
    assert_eq!(
        f.store
            .session_get(&live.id)
            .await
            .unwrap()
            .unwrap()
            .requests,
        7
    );
}

/// The real store, except that a flush, once committed (or, `before_commit`, before it
/// writes anything), waits to be released: the window in which an end can race a flush.
struct GatedStore {
    inner: Arc<dyn Store>,
    committed: tokio::sync::Notify,
    release: tokio::sync::Notify,
    before_commit: bool,
}

impl GatedStore {
    fn new(inner: Arc<dyn Store>, before_commit: bool) -> Arc<Self> {
        Arc::new(Self {
            inner,
            committed: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
            before_commit,
        })
    }
}

#[async_trait::async_trait]
impl Store for GatedStore {
    async fn ping(&self) -> usher_store::Result<()> {
        self.inner.ping().await
    }
    async fn secret(&self, n: &str, c: &[u8]) -> usher_store::Result<Vec<u8>> {
        self.inner.secret(n, c).await
    }
    async fn user_create(&self, u: &usher_core::User, a: &str) -> usher_store::Result<()> {
        self.inner.user_create(u, a).await
    }
    async fn user_get(&self, n: &Username) -> usher_store::Result<Option<usher_core::User>> {
        self.inner.user_get(n).await
    }
    async fn user_list(&self) -> usher_store::Result<Vec<usher_core::User>> {
        self.inner.user_list().await
    }
    async fn user_count(&self) -> usher_store::Result<u64> {
        self.inner.user_count().await
    }
    async fn user_update(
        &self,
        u: &usher_core::User,
        a: &str,
        t: Timestamp,
    ) -> usher_store::Result<()> {
        self.inner.user_update(u, a, t).await
    }
    async fn user_set_password(
        &self,
        n: &Username,
        h: &str,
        a: &str,
        t: Timestamp,
    ) -> usher_store::Result<()> {
        self.inner.user_set_password(n, h, a, t).await
    }
    async fn user_set_disabled(
        &self,
        n: &Username,
        d: bool,
        a: &str,
        t: Timestamp,
    ) -> usher_store::Result<Vec<usher_core::SessionId>> {
        self.inner.user_set_disabled(n, d, a, t).await
    }
    async fn user_remove(
        &self,
        n: &Username,
        a: &str,
        t: Timestamp,
    ) -> usher_store::Result<Vec<usher_core::SessionId>> {
        self.inner.user_remove(n, a, t).await
    }
    async fn session_create(
        &self,
        s: &usher_core::NewSession,
        c: &str,
    ) -> usher_store::Result<Vec<usher_core::SessionId>> {
        self.inner.session_create(s, c).await
    }
    async fn session_get(
        &self,
        id: &usher_core::SessionId,
    ) -> usher_store::Result<Option<usher_core::SessionRecord>> {
        self.inner.session_get(id).await
    }
    async fn session_by_token(
        &self,
        h: &usher_core::TokenHash,
    ) -> usher_store::Result<Option<usher_core::SessionRecord>> {
        self.inner.session_by_token(h).await
    }
    async fn sessions_live(&self) -> usher_store::Result<Vec<usher_core::SessionRecord>> {
        self.inner.sessions_live().await
    }
    async fn sessions_live_count(&self) -> usher_store::Result<u64> {
        self.inner.sessions_live_count().await
    }
    async fn sessions_live_page(
        &self,
        from: &usher_store::LiveCursor,
        limit: u32,
    ) -> usher_store::Result<usher_store::LivePage> {
        self.inner.sessions_live_page(from, limit).await
    }
    fn sessions_live_page_done(&self, page: usher_store::LivePage) {
        self.inner.sessions_live_page_done(page);
    }
    async fn sessions_of_user(
        &self,
        n: &Username,
    ) -> usher_store::Result<Vec<usher_core::SessionRecord>> {
        self.inner.sessions_of_user(n).await
    }
    async fn sessions_end(
        &self,
        e: &usher_store::EndSessions,
    ) -> usher_store::Result<Vec<usher_core::SessionId>> {
        self.inner.sessions_end(e).await
    }
    async fn write_behind(
        &self,
        c: &[usher_store::LazySession],
        t: Vec<usher_store::Touch>,
    ) -> usher_store::Result<u64> {
        if self.before_commit {
            self.committed.notify_one();
            self.release.notified().await;
            return self.inner.write_behind(c, t).await;
        }
        let r = self.inner.write_behind(c, t).await;
        self.committed.notify_one();
        self.release.notified().await;
        r
    }
    async fn event_record(&self, e: &usher_core::Event) -> usher_store::Result<()> {
        self.inner.event_record(e).await
    }
    async fn events(&self, q: &EventQuery) -> usher_store::Result<usher_store::EventPage> {
        self.inner.events(q).await
    }
    async fn inactive_users(
        &self,
        since: usher_core::Timestamp,
    ) -> usher_store::Result<Vec<usher_core::InactiveUser>> {
        self.inner.inactive_users(since).await
    }
    async fn token_create(
        &self,
        t: &usher_core::ApiToken,
        h: &usher_core::TokenHash,
    ) -> usher_store::Result<()> {
        self.inner.token_create(t, h).await
    }
    async fn token_by_hash(
        &self,
        h: &usher_core::TokenHash,
    ) -> usher_store::Result<Option<usher_core::ApiToken>> {
        self.inner.token_by_hash(h).await
    }
    async fn token_list(&self) -> usher_store::Result<Vec<usher_core::ApiToken>> {
        self.inner.token_list().await
    }
    async fn token_revoke(&self, id: &str, at: Timestamp) -> usher_store::Result<bool> {
        self.inner.token_revoke(id, at).await
    }
    async fn token_used(&self, id: &str, at: Timestamp) -> usher_store::Result<()> {
        self.inner.token_used(id, at).await
    }
    async fn history_purge(&self, b: Timestamp) -> usher_store::Result<u64> {
        self.inner.history_purge(b).await
    }
    async fn sessions_at(
        &self,
        u: Option<&Username>,
        at: Timestamp,
    ) -> usher_store::Result<Vec<usher_core::SessionRecord>> {
        self.inner.sessions_at(u, at).await
    }
    async fn change_head(&self) -> usher_store::Result<i64> {
        self.inner.change_head().await
    }
    async fn changes_since(&self, a: i64, l: u32) -> usher_store::Result<Vec<usher_store::Change>> {
        self.inner.changes_since(a, l).await
    }
    async fn changes_prune(&self, b: Timestamp) -> usher_store::Result<u64> {
        self.inner.changes_prune(b).await
    }
}

#[tokio::test]
async fn an_end_racing_a_flush_never_counts_twice() {
    let f = fixture().await;
    let gated = GatedStore::new(f.store.clone(), false);
    let engine = Engine::load(gated.clone(), Arc::new(f.clock.clone()), config())
        .await
        .unwrap();
    let (token, live) = engine.create(None, SessionKind::Web, &REQ).await.unwrap();
    for _ in 0..5 {
        engine.authenticate(&token, &REQ).await.unwrap().unwrap();
    }
    let flusher = engine.clone();
    let flush = tokio::spawn(async move { flusher.flush().await });
    // The flush of 5 is committed but has not reported back yet.
    gated.committed.notified().await;
    for _ in 0..2 {
        engine.authenticate(&token, &REQ).await.unwrap().unwrap();
    }
    engine
        .end(
            SessionSelector::Ids(vec![live.id]),
            EndReason::Killed,
            "root",
        )
        .await
        .unwrap();
    gated.release.notify_one();
    flush.await.unwrap().unwrap();
    let stored = f.store.session_get(&live.id).await.unwrap().unwrap();
    assert_eq!(
        stored.requests, 7,
        "5 by the flush, 2 by the end, none twice"
    );
}

/// A lazy session ended while the flush that first writes it is in flight: the end
/// found nothing in the store, so the flush's write must not leave it live there.
#[tokio::test]
async fn a_lazy_session_ended_during_its_first_write_stays_ended() {
    let f = fixture().await;
    let gated = GatedStore::new(f.store.clone(), true);
    let engine = Engine::load(gated.clone(), Arc::new(f.clock.clone()), config())
        .await
        .unwrap();
    let token = Token::generate().unwrap();
    let a = engine.adopt_anonymous(&token, &REQ).await.unwrap().unwrap();
    let id = a.session.id;
    drop(a);
    let flusher = engine.clone();
    let flush = tokio::spawn(async move { flusher.flush().await });
    gated.committed.notified().await;
    let ended = engine
        .end(SessionSelector::Ids(vec![id]), EndReason::Killed, "root")
        .await
        .unwrap();
    assert_eq!(ended, vec![id], "ended in memory");
    assert!(
        f.store.session_get(&id).await.unwrap().is_none(),
        "not written yet"
    );
    gated.release.notify_one();
    flush.await.unwrap().unwrap();
    let stored = f.store.session_get(&id).await.unwrap().unwrap();
    assert_eq!(
        (stored.ended_at.is_some(), stored.end_reason),
        (true, Some(EndReason::Killed))
    );
    let restarted = f.engine().await;
    assert!(
        restarted
            .authenticate(&token, &REQ)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_store_read_racing_an_end_cannot_readmit_the_session() {
    let f = fixture().await;
    let a = f.engine().await;
    let b = f.engine().await;
    let (token, live) = a.create(None, SessionKind::Web, &REQ).await.unwrap();
    // Node B hears of the end (the feed) before its own read of the store lands: the
    // read still shows the session live, but it must not be let back in.
    b.forget(&[live.id]);
    assert!(b.authenticate(&token, &REQ).await.unwrap().is_none());
    assert!(
        a.authenticate(&token, &REQ).await.unwrap().is_some(),
        "A never heard of it"
    );
}

#[tokio::test]
async fn history_is_purged_once_past_the_retention() {
    let f = fixture().await;
    let alice = f.user("alice").await;
    let engine = f.engine().await;
    engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    assert_eq!(
        engine.purge_history().await.unwrap(),
        0,
        "nothing is a day old yet"
    );
    f.clock.advance(SignedDuration::from_hours(25));
    assert!(
        engine.purge_history().await.unwrap() >= 2,
        "user_created and login"
    );
    let left = f
        .store
        .events(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn lazy_anonymous_sessions_are_capped_written_behind_and_end_in_memory() {
    let f = fixture().await;
    let engine = f.engine().await; // max_anonymous = 3
    let alice = f.user("alice").await;
    let (alice_token, _) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for _ in 0..6 {
        f.clock.advance(SignedDuration::from_secs(1));
        let t = Token::generate().unwrap();
        let a = engine.adopt_anonymous(&t, &REQ).await.unwrap().unwrap();
        assert_eq!((a.user.is_none(), engine.requests(&a.session)), (true, 1));
        tokens.push(t);
    }
    let anonymous = usher_core::SessionQuery {
        anonymous: Some(true),
        ..Default::default()
    };
    assert_eq!(engine.list(&anonymous).0, 3, "capped");
    for (n, t) in tokens.iter().enumerate() {
        let live = engine.find(t).await.unwrap().is_some();
        assert_eq!(live, n >= 3, "the least recently used went first ({n})");
    }
    assert!(engine.find(&alice_token).await.unwrap().is_some());
    // Nothing written per visitor: only the flush writes them, in one go.
    assert_eq!(f.store.sessions_live().await.unwrap().len(), 1);
    engine.flush().await.unwrap();
    let stored = f.store.sessions_live().await.unwrap();
    assert_eq!(stored.len(), 4);
    // Written with the token's whole hash (memory keeps only a key of it): the store,
    // and so a restarted server, finds each by its cookie.
    for t in &tokens[3..] {
        let found = f.store.session_by_token(&t.hash()).await.unwrap();
        assert!(found.is_some_and(|s| s.user.is_none()));
    }
    assert!(
        stored
            .iter()
            .filter(|s| s.user.is_none())
            .all(|s| s.requests == 1)
    );
    // One not yet written ends in memory, and says so.
    let t = Token::generate().unwrap();
    let a = engine.adopt_anonymous(&t, &REQ).await.unwrap().unwrap();
    let ended = engine
        .end(
            SessionSelector::Ids(vec![a.session.id]),
            EndReason::Killed,
            "root",
        )
        .await
        .unwrap();
    assert_eq!(ended, vec![a.session.id]);
    assert!(engine.find(&t).await.unwrap().is_none());
    engine.flush().await.unwrap();
    assert_eq!(f.store.session_get(&a.session.id).await.unwrap(), None);
    // An ended, stored one is never adopted again.
    let old = &tokens[5];
    let id = engine.find(old).await.unwrap().unwrap().session.id;
    engine
        .end(SessionSelector::Ids(vec![id]), EndReason::Killed, "root")
        .await
        .unwrap();
    assert!(engine.adopt_anonymous(old, &REQ).await.unwrap().is_none());
}

/// Lists sorted by count or last access are read off the engine's columns, and one
/// user's sessions are found through them; every other list, and the query model
/// itself, reads each session. All must give the same page: the same total, the same
/// sessions, ties in the same (id) order.
#[tokio::test]
async fn lists_read_off_the_columns_agree_with_the_query_model() {
    use usher_core::SessionQuery;
    use usher_core::query::{Limit, Order, SortKey};
    let f = fixture().await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    let engine = f.engine().await;
    let addresses = [
        "10.1.0.1",
        "10.1.200.7",
        "10.2.0.1",
        "192.0.2.10",
        "2001:db8::1",
        "2001:db8:1::5",
        "::1",
        "fe80::1",
    ];
    let mut sessions = Vec::new();
    for i in 0..240usize {
        if i % 12 == 0 {
            f.clock.advance(SignedDuration::from_secs(1));
        }
        let ip = addresses[i % addresses.len()].parse().unwrap();
        let req = RequestInfo { ip, ..REQ };
        let (user, kind) = match i % 4 {
            0 => (Some(&alice), SessionKind::Web),
            1 => (Some(&bob), SessionKind::Api),
            2 => (None, SessionKind::Web),
            _ => (None, SessionKind::Api),
        };
        let (token, _) = engine.create(user, kind, &req).await.unwrap();
        sessions.push((token, req));
    }
    // Counts 0–4 (ties everywhere), last accesses a few seconds apart (ties again),
    // and some sessions moved to another address since.
    for (i, (token, req)) in sessions.iter().enumerate() {
        let moved;
        let req = if i % 7 == 0 {
            moved = RequestInfo {
                ip: "10.1.9.9".parse().unwrap(),
                ..*req
            };
            &moved
        } else {
            req
        };
        for _ in 0..i % 5 {
            engine.authenticate(token, req).await.unwrap().unwrap();
        }
        if i % 40 == 0 {
            f.clock.advance(SignedDuration::from_secs(1));
        }
    }
    let now = f.clock.now();
    let everything = SessionQuery {
        sort: SortKey::Created,
        limit: Limit::All,
        ..SessionQuery::default()
    };
    let (count, all) = engine.list(&everything);
    assert_eq!((count, all.len()), (240, 240));
    let filters: Vec<fn(&mut SessionQuery)> = vec![
        |_| {},
        |q| q.ip = Some("10.1.0.0/16".parse().unwrap()),
        |q| q.ip = Some("2001:db8::/32".parse().unwrap()),
        // An IPv6 range that spans every IPv4-mapped address still holds no IPv4 session.
        |q| q.ip = Some("::/0".parse().unwrap()),
        |q| q.ip = Some("0.0.0.0/0".parse().unwrap()),
        |q| q.ip = Some("10.1.9.9/32".parse().unwrap()),
        |q| q.anonymous = Some(true),
        |q| q.anonymous = Some(false),
        |q| q.kind = Some(SessionKind::Api),
        |q| q.active_within = Some(SignedDuration::from_secs(10)),
        |q| {
            q.kind = Some(SessionKind::Web);
            q.anonymous = Some(true);
            q.ip = Some("10.0.0.0/8".parse().unwrap());
        },
        |q| q.user = Some(Username::parse("alice").unwrap()),
        |q| {
            q.user = Some(Username::parse("bob").unwrap());
            q.ip = Some("2001:db8::/32".parse().unwrap());
        },
        |q| q.user = Some(Username::parse("nobody").unwrap()),
    ];
    let windows = [
        (0, Limit::Count(25)),
        (10, Limit::Count(7)),
        (0, Limit::Count(1)),
        (0, Limit::Count(0)),
        (230, Limit::Count(50)),
        (0, Limit::All),
    ];
    let mut compared = 0;
    for filter in &filters {
        for sort in [
            SortKey::Requests,
            SortKey::LastAccess,
            SortKey::Created,
            SortKey::Ip,
        ] {
            for order in [Order::Asc, Order::Desc] {
                for (offset, limit) in windows {
                    let mut q = SessionQuery {
                        sort,
                        order,
                        offset,
                        limit,
                        ..SessionQuery::default()
                    };
                    filter(&mut q);
                    let (total, page) = engine.list(&q);
                    let (want_total, want) = q.run(all.clone(), now);
                    let ids = |p: &[usher_core::SessionInfo]| -> Vec<String> {
                        p.iter().map(|s| s.id.to_string()).collect()
                    };
                    assert_eq!(
                        (total, ids(&page)),
                        (want_total, ids(&want)),
                        "{:?}",
                        q.to_pairs()
                    );
                    compared += usize::from(!want.is_empty());
                }
            }
        }
    }
    assert!(compared > 300, "only {compared} lists had anything in them");
    // Ending a user's sessions finds them the same way.
    let bob = Username::parse("bob").unwrap();
    let ended = engine
        .end(
            SessionSelector::User(bob.clone()),
            EndReason::Killed,
            "root",
        )
        .await
        .unwrap();
    assert_eq!(ended.len(), 60);
    assert!(engine.sessions_of(&bob).is_empty());
    assert_eq!(engine.list(&everything).0, 180);
}

/// A session's first address is kept apart only once it has moved; it is shown, and
/// survives a restart, either way.
#[tokio::test]
async fn the_first_address_of_a_session_that_moved_is_kept() {
    let f = fixture().await;
    let alice = f.user("alice").await;
    let engine = f.engine().await;
    let (token, live) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    let (still, _) = engine
        .create(Some(&alice), SessionKind::Web, &REQ)
        .await
        .unwrap();
    let moved = RequestInfo {
        ip: "2001:db8::7".parse().unwrap(),
        ..REQ
    };
    engine.authenticate(&token, &moved).await.unwrap().unwrap();
    engine.authenticate(&token, &moved).await.unwrap().unwrap();
    engine.authenticate(&still, &REQ).await.unwrap().unwrap();
    let addresses = |e: &Engine| {
        let s = e.session_info(&live.id).unwrap();
        (s.first_ip.to_string(), s.ip.to_string())
    };
    let want = ("192.0.2.10".to_owned(), "2001:db8::7".to_owned());
    assert_eq!(addresses(&engine), want);
    let (_, all) = engine.list(&usher_core::SessionQuery::default());
    let other = all.iter().find(|s| s.id != live.id).unwrap();
    assert_eq!((other.first_ip, other.ip), (REQ.ip, REQ.ip));
    engine.flush().await.unwrap();
    let reloaded = f.engine().await;
    assert_eq!(addresses(&reloaded), want);
}

/// A flush takes what was queued when it began: sessions touched again while it runs
/// (it yields to other tasks as it collects) wait for the next one, so a flush ends
/// under any load instead of chasing the requests.
#[tokio::test]
async fn a_flush_under_load_takes_what_was_queued_and_ends() {
    let f = fixture().await;
    let engine = f.engine().await;
    let mut tokens = Vec::new();
    // More than one yield's worth of sessions.
    for _ in 0..300 {
        let (token, _) = engine.create(None, SessionKind::Web, &REQ).await.unwrap();
        engine.authenticate(&token, &REQ).await.unwrap().unwrap();
        tokens.push(token);
    }
    let load = tokio::spawn({
        let engine = engine.clone();
        let tokens = tokens.clone();
        async move {
            loop {
                for t in &tokens {
                    engine.authenticate(t, &REQ).await.unwrap().unwrap();
                }
                tokio::task::yield_now().await;
            }
        }
    });
    let flushed = tokio::time::timeout(Duration::from_secs(30), engine.flush())
        .await
        .expect("the flush ended while requests kept coming")
        .unwrap();
    load.abort();
    assert_eq!(flushed, 300, "each queued session once");
}
