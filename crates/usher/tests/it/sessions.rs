//! Tracking: counts, client details, persistence, timeouts, ends made elsewhere.

use jiff::SignedDuration;
use std::time::Duration;
use usher_core::client_ip::TrustedProxies;
use usher_core::{EndReason, EventKind, SessionPolicy, Username};
use usher_store::EventQuery;
use usher_testkit::{Options, TestApp, client};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";

/// Polls `check` for up to 3 s: for effects that background tasks make.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn counts_and_client_details_are_tracked_and_survive_a_restart() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    for _ in 0..5 {
        let r = client()
            .get(app.url("/"))
            .header("cookie", &cookie)
            .header("user-agent", FIREFOX)
            .header("host", "app.example:8443")
            .header("x-forwarded-for", "203.0.113.5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (dir, url) = app.stop().await;
    // Stopped gracefully: every count is in the file.
    let store = usher_store::open(&url).await.unwrap();
    let s = &store
        .sessions_of_user(&Username::parse("alice").unwrap())
        .await
        .unwrap()[0];
    assert_eq!(s.requests, 5);
    assert_eq!(
        s.ip.to_string(),
        "203.0.113.5",
        "through the trusted loopback proxy"
    );
    assert_eq!(s.first_ip.to_string(), "127.0.0.1");
    assert_eq!(s.client, "Firefox 131 on Linux");
    assert_eq!(s.user_agent, FIREFOX);
    assert_eq!(s.host, "app.example:8443");
    assert!(s.last_access_at > s.created_at);
    drop(store);

    let app = TestApp::spawn_on(dir, url, Options::default()).await;
    let html = client()
        .get(app.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Hello, alice"),
        "still signed in after the restart"
    );
    assert!(
        html.contains(r#"<span class="requests">6</span>"#),
        "the count goes on: {html}"
    );
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_ip() {
    let mut options = Options::default();
    options.gateway.trusted = TrustedProxies::new(vec![]);
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    client()
        .get(app.url("/"))
        .header("cookie", &cookie)
        .header("x-forwarded-for", "198.51.100.66")
        .send()
        .await
        .unwrap();
    app.flush().await;
    let s = &app.store.sessions_live().await.unwrap()[0];
    assert_eq!(s.ip.to_string(), "127.0.0.1");
}

fn short_timeouts() -> Options {
    let mut o = Options {
        manual_clock: true,
        ..Options::default()
    };
    o.engine.policy = SessionPolicy {
        idle_timeout: SignedDuration::from_secs(60),
        absolute_timeout: SignedDuration::from_secs(300),
        anonymous_idle_timeout: SignedDuration::from_secs(30),
    };
    o
}

#[tokio::test]
async fn idle_sessions_end_with_their_reason_recorded() {
    let app = TestApp::spawn_with(short_timeouts()).await;
    let clock = app.clock.clone().unwrap();
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    let get = || {
        client()
            .get(app.url("/"))
            .header("cookie", &cookie)
            .header("accept", "text/html")
            .send()
    };
    clock.advance(SignedDuration::from_secs(59));
    assert_eq!(get().await.unwrap().status(), 200);
    clock.advance(SignedDuration::from_secs(59));
    assert_eq!(
        get().await.unwrap().status(),
        200,
        "activity keeps it alive"
    );
    clock.advance(SignedDuration::from_secs(61));
    assert_eq!(get().await.unwrap().status(), 302, "idle too long");
    let store = app.store.clone();
    eventually("the expiry is recorded", || {
        let store = store.clone();
        async move {
            store
                .sessions_of_user(&Username::parse("alice").unwrap())
                .await
                .unwrap()[0]
                .end_reason
                == Some(EndReason::IdleTimeout)
        }
    })
    .await;
    let s = &app
        .store
        .sessions_of_user(&Username::parse("alice").unwrap())
        .await
        .unwrap()[0];
    assert_eq!(s.requests, 2, "both allowed requests were counted");
    let expired = app
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
    assert_eq!(expired[0].actor.as_deref(), Some("system"));
}

#[tokio::test]
async fn the_absolute_timeout_ends_even_busy_sessions() {
    let app = TestApp::spawn_with(short_timeouts()).await;
    let clock = app.clock.clone().unwrap();
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    let get = || {
        client()
            .get(app.url("/"))
            .header("cookie", &cookie)
            .header("accept", "text/html")
            .send()
    };
    for _ in 0..5 {
        clock.advance(SignedDuration::from_secs(50));
        assert_eq!(get().await.unwrap().status(), 200);
    }
    clock.advance(SignedDuration::from_secs(50));
    assert_eq!(get().await.unwrap().status(), 302, "300 s after login");
    let store = app.store.clone();
    eventually("the absolute expiry is recorded", || {
        let store = store.clone();
        async move {
            store
                .sessions_of_user(&Username::parse("alice").unwrap())
                .await
                .unwrap()[0]
                .end_reason
                == Some(EndReason::AbsoluteTimeout)
        }
    })
    .await;
}

#[tokio::test]
async fn changes_made_outside_the_server_take_effect_within_a_second() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    app.add_user("bob", "bob-password-1", false).await;
    let alice = app.login("alice", "alice-password").await;
    let bob = app.login("bob", "bob-password-1").await;
    // As `usher user disable alice` does: straight on the store, from another handle.
    let other = usher_store::open(&app.store_url).await.unwrap();
    let ended = other
        .user_set_disabled(
            &Username::parse("alice").unwrap(),
            true,
            "cli",
            usher_core::Clock::now(&usher_core::SystemClock),
        )
        .await
        .unwrap();
    assert_eq!(ended.len(), 1);
    let started = std::time::Instant::now();
    let url = app.url("/");
    eventually("alice's session is refused", || {
        let (url, alice) = (url.clone(), alice.clone());
        async move {
            client()
                .get(url)
                .header("cookie", alice)
                .send()
                .await
                .unwrap()
                .status()
                == 401
        }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        client()
            .get(app.url("/"))
            .header("cookie", &bob)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // And a disabled user cannot sign in again.
    let (status, cookie) = app.try_login("alice", "alice-password", "/").await;
    assert_eq!(status, 401);
    assert!(cookie.is_none());
}

fn limited(max: u32, on_limit: usher_core::OnLimit) -> Options {
    let mut o = Options::default();
    o.engine.concurrency = usher_core::ConcurrencyPolicy {
        max_per_user: max,
        on_limit,
        per_group: vec![(usher_core::Group::admins(), 1)],
    };
    o
}

#[tokio::test]
async fn one_session_per_user_evicts_the_oldest() {
    let app = TestApp::spawn_with(limited(2, usher_core::OnLimit::EvictOldest)).await;
    app.add_user("alice", "alice-password", false).await;
    app.add_user("root", "root-password", true).await;
    let first = app.login("alice", "alice-password").await;
    let second = app.login("alice", "alice-password").await;
    assert_eq!(usher_testkit::status(&app.url("/"), &second).await, 200);
    let third = app.login("alice", "alice-password").await;
    assert_eq!(
        usher_testkit::status(&app.url("/"), &first).await,
        401,
        "the least recently used went"
    );
    assert_eq!(usher_testkit::status(&app.url("/"), &second).await, 200);
    assert_eq!(usher_testkit::status(&app.url("/"), &third).await, 200);
    let ended = app
        .store
        .sessions_of_user(&Username::parse("alice").unwrap())
        .await
        .unwrap();
    let evicted = ended
        .iter()
        .find(|s| s.end_reason == Some(EndReason::Evicted))
        .expect("one was evicted");
    // alice's own page says which session was replaced, and why.
    let me = client()
        .get(app.url("/usher/me"))
        .header("cookie", &third)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = me
        .split("<tr>")
        .find(|r| r.contains(evicted.id.as_str()))
        .expect("the evicted session is listed");
    assert!(row.contains("replaced by a newer sign-in"), "{row}");
    // The admins group is limited to one.
    let a = app.login("root", "root-password").await;
    let b = app.login("root", "root-password").await;
    assert_eq!(usher_testkit::status(&app.url("/"), &a).await, 401);
    assert_eq!(usher_testkit::status(&app.url("/"), &b).await, 200);
}

#[tokio::test]
async fn deny_refuses_the_new_login_and_says_what_to_do() {
    let app = TestApp::spawn_with(limited(1, usher_core::OnLimit::Deny)).await;
    app.add_user("alice", "alice-password", false).await;
    let first = app.login("alice", "alice-password").await;
    let r = app.post_login("alice", "alice-password", "/", None).await;
    assert_eq!(r.status(), 409);
    assert!(usher_testkit::session_cookie(&r, "usher_session").is_none());
    let html = r.text().await.unwrap();
    assert!(html.contains("already have 1 active session"), "{html}");
    assert!(html.contains("/usher/me"), "{html}");
    assert_eq!(
        usher_testkit::status(&app.url("/"), &first).await,
        200,
        "the first stays"
    );
    // Parallel logins never leave more than the limit.
    app.logout(&first).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let base = app.base.clone();
        tasks.push(tokio::spawn(async move {
            usher_testkit::browser_login(&base, "alice", "alice-password", "/", None)
                .await
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        app.state
            .engine
            .sessions_of(&Username::parse("alice").unwrap())
            .len(),
        1
    );
}

async fn store_lookups(app: &TestApp) -> f64 {
    usher_testkit::metric(&app.url(""), "usher_token_store_lookups_total")
        .await
        .expect("usher_token_store_lookups_total")
}

/// A token not in memory is asked of the store once: a session made elsewhere (another
/// node) is then served from memory, and a junk cookie repeated at any rate costs no
/// further store reads (issue 9).
#[tokio::test]
async fn unknown_tokens_are_looked_up_in_the_store_once() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let report = app.url("/report");
    let before = store_lookups(&app).await;

    let junk = format!(
        "usher_session={}",
        usher_core::Token::generate().unwrap().encode()
    );
    for _ in 0..5 {
        assert_ne!(usher_testkit::status(&report, &junk).await, 200);
    }
    assert_eq!(
        store_lookups(&app).await,
        before + 1.0,
        "junk: one store read"
    );

    // Made in the store behind the server's back, as another node would.
    let (made, cookie) = app.session_in_store_only("alice", FIREFOX, "Firefox").await;
    // Found through the store, or already through the change feed (which one depends
    // on timing); either way, from then on from memory.
    assert_eq!(usher_testkit::status(&report, &cookie).await, 200);
    let found = store_lookups(&app).await;
    assert!(found <= before + 2.0, "at most one read for it");
    for _ in 0..5 {
        assert_eq!(usher_testkit::status(&report, &cookie).await, 200);
    }
    assert_eq!(store_lookups(&app).await, found, "then memory only");
    assert!(app.state.engine.session(&made).is_some());
}
