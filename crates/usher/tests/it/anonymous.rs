//! Anonymous visitors of public paths (lazy sessions), pings that never become
//! sessions, `max_anonymous`, `anonymous_idle_timeout`, `sessions.anonymous = "off"` and
//! `tracking.ignore` — through the reverse proxy and the forward-auth endpoints alike.

use jiff::SignedDuration;
use std::time::Duration;
use usher_core::query::Limit;
use usher_core::{AccessRules, Clock, EndReason, IgnoreRule, SessionInfo, SessionQuery};
use usher_testkit::upstream::header_values;
use usher_testkit::{Options, TestApp, Upstream, client, session_cookie};

const NAME: &str = "usher_session";

fn public(options: &mut Options, paths: &[&str]) {
    let paths: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
    options.gateway.rules = AccessRules::new(&paths, Vec::new()).unwrap();
}

fn anonymous_sessions(app: &TestApp) -> Vec<SessionInfo> {
    let q = SessionQuery {
        anonymous: Some(true),
        limit: Limit::All,
        ..SessionQuery::default()
    };
    app.state.engine.list(&q).1
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut r = client()
        .get(app.url(path))
        .header("accept", "text/html")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Firefox/131.0",
        );
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.send().await.unwrap()
}

fn clears_cookie(r: &reqwest::Response) -> bool {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Max-Age=0"))
}

#[tokio::test]
async fn a_visitor_becomes_an_anonymous_session_only_when_the_cookie_comes_back() {
    let upstream = Upstream::spawn().await;
    let mut o = Options::default();
    o.gateway.upstream = Some(upstream.uri());
    public(&mut o, &["/public/**", "/favicon.ico"]);
    let app = TestApp::spawn_with(o).await;

    // First visit: served, handed a cookie, and no session yet.
    let first = get(&app, "/public/page", None).await;
    assert_eq!(first.status(), 200);
    let cookie = session_cookie(&first, NAME).expect("an anonymous cookie");
    assert_eq!(cookie.len(), NAME.len() + 1 + 64, "{cookie}");
    let echo: serde_json::Value = first.json().await.unwrap();
    assert_eq!(header_values(&echo, "x-usher-session"), vec![String::new()]);
    assert_eq!(header_values(&echo, "remote-user"), vec![String::new()]);
    assert!(anonymous_sessions(&app).is_empty());

    // A monitoring ping that never keeps cookies: counted apart, never a session.
    for _ in 0..5 {
        let r = client()
            .get(app.url("/favicon.ico"))
            .header("user-agent", "check_http/v2.3")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(anonymous_sessions(&app).is_empty());
    app.flush().await;
    assert!(app.store.sessions_live().await.unwrap().is_empty());
    let pings = app.state.engine.cookieless().list();
    let ping = pings
        .iter()
        .find(|c| c.user_agent == "check_http/v2.3")
        .expect("the ping is listed");
    assert_eq!(ping.requests, 5);

    // The cookie comes back: now there is a session, and it counts.
    let second = get(&app, "/public/other?x=1", Some(&cookie)).await;
    assert_eq!(second.status(), 200);
    assert!(
        session_cookie(&second, NAME).is_none(),
        "no new cookie once it came back"
    );
    let echo: serde_json::Value = second.json().await.unwrap();
    let sessions = anonymous_sessions(&app);
    assert_eq!(sessions.len(), 1);
    let id = sessions[0].id.to_string();
    assert_eq!(header_values(&echo, "x-usher-session"), vec![id.clone()]);
    assert_eq!(header_values(&echo, "remote-user"), vec![String::new()]);
    assert!(
        !header_values(&echo, "cookie").concat().contains(NAME),
        "the app never sees Usher's cookie"
    );
    assert_eq!(get(&app, "/favicon.ico", Some(&cookie)).await.status(), 200);
    assert_eq!(anonymous_sessions(&app)[0].requests, 2);
    assert_eq!(sessions[0].user, None);

    // An anonymous session opens public paths only; its cookie is kept.
    let private = get(&app, "/private", Some(&cookie)).await;
    assert_eq!(private.status(), 302);
    assert!(!clears_cookie(&private));
    assert_eq!(
        anonymous_sessions(&app)[0].requests,
        2,
        "refused, not counted"
    );

    // Written behind, with its counts.
    app.flush().await;
    let stored = app.store.sessions_live().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].id.to_string(), stored[0].requests),
        (id.clone(), 2)
    );
    assert_eq!(stored[0].user, None);

    // A cookie value Usher did not issue is never adopted.
    // (The token is the secret: the signature only decides whether an unknown one is
    // adopted, so a made-up value of the right shape is the attack.)
    let forged = format!("{NAME}={}", "Q".repeat(64));
    let r = get(&app, "/public/page", Some(&forged)).await;
    assert_eq!(r.status(), 200);
    assert!(
        session_cookie(&r, NAME).is_some(),
        "a genuine one replaces it"
    );
    let again = get(&app, "/public/page", Some(&forged)).await;
    assert_eq!(again.status(), 200);
    assert_eq!(anonymous_sessions(&app).len(), 1);

    // Signing in ends the anonymous session and issues a new token.
    app.add_user("alice", "alice-password", false).await;
    let login = app
        .post_login("alice", "alice-password", "/", Some(&cookie))
        .await;
    assert_eq!(login.status(), 303);
    let signed_in = session_cookie(&login, NAME).unwrap();
    assert_ne!(signed_in, cookie);
    assert!(anonymous_sessions(&app).is_empty());
    let ended = app
        .store
        .session_get(&usher_core::SessionId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.end_reason, Some(EndReason::Logout));
    assert_eq!(get(&app, "/public/page", Some(&cookie)).await.status(), 200);
    assert!(
        anonymous_sessions(&app).is_empty(),
        "an ended one never comes back"
    );
    let r = get(&app, "/public/page", Some(&signed_in)).await;
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        header_values(&echo, "remote-user"),
        vec!["alice".to_owned()]
    );
}

