//! The admin console, through the real server: who may see it, what it shows (escaped),
//! and ending sessions behind a confirmation.

use usher_core::Username;
use usher_testkit::{TestApp, client, hidden_field};

async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let r = client()
        .get(app.url(path))
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

async fn setup() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.add_user("root", "root-password", true).await;
    app.add_user("bob", "bob-password-1", false).await;
    let admin = app.login("root", "root-password").await;
    (app, admin)
}

#[tokio::test]
async fn only_admins_see_the_console() {
    let (app, admin) = setup().await;
    let bob = app.login("bob", "bob-password-1").await;
    for path in [
        "/usher/admin/",
        "/usher/admin/sessions",
        "/usher/admin/users",
        "/usher/admin/clients",
        "/usher/admin/history",
        "/usher/admin/reports/inactive",
    ] {
        let r = client()
            .get(app.url(path))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{path}");
        assert_eq!(page(&app, &bob, path).await.0, 403, "{path}");
        let r = client()
            .get(app.url(path))
            .header("cookie", &admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
}

#[tokio::test]
async fn what_clients_send_is_shown_as_text_never_markup() {
    let (app, admin) = setup().await;
    let payloads = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "'><svg onload=alert(1)>",
        "</td><script>alert(2)</script>",
    ];
    let bob = app.login("bob", "bob-password-1").await;
    for p in payloads {
        client()
            .get(app.url("/"))
            .header("cookie", &bob)
            .header("user-agent", p)
            .send()
            .await
            .unwrap();
        app.flush().await;
        let (s, html) = page(&app, &admin, "/usher/admin/sessions").await;
        assert_eq!(s, 200);
        assert!(!html.contains(p), "{p} appears raw");
        assert!(
            !html.contains("<script>alert")
                && !html.contains("<img src=x")
                && !html.contains("<svg onload")
        );
        let sid = app
            .store
            .sessions_of_user(&Username::parse("bob").unwrap())
            .await
            .unwrap()[0]
            .id;
        let (_, detail) = page(&app, &admin, &format!("/usher/admin/sessions/{sid}")).await;
        assert!(!detail.contains(p), "{p} appears raw on the detail page");
        assert!(detail.contains("&lt;") || detail.contains("&#"), "escaped");
    }
    // Filter values echoed back into the form are escaped too.
    let (s, html) = page(
        &app,
        &admin,
        "/usher/admin/sessions?q=%22%3E%3Cscript%3Ealert(3)%3C/script%3E",
    )
    .await;
    assert_eq!(s, 200);
    assert!(!html.contains("<script>alert(3)"));
}

#[tokio::test]
async fn the_list_sorts_pages_filters_and_explains_bad_filters() {
    let (app, admin) = setup().await;
    for _ in 0..2 {
        app.login("bob", "bob-password-1").await;
    }
    let (_, html) = page(
        &app,
        &admin,
        "/usher/admin/sessions?limit=25&sort=user&order=asc",
    )
    .await;
    assert!(html.contains("Showing 1–3 of 3"), "{html}");
    let (_, html) = page(
        &app,
        &admin,
        "/usher/admin/sessions?limit=25&offset=1&sort=user&order=asc",
    )
    .await;
    assert!(html.contains("Showing 2–3 of 3"));
    assert!(html.contains("Previous"));
    let (_, html) = page(&app, &admin, "/usher/admin/sessions?user=bob&ip=&q=").await;
    assert!(html.contains("of 2"), "blank fields are ignored: {html}");
    assert!(html.contains("Anonymous") || html.contains("bob"));
    let (s, html) = page(&app, &admin, "/usher/admin/sessions?sort=banana").await;
    assert_eq!(s, 200);
    assert!(html.contains("sort:"), "the mistake is named: {html}");
}

#[tokio::test]
async fn ending_sessions_needs_the_token_and_a_confirmation() {
    let (app, admin) = setup().await;
    let b1 = app.login("bob", "bob-password-1").await;
    let b2 = app.login("bob", "bob-password-1").await;
    let (_, html) = page(&app, &admin, "/usher/admin/sessions?user=bob").await;
    let csrf = hidden_field(&html, "csrf").unwrap();
    let bob = Username::parse("bob").unwrap();
    let ids: Vec<String> = app
        .store
        .sessions_of_user(&bob)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    let post = |form: Vec<(&str, String)>| {
        client()
            .post(app.url("/usher/admin/sessions/end"))
            .header("cookie", &admin)
            .form(&form)
            .send()
    };
    // Forged: no token, or the wrong one.
    assert_eq!(
        post(vec![("id", ids[0].clone()), ("confirmed", "yes".into())])
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(vec![
            ("csrf", "x".into()),
            ("id", ids[0].clone()),
            ("confirmed", "yes".into())
        ])
        .await
        .unwrap()
        .status(),
        403
    );
    // The first POST asks; only the confirmed one acts.
    let r = post(vec![
        ("csrf", csrf.clone()),
        ("what", "selected".into()),
        ("id", ids[0].clone()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("End 1 session(s)?"));
    assert_eq!(
        app.state.engine.sessions_of(&bob).len(),
        2,
        "nothing ended yet"
    );
    let r = post(vec![
        ("csrf", csrf.clone()),
        ("what", "selected".into()),
        ("id", ids[0].clone()),
        ("confirmed", "yes".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(app.state.engine.sessions_of(&bob).len(), 1);
    // Every session matching a filter.
    let r = post(vec![
        ("csrf", csrf.clone()),
        ("what", "matching".into()),
        ("f_user", "bob".into()),
    ])
    .await
    .unwrap();
    assert!(r.text().await.unwrap().contains("End 1 session(s)?"));
    let r = post(vec![
        ("csrf", csrf.clone()),
        ("what", "matching".into()),
        ("f_user", "bob".into()),
        ("confirmed", "yes".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    for cookie in [&b1, &b2] {
        assert_eq!(usher_testkit::status(&app.url("/"), cookie).await, 401);
    }
    let r = post(vec![("csrf", csrf), ("what", "matching".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no filter, no mass end");
    assert_eq!(
        usher_testkit::status(&app.url("/"), &admin).await,
        200,
        "the admin's own session stayed"
    );
}

#[tokio::test]
async fn users_see_and_end_their_own_other_sessions() {
    let (app, _admin) = setup().await;
    let laptop = app.login("bob", "bob-password-1").await;
    let phone = app.login("bob", "bob-password-1").await;
    let root = app.login("root", "root-password").await;
    let (s, html) = page(&app, &phone, "/usher/me").await;
    assert_eq!(s, 200);
    assert!(html.contains("(this one)"));
    assert_eq!(
        html.matches("<code>").count(),
        2,
        "bob's two sessions, not root's"
    );
    let csrf = hidden_field(&html, "csrf").unwrap();
    let bob = Username::parse("bob").unwrap();
    let root_sid = app
        .store
        .sessions_of_user(&Username::parse("root").unwrap())
        .await
        .unwrap()[0]
        .id;
    let post = |form: Vec<(&'static str, String)>| {
        client()
            .post(app.url("/usher/me/end"))
            .header("cookie", &phone)
            .form(&form)
            .send()
    };
    assert_eq!(
        post(vec![("id", root_sid.to_string())])
            .await
            .unwrap()
            .status(),
        403,
        "no token"
    );
    let r = post(vec![("csrf", csrf.clone()), ("id", root_sid.to_string())])
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "not one of bob's");
    assert_eq!(usher_testkit::status(&app.url("/"), &root).await, 200);
    let r = post(vec![("csrf", csrf.clone()), ("others", "yes".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        usher_testkit::status(&app.url("/"), &laptop).await,
        401,
        "the other one ended"
    );
    assert_eq!(
        usher_testkit::status(&app.url("/"), &phone).await,
        200,
        "this one stays"
    );
    assert_eq!(app.state.engine.sessions_of(&bob).len(), 1);
    let r = client()
        .get(app.url("/usher/me"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "strangers sign in first");
}

#[tokio::test]
async fn the_console_script_is_served_from_usher_itself() {
    let (app, admin) = setup().await;
    let (_, html) = page(&app, &admin, "/usher/admin/sessions").await;
    assert!(html.contains("<script src=\"/usher/static/console.js\"></script>"));
    assert!(!html.contains("src=\"http"), "no script from elsewhere");
    assert!(
        !html.contains("href=\"http"),
        "no stylesheet or link to elsewhere"
    );
    let r = client()
        .get(app.url("/usher/static/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let js = r.text().await.unwrap();
    assert!(js.contains("live-toggle") && js.contains("select-all"));
}

#[tokio::test]
async fn the_user_page_acts_on_a_user() {
    let (app, admin) = setup().await;
    let bob_cookie = app.login("bob", "bob-password-1").await;
    let (s, html) = page(&app, &admin, "/usher/admin/users/bob").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("Make admin") && html.contains("login"),
        "{html}"
    );
    let csrf = hidden_field(&html, "csrf").unwrap();
    let act = |form: Vec<(&'static str, String)>| {
        client()
            .post(app.url("/usher/admin/users/bob"))
            .header("cookie", &admin)
            .form(&form)
            .send()
    };
    assert_eq!(
        act(vec![("action", "disable".into())])
            .await
            .unwrap()
            .status(),
        403,
        "no token"
    );
    let r = act(vec![
        ("csrf", csrf.clone()),
        ("action", "end_sessions".into()),
    ])
    .await
    .unwrap();
    assert!(r.text().await.unwrap().contains("Ended 1 session(s)."));
    assert_eq!(usher_testkit::status(&app.url("/"), &bob_cookie).await, 401);
    let r = act(vec![
        ("csrf", csrf.clone()),
        ("action", "grant_admin".into()),
    ])
    .await
    .unwrap();
    assert!(r.text().await.unwrap().contains("Now an administrator."));
    let bob = app
        .store
        .user_get(&Username::parse("bob").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(bob.is_admin());
    let r = act(vec![
        ("csrf", csrf.clone()),
        ("action", "password".into()),
        ("new_password", "bobs-new-password".into()),
    ])
    .await
    .unwrap();
    assert!(r.text().await.unwrap().contains("Password changed."));
    app.login("bob", "bobs-new-password").await;
    let r = act(vec![
        ("csrf", csrf.clone()),
        ("action", "password".into()),
        ("new_password", "short".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "too short, said clearly");
    let r = act(vec![("csrf", csrf.clone()), ("action", "disable".into())])
        .await
        .unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Disabled; ended 1 session(s).")
    );
    let r = act(vec![("csrf", csrf.clone()), ("action", "launch".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .post(app.url("/usher/admin/users/root"))
        .header("cookie", &admin)
        .form(&[("csrf", csrf.as_str()), ("action", "disable")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "not yourself");
    assert_eq!(page(&app, &admin, "/usher/admin/users/nobody").await.0, 404);
}

#[tokio::test]
async fn the_dashboard_draws_the_last_day() {
    let (app, admin) = setup().await;
    let (_, html) = page(&app, &admin, "/usher/admin/").await;
    assert!(
        html.contains("collecting: a point a minute"),
        "no points yet"
    );
    app.state.engine.sample_timeline();
    for _ in 0..4 {
        usher_testkit::status(&app.url("/"), &admin).await;
    }
    app.state.engine.sample_timeline();
    let (_, html) = page(&app, &admin, "/usher/admin/").await;
    assert_eq!(html.matches("<polyline").count(), 2, "{html}");
    assert!(
        html.contains("Requests per minute · last 24 hours · peak 4"),
        "{html}"
    );
    assert!(html.contains("Active sessions · last 24 hours · peak 1"));
    assert!(html.contains("<b>1</b> users signed in"));
}

#[tokio::test]
async fn the_history_page_filters_pages_with_a_cursor_and_exports_csv() {
    let (app, admin) = setup().await;
    // 130 failed logins of bob from two networks, one with a hostile User-Agent.
    for i in 0..130u32 {
        let mut e = usher_core::Event::new(
            usher_core::Timestamp::from_second(1_800_000_000 + i64::from(i)).unwrap(),
            usher_core::EventKind::LoginFailed,
        );
        e.user = Some("bob".into());
        e.ip = Some(
            if i % 2 == 0 { "10.1.2.3" } else { "192.0.2.9" }
                .parse()
                .unwrap(),
        );
        e.user_agent = Some("<script>alert(1)</script>".into());
        app.store.event_record(&e).await.unwrap();
    }
    let (s, html) = page(
        &app,
        &admin,
        "/usher/admin/history?user=bob&event=login_failed&ip=10.0.0.0%2F8&from=&to=",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        html.matches("<td>10.1.2.3</td>").count(),
        65,
        "65 from 10/8, none else"
    );
    assert!(!html.contains("192.0.2.9"));
    assert!(!html.contains("<script>alert"), "escaped");
    assert!(!html.contains("Older"), "one page holds them");
    // Pages of 100 with a cursor; events recorded meanwhile do not shift them.
    let (_, first) = page(&app, &admin, "/usher/admin/history?user=bob").await;
    assert_eq!(first.matches("<td>login_failed</td>").count(), 100);
    let older = first
        .split("href=\"/usher/admin/history?")
        .filter_map(|s| s.split('"').next())
        .find(|q| q.contains("cursor="))
        .expect("an Older link")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    app.add_user("carol", "carol-password", false).await;
    let (_, second) = page(&app, &admin, &format!("/usher/admin/history?{older}")).await;
    assert_eq!(second.matches("<td>login_failed</td>").count(), 30);
    assert!(second.contains("Newest"));
    // CSV: every matching event, formula-safe.
    let r = client()
        .get(app.url("/usher/admin/history?user=bob&event=login_failed&format=csv"))
        .header("cookie", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 131, "header + 130");
    assert!(csv.starts_with("time,event,user,session,ip,user_agent,actor,detail"));
    // A bad filter says what is wrong, on the page.
    let (s, html) = page(&app, &admin, "/usher/admin/history?ip=10.0.0.0%2F99").await;
    assert_eq!(s, 400);
    assert!(html.contains("ip: an IP address or a CIDR range"), "{html}");
    let (s, _) = page(&app, &admin, "/usher/admin/history?bogus=1").await;
    assert_eq!(s, 400);
    // The user page links to all of it.
    let (_, user_page) = page(&app, &admin, "/usher/admin/users/bob").await;
    assert!(user_page.contains("/usher/admin/history?user=bob"));
}

#[tokio::test]
async fn the_inactive_report_disables_the_selected_users_after_confirming() {
    let (app, admin) = setup().await;
    app.add_user("carol", "carol-password", false).await;
    app.add_user("dave", "dave-password", false).await;
    let bob = app.login("bob", "bob-password-1").await;
    // root and bob signed in today: a date in the past lists only those who never
    // signed in (carol, dave); a date in the future lists everyone.
    let (s, html) = page(
        &app,
        &admin,
        "/usher/admin/reports/inactive?since=2000-01-01",
    )
    .await;
    assert_eq!(s, 200);
    assert!(html.contains(">carol<") && html.contains(">dave<"));
    assert!(!html.contains(">bob<"), "bob signed in since");
    let (_, html) = page(
        &app,
        &admin,
        "/usher/admin/reports/inactive?since=2999-01-01",
    )
    .await;
    assert!(html.contains(">bob<"));
    assert!(html.contains("127.0.0.1"), "bob's last login IP");
    let (s, html) = page(
        &app,
        &admin,
        "/usher/admin/reports/inactive?since=yesterday",
    )
    .await;
    assert_eq!(s, 400);
    assert!(html.contains("since: a date"), "{html}");
    let (_, html) = page(
        &app,
        &admin,
        "/usher/admin/reports/inactive?since=2999-01-01",
    )
    .await;
    let csrf = hidden_field(&html, "csrf").unwrap();
    let post = |form: Vec<(&str, &str)>| {
        client()
            .post(app.url("/usher/admin/reports/inactive"))
            .header("cookie", &admin)
            .form(&form)
            .send()
    };
    assert_eq!(
        post(vec![("user", "bob"), ("confirmed", "yes")])
            .await
            .unwrap()
            .status(),
        403,
        "no token"
    );
    let ask = post(vec![
        ("csrf", &csrf),
        ("since", "2999-01-01"),
        ("user", "bob"),
        ("user", "carol"),
    ])
    .await
    .unwrap();
    assert_eq!(ask.status(), 200);
    assert!(ask.text().await.unwrap().contains("Disable 2 user(s)?"));
    assert_eq!(
        usher_testkit::status(&app.url("/"), &bob).await,
        200,
        "not yet"
    );
    let done = post(vec![
        ("csrf", &csrf),
        ("since", "2999-01-01"),
        ("user", "bob"),
        ("user", "carol"),
        ("confirmed", "yes"),
    ])
    .await
    .unwrap();
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Disabled 2 user(s); ended 1 session(s).")
    );
    assert_ne!(
        usher_testkit::status(&app.url("/"), &bob).await,
        200,
        "bob is out"
    );
    let users = app.store.user_list().await.unwrap();
    let disabled: Vec<&str> = users
        .iter()
        .filter(|u| u.disabled)
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(disabled, ["bob", "carol"]);
    let me = post(vec![
        ("csrf", &csrf),
        ("user", "root"),
        ("confirmed", "yes"),
    ])
    .await
    .unwrap();
    assert_eq!(me.status(), 400, "never yourself");
}
