//! The forward-auth contract, straight against Usher (the proxies' own tests are in
//! `proxies.rs`): what nginx, Traefik and Caddy send, and what they must get back.

use usher_core::Username;
use usher_core::client_ip::TrustedProxies;
use usher_testkit::{Options, TestApp, client};

const IDENTITY: [&str; 5] = [
    "remote-user",
    "remote-groups",
    "remote-name",
    "remote-email",
    "x-usher-session",
];

fn query_param(location: &str, key: &str) -> Option<String> {
    let q = location.split_once('?')?.1;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn app_with_alice() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", true).await;
    let cookie = app.login("alice", "alice-password").await;
    (app, cookie)
}

#[tokio::test]
async fn nginx_auth_request_answers_200_with_identity_or_401_with_the_login_url() {
    let (app, cookie) = app_with_alice().await;
    let ask = |cookie: Option<&str>| {
        let mut r = client()
            .get(app.url("/usher/auth/request"))
            .header("x-original-url", "http://app.example.com/reports/q3?x=1")
            .header("x-original-method", "GET")
            .header("x-forwarded-for", "203.0.113.9");
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let ok = ask(Some(&cookie)).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["remote-user"], "alice");
    assert_eq!(ok.headers()["remote-groups"], "admins");
    let sid = ok.headers()["x-usher-session"].to_str().unwrap().to_owned();
    assert_eq!(sid.len(), 12);

    let no = ask(None).await.unwrap();
    assert_eq!(no.status(), 401);
    let location = no.headers()["location"].to_str().unwrap().to_owned();
    // Absolute: nginx's error_page would serve a bare path internally instead.
    assert!(
        location.starts_with("http://app.example.com/usher/login?"),
        "{location}"
    );
    assert_eq!(
        query_param(&location, "rd").as_deref(),
        Some("http://app.example.com/reports/q3?x=1")
    );
    assert_eq!(query_param(&location, "rm").as_deref(), Some("GET"));
    for h in IDENTITY {
        assert_eq!(no.headers()[h], "", "{h} is sent, empty");
    }

    // Counted on the session, with where it was used.
    app.flush().await;
    let s = &app
        .store
        .sessions_of_user(&Username::parse("alice").unwrap())
        .await
        .unwrap()[0];
    assert_eq!(s.requests, 1);
    assert_eq!(s.host, "app.example.com");
    assert_eq!(s.ip.to_string(), "203.0.113.9");
}

#[tokio::test]
async fn traefik_and_caddy_forward_auth_redirects_browsers_and_refuses_scripts() {
    let (app, cookie) = app_with_alice().await;
    let ask = |method: &str, accept: &str, xhr: bool, cookie: Option<&str>| {
        let mut r = client()
            .get(app.url("/usher/auth/forward"))
            .header("x-forwarded-method", method)
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-uri", "/orders/7?tab=lines")
            .header("x-forwarded-for", "198.51.100.4")
            .header("accept", accept);
        if xhr {
            r = r.header("x-requested-with", "XMLHttpRequest");
        }
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let html = "text/html,application/xhtml+xml";
    let r = ask("GET", html, false, Some(&cookie)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "alice");

    let r = ask("GET", html, false, None).await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        query_param(&location, "rd").as_deref(),
        Some("http://app.example.com/orders/7?tab=lines")
    );
    assert_eq!(query_param(&location, "rm").as_deref(), Some("GET"));
    for h in IDENTITY {
        assert_eq!(r.headers()[h], "");
    }
    let r = ask("HEAD", html, false, None).await.unwrap();
    assert_eq!(r.status(), 302);
    let r = ask("POST", html, false, None).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        query_param(r.headers()["location"].to_str().unwrap(), "rm").as_deref(),
        Some("POST")
    );
    let r = ask("GET", html, true, None).await.unwrap();
    assert_eq!(r.status(), 401, "XHR");
    let r = ask("GET", "application/json", false, None).await.unwrap();
    assert_eq!(r.status(), 401, "API client");

    // The login page takes the absolute rd back to the app's host it came from.
    let login = usher_testkit::browser_login(
        &app.base,
        "alice",
        "alice-password",
        "http://app.example.com/orders/7?tab=lines",
        None,
    )
    .await;
    assert_eq!(login.status(), 303);
    assert_eq!(
        login.headers()["location"],
        "/",
        "another host is not ours unless allowed"
    );
}