#[tokio::test]
async fn anonymous_off_serves_public_paths_without_any_session() {
    let mut o = Options::default();
    o.gateway.anonymous_sessions = false;
    let app = TestApp::spawn_with(o).await;
    let r = get(&app, "/favicon.ico", None).await;
    assert_eq!(r.status(), 200);
    assert!(session_cookie(&r, NAME).is_none());
    // Not even a cookie of an earlier lazy configuration is adopted.
    let app2 = TestApp::spawn().await;
    let cookie = session_cookie(&get(&app2, "/favicon.ico", None).await, NAME).unwrap();
    assert_eq!(get(&app, "/favicon.ico", Some(&cookie)).await.status(), 200);
    assert!(anonymous_sessions(&app).is_empty());
    assert_eq!(
        get(&app, "/", None).await.status(),
        302,
        "others still sign in"
    );
    assert_eq!(app.state.engine.cookieless().list()[0].requests, 2);
}

#[tokio::test]
async fn idle_anonymous_sessions_end_sooner_than_signed_in_ones() {
    let mut o = Options {
        manual_clock: true,
        ..Options::default()
    };
    o.engine.policy.idle_timeout = SignedDuration::from_secs(600);
    o.engine.policy.anonymous_idle_timeout = SignedDuration::from_secs(60);
    let app = TestApp::spawn_with(o).await;
    let clock = app.clock.clone().unwrap();
    app.add_user("alice", "alice-password", false).await;
    let alice = app.login("alice", "alice-password").await;
    let anon = session_cookie(&get(&app, "/favicon.ico", None).await, NAME).unwrap();
    assert_eq!(get(&app, "/favicon.ico", Some(&anon)).await.status(), 200);
    let id = anonymous_sessions(&app)[0].id;
    let expires = anonymous_sessions(&app)[0].expires_at;
    assert_eq!(expires, clock.now() + SignedDuration::from_secs(60));
    clock.advance(SignedDuration::from_secs(61));
    // The reaper ends it (real time moves its 1 s sweep; the clock says it is due).
    for _ in 0..300 {
        if app.state.engine.session(&id).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        app.state.engine.session(&id).is_none(),
        "the reaper ended it"
    );
    assert_eq!(
        get(&app, "/", Some(&alice)).await.status(),
        200,
        "alice stays"
    );
    let r = get(&app, "/favicon.ico", Some(&anon)).await;
    assert!(
        session_cookie(&r, NAME).is_some(),
        "an expired anonymous cookie is replaced"
    );
}

