//! The behaviour every store backend must show, written once. A backend's tests call
//! [`crate::conformance_tests!`] with an async expression that yields a fresh, empty
//! [`Harness`] (or `None` when the backend is not available here, which skips the test
//! with a message); each check below then runs against it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    ChangeKind, EndSessions, EventQuery, LazySession, LiveCursor, SessionSelector, Store,
    StoreError, Touch,
};
use jiff::SignedDuration;
use std::any::Any;
use std::sync::Arc;
use usher_core::{
    ClientSnapshot, EndReason, EventKind, Group, NewSession, SessionId, SessionKind, Timestamp,
    Token, User, Username,
};

/// A store under test plus whatever keeps it alive (a temporary directory, a database).
pub struct Harness {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send>,
}

impl Harness {
    pub fn new(store: Arc<dyn Store>, guard: impl Any + Send) -> Self {
        Self {
            store,
            _guard: Box::new(guard),
        }
    }
}

/// A PostgreSQL database of its own for one test, dropped when this is dropped.
pub struct PgScratch {
    admin_url: String,
    name: String,
}

/// The variable that names the PostgreSQL server tests may use (CI sets it).
pub const POSTGRES_ENV: &str = "USHER_TEST_POSTGRES_URL";

/// Creates an empty database on the server `USHER_TEST_POSTGRES_URL` names and returns
/// its URL; `None` when the variable is not set. Panics when it is set but unusable:
/// a configured backend must be tested, not skipped.
pub async fn postgres_scratch() -> Option<(crate::StoreUrl, PgScratch)> {
    use sqlx::Connection;
    let admin_url = std::env::var(POSTGRES_ENV).ok()?;
    let mut c = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("USHER_TEST_POSTGRES_URL is set but PostgreSQL cannot be reached");
    let name = format!("usher_test_{}", SessionId::generate().unwrap().as_str());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("create database");
    let (base, _) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
    let cut = base.rfind('/').expect("a postgres://HOST/DB URL");
    let url = crate::StoreUrl::parse(&format!("{}/{name}", &base[..cut])).unwrap();
    Some((url, PgScratch { admin_url, name }))
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// Expands to one `#[tokio::test]` per conformance check.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@ $make;
            users_round_trip, user_names_are_unique, user_update_records_password_change,
            sessions_create_and_find, touches_add_up_and_never_go_back, a_flush_of_many_sessions,
            touches_never_revive_ended_sessions, end_is_recorded_once_with_event_and_change,
            end_applies_pending_touches_first, end_all_of_a_users_sessions,
            disabling_a_user_ends_their_sessions, removing_a_user_ends_their_sessions,
            secrets_are_created_once, change_feed_is_ordered_and_prunable,
            no_session_for_disabled_or_unknown_users, api_tokens_round_trip,
            history_filters_and_cursor, a_limit_evicts_the_least_recently_used,
            a_deny_limit_refuses_and_races_never_exceed_it, history_is_purged_after_retention,
            where_was_a_user_at_an_instant, lazy_anonymous_sessions_are_written_behind,
            inactive_users_report_last_login_ip_and_activity, live_sessions_read_in_pages
        );
    };
    (@ $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let harness: Option<$crate::conformance::Harness> = $make.await;
                match harness {
                    Some(h) => $crate::conformance::$name(h.store.clone()).await,
                    None => eprintln!("backend not configured here: skipped"),
                }
            }
        )*
    };
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn name(s: &str) -> Username {
    Username::parse(s).unwrap()
}

fn user(n: &str) -> User {
    let mut u = User::new(name(n), t(0));
    u.password_hash = Some("$argon2id$fake".into());
    u
}

async fn login(store: &Arc<dyn Store>, who: Option<&str>, at: Timestamp) -> NewSession {
    let s = NewSession {
        id: SessionId::generate().unwrap(),
        token_hash: Token::generate().unwrap().hash(),
        user: who.map(name),
        kind: SessionKind::Web,
        created_at: at,
        client: ClientSnapshot {
            ip: "192.0.2.1".parse().unwrap(),
            user_agent: "Mozilla/5.0 test".into(),
            host: "app.example".into(),
        },
        limit: None,
    };
    store.session_create(&s, "Test client").await.unwrap();
    s
}

fn touch(id: SessionId, requests: u64, at: Timestamp) -> Touch {
    Touch {
        id,
        requests,
        last_access_at: at,
        ip: "198.51.100.7".parse().unwrap(),
        user_agent: "UA 2".into(),
        client: "Client 2".into(),
        host: "other.example".into(),
    }
}