#[tokio::test]
async fn redirect_back_to_an_allowed_app_host_works_with_a_separate_login_host() {
    let mut options = Options::default();
    options.gateway.allowed_redirects = vec!["app.example.com".into()];
    options.gateway.login_url = Some("https://auth.example.com/usher/login".into());
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", false).await;
    let r = client()
        .get(app.url("/usher/auth/forward"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", "/")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(
            "https://auth.example.com/usher/login?rd=https%3A%2F%2Fapp.example.com%2F"
        ),
        "{location}"
    );
    let login = usher_testkit::browser_login(
        &app.base,
        "alice",
        "alice-password",
        "http://app.example.com/x",
        None,
    )
    .await;
    assert_eq!(login.headers()["location"], "http://app.example.com/x");
    let login = usher_testkit::browser_login(
        &app.base,
        "alice",
        "alice-password",
        "http://evil.example/x",
        None,
    )
    .await;
    assert_eq!(login.headers()["location"], "/");
}

#[tokio::test]
async fn describing_headers_from_an_untrusted_peer_are_ignored() {
    let mut options = Options::default();
    options.gateway.trusted = TrustedProxies::new(vec![]);
    let app = TestApp::spawn_with(options).await;
    let r = client()
        .get(app.url("/usher/auth/request"))
        .header("x-original-url", "http://app.example.com/public")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let location = r.headers()["location"].to_str().unwrap();
    assert_eq!(
        query_param(location, "rd"),
        None,
        "an untrusted description is not repeated"
    );
}

#[tokio::test]
async fn malformed_descriptions_fail_closed_and_never_5xx() {
    let (app, cookie) = app_with_alice().await;
    // Past Usher's 8 KiB limit for a described URL, with the four copies still inside
    // the 64 KiB request head (a bigger head is refused earlier, with 431).
    let long = format!("http://app.example.com/{}", "a".repeat(12 * 1024));
    let urls = [
        "app.example.com/no-scheme",
        "http://app.example.com/%zz",
        "http://user:pw@app.example.com/",
        "http://app.example.com/#/admin",
        "http://app.example.com/%23/admin",
        "javascript:alert(1)",
        "http://[::1/",
        "http://app.example.com:65536/",
        " ",
        long.as_str(),
    ];
    let mut cases = 0;
    for endpoint in ["/usher/auth/request", "/usher/auth/forward"] {
        for u in urls {
            for with_cookie in [false, true] {
                let mut r = client()
                    .get(app.url(endpoint))
                    .header("x-original-url", u)
                    .header("x-forwarded-uri", u)
                    .header("x-forwarded-host", u)
                    .header("x-forwarded-proto", u)
                    .header("x-original-method", "G E T")
                    .header("x-forwarded-method", "G\tET")
                    .header("accept", "text/html");
                if with_cookie {
                    r = r.header("cookie", &cookie);
                }
                // Every case must reach the server: a case the client cannot send
                // would test nothing.
                let r = r.send().await.unwrap();
                cases += 1;
                let s = r.status().as_u16();
                assert!(s < 500, "{endpoint} {u:.40}: {s}");
                if !with_cookie {
                    assert!(
                        !(200..300).contains(&s),
                        "{endpoint} {u:.40}: {s} without a session"
                    );
                } else {
                    assert_eq!(s, 200, "{endpoint} {u:.40}: a valid session is still valid");
                }
                if let Some(l) = r.headers().get("location") {
                    let rd = query_param(l.to_str().unwrap(), "rd");
                    assert!(
                        rd.as_deref()
                            .is_none_or(|rd| !rd.contains('#') && !rd.contains('@')),
                        "{rd:?}"
                    );
                }
            }
        }
    }
    assert_eq!(cases, 2 * urls.len() * 2, "every malformed case was sent");
}