#[tokio::test]
async fn an_anonymous_flood_evicts_only_anonymous_sessions_and_stays_capped() {
    let mut o = Options::default();
    o.engine.max_anonymous = 40;
    let app = TestApp::spawn_with(o).await;
    app.add_user("alice", "alice-password", false).await;
    let alice = app.login("alice", "alice-password").await;
    let mut cookies = Vec::new();
    for _ in 0..120 {
        let c = session_cookie(&get(&app, "/favicon.ico", None).await, NAME).unwrap();
        assert_eq!(get(&app, "/favicon.ico", Some(&c)).await.status(), 200);
        cookies.push(c);
        assert!(anonymous_sessions(&app).len() <= 40);
    }
    let live = anonymous_sessions(&app);
    assert!(live.len() >= 30, "{} left", live.len());
    // The most recent visitor kept theirs; the first lost it.
    let newest = cookies.last().unwrap();
    let r = get(&app, "/favicon.ico", Some(newest)).await;
    assert!(session_cookie(&r, NAME).is_none());
    let r = get(&app, "/favicon.ico", Some(&cookies[0])).await;
    assert!(session_cookie(&r, NAME).is_some(), "evicted: a new cookie");
    assert_eq!(get(&app, "/", Some(&alice)).await.status(), 200);
    let all = SessionQuery {
        limit: Limit::All,
        ..SessionQuery::default()
    };
    let (total, listed) = app.state.engine.list(&all);
    let ids = |l: &[SessionInfo]| l.iter().map(|s| s.id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        (total as usize, listed.len()),
        (live.len() + 1, live.len() + 1),
        "before: {:?}\nnow: {:?}",
        ids(&live),
        ids(&listed)
    );
    app.flush().await;
    let evicted = usher_testkit::metric(
        &app.url(""),
        "usher_sessions_ended_total{reason=\"evicted\"}",
    )
    .await
    .expect("evictions are counted");
    assert!(evicted >= 80.0, "{evicted}");
}

fn ignoring(rules: Vec<IgnoreRule>) -> Options {
    let mut o = Options::default();
    o.gateway.rules = AccessRules::new(&["/favicon.ico".into(), "/status".into()], rules).unwrap();
    o
}

#[tokio::test]
async fn ignored_requests_are_served_but_neither_counted_nor_recorded() {
    let app = TestApp::spawn_with(ignoring(vec![
        IgnoreRule::new(Some("/status"), None, None).unwrap(),
        IgnoreRule::new(None, Some("Pingdom*"), None).unwrap(),
        IgnoreRule::new(None, None, Some("203.0.113.0/24")).unwrap(),
    ]))
    .await;
    app.add_user("alice", "alice-password", false).await;
    let alice = app.login("alice", "alice-password").await;
    let requests = |app: &TestApp| app.state.engine.list(&SessionQuery::default()).1[0].requests;
    let before = requests(&app);
    // By path, by User-Agent, by client network (through a trusted proxy).
    assert_eq!(get(&app, "/status", Some(&alice)).await.status(), 200);
    assert_eq!(get(&app, "/status?x=1", Some(&alice)).await.status(), 200);
    let pingdom = client()
        .get(app.url("/"))
        .header("cookie", &alice)
        .header("user-agent", "Pingdom.com_bot_version_1.4")
        .send()
        .await
        .unwrap();
    assert_eq!(pingdom.status(), 200);
    let monitor = client()
        .get(app.url("/"))
        .header("cookie", &alice)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(monitor.status(), 200, "served");
    assert_eq!(requests(&app), before, "not counted");
    assert_eq!(get(&app, "/", Some(&alice)).await.status(), 200);
    assert_eq!(requests(&app), before + 1, "everything else is");
    // Signed-out: still the usual answer, but no cookie, no session, no ping entry.
    assert_eq!(get(&app, "/status", None).await.status(), 200);
    let r = get(&app, "/status", None).await;
    assert!(session_cookie(&r, NAME).is_none());
    let r = client()
        .get(app.url("/"))
        .header("user-agent", "Pingdom.com_bot_version_1.4")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "ignored is not public");
    assert!(app.state.engine.cookieless().list().is_empty());
    assert!(anonymous_sessions(&app).is_empty());
    // A path the app might split differently is not ignored.
    get(&app, "/status;x", Some(&alice)).await;
    assert_eq!(requests(&app), before + 2);
}

