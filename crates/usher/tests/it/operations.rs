//! What an operator relies on: metrics that move, an access log that names sessions and
//! cannot be forged, a separate metrics address, a shutdown that finishes what it started.

use std::time::Duration;
use usher_gateway::AccessLogTarget;
use usher_testkit::upstream::{stream_begun, stream_rest};
use usher_testkit::{Options, TestApp, Upstream, client};

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(url: &str) -> String {
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    r.text().await.unwrap()
}

#[tokio::test]
async fn metrics_move_with_logins_requests_and_ends() {
    let app = TestApp::spawn().await;
    app.add_user("alice", "alice-password", false).await;
    let before = scrape(&app.url("/usher/metrics")).await;
    assert!(
        before.contains("# TYPE usher_session_check_duration_seconds histogram"),
        "{before}"
    );
    let cookie = app.login("alice", "alice-password").await;
    let _ = app.try_login("alice", "wrong-password", "/").await;
    for _ in 0..3 {
        client()
            .get(app.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
    }
    client().get(app.url("/")).send().await.unwrap();
    app.flush().await;
    let m = scrape(&app.url("/usher/metrics")).await;
    assert_eq!(
        metric(&m, "usher_logins_total{result=\"success\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "usher_logins_total{result=\"failure\"}"), 1.0);
    assert_eq!(metric(&m, "usher_requests_total{outcome=\"allowed\"}"), 3.0);
    assert_eq!(metric(&m, "usher_requests_total{outcome=\"denied\"}"), 1.0);
    assert_eq!(
        metric(
            &m,
            "usher_sessions_active{type=\"web\",authenticated=\"true\"}"
        ),
        1.0
    );
    assert!(metric(&m, "usher_session_check_duration_seconds_count") >= 4.0);
    assert!(metric(&m, "usher_flush_batch_size_count") >= 1.0);
    assert_eq!(app.logout(&cookie).await, 303);
    let m = scrape(&app.url("/usher/metrics")).await;
    assert_eq!(
        metric(&m, "usher_sessions_ended_total{reason=\"logout\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "usher_sessions_active{type=\"web\",authenticated=\"true\"}"
        ),
        0.0
    );
    // Scraping is not a session.
    assert!(app.store.sessions_live().await.unwrap().is_empty());
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut options = Options::default();
    options.gateway.metrics_listen = Some(port);
    let app = TestApp::spawn_with(options).await;
    assert_eq!(
        client()
            .get(app.url("/usher/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let m = scrape(&format!("http://{port}/metrics")).await;
    assert!(m.contains("usher_store_errors_total"), "{m}");
}

async fn read_until(path: &std::path::Path, lines: usize) -> String {
    for _ in 0..300 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the access log never got {lines} lines: {:?}",
        std::fs::read_to_string(path)
    );
}

/// A server logging access to a file, and alice signed in to it: the log's directory
/// (kept alive), its path, the server, alice's cookie.
async fn logging_with_alice() -> (tempfile::TempDir, std::path::PathBuf, TestApp, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut options = Options::default();
    options.gateway.access_log = AccessLogTarget::File(path.clone());
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    (dir, path, app, cookie)
}

#[tokio::test]
async fn the_access_log_names_the_session_and_cannot_be_forged() {
    let (_dir, path, app, cookie) = logging_with_alice().await;
    let token = cookie.split_once('=').unwrap().1.to_owned();
    let evil = "Mozilla/5.0 \"quoted\"\r\n127.0.0.1 - admin [x] \"GET /forged\" 200\u{1b}[31m";
    let r = client()
        .get(app.url("/report?q=1"))
        .header("cookie", &cookie)
        .header(
            "user-agent",
            reqwest::header::HeaderValue::from_bytes(evil.as_bytes())
                .unwrap_or(reqwest::header::HeaderValue::from_static("x")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sid = app.store.sessions_live().await.unwrap()[0].id;
    // GET form + POST login + GET /report
    let text = read_until(&path, 3).await;
    assert!(!text.contains(&token), "the token is never logged");
    let line = text.lines().find(|l| l.contains("/report?q=1")).unwrap();
    assert!(line.starts_with("127.0.0.1 - alice ["), "{line}");
    assert!(line.contains("\"GET /report?q=1 HTTP/1.1\" 200 "), "{line}");
    assert!(
        line.contains(&format!(" {sid} ")),
        "the public session id: {line}"
    );
    assert!(line.ends_with("ms"), "{line}");
    assert!(
        !text.lines().any(|l| l.starts_with("127.0.0.1 - admin")),
        "no forged line"
    );
    assert!(!text.contains('\u{1b}'));
    let login = text
        .lines()
        .find(|l| l.contains("\"POST /usher/login"))
        .unwrap();
    assert!(
        login.contains(" 303 ") && login.contains(&format!(" {sid} ")),
        "{login}"
    );
}

/// The forward-auth endpoints are answered ahead of the router (issue 9); they are
/// logged all the same, with the user and session they answered for.
#[tokio::test]
async fn forward_auth_answers_are_logged_too() {
    let (_dir, path, app, cookie) = logging_with_alice().await;
    let sid = app.store.sessions_live().await.unwrap()[0].id;
    for endpoint in ["/usher/auth/request", "/usher/auth/forward"] {
        let status = usher_testkit::status(&app.url(endpoint), &cookie).await;
        assert_eq!(status, 200, "{endpoint}");
    }
    let anonymous = client().get(app.url("/usher/auth/request")).send().await;
    assert_eq!(anonymous.unwrap().status(), 401);
    // GET form + POST login + three forward-auth answers
    let text = read_until(&path, 5).await;
    for endpoint in ["/usher/auth/request", "/usher/auth/forward"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("\"GET {endpoint} HTTP/1.1\" 200 ")))
            .unwrap_or_else(|| panic!("no line for {endpoint}: {text}"));
        assert!(line.starts_with("127.0.0.1 - alice ["), "{line}");
        assert!(line.contains(&format!(" {sid} ")), "{line}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("\"GET /usher/auth/request HTTP/1.1\" 401 ") && l.contains(" - ")),
        "{text}"
    );
}

#[tokio::test]
async fn the_access_log_can_be_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.json");
    let mut options = Options::default();
    options.gateway.access_log = AccessLogTarget::File(path.clone());
    options.gateway.access_log_json = true;
    let app = TestApp::spawn_with(options).await;
    client()
        .get(app.url("/x"))
        .header("user-agent", "curl/8 \"q\"")
        .send()
        .await
        .unwrap();
    let text = read_until(&path, 1).await;
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(v["uri"], "/x");
    assert_eq!(v["status"], 401);
    assert_eq!(v["user_agent"], "curl/8 \"q\"");
    assert_eq!(v["session"], serde_json::Value::Null);
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let upstream = Upstream::spawn().await;
    let mut options = Options::default();
    options.gateway.upstream = Some(upstream.uri());
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    let mut r = stream_begun(&app.url("/stream"), &cookie).await;
    let store = app.store.clone();
    let stopping = tokio::spawn(app.stop());
    // New connections are refused while the old request is still being answered.
    tokio::task::yield_now().await;
    upstream.release.notify_one();
    assert_eq!(stream_rest(&mut r).await, b"second");
    stopping.await.unwrap();
    // And its count was written before the exit.
    let s = &store
        .sessions_of_user(&usher_core::Username::parse("alice").unwrap())
        .await
        .unwrap()[0];
    assert_eq!(s.requests, 1);
}

/// Slowloris (SECURITY REL-21, C22): a connection that does not finish a request head
/// within `server.header_read_timeout` is closed — whether it sent half a head or sat
/// idle after an answer — while a slow *answer* (a stream from the app) is never cut,
/// and a client that keeps asking keeps its connection.
#[tokio::test]
async fn connections_slow_to_send_a_head_are_closed_and_slow_answers_are_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::spawn().await;
    let mut options = Options::default();
    options.gateway.upstream = Some(upstream.uri());
    options.gateway.header_read_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;

    /// Seconds until the server closes `s` (reads what it sends until then).
    async fn closed_after(s: &mut tokio::net::TcpStream) -> f64 {
        let started = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return started.elapsed().as_secs_f64(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("the connection was still open after 10 s"),
            }
        }
    }

    // Half a head, then silence.
    let mut half = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /usher/healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let waited = closed_after(&mut half).await;
    assert!((0.8..=2.0).contains(&waited), "closed after {waited:.2} s");

    // A whole request answered, then idle on a kept-alive connection.
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /usher/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let waited = closed_after(&mut idle).await;
    assert!(
        (0.8..=2.0).contains(&waited),
        "idle closed after {waited:.2} s"
    );

    // A client asking every 300 ms for 3 s keeps its one connection.
    let mut busy = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..10 {
        busy.write_all(b"GET /usher/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = busy.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "answered on the same connection"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // An answer the app streams slowly — 2.5 s between its chunks — arrives whole.
    let mut r = stream_begun(&app.url("/stream"), &cookie).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    upstream.release.notify_one();
    assert_eq!(stream_rest(&mut r).await, b"second");
    println!("REL-21 header_timeout_s=1 half_head_closed=1 idle_closed=1 slow_answer_cut=0");
}