#[tokio::test]
async fn an_ended_session_is_refused_by_forward_auth() {
    let (app, cookie) = app_with_alice().await;
    let ask = || {
        client()
            .get(app.url("/usher/auth/request"))
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(ask().await.unwrap().status(), 200);
    assert_eq!(app.logout(&cookie).await, 303);
    assert_eq!(ask().await.unwrap().status(), 401);
}

/// The answer's headers are made once per user and copied (issue 9): each of a user's
/// sessions must still get its own session id, every time.
#[tokio::test]
async fn each_of_a_users_sessions_is_named_in_its_own_answers() {
    let (app, first) = app_with_alice().await;
    let second = app.login("alice", "alice-password").await;
    let sid = |cookie: String| {
        let app = &app;
        async move {
            let r = client()
                .get(app.url("/usher/auth/request"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["remote-user"], "alice");
            r.headers()["x-usher-session"].to_str().unwrap().to_owned()
        }
    };
    let (a, b) = (sid(first.clone()).await, sid(second.clone()).await);
    assert_eq!(a.len(), 12);
    assert_eq!(b.len(), 12);
    assert_ne!(a, b, "two sessions, two ids");
    for _ in 0..5 {
        assert_eq!(sid(first.clone()).await, a);
        assert_eq!(sid(second.clone()).await, b);
    }
}

/// Forward auth decides most requests before their future is first polled (the session
/// in memory), and the rest — a session only in the store, made by another node — the
/// long way. Either way each request is counted once, on the session and in the
/// metrics, and gets the same answer.
#[tokio::test]
async fn forward_auth_counts_each_request_once_from_memory_or_from_the_store() {
    let (app, cookie) = app_with_alice().await;
    let root = app.url("");
    let allowed = || usher_testkit::metric(&root, "usher_requests_total{outcome=\"allowed\"}");
    let checks = || usher_testkit::metric(&root, "usher_session_check_duration_seconds_count");
    let (allowed_before, checks_before) = (allowed().await.unwrap(), checks().await.unwrap());
    let ask = |cookie: &str| {
        client()
            .get(app.url("/usher/auth/request"))
            .header("x-original-url", "http://app.example.com/a")
            .header("cookie", cookie)
            .send()
    };
    for _ in 0..3 {
        let r = ask(&cookie).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["remote-user"], "alice");
    }

    // Made in the store behind the server's back, as another node would: not in memory.
    let (made, other) = app.session_in_store_only("alice", "curl/8", "curl").await;
    for _ in 0..2 {
        let r = ask(&other).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-usher-session"], made.to_string());
    }

    assert_eq!(allowed().await.unwrap(), allowed_before + 5.0);
    assert_eq!(checks().await.unwrap(), checks_before + 5.0);
    let sessions = app.sessions_of("alice").await;
    let requests =
        |id: &usher_core::SessionId| sessions.iter().find(|s| s.id == *id).unwrap().requests;
    let mine = sessions.iter().find(|s| s.id != made).unwrap().id;
    assert_eq!(requests(&mine), 3);
    assert_eq!(requests(&made), 2);
}

/// Reads from `s` until `n` whole answers (heads, and bodies by `Content-Length`: no
/// HEAD answer with a length) have come, or the connection ends; gives each as (head,
/// body).
/// An answer head that lets alice through.
#[track_caller]
fn assert_passes_alice(head: &str) {
    assert!(head.contains("\r\nremote-user: alice\r\n"), "{head}");
}

/// Requests the server answered in its fast lane so far.
async fn in_the_lane(app: &TestApp) -> f64 {
    usher_testkit::metric(&app.url(""), "usher_fast_lane_requests_total")
        .await
        .expect("usher_fast_lane_requests_total")
}

async fn answers(s: &mut tokio::net::TcpStream, n: usize) -> Vec<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.parse().unwrap());
            let whole = end + 4 + length;
            if buf.len() >= whole {
                out.push((head, buf[end + 4..whole].to_vec()));
                buf.drain(..whole);
                continue;
            }
        }
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        if read == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..read]);
    }
    assert!(
        buf.is_empty(),
        "nothing past the answers: {:?}",
        String::from_utf8_lossy(&buf)
    );
    out
}