#[tokio::test]
async fn forward_auth_treats_public_paths_and_ignore_rules_the_same() {
    let app = TestApp::spawn_with(ignoring(vec![
        IgnoreRule::new(Some("/status"), None, None).unwrap(),
    ]))
    .await;
    let nginx = |url: &str, cookie: Option<&str>| {
        let mut r = client()
            .get(app.url("/usher/auth/request"))
            .header("x-original-url", url)
            .header("x-original-method", "GET");
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let r = nginx("http://app.example/favicon.ico", None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-usher-session"], "");
    let cookie = session_cookie(&r, NAME).expect("nginx hands the cookie on");
    let r = nginx("http://app.example/favicon.ico?v=1", Some(&cookie))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = anonymous_sessions(&app)[0].id.to_string();
    assert_eq!(r.headers()["x-usher-session"], id.as_str());
    assert_eq!(r.headers()["remote-user"], "");
    // The query never makes a path public; nor does a path that normalises elsewhere.
    for url in [
        "http://app.example/admin?/favicon.ico",
        "http://app.example/favicon.ico/..%2fadmin",
        "http://app.example/admin",
    ] {
        let r = nginx(url, Some(&cookie)).await.unwrap();
        assert_eq!(r.status(), 401, "{url}");
    }
    // Traefik / Caddy.
    let r = client()
        .get(app.url("/usher/auth/forward"))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example")
        .header("x-forwarded-uri", "/favicon.ico")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c = r.headers()["set-cookie"].to_str().unwrap();
    assert!(c.starts_with("__Host-usher_session="), "{c}");
    // Ignored: served (200 for a public path), no cookie, nothing counted.
    let r = nginx("http://app.example/status", Some(&cookie))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(anonymous_sessions(&app)[0].requests, 1);
    let r = nginx("http://app.example/status", None).await.unwrap();
    assert!(r.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn forward_auth_from_an_untrusted_peer_has_no_public_paths() {
    let mut o = Options::default();
    o.gateway.trusted = usher_core::client_ip::TrustedProxies::new(vec![]);
    let app = TestApp::spawn_with(o).await;
    let r = client()
        .get(app.url("/usher/auth/request"))
        .header("x-original-url", "http://app.example/favicon.ico")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the described URL is not believed");
}

#[tokio::test]
async fn operations_endpoints_never_create_or_count_a_session() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let alice = app.login("alice", "alice-password").await;
    let before = app.state.engine.list(&SessionQuery::default()).1[0].requests;
    for path in [
        "/usher/healthz",
        "/usher/livez",
        "/usher/readyz",
        "/usher/metrics",
    ] {
        for cookie in [None, Some(alice.as_str())] {
            let r = get(&app, path, cookie).await;
            assert_eq!(r.status(), 200, "{path}");
            assert!(session_cookie(&r, NAME).is_none(), "{path}");
        }
    }
    assert_eq!(
        app.state.engine.list(&SessionQuery::default()).1[0].requests,
        before
    );
    assert!(app.state.engine.cookieless().list().is_empty());
    assert!(anonymous_sessions(&app).is_empty());
}

#[tokio::test]
async fn a_malformed_client_ip_header_falls_back_and_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::serve(dir.path(), &[("USHER_ADMIN_PASSWORD", "admin-password")]);
    for _ in 0..5 {
        let r = client()
            .get(server.url("/usher/whoami"))
            .header("x-forwarded-for", "<script>, 1.2.3")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(
            body.contains("127.0.0.1") && !body.contains("<script>"),
            "{body}"
        );
    }
    let metrics = usher_testkit::metrics(&server.url("")).await;
    assert!(
        metrics.contains("usher_client_ip_header_malformed_total 5"),
        "{metrics}"
    );
    let err = server.stderr();
    let logged = err.matches("client IP header Usher cannot read").count();
    assert_eq!(logged, 1, "{err}");
    assert!(server.terminate());
}
