//! Signing in and out through the real server.

use usher_core::{EndReason, EventKind};
use usher_store::EventQuery;
use usher_testkit::{TestApp, client, hidden_field, session_cookie, set_cookie_named};

#[tokio::test]
async fn anonymous_browsers_go_to_login_and_api_clients_get_401() {
    let app = TestApp::spawn().await;
    let r = client()
        .get(app.url("/reports/q3?x=1"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/usher/login?rd=%2Freports%2Fq3%3Fx%3D1"
    );
    let r = client()
        .get(app.url("/api/things"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    assert!(
        app.store.sessions_live().await.unwrap().is_empty(),
        "no session for strangers"
    );
}

#[tokio::test]
async fn login_returns_to_rd_and_the_demo_page_greets_the_user() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let resp = app
        .post_login("alice", "alice-password", "/app?x=1", None)
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/app?x=1");
    let raw: Vec<&str> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|c| c.starts_with("usher_session="))
        .collect();
    assert_eq!(raw.len(), 1);
    let attrs = raw[0];
    assert!(
        attrs.contains("; HttpOnly")
            && attrs.contains("; SameSite=Lax")
            && attrs.contains("; Path=/"),
        "{attrs}"
    );
    assert!(
        !attrs.contains("Secure") && !attrs.contains("Max-Age") && !attrs.contains("Domain"),
        "{attrs}"
    );
    let cookie = session_cookie(&resp, "usher_session").unwrap();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    assert_eq!(token.len(), 43, "256 random bits, base64url");

    let page = client()
        .get(app.url("/app"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    let live = app.store.sessions_live().await.unwrap();
    assert_eq!(live.len(), 1);
    assert!(html.contains("Hello, alice"), "{html}");
    assert!(
        html.contains(live[0].id.as_str()),
        "shows the public session id"
    );
    assert!(html.contains("/usher/logout"));
    assert!(!html.contains("Admin console"), "not an admin");
    assert!(!html.contains(&token), "the token never appears in a page");
    let stored = app
        .store
        .session_by_token(&usher_core::Token::parse(&token).unwrap().hash())
        .await
        .unwrap();
    assert!(
        stored.is_some(),
        "the store keys sessions by the token's hash"
    );

    app.add_user("root", "root-password", true).await;
    let admin = app.login("root", "root-password").await;
    let html = client()
        .get(app.url("/"))
        .header("cookie", &admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Admin console"));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let a = app.post_login("alice", "wrong-password", "/", None).await;
    let b = app.post_login("nobody", "wrong-password", "/", None).await;
    assert_eq!(a.status(), 401);
    assert_eq!(b.status(), 401);
    assert!(session_cookie(&a, "usher_session").is_none());
    assert!(session_cookie(&b, "usher_session").is_none());
    // Each form carries its own CSRF token; apart from it and the echoed name, the
    // pages must be identical.
    let mask = |html: String, name: &str| {
        let token = hidden_field(&html, "csrf").unwrap();
        html.replace(&token, "TOKEN").replace(name, "NAME")
    };
    let (ta, tb) = (a.text().await.unwrap(), b.text().await.unwrap());
    assert!(ta.contains("Wrong user name or password."));
    assert_eq!(
        mask(ta, "alice"),
        mask(tb, "nobody"),
        "same page either way"
    );
    let failed = app
        .store
        .events(&EventQuery {
            kind: Some(EventKind::LoginFailed),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    let tried: Vec<_> = failed.iter().filter_map(|e| e.user.clone()).collect();
    assert_eq!(tried, ["nobody", "alice"]);
    assert!(
        failed
            .iter()
            .all(|e| e.ip == Some("127.0.0.1".parse().unwrap()))
    );
}

#[tokio::test]
async fn login_needs_its_csrf_token_and_a_same_site_origin() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let c = client();
    let form = c.get(app.url("/usher/login")).send().await.unwrap();
    let login_cookie = set_cookie_named(&form, "usher_login").unwrap();
    let csrf = hidden_field(&form.text().await.unwrap(), "csrf").unwrap();
    let fields = |token: &str| {
        vec![
            ("username".to_owned(), "alice".to_owned()),
            ("password".to_owned(), "alice-password".to_owned()),
            ("csrf".to_owned(), token.to_owned()),
        ]
    };
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Vec<(String, String)>,
        Vec<(&'a str, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        ("no token", Some(&login_cookie), fields(""), vec![]),
        ("wrong token", Some(&login_cookie), fields("AAAA"), vec![]),
        ("no login cookie", None, fields(&csrf), vec![]),
        (
            "foreign origin",
            Some(&login_cookie),
            fields(&csrf),
            vec![("origin", "https://evil.example")],
        ),
        (
            "cross-site fetch",
            Some(&login_cookie),
            fields(&csrf),
            vec![("sec-fetch-site", "cross-site")],
        ),
    ];
    for (what, cookie, form, headers) in cases {
        let mut req = c.post(app.url("/usher/login")).form(&form);
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "{what}");
        assert!(session_cookie(&r, "usher_session").is_none(), "{what}");
    }
    assert!(app.store.sessions_live().await.unwrap().is_empty());
    // The control: the same form, properly bound, works.
    let ok = c
        .post(app.url("/usher/login"))
        .header("cookie", &login_cookie)
        .header("origin", &app.base)
        .form(&fields(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
}

#[tokio::test]
async fn redirects_off_site_fall_back_to_root() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    for rd in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
    ] {
        let r = app.post_login("alice", "alice-password", rd, None).await;
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/", "{rd}");
    }
    let own = format!("{}/deep/link", app.base);
    let r = app.post_login("alice", "alice-password", &own, None).await;
    assert_eq!(r.headers()["location"], own.as_str(), "same host is fine");
}

#[tokio::test]
async fn logout_is_a_post_with_a_token_and_ends_the_session_for_good() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    let c = client();
    let page = c
        .get(app.url("/usher/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = hidden_field(&page.text().await.unwrap(), "csrf").unwrap();
    assert_eq!(
        c.get(app.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "GET did not log out"
    );
    let forged = c
        .post(app.url("/usher/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(
        c.get(app.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let out = c
        .post(app.url("/usher/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/usher/login");
    let clear = out
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("usher_session=;"))
        .expect("clears the cookie");
    assert!(clear.contains("Max-Age=0") && clear.contains("Path=/"));
    for path in ["/", "/usher/admin/", "/usher/logout"] {
        let r = c
            .get(app.url(path))
            .header("cookie", &cookie)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        let html_or_redirect =
            r.status() == 302 || r.text().await.unwrap().contains("not signed in");
        assert!(html_or_redirect, "{path} still accepts the old cookie");
    }
    let ended = app
        .store
        .sessions_of_user(&usher_core::Username::parse("alice").unwrap())
        .await
        .unwrap();
    assert_eq!(ended[0].end_reason, Some(EndReason::Logout));
    assert_eq!(ended[0].ended_by.as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_new_login_issues_a_new_token_and_ends_the_old_session() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let old = app.login("alice", "alice-password").await;
    let resp = app
        .post_login("alice", "alice-password", "/", Some(&old))
        .await;
    let new = session_cookie(&resp, "usher_session").unwrap();
    assert_ne!(old, new);
    let r = client()
        .get(app.url("/"))
        .header("accept", "text/html")
        .header("cookie", &old)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the old token is dead");
    let r = client()
        .get(app.url("/"))
        .header("cookie", &new)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.store.sessions_live().await.unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_or_foreign_cookies_are_simply_no_session() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let good = app.login("alice", "alice-password").await;
    let good_value = good.split_once('=').unwrap().1.to_owned();
    let long = format!("usher_session={}", "A".repeat(4000));
    let cases = vec![
        "usher_session=".to_owned(),
        "usher_session=garbage".to_owned(),
        "usher_session=\"quoted\"".to_owned(),
        format!("usher_session={}", "A".repeat(43)),
        format!("usher_session={}", "*".repeat(43)),
        long,
        ";;;;====;;".to_owned(),
        format!(
            "usher_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; usher_session={good_value}"
        ),
        format!("__Host-usher_session={good_value}"),
        format!("usher={good_value}"),
        format!("Usher_Session={good_value}"),
    ];
    for cookie in cases {
        let r = client()
            .get(app.url("/"))
            .header("accept", "text/html")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{cookie:.60}");
        let echoed = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().contains(&good_value));
        assert!(!echoed, "a presented value is never echoed");
    }
    let r = client()
        .get(app.url("/"))
        .header("cookie", format!("a=b; {good}; c=d"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the real cookie among others works");
}

#[tokio::test]
async fn the_admin_console_is_for_admins_only() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    app.add_user("root", "root-password", true).await;
    let r = client()
        .get(app.url("/usher/admin/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let alice = app.login("alice", "alice-password").await;
    let r = client()
        .get(app.url("/usher/admin/"))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let root = app.login("root", "root-password").await;
    let r = client()
        .get(app.url("/usher/admin/"))
        .header("cookie", &root)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Usher console"));
}

#[tokio::test]
async fn health_checks_answer_without_touching_sessions() {
    let app = TestApp::spawn().await;
    for path in ["/usher/healthz", "/usher/livez", "/usher/readyz"] {
        let r = client()
            .get(app.url(path))
            .header("cookie", "usher_session=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    assert!(app.store.sessions_live().await.unwrap().is_empty());
    let r = client().get(app.url("/usher/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn bad_forms_get_clear_4xx_answers() {
    let app = TestApp::spawn().await;
    let c = client();
    let r = c
        .post(app.url("/usher/login"))
        .body("{}")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("x-www-form-urlencoded"));
    let big = "a=".to_owned() + &"x".repeat(200 * 1024);
    let r = c
        .post(app.url("/usher/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = c
        .post(app.url("/usher/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'%', b'z'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no valid token in junk");
}

#[tokio::test]
async fn over_https_through_a_trusted_proxy_the_cookie_is_host_prefixed_and_secure() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let c = client();
    let form = c
        .get(app.url("/usher/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let login_cookie = set_cookie_named(&form, "usher_login").unwrap();
    let csrf = hidden_field(&form.text().await.unwrap(), "csrf").unwrap();
    let r = c
        .post(app.url("/usher/login"))
        .header("x-forwarded-proto", "https")
        .header("cookie", &login_cookie)
        .form(&[
            ("username", "alice"),
            ("password", "alice-password"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-usher_session="))
        .expect("__Host- cookie");
    assert!(
        set.contains("; Secure") && set.contains("; Path=/") && !set.contains("Domain"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let ok = c
        .get(app.url("/"))
        .header("x-forwarded-proto", "https")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// What `/usher/whoami` says of the request `req` (which must be sent to it).
async fn whoami(req: reqwest::RequestBuilder) -> serde_json::Value {
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn whoami_reports_what_usher_believed() {
    let app = TestApp::spawn().await;
    let r = whoami(
        client()
            .get(app.url("/usher/whoami"))
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
    )
    .await;
    // 127.0.0.1 is trusted by default; 10.0.0.1 is not, so it is the client.
    assert_eq!(r["client_ip"], "10.0.0.1");
    assert_eq!(r["believed_header"], "x-forwarded-for");
    assert_eq!(r["peer_trusted"], true);
}

/// On a dual-stack listener an IPv4 proxy arrives as ::ffff:a.b.c.d: it is trusted
/// as its IPv4 address, for the client IP and X-Forwarded-Proto alike.
#[tokio::test]
async fn a_trusted_proxy_on_a_dual_stack_listener_is_believed() {
    let app = TestApp::spawn_with(usher_testkit::Options {
        listen: Some("[::]:0".parse().unwrap()),
        ..Default::default()
    })
    .await;
    let r = whoami(
        client()
            .get(format!("http://127.0.0.1:{}/usher/whoami", app.addr.port()))
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https"),
    )
    .await;
    assert_eq!(
        r["peer"].as_str().unwrap().split(']').next(),
        Some("[::ffff:127.0.0.1")
    );
    assert_eq!(r["peer_trusted"], true);
    assert_eq!(r["client_ip"], "203.0.113.9");
    assert_eq!(r["https"], true);
}

#[tokio::test]
async fn failed_logins_slow_down_and_never_lock_out_for_good() {
    let app = TestApp::spawn_with(usher_testkit::Options {
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let clock = app.clock.clone().unwrap();
    app.add_user("alice", "alice-password", false).await;
    for _ in 0..3 {
        assert_eq!(app.try_login("alice", "wrong-password", "/").await.0, 401);
    }
    let r = app.post_login("alice", "wrong-password", "/", None).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
    // Even the right password waits: nothing is checked while throttled.
    let (status, cookie) = app.try_login("alice", "alice-password", "/").await;
    assert_eq!((status, cookie.is_none()), (429, true));
    clock.advance(jiff::SignedDuration::from_secs(1));
    assert_eq!(
        app.try_login("alice", "alice-password", "/").await.0,
        303,
        "the wait is over"
    );
    // A long run of failures caps the account's delay at 30 s (from another address it
    // is the account's cap that applies; the guessing address waits up to 5 min).
    for _ in 0..40 {
        let _ = app.try_login("alice", "wrong-password", "/").await;
        clock.advance(jiff::SignedDuration::from_secs(40));
    }
    let r = app.post_login("alice", "wrong-password", "/", None).await;
    let wait: i64 = r
        .headers()
        .get("retry-after")
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    assert!(wait <= 300, "bounded: {wait}");
    clock.advance(jiff::SignedDuration::from_secs(301));
    assert_eq!(
        app.try_login("alice", "alice-password", "/").await.0,
        303,
        "never locked out for good"
    );
}