/// Forward-auth requests are answered off the socket ahead of hyper (the server's fast
/// lane, issue 9); on one kept-alive connection, requests sent together are answered in
/// order and each counted once; anything the lane does not take — a body, Usher's own
/// page, a head split across writes, a cookie naming no session in memory — is answered
/// as before on the same connection, from the bytes the lane had read; `Connection:
/// close` closes after the answer; a HEAD answer has no body.
#[tokio::test]
async fn forward_auth_on_one_connection_answers_every_request_in_order() {
    use tokio::io::AsyncWriteExt;
    let (app, cookie) = app_with_alice().await;
    let ask = |method: &str, extra: &str| {
        format!(
            "{method} /usher/auth/request HTTP/1.1\r\nHost: usher.test\r\nX-Original-URL: http://app.example.com/a\r\nCookie: {cookie}\r\n{extra}\r\n"
        )
    };
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // Three at once: two GETs and a HEAD.
    let batch = format!("{}{}{}", ask("GET", ""), ask("GET", ""), ask("HEAD", ""));
    s.write_all(batch.as_bytes()).await.unwrap();
    let got = answers(&mut s, 3).await;
    assert_eq!(got.len(), 3);
    for (head, body) in &got {
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_passes_alice(head);
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(body.is_empty());
    }
    assert_eq!(in_the_lane(&app).await, 3.0, "answered in the lane");
    // A head in pieces.
    let one = ask("GET", "");
    let (a, b) = one.split_at(30);
    s.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.write_all(b.as_bytes()).await.unwrap();
    let got = answers(&mut s, 1).await;
    assert_passes_alice(&got[0].0);
    assert_eq!(in_the_lane(&app).await, 4.0);
    // A request with a body, Usher's health page and an unknown cookie, then another
    // GET: the first goes to hyper with what follows it, and all are answered in turn.
    let with_body = ask("POST", "Content-Length: 5\r\n") + "hello";
    let health = "GET /usher/healthz HTTP/1.1\r\nHost: usher.test\r\n\r\n";
    let unknown = "GET /usher/auth/request HTTP/1.1\r\nHost: usher.test\r\nCookie: usher_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\n";
    let batch = format!("{with_body}{health}{unknown}{}", ask("GET", ""));
    s.write_all(batch.as_bytes()).await.unwrap();
    let got = answers(&mut s, 4).await;
    let statuses: Vec<&str> = got.iter().map(|(h, _)| &h[9..12]).collect();
    assert_eq!(statuses, ["200", "200", "401", "200"]);
    assert_passes_alice(&got[0].0);
    assert_eq!(got[1].1, b"ok\n");
    assert!(got[2].0.contains("\r\nremote-user: \r\n"), "{}", got[2].0);
    assert_passes_alice(&got[3].0);
    assert_eq!(in_the_lane(&app).await, 4.0, "all of these were hyper's");

    // `Connection: close`, on a connection of its own: answered, then closed.
    let mut c = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    c.write_all(ask("GET", "Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    let got = answers(&mut c, 2).await;
    assert_eq!(got.len(), 1, "closed after one answer");
    assert_passes_alice(&got[0].0);
    // Said, as hyper says it.
    assert!(
        got[0].0.contains("\r\nconnection: close\r\n"),
        "{}",
        got[0].0
    );

    // A cookie naming no session in memory as a connection's first request: the lane
    // leaves it whole to hyper, which refuses it. A HEAD refusal keeps the length its GET
    // has, and sends no body.
    let mut u = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    u.write_all(unknown.as_bytes()).await.unwrap();
    let got = answers(&mut u, 1).await;
    assert_eq!(&got[0].0[9..12], "401", "{}", got[0].0);
    let length = |head: &str| -> usize {
        head.lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let get_length = length(&got[0].0);
    assert!(get_length > 0 && got[0].1.len() == get_length);
    let head = unknown
        .replacen("GET", "HEAD", 1)
        .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    u.write_all(head.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut u, &mut rest)
        .await
        .unwrap();
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 401 "), "{rest}");
    assert_eq!(length(&rest), get_length);
    assert!(
        rest.ends_with("\r\n\r\n"),
        "no body after a HEAD answer: {rest}"
    );

    // 3 + 1 + 1 (POST) + 1 + 1 counted on the session, once each.
    let sessions = app.sessions_of("alice").await;
    let counted: u64 = sessions.iter().map(|s| s.requests).sum();
    assert_eq!(counted, 7);
}

/// A connection the fast lane keeps alive, idle between requests, is closed as soon as
/// the server shuts down — not left for the drain timeout (lane::Connection's drain).
#[tokio::test]
async fn an_idle_forward_auth_connection_is_closed_at_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut options = Options::default();
    // Neither timeout may be what closes it.
    options.gateway.drain_timeout = std::time::Duration::from_secs(30);
    options.gateway.header_read_timeout = std::time::Duration::from_secs(60);
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", true).await;
    let cookie = app.login("alice", "alice-password").await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let ask =
        format!("GET /usher/auth/request HTTP/1.1\r\nHost: usher.test\r\nCookie: {cookie}\r\n\r\n");
    s.write_all(ask.as_bytes()).await.unwrap();
    let got = answers(&mut s, 1).await;
    assert_passes_alice(&got[0].0);

    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(5), app.stop())
        .await
        .expect("shutdown did not wait for the idle connection");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the connection was closed");
    assert_eq!(read.unwrap(), 0, "nothing more was sent");
}
