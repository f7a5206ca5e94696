//! Usher as the forward-auth service of the real nginx and Caddy from Debian, with the
//! example configurations shipped in `docs/proxies/`.

use std::time::{Duration, Instant};
use usher_core::Username;
use usher_testkit::proxies::{self, FrontProxy};
use usher_testkit::upstream::header_values;
use usher_testkit::{TestApp, Upstream, hidden_field, session_cookie, set_cookie_named};

/// The whole story through one proxy: refused, sent to log in, let in with Usher's
/// identity (never the client's), logged out, and refused again once disabled.
async fn story(front: &FrontProxy, app: &TestApp) {
    let base = format!("http://app.example.com:{}", front.port);
    let c = proxies::client_for(front);

    // 1. A stranger is sent to the login page, which remembers where they were going.
    let r = c
        .get(format!("{base}/reports?q=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", front.log());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/usher/login?rd="), "{location}");
    assert!(r.headers().get("x-upstream").is_none());
    let login_url = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };

    // 2. The login page is served through the proxy, and sends them back.
    let form = c.get(&login_url).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let login_cookie = set_cookie_named(&form, "usher_login").unwrap();
    let html = form.text().await.unwrap();
    let csrf = hidden_field(&html, "csrf").unwrap();
    let rd = hidden_field(&html, "rd").unwrap();
    assert_eq!(rd, format!("{base}/reports?q=1"));
    let r = c
        .post(format!("{base}/usher/login"))
        .header("cookie", &login_cookie)
        .header("origin", &base)
        .form(&[
            ("username", "alice"),
            ("password", "alice-password"),
            ("rd", &rd),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"].to_str().unwrap(), rd);
    let cookie = session_cookie(&r, "usher_session").unwrap();

    // 3. The app sees Usher's identity, never the client's forgeries.
    let echo: serde_json::Value = c
        .get(format!("{base}/reports?q=1"))
        .header("cookie", &cookie)
        .header("Remote-User", "mallory")
        .header("Remote_User", "mallory")
        .header("REMOTE-GROUPS", "admins")
        .header("X-Usher-Session", "aaaaaaaaaaaa")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["path"], "/reports?q=1");
    assert_eq!(header_values(&echo, "remote-user"), ["alice"], "{echo}");
    assert_eq!(header_values(&echo, "remote-groups"), ["staff"]);
    assert!(header_values(&echo, "remote_user").is_empty(), "{echo}");
    let session = app.store.sessions_live().await.unwrap()[0].id;
    assert_eq!(header_values(&echo, "x-usher-session"), [session.as_str()]);

    // 4. Logging out through the proxy ends it there too.
    let page = c
        .get(format!("{base}/usher/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csrf = hidden_field(&page.text().await.unwrap(), "csrf").unwrap();
    let r = c
        .post(format!("{base}/usher/logout"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = c
        .get(format!("{base}/reports"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "the old cookie is refused through the proxy"
    );

    // 5. A session ended elsewhere (an admin disabling the user) is refused next time.
    let fresh = app.login("alice", "alice-password").await;
    let r = c
        .get(format!("{base}/"))
        .header("cookie", &fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.accounts()
        .set_disabled(&Username::parse("alice").unwrap(), true, "root")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let r = c
            .get(format!("{base}/"))
            .header("cookie", &fresh)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        if r.status() == 302 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still let in after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn usher_and_app() -> (TestApp, Upstream) {
    let upstream = Upstream::spawn().await;
    let app = TestApp::spawn().await;
    let accounts = app.accounts();
    let mut alice = accounts
        .create(
            Username::parse("alice").unwrap(),
            Some("alice-password"),
            false,
            "test",
        )
        .await
        .unwrap();
    alice.groups = vec![usher_core::Group::parse("staff").unwrap()];
    app.store
        .user_update(&alice, "test", alice.created_at)
        .await
        .unwrap();
    (app, upstream)
}

#[tokio::test]
async fn behind_nginx_auth_request() {
    let (app, upstream) = usher_and_app().await;
    let front = proxies::nginx(&proxies::example("nginx.conf", app.addr, upstream.addr));
    story(&front, &app).await;
}

/// A visitor of a public path through nginx: nginx hands on Usher's anonymous cookie,
/// and the visit after is an anonymous session the app sees by its id.
#[tokio::test]
async fn an_anonymous_visitor_through_nginx() {
    let (app, upstream) = usher_and_app().await;
    let front = proxies::nginx(&proxies::example("nginx.conf", app.addr, upstream.addr));
    let base = format!("http://app.example.com:{}", front.port);
    let c = proxies::client_for(&front);
    let r = c.get(format!("{base}/favicon.ico")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", front.log());
    let cookie = session_cookie(&r, "usher_session").expect("nginx passes the cookie on");
    let echo: serde_json::Value = r.json().await.unwrap();
    // (nginx sends no header at all for an empty value.)
    assert_eq!(header_values(&echo, "x-usher-session").concat(), "");
    let echo: serde_json::Value = c
        .get(format!("{base}/favicon.ico"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let live = app
        .state
        .engine
        .list(&usher_core::SessionQuery::default())
        .1;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].user, None);
    assert_eq!(
        header_values(&echo, "x-usher-session"),
        [live[0].id.as_str()]
    );
    assert_eq!(header_values(&echo, "remote-user").concat(), "");
    let r = c
        .get(format!("{base}/reports"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "anonymous is not signed in");
}

#[tokio::test]
async fn behind_caddy_forward_auth() {
    let (app, upstream) = usher_and_app().await;
    let front = proxies::caddy(&proxies::example("Caddyfile", app.addr, upstream.addr));
    story(&front, &app).await;
}