fn end(selector: SessionSelector, reason: EndReason, at: Timestamp) -> EndSessions {
    EndSessions {
        selector,
        reason,
        actor: "root".into(),
        at,
        touches: Vec::new(),
    }
}

pub async fn users_round_trip(store: Arc<dyn Store>) {
    let mut alice = user("alice");
    alice.groups = vec![Group::admins(), Group::parse("staff").unwrap()];
    alice.email = "alice@example.com".into();
    store.user_create(&alice, "cli").await.unwrap();
    store.user_create(&user("bob"), "cli").await.unwrap();
    let got = store.user_get(&name("alice")).await.unwrap().unwrap();
    assert_eq!(got, alice);
    assert!(got.is_admin());
    assert_eq!(store.user_get(&name("carol")).await.unwrap(), None);
    assert_eq!(store.user_count().await.unwrap(), 2);
    let names: Vec<String> = store
        .user_list()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let created = store
        .events(&EventQuery {
            kind: Some(EventKind::UserCreated),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].actor.as_deref(), Some("cli"));
}

pub async fn user_names_are_unique(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let again = store.user_create(&user("alice"), "cli").await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let missing = store.user_update(&user("zed"), "cli", t(1)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub async fn user_update_records_password_change(store: Arc<dyn Store>) {
    let mut alice = user("alice");
    store.user_create(&alice, "cli").await.unwrap();
    let head = store.change_head().await.unwrap();
    alice.display_name = "Alice A.".into();
    alice.groups = vec![Group::admins()];
    store.user_update(&alice, "cli", t(5)).await.unwrap();
    let q = EventQuery {
        kind: Some(EventKind::PasswordChanged),
        limit: 10,
        ..Default::default()
    };
    assert!(store.events(&q).await.unwrap().items.is_empty());
    store
        .user_set_password(&name("alice"), "$argon2id$other", "cli", t(6))
        .await
        .unwrap();
    alice.password_hash = Some("$argon2id$other".into());
    assert_eq!(store.events(&q).await.unwrap().items.len(), 1);
    assert_eq!(
        store.user_get(&name("alice")).await.unwrap().unwrap(),
        alice
    );
    let changes = store.changes_since(head, 100).await.unwrap();
    assert_eq!(changes.len(), 2);
    assert!(
        changes
            .iter()
            .all(|c| c.kind == ChangeKind::UserChanged(name("alice")))
    );
    // An update made from a copy read before a login, or before a password change,
    // rolls back neither.
    login(&store, Some("alice"), t(7)).await;
    let stale = alice.clone();
    store
        .user_set_password(&name("alice"), "$argon2id$newest", "cli", t(8))
        .await
        .unwrap();
    store.user_update(&stale, "cli", t(9)).await.unwrap();
    let got = store.user_get(&name("alice")).await.unwrap().unwrap();
    assert_eq!(got.last_login_at, Some(t(7)));
    assert_eq!(got.password_hash.as_deref(), Some("$argon2id$newest"));
    assert!(matches!(
        store
            .user_set_password(&name("zed"), "x", "cli", t(9))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn sessions_create_and_find(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let s = login(&store, Some("alice"), t(10)).await;
    let anon = login(&store, None, t(11)).await;
    let got = store
        .session_by_token(&s.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, s.id);
    assert_eq!(got.user, Some(name("alice")));
    assert_eq!(got.requests, 0);
    assert_eq!(got.ip, s.client.ip);
    assert_eq!(got.first_ip, s.client.ip);
    assert_eq!(got.client, "Test client");
    assert_eq!(got.created_at, t(10));
    assert_eq!(got.ended_at, None);
    assert_eq!(
        store.session_get(&anon.id).await.unwrap().unwrap().user,
        None
    );
    assert_eq!(store.sessions_live().await.unwrap().len(), 2);
    assert_eq!(
        store.sessions_of_user(&name("alice")).await.unwrap().len(),
        1
    );
    let u = store.user_get(&name("alice")).await.unwrap().unwrap();
    assert_eq!(u.last_login_at, Some(t(10)));
    let logins = store
        .events(&EventQuery {
            user: Some("alice".into()),
            kind: Some(EventKind::Login),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].session, Some(s.id));
    assert_eq!(logins[0].ip, Some(s.client.ip));
    // The token itself is never what the store is asked for: an unknown hash finds nothing.
    let other = Token::generate().unwrap().hash();
    assert_eq!(store.session_by_token(&other).await.unwrap(), None);
}

pub async fn touches_add_up_and_never_go_back(store: Arc<dyn Store>) {
    let s = login(&store, None, t(0)).await;
    store
        .write_behind(&[], vec![touch(s.id, 5, t(20))])
        .await
        .unwrap();
    // An older flush landing late must not move last access backwards.
    store
        .write_behind(&[], vec![touch(s.id, 2, t(15))])
        .await
        .unwrap();
    let got = store.session_get(&s.id).await.unwrap().unwrap();
    assert_eq!(got.requests, 7);
    assert_eq!(got.last_access_at, t(20));
    assert_eq!(got.ip.to_string(), "198.51.100.7");
    assert_eq!(got.first_ip, s.client.ip);
    assert_eq!(got.user_agent, "UA 2");
    assert_eq!(got.host, "other.example");
}

/// One flush larger than a statement's batch, with the same session twice (dirtied
/// again while the flush drained the queue), an ended session and a hostile client.
pub async fn a_flush_of_many_sessions(store: Arc<dyn Store>) {
    let mut sessions = Vec::new();
    for i in 0..1_100 {
        sessions.push(login(&store, None, t(i % 7)).await.id);
    }
    let ended = sessions[17];
    store
        .sessions_end(&end(
            SessionSelector::Ids(vec![ended]),
            EndReason::Killed,
            t(8),
        ))
        .await
        .unwrap();
    let mut touches: Vec<Touch> = sessions
        .iter()
        .enumerate()
        .map(|(i, id)| touch(*id, i as u64 + 1, t(10)))
        .collect();
    let twice = sessions[1_050];
    let mut later = touch(twice, 5, t(12));
    later.user_agent = "Mozilla/5.0 \"q\" back\\slash \u{1b}[0m é 𝄞 \n".into();
    later.client = "Odd \"client\"".into();
    later.ip = "2001:db8::9".parse().unwrap();
    touches.push(later.clone());
    touches.push(touch(twice, 2, t(11)));
    let n = store.write_behind(&[], touches).await.unwrap();
    assert_eq!(
        n, 1_099,
        "every live session once, the ended one not at all"
    );
    for (i, id) in sessions.iter().enumerate() {
        let got = store.session_get(id).await.unwrap().unwrap();
        if *id == ended {
            assert_eq!((got.requests, got.ended_at), (0, Some(t(8))));
        } else if *id == twice {
            assert_eq!(got.requests, 1_051 + 5 + 2, "both touches counted");
            assert_eq!(got.last_access_at, t(12), "the latest access");
            // The later touch's client: the last one claimed.
            assert_eq!(*got.user_agent, *touch(twice, 0, t(0)).user_agent);
        } else {
            assert_eq!(got.requests, i as u64 + 1);
            assert_eq!(got.last_access_at, t(10));
            assert_eq!(got.host, "other.example");
        }
    }
    // The hostile client lands as it was sent when it is the last touch.
    store.write_behind(&[], vec![later.clone()]).await.unwrap();
    let got = store.session_get(&twice).await.unwrap().unwrap();
    assert_eq!(
        (&*got.user_agent, &*got.client, got.ip),
        (&*later.user_agent, &*later.client, later.ip)
    );
}

pub async fn touches_never_revive_ended_sessions(store: Arc<dyn Store>) {
    let s = login(&store, None, t(0)).await;
    store
        .sessions_end(&end(
            SessionSelector::Ids(vec![s.id]),
            EndReason::Killed,
            t(5),
        ))
        .await
        .unwrap();
    let n = store
        .write_behind(&[], vec![touch(s.id, 3, t(9))])
        .await
        .unwrap();
    assert_eq!(n, 0);
    let got = store.session_get(&s.id).await.unwrap().unwrap();
    assert_eq!(got.requests, 0);
    assert_eq!(got.ended_at, Some(t(5)));
    assert_eq!(got.end_reason, Some(EndReason::Killed));
    assert!(store.sessions_live().await.unwrap().is_empty());
}

pub async fn end_is_recorded_once_with_event_and_change(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let s = login(&store, Some("alice"), t(0)).await;
    let head = store.change_head().await.unwrap();
    let sel = SessionSelector::Ids(vec![s.id]);
    let ended = store
        .sessions_end(&end(sel.clone(), EndReason::Logout, t(3)))
        .await
        .unwrap();
    assert_eq!(ended, vec![s.id]);
    let again = store
        .sessions_end(&end(sel, EndReason::Killed, t(4)))
        .await
        .unwrap();
    assert!(again.is_empty(), "a session ends once");
    let got = store.session_get(&s.id).await.unwrap().unwrap();
    assert_eq!(got.end_reason, Some(EndReason::Logout));
    assert_eq!(got.ended_by.as_deref(), Some("root"));
    let logouts = store
        .events(&EventQuery {
            kind: Some(EventKind::Logout),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(logouts.len(), 1);
    assert_eq!(logouts[0].session, Some(s.id));
    assert_eq!(logouts[0].user.as_deref(), Some("alice"));
    assert_eq!(logouts[0].ip, Some(s.client.ip));
    assert_eq!(logouts[0].detail.as_deref(), Some("logout"));
    let changes = store.changes_since(head, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::SessionEnded(s.id));
}

pub async fn end_applies_pending_touches_first(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let s = login(&store, Some("alice"), t(0)).await;
    let mut e = end(
        SessionSelector::Ids(vec![s.id]),
        EndReason::IdleTimeout,
        t(100),
    );
    e.touches = vec![touch(s.id, 4, t(40))];
    e.actor = "system".into();
    store.sessions_end(&e).await.unwrap();
    let got = store.session_get(&s.id).await.unwrap().unwrap();
    assert_eq!(got.requests, 4);
    assert_eq!(got.last_access_at, t(40));
    assert_eq!(got.end_reason, Some(EndReason::IdleTimeout));
    let expired = store
        .events(&EventQuery {
            kind: Some(EventKind::Expired),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(expired.len(), 1);
}

pub async fn end_all_of_a_users_sessions(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    store.user_create(&user("bob"), "cli").await.unwrap();
    for i in 0..3 {
        login(&store, Some("alice"), t(i)).await;
    }
    let bob = login(&store, Some("bob"), t(0)).await;
    let ended = store
        .sessions_end(&end(
            SessionSelector::User(name("alice")),
            EndReason::Killed,
            t(9),
        ))
        .await
        .unwrap();
    assert_eq!(ended.len(), 3);
    let live = store.sessions_live().await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, bob.id);
}

pub async fn disabling_a_user_ends_their_sessions(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let s = login(&store, Some("alice"), t(0)).await;
    let ended = store
        .user_set_disabled(&name("alice"), true, "root", t(5))
        .await
        .unwrap();
    assert_eq!(ended, vec![s.id]);
    let u = store.user_get(&name("alice")).await.unwrap().unwrap();
    assert!(u.disabled);
    let got = store.session_get(&s.id).await.unwrap().unwrap();
    assert_eq!(got.end_reason, Some(EndReason::UserDisabled));
    let disabled = store
        .events(&EventQuery {
            kind: Some(EventKind::UserDisabled),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].actor.as_deref(), Some("root"));
    store
        .user_set_disabled(&name("alice"), false, "root", t(6))
        .await
        .unwrap();
    assert!(
        !store
            .user_get(&name("alice"))
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    let missing = store
        .user_set_disabled(&name("zed"), true, "root", t(7))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

pub async fn removing_a_user_ends_their_sessions(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let s = login(&store, Some("alice"), t(0)).await;
    let secret = Token::generate().unwrap();
    let tok = usher_core::ApiToken {
        id: SessionId::generate().unwrap().to_string(),
        name: "laptop".into(),
        owner: name("alice"),
        created_at: t(0),
        last_used_at: None,
        revoked_at: None,
    };
    store.token_create(&tok, &secret.hash()).await.unwrap();
    let ended = store
        .user_remove(&name("alice"), "root", t(5))
        .await
        .unwrap();
    assert_eq!(ended, vec![s.id]);
    assert_eq!(store.user_get(&name("alice")).await.unwrap(), None);
    assert_eq!(
        store.token_by_hash(&secret.hash()).await.unwrap(),
        None,
        "a removed user's tokens are revoked"
    );
    assert!(store.sessions_live().await.unwrap().is_empty());
    // History outlives the user.
    let history = store
        .events(&EventQuery {
            user: Some("alice".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    let kinds: Vec<EventKind> = history.iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::UserRemoved), "{kinds:?}");
    assert!(kinds.contains(&EventKind::Login), "{kinds:?}");
    let missing = store.user_remove(&name("alice"), "root", t(6)).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

pub async fn secrets_are_created_once(store: Arc<dyn Store>) {
    let a = store.secret("csrf", &[1; 32]).await.unwrap();
    let b = store.secret("csrf", &[2; 32]).await.unwrap();
    assert_eq!(a, vec![1; 32]);
    assert_eq!(b, a);
}

pub async fn change_feed_is_ordered_and_prunable(store: Arc<dyn Store>) {
    assert_eq!(store.change_head().await.unwrap(), 0);
    let mut ids = Vec::new();
    for i in 0..3 {
        let s = login(&store, None, t(i)).await;
        store
            .sessions_end(&end(
                SessionSelector::Ids(vec![s.id]),
                EndReason::Killed,
                t(i),
            ))
            .await
            .unwrap();
        ids.push(s.id);
    }
    let all = store.changes_since(0, 100).await.unwrap();
    let got: Vec<_> = all.iter().map(|c| c.kind.clone()).collect();
    let want: Vec<_> = ids
        .iter()
        .flat_map(|id| {
            [
                ChangeKind::SessionCreated(*id),
                ChangeKind::SessionEnded(*id),
            ]
        })
        .collect();
    assert_eq!(got, want);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let head = store.change_head().await.unwrap();
    assert_eq!(head, all[5].seq);
    assert_eq!(store.changes_since(all[0].seq, 1).await.unwrap().len(), 1);
    let pruned = store
        .changes_prune(t(0) + SignedDuration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(pruned, 4);
    assert_eq!(store.changes_since(0, 100).await.unwrap().len(), 2);
    assert_eq!(
        store.change_head().await.unwrap(),
        head,
        "the head never moves back"
    );
}

pub async fn no_session_for_disabled_or_unknown_users(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    store
        .user_set_disabled(&name("alice"), true, "root", t(1))
        .await
        .unwrap();
    for who in ["alice", "ghost"] {
        let s = NewSession {
            id: SessionId::generate().unwrap(),
            token_hash: Token::generate().unwrap().hash(),
            user: Some(name(who)),
            kind: SessionKind::Web,
            created_at: t(2),
            client: ClientSnapshot {
                ip: "192.0.2.1".parse().unwrap(),
                user_agent: String::new(),
                host: String::new(),
            },
            limit: None,
        };
        let r = store.session_create(&s, "").await;
        assert!(matches!(r, Err(StoreError::Conflict(_))), "{who}: {r:?}");
    }
    assert!(store.sessions_live().await.unwrap().is_empty());
    assert_eq!(
        store
            .user_get(&name("alice"))
            .await
            .unwrap()
            .unwrap()
            .last_login_at,
        None
    );
}

pub async fn api_tokens_round_trip(store: Arc<dyn Store>) {
    let secret = Token::generate().unwrap();
    let tok = usher_core::ApiToken {
        id: SessionId::generate().unwrap().to_string(),
        name: "ci deploys".into(),
        owner: name("root"),
        created_at: t(1),
        last_used_at: None,
        revoked_at: None,
    };
    store.token_create(&tok, &secret.hash()).await.unwrap();
    assert_eq!(
        store.token_by_hash(&secret.hash()).await.unwrap(),
        Some(tok.clone())
    );
    assert_eq!(
        store
            .token_by_hash(&Token::generate().unwrap().hash())
            .await
            .unwrap(),
        None
    );
    store.token_used(&tok.id, t(5)).await.unwrap();
    store.token_used(&tok.id, t(3)).await.unwrap();
    let listed = store.token_list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].last_used_at,
        Some(t(5)),
        "last use never moves back"
    );
    assert!(store.token_revoke(&tok.id, t(9)).await.unwrap());
    assert!(
        !store.token_revoke(&tok.id, t(10)).await.unwrap(),
        "revoked once"
    );
    assert_eq!(store.token_by_hash(&secret.hash()).await.unwrap(), None);
    assert_eq!(store.token_list().await.unwrap()[0].revoked_at, Some(t(9)));
}

pub async fn history_filters_and_cursor(store: Arc<dyn Store>) {
    for i in 0..10 {
        let mut e = usher_core::Event::new(t(i), EventKind::LoginFailed);
        e.user = Some(if i % 2 == 0 { "alice" } else { "bob" }.into());
        e.ip = Some(
            if i < 5 { "192.0.2.1" } else { "192.0.2.2" }
                .parse()
                .unwrap(),
        );
        store.event_record(&e).await.unwrap();
    }
    let q = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery {
            kind: Some(EventKind::LoginFailed),
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let all = store.events(&q(|_| {})).await.unwrap().items;
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let alice = store
        .events(&q(|q| q.user = Some("alice".into())))
        .await
        .unwrap()
        .items;
    assert_eq!(alice.len(), 5);
    let from_ip = store
        .events(&q(|q| {
            q.ip = Some(ipnet::IpNet::from(
                "192.0.2.2".parse::<std::net::IpAddr>().unwrap(),
            ))
        }))
        .await
        .unwrap()
        .items;
    assert_eq!(from_ip.len(), 5);
    // A network: both addresses; a page of 3 carries on where it stopped.
    fn net(q: &mut EventQuery) {
        q.ip = Some("192.0.2.0/30".parse().unwrap());
    }
    let page = store
        .events(&q(|q| {
            net(q);
            q.limit = 3;
        }))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    let rest = store
        .events(&q(|q| {
            net(q);
            q.before = Some(7);
        }))
        .await
        .unwrap();
    assert_eq!(page.next_cursor, Some(page.items[2].id));
    assert!(rest.items.iter().all(|e| e.id < 7));
    assert_eq!(rest.next_cursor, None, "the end");
    let none = store
        .events(&q(|q| q.ip = Some("198.51.100.0/24".parse().unwrap())))
        .await
        .unwrap();
    assert!(none.items.is_empty() && none.next_cursor.is_none());
    let window = store
        .events(&q(|q| {
            q.from = Some(t(2));
            q.to = Some(t(4));
        }))
        .await
        .unwrap()
        .items;
    assert_eq!(
        window.iter().map(|e| e.at).collect::<Vec<_>>(),
        [t(3), t(2)]
    );
    // Cursor pages: each page continues strictly below the last id seen, so events
    // recorded meanwhile never shift a page.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .events(&EventQuery {
                kind: Some(EventKind::LoginFailed),
                before,
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap()
            .items;
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        seen.extend(page.iter().map(|e| e.id));
        store
            .event_record(&usher_core::Event::new(t(50), EventKind::Login))
            .await
            .unwrap();
    }
    assert_eq!(seen, all.iter().map(|e| e.id).collect::<Vec<_>>());
}

async fn login_limited(
    store: &Arc<dyn Store>,
    who: &str,
    at: Timestamp,
    limit: usher_core::SessionLimit,
) -> Result<(NewSession, Vec<SessionId>), StoreError> {
    let s = NewSession {
        id: SessionId::generate().unwrap(),
        token_hash: Token::generate().unwrap().hash(),
        user: Some(name(who)),
        kind: SessionKind::Web,
        created_at: at,
        client: ClientSnapshot {
            ip: "192.0.2.1".parse().unwrap(),
            user_agent: String::new(),
            host: String::new(),
        },
        limit: Some(limit),
    };
    let evicted = store.session_create(&s, "").await?;
    Ok((s, evicted))
}

pub async fn a_limit_evicts_the_least_recently_used(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let limit = usher_core::SessionLimit {
        max: 2,
        on_limit: usher_core::OnLimit::EvictOldest,
    };
    let (a, _) = login_limited(&store, "alice", t(1), limit).await.unwrap();
    let (b, _) = login_limited(&store, "alice", t(2), limit).await.unwrap();
    // `a` was used after `b`: `b` is the least recently used.
    store
        .write_behind(&[], vec![touch(a.id, 1, t(3))])
        .await
        .unwrap();
    let (c, evicted) = login_limited(&store, "alice", t(4), limit).await.unwrap();
    assert_eq!(evicted, vec![b.id]);
    let live: Vec<SessionId> = store
        .sessions_live()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live.len(), 2);
    assert!(live.contains(&a.id) && live.contains(&c.id));
    let gone = store.session_get(&b.id).await.unwrap().unwrap();
    assert_eq!(gone.end_reason, Some(EndReason::Evicted));
    assert_eq!(gone.ended_by.as_deref(), Some("alice"));
    let evicted_events = store
        .events(&EventQuery {
            kind: Some(EventKind::Evicted),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(evicted_events.len(), 1);
}

pub async fn a_deny_limit_refuses_and_races_never_exceed_it(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let deny = usher_core::SessionLimit {
        max: 1,
        on_limit: usher_core::OnLimit::Deny,
    };
    login_limited(&store, "alice", t(1), deny).await.unwrap();
    let r = login_limited(&store, "alice", t(2), deny).await;
    assert!(matches!(r, Err(StoreError::LimitReached(1))), "{r:?}");
    // Eight logins at once with room for one: exactly one more session, never two.
    store.user_create(&user("bob"), "cli").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            login_limited(&store, "bob", t(10 + i), deny).await.is_ok()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(store.sessions_of_user(&name("bob")).await.unwrap().len(), 1);
}

pub async fn history_is_purged_after_retention(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let old = login(&store, Some("alice"), t(10)).await;
    store
        .sessions_end(&end(
            SessionSelector::Ids(vec![old.id]),
            EndReason::Logout,
            t(20),
        ))
        .await
        .unwrap();
    let live = login(&store, Some("alice"), t(30)).await;
    let mut late = usher_core::Event::new(t(100), EventKind::LoginFailed);
    late.user = Some("alice".into());
    store.event_record(&late).await.unwrap();
    let purged = store.history_purge(t(50)).await.unwrap();
    assert!(
        purged >= 4,
        "user_created, login, logout, login events and one session: {purged}"
    );
    let left = store
        .events(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(
        left.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::LoginFailed]
    );
    assert_eq!(
        store.session_get(&old.id).await.unwrap(),
        None,
        "ended long ago: purged"
    );
    assert!(
        store.session_get(&live.id).await.unwrap().is_some(),
        "live sessions stay"
    );
}

pub async fn where_was_a_user_at_an_instant(store: Arc<dyn Store>) {
    store.user_create(&user("alice"), "cli").await.unwrap();
    let a = login(&store, Some("alice"), t(10)).await;
    let b = login(&store, Some("alice"), t(20)).await;
    store
        .sessions_end(&end(
            SessionSelector::Ids(vec![a.id]),
            EndReason::Logout,
            t(30),
        ))
        .await
        .unwrap();
    let ids = |v: Vec<usher_core::SessionRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.sessions_at(Some(&name("alice")), t(5)).await.unwrap()),
        Vec::<SessionId>::new()
    );
    assert_eq!(
        ids(store
            .sessions_at(Some(&name("alice")), t(15))
            .await
            .unwrap()),
        [a.id]
    );
    let mut both = ids(store
        .sessions_at(Some(&name("alice")), t(25))
        .await
        .unwrap());
    both.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(both, want);
    assert_eq!(
        ids(store
            .sessions_at(Some(&name("alice")), t(35))
            .await
            .unwrap()),
        [b.id]
    );
    assert_eq!(
        ids(store.sessions_at(None, t(35)).await.unwrap()),
        [b.id],
        "everyone's"
    );
    assert!(
        store
            .sessions_at(Some(&name("bob")), t(35))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn lazy_anonymous_sessions_are_written_behind(store: Arc<dyn Store>) {
    let lazy = |hash| LazySession {
        session: NewSession {
            id: SessionId::generate().unwrap(),
            token_hash: hash,
            user: None,
            kind: SessionKind::Web,
            created_at: t(1),
            client: ClientSnapshot {
                ip: "192.0.2.9".parse().unwrap(),
                user_agent: "curl/8".into(),
                host: "app.example".into(),
            },
            limit: None,
        },
        client: "curl 8".into(),
    };
    let head = store.change_head().await.unwrap();
    let hash = Token::generate().unwrap().hash();
    let a = lazy(hash);
    // Created and touched in the same flush: the insert comes first.
    store
        .write_behind(std::slice::from_ref(&a), vec![touch(a.session.id, 2, t(3))])
        .await
        .unwrap();
    let got = store.session_by_token(&hash).await.unwrap().unwrap();
    assert_eq!(
        (got.id, got.user.clone(), got.requests),
        (a.session.id, None, 2)
    );
    // The touch applied after the insert: its client is the latest, the first stays.
    assert_eq!(got.client, "Client 2");
    assert_eq!(got.first_ip.to_string(), "192.0.2.9");
    assert_eq!(got.last_access_at, t(3));
    // Another node adopting the same cookie: skipped, not an error, first one stays.
    let b = lazy(hash);
    store
        .write_behind(std::slice::from_ref(&b), vec![])
        .await
        .unwrap();
    assert_eq!(store.session_get(&b.session.id).await.unwrap(), None);
    assert_eq!(
        store.session_by_token(&hash).await.unwrap().map(|s| s.id),
        Some(a.session.id)
    );
    let changes = store.changes_since(head, 100).await.unwrap();
    assert_eq!(changes.len(), 1, "one SessionCreated, for the row written");
    assert_eq!(changes[0].kind, ChangeKind::SessionCreated(a.session.id));
    // Ending it is durable but leaves no event: history is about people.
    let ended = store
        .sessions_end(&end(
            SessionSelector::Ids(vec![a.session.id]),
            EndReason::IdleTimeout,
            t(9),
        ))
        .await
        .unwrap();
    assert_eq!(ended, vec![a.session.id]);
    let events = store
        .events(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert!(events.is_empty(), "{events:?}");
    assert!(store.sessions_live().await.unwrap().is_empty());
}

pub async fn inactive_users_report_last_login_ip_and_activity(store: Arc<dyn Store>) {
    for n in ["alice", "bob", "carol", "dave"] {
        store.user_create(&user(n), "cli").await.unwrap();
    }
    // alice: signed in long ago, silent since. bob: signed in long ago, still busy.
    // carol: never. dave: signed in lately.
    let a = login(&store, Some("alice"), t(10)).await;
    store
        .write_behind(&[], vec![touch(a.id, 1, t(20))])
        .await
        .unwrap();
    let b = login(&store, Some("bob"), t(10)).await;
    store
        .write_behind(&[], vec![touch(b.id, 9, t(500))])
        .await
        .unwrap();
    login(&store, Some("dave"), t(400)).await;
    let since = t(100);
    let report = store.inactive_users(since).await.unwrap();
    let names: Vec<&str> = report.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alice", "carol"]);
    assert_eq!(report[0].last_login_at, Some(t(10)));
    assert_eq!(report[0].last_login_ip, Some(a.client.ip));
    assert_eq!(report[0].last_activity_at, Some(t(20)));
    assert_eq!(
        (
            report[1].last_login_at,
            report[1].last_login_ip,
            report[1].last_activity_at
        ),
        (None, None, None)
    );
    // Everyone is inactive since a date after all of it.
    assert_eq!(store.inactive_users(t(1000)).await.unwrap().len(), 4);
    assert!(
        store
            .user_list()
            .await
            .unwrap()
            .iter()
            .all(|u| u.groups.is_empty())
    );
}

pub async fn live_sessions_read_in_pages(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(login(&store, None, t(i)).await.id);
    }
    // A hostile client and a user: the page must give back exactly what was stored.
    store.user_create(&user("ann"), "cli").await.unwrap();
    let mut odd = login(&store, Some("ann"), t(8)).await;
    made.push(odd.id);
    odd.id = SessionId::generate().unwrap();
    odd.token_hash = Token::generate().unwrap().hash();
    odd.client.user_agent = "Mozilla/5.0 \"quoted\" back\\slash \u{1b}[31m é 𝄞 </script>".into();
    odd.client.ip = "2001:db8::7".parse().unwrap();
    odd.client.host = "h\u{e9}te:8443".into();
    store.session_create(&odd, "Odd \"client\"").await.unwrap();
    store
        .write_behind(&[], vec![touch(odd.id, 41, t(8))])
        .await
        .unwrap();
    made.push(odd.id);
    store
        .sessions_end(&end(
            SessionSelector::Ids(vec![made[3]]),
            EndReason::Killed,
            t(9),
        ))
        .await
        .unwrap();
    let mut want: Vec<SessionId> = made.iter().copied().filter(|id| *id != made[3]).collect();
    want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    // One reading from the start, and readings split in parts (read one after the
    // other here; the engine reads them at once): together, every live session once.
    let mut splits = vec![vec![LiveCursor::default()]];
    for parts in [1, 2, 3, 50] {
        let cursors = store.sessions_live_split(parts).await.unwrap();
        assert!(!cursors.is_empty() && cursors.len() <= parts as usize);
        splits.push(cursors);
    }
    for cursors in splits {
        let mut seen = Vec::new();
        for mut from in cursors.clone() {
            loop {
                let page = store.sessions_live_page(&from, 2).await.unwrap();
                assert!(page.sessions.len() <= 2);
                for s in &page.sessions {
                    let stored = store.session_get(&s.id).await.unwrap();
                    assert_eq!(Some(s), stored.as_ref(), "a page gives sessions as stored");
                }
                seen.extend(page.sessions.iter().map(|s| s.id));
                let next = page.next.clone();
                // Handed back as the engine does: a backend may reuse it for the next.
                store.sessions_live_page_done(page);
                match next {
                    Some(next) => from = next,
                    None => break,
                }
            }
        }
        seen.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(seen, want, "every live session once, split as {cursors:?}");
    }
    assert_eq!(
        store.sessions_live_count().await.unwrap(),
        want.len() as u64,
        "the count is what a reading gives"
    );
}
