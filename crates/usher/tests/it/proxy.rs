//! The reverse proxy in front of a real upstream.

use futures_util::{SinkExt, StreamExt};
use usher_core::client_ip::TrustedProxies;
use usher_core::{Group, Username};
use usher_testkit::upstream::{echo_of, header_values, raw_upstream, stream_begun, stream_rest};
use usher_testkit::{Options, TestApp, Upstream, client};

async fn behind_usher(trusted: bool) -> (TestApp, Upstream) {
    behind_usher_on(trusted, None).await
}

/// `threads`: `server.threads` (serving threads of their own), or the shared runtime.
async fn behind_usher_on(trusted: bool, threads: Option<usize>) -> (TestApp, Upstream) {
    let upstream = Upstream::spawn().await;
    let mut options = Options::default();
    options.gateway.upstream = Some(upstream.uri());
    options.gateway.threads = threads;
    if !trusted {
        options.gateway.trusted = TrustedProxies::new(vec![]);
    }
    let app = TestApp::spawn_with(options).await;
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
    alice.display_name = "Alice Liddell-José".into();
    alice.email = "alice@example.com".into();
    alice.groups = vec![Group::parse("staff").unwrap(), Group::admins()];
    app.store
        .user_update(&alice, "test", alice.created_at)
        .await
        .unwrap();
    (app, upstream)
}

#[tokio::test]
async fn the_upstream_sees_usher_identity_and_never_the_clients_copies() {
    let (app, _up) = behind_usher(false).await;
    let cookie = app.login("alice", "alice-password").await;
    let session = app.store.sessions_live().await.unwrap()[0].id;
    let r = client()
        .get(app.url("/some/path?q=1&r=%2F"))
        .header(
            "cookie",
            reqwest::header::HeaderValue::from_bytes(
                format!("theme=dark; {cookie}; name=José").as_bytes(),
            )
            .unwrap(),
        )
        .header("x-forwarded-prefix", "/admin")
        .header("x_forwarded_port", "443")
        .header("forwarded", "for=6.6.6.6;proto=https")
        .header("x-original-url", "/admin")
        .header("Remote-User", "mallory")
        .header("Remote_User", "mallory")
        .header("REMOTE-GROUPS", "admins")
        .header("remote-name", "Mallory")
        .header("remote-email", "m@evil.example")
        .header("x-usher-session", "aaaaaaaaaaaa")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header(
            "connection",
            "keep-alive, Remote-User, X-Forwarded-For, X-Usher-Session",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "yes");
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/some/path?q=1&r=%2F");
    assert_eq!(header_values(&echo, "remote-user"), ["alice"]);
    assert_eq!(header_values(&echo, "remote-groups"), ["admins,staff"]);
    assert_eq!(header_values(&echo, "remote-name"), ["Alice Liddell-José"]);
    assert_eq!(header_values(&echo, "remote-email"), ["alice@example.com"]);
    assert_eq!(header_values(&echo, "x-usher-session"), [session.as_str()]);
    assert_eq!(header_values(&echo, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(header_values(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_values(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(header_values(&echo, "x-forwarded-host").len(), 1);
    assert_ne!(header_values(&echo, "x-forwarded-host")[0], "evil.example");
    assert!(header_values(&echo, "remote_user").is_empty());
    for spoofed in [
        "x-forwarded-prefix",
        "x_forwarded_port",
        "forwarded",
        "x-original-url",
    ] {
        assert!(
            header_values(&echo, spoofed).is_empty(),
            "{spoofed} reached the upstream"
        );
    }
    assert_eq!(
        header_values(&echo, "cookie"),
        ["theme=dark; name=José"],
        "Usher's credential stays with Usher; the app's cookies pass untouched"
    );
}

#[tokio::test]
async fn a_trusted_proxy_chain_is_extended_and_its_client_believed() {
    let (app, _up) = behind_usher(true).await;
    let cookie = app.login("alice", "alice-password").await;
    let echo = echo_of(
        client()
            .get(app.url("/"))
            .header("cookie", &cookie)
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "http"),
    )
    .await;
    assert_eq!(header_values(&echo, "x-real-ip"), ["203.0.113.7"]);
    assert_eq!(
        header_values(&echo, "x-forwarded-for"),
        ["203.0.113.7, 127.0.0.1"]
    );
    assert_eq!(header_values(&echo, "x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn strangers_never_reach_the_upstream() {
    let (app, _up) = behind_usher(false).await;
    for accept in ["text/html", "application/json"] {
        let r = client()
            .get(app.url("/secret"))
            .header("accept", accept)
            .header("remote-user", "alice")
            .send()
            .await
            .unwrap();
        assert!(r.status() == 302 || r.status() == 401, "{}", r.status());
        assert!(r.headers().get("x-upstream").is_none());
    }
}

#[tokio::test]
async fn response_bodies_stream_through() {
    let (app, up) = behind_usher(false).await;
    let cookie = app.login("alice", "alice-password").await;
    // The upstream holds its second chunk back until we have seen the first.
    let mut r = stream_begun(&app.url("/stream"), &cookie).await;
    up.release.notify_one();
    assert_eq!(stream_rest(&mut r).await, b"second");
}

#[tokio::test]
async fn large_request_bodies_pass_through() {
    let (app, _up) = behind_usher(false).await;
    let cookie = app.login("alice", "alice-password").await;
    let body = vec![7u8; 8 * 1024 * 1024];
    let echo = echo_of(
        client()
            .post(app.url("/upload"))
            .header("cookie", &cookie)
            .body(body),
    )
    .await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 8 * 1024 * 1024);
}

/// Opens a WebSocket through Usher with `cookie` (alice's) and checks the upstream's
/// echo comes back, tagged with the user Usher told it about.
async fn websocket_echoes_through(app: &TestApp, cookie: &str) {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws", app.addr),
    )
    .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send("hello".into()).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "alice:hello");
}

#[tokio::test]
async fn websockets_are_upgraded_through_usher() {
    let (app, _up) = behind_usher(false).await;
    let cookie = app.login("alice", "alice-password").await;
    websocket_echoes_through(&app, &cookie).await;
    // Only WebSocket is tunnelled: an h2c upgrade would let every request inside the
    // tunnel carry its own identity headers past Usher.
    let echo = echo_of(
        client()
            .get(app.url("/h2c"))
            .header("cookie", &cookie)
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "h2c")
            .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    )
    .await;
    assert!(header_values(&echo, "upgrade").is_empty());
    assert!(header_values(&echo, "http2-settings").is_empty());
    // Without a session there is no tunnel.
    let anon = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr)).await;
    assert!(anon.is_err());
}

#[tokio::test]
async fn a_dead_upstream_is_a_clear_502() {
    let upstream_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut options = Options::default();
    options.gateway.upstream = Some(format!("http://{upstream_addr}").parse().unwrap());
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    let r = client()
        .get(app.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("not answering"));
}

/// HEAD over cleartext HTTP/2 (what Caddy or Traefik may speak to Usher): answers made
/// without the router — the gate's, forward auth's — carry their length and no body.
/// hyper drops a HEAD body on HTTP/1 itself, but on HTTP/2 a body is a protocol error.
#[tokio::test]
async fn head_over_cleartext_http2_carries_no_body() {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let app = TestApp::spawn().await;
    let h2: Client<_, String> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for path in [
        "/report",
        "/usher/auth/request",
        "/usher/auth/forward",
        "/usher/login",
    ] {
        let req = http::Request::head(app.url(path))
            .body(String::new())
            .unwrap();
        let resp = h2
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("HEAD {path} over h2c: {e:?}"));
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "HEAD {path}: {status} with a body");
    }
}

/// Upstream connections are kept alive and reused — after a whole body, a HEAD, a 204
/// — and one left half-read by a client that went away is never handed to the next
/// request.
#[tokio::test]
async fn upstream_connections_are_reused_and_a_half_read_one_never_is() {
    let (app, up) = behind_usher(false).await;
    let cookie = app.login("alice", "alice-password").await;
    let c = client();
    for i in 0..30 {
        let req = match i % 3 {
            0 => c.get(app.url("/page")),
            1 => c.head(app.url("/page")),
            _ => c.get(app.url("/empty")),
        };
        let r = req.header("cookie", &cookie).send().await.unwrap();
        assert!(r.status() == 200 || r.status() == 204, "{}", r.status());
        r.bytes().await.unwrap();
    }
    assert_eq!(
        up.connections(),
        1,
        "30 requests one after another, one connection"
    );

    // A client reads the first chunk of a stream and leaves.
    let mut r = c
        .get(app.url("/stream"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(&r.chunk().await.unwrap().unwrap()[..], b"first;");
    drop(r);
    // Usher answers the next request in full, on another connection: the first is
    // still inside the stream's body.
    let echo = echo_of(c.get(app.url("/after")).header("cookie", &cookie)).await;
    assert_eq!(echo["path"], "/after");
    assert_eq!(up.connections(), 2);
}

/// Usher in front of `upstream`, with alice signed in: the app and her cookie.
async fn alice_behind(upstream: http::Uri) -> (TestApp, String) {
    let mut options = Options::default();
    options.gateway.upstream = Some(upstream);
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", false).await;
    let cookie = app.login("alice", "alice-password").await;
    (app, cookie)
}

/// An upstream that closes kept-alive connections while they are idle (as Node.js does
/// after 5 s): the next request finds out before it is sent and goes out on a new
/// connection, never as a 502.
#[tokio::test]
async fn an_upstream_closing_idle_connections_costs_no_request() {
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let upstream = raw_upstream(move |mut conn, n| {
        let closed_tx = closed_tx.clone();
        async move {
            if conn.head().await.is_none() {
                return;
            }
            let body = format!("conn {n}");
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            assert!(conn.send(format!("{head}{body}").as_bytes()).await);
            // Kept alive as far as the client can tell, then closed while idle:
            // after Usher has read the answer and pooled the connection.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            drop(conn);
            let _ = closed_tx.send(n);
        }
    })
    .await;
    let (app, cookie) = alice_behind(upstream).await;
    for i in 1..=5usize {
        let r = client()
            .get(app.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), format!("conn {i}"));
        assert_eq!(closed.recv().await, Some(i));
    }
}

/// With `server.threads`, each serving thread keeps its own upstream connections: one
/// client's requests, served on one thread, go out on one connection again and again,
/// and a WebSocket is still tunnelled.
#[tokio::test]
async fn serving_threads_reuse_their_own_upstream_connections() {
    let (app, up) = behind_usher_on(false, Some(2)).await;
    let cookie = app.login("alice", "alice-password").await;
    let c = client();
    for i in 0..20 {
        let r = c
            .get(app.url(&format!("/page{i}")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    assert_eq!(up.connections(), 1, "20 requests one after another");
    websocket_echoes_through(&app, &cookie).await;
}

/// A hand-written upstream whose answers are canned: each request's path picks one,
/// written as it stands (`/close-*` answers then close).
async fn canned_upstream() -> http::Uri {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    fn answer(path: &str) -> &'static [u8] {
        match path {
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: raw\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            "/close-delimited" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
            "/hints" => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            "/both" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboth\r\n0\r\n\r\n",
            "/two-lengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nxx",
            "/close-garbage" => b"this is not http\r\n\r\n",
            "/close-cut" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            "/close-silent" => b"",
            "/no-content" => b"HTTP/1.1 204 No Content\r\nX-App: 1\r\n\r\n",
            "/not-modified" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 12\r\n\r\n",
            "/head" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\r\n",
            "/many" => b"HTTP/1.1 201 Fine\r\nSet-Cookie: a=1\r\nVary: Accept\r\nSet-Cookie: b=2\r\nVary: Cookie\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 4\r\n\r\nmany",
            "/big" => BIG.get_or_init(|| {
                let body = "0123456789abcdef".repeat(20_000);
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
            }),
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        }
    }
    raw_upstream(|mut conn, _| async move {
        while let Some(head) = conn.head().await {
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            if !conn.send(answer(&path)).await || path.starts_with("/close-") {
                return;
            }
        }
    })
    .await
}

/// Every way HTTP/1.1 delimits an answer reaches the client whole — chunked (with an
/// extension and a trailer), until close, after an interim 103 — and an answer that
/// is not HTTP as RFC 9112 reads it is a 502, never a guess.
#[tokio::test]
async fn upstream_answers_are_read_in_every_framing_and_malformed_ones_refused() {
    let (app, cookie) = alice_behind(canned_upstream().await).await;
    let get = |path: &str| client().get(app.url(path)).header("cookie", &cookie).send();
    for (path, body) in [
        ("/chunked", "hello world"),
        ("/close-delimited", "until the end"),
        ("/hints", "final"),
        // Both framings: the coding wins (RFC 9112 §6.3).
        ("/both", "both"),
        // The connection kept alive after the answers above still works.
        ("/chunked", "hello world"),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), body, "{path}");
    }
    let r = get("/chunked").await.unwrap();
    assert_eq!(r.headers()["x-app"], "raw");
    // Re-framed for the client by Usher's own server: its length unknown, so chunked,
    // and never a length the app did not give.
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert!(r.headers().get("content-length").is_none());
    // Both framings from the app: its stale length is not passed on.
    let r = get("/both").await.unwrap();
    assert!(r.headers().get("content-length").is_none_or(|v| v == "4"));
    assert_eq!(r.text().await.unwrap(), "both");
    for path in ["/two-lengths", "/close-garbage", "/close-silent"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 502, "{path}");
        assert!(r.text().await.unwrap().contains("not answering"), "{path}");
    }
    // Cut inside its body: the client's connection breaks off (before or after the
    // head, as the server had flushed it), never a short body that looks whole.
    let whole = match get("/close-cut").await {
        Ok(r) => r.bytes().await.is_ok(),
        Err(_) => false,
    };
    assert!(!whole, "a body cut short must not look whole");
    // And Usher is still well.
    assert_eq!(get("/hints").await.unwrap().text().await.unwrap(), "final");
}

/// The reverse proxy's requests are answered in the server's fast lane (issue 9) when
/// they have no body and a session in memory, and by hyper otherwise: every answer —
/// chunked, until close, after a 103, 204, 304, HEAD, a reason phrase of the app's own,
/// headers repeated, the app's own `Date`, a body larger than a read, a 502 — reads the
/// same byte for byte (but the time of day) whichever of the two wrote it, asked one at
/// a time or all at once.
#[tokio::test]
async fn the_fast_lane_writes_every_answer_as_hyper_does() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (app, cookie) = alice_behind(canned_upstream().await).await;
    let requests = [
        ("GET", "/chunked"),
        ("GET", "/close-delimited"),
        ("GET", "/hints"),
        ("GET", "/no-content"),
        ("GET", "/not-modified"),
        ("HEAD", "/head"),
        ("HEAD", "/no-content"),
        ("GET", "/many"),
        ("GET", "/big"),
        ("GET", "/close-silent"),
        // A cookie naming no session: not the lane's to decide, so from here on hyper
        // answers the batch the lane began.
        ("GET", "/signed-out"),
        ("GET", "/many"),
        ("DELETE", "/nothing-here?q=1"),
    ];
    // `Connection: close` on the last: the answer then ends at the connection's end.
    // `x-hyper` named in `Connection` is what the lane leaves to hyper.
    let ask = |(method, path): (&str, &str), connection: &str| {
        let cookie = if path == "/signed-out" {
            "usher_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        } else {
            &cookie
        };
        format!(
            "{method} {path} HTTP/1.1\r\nHost: app.test\r\nCookie: {cookie}\r\nConnection: {connection}\r\n\r\n"
        )
    };
    let exchange = |batch: String| async move {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        s.write_all(batch.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut got))
            .await
            .expect("the answers within 20 s")
            .unwrap();
        // The time of day is the one thing that may differ (the app's own `Date` stays).
        let text = String::from_utf8(got).unwrap();
        let mut lines: Vec<&str> = text.split("\r\n").collect();
        for l in &mut lines {
            if l.starts_with("date: ") && !l.ends_with(" 10:00:00 GMT") {
                *l = "date: (now)";
            }
        }
        lines.join("\r\n")
    };
    let in_the_lane = || async {
        usher_testkit::metric(&app.url(""), "usher_fast_lane_requests_total")
            .await
            .expect("usher_fast_lane_requests_total")
    };
    let mut all_lane = String::new();
    let mut all_hyper = String::new();
    for (i, &r) in requests.iter().enumerate() {
        let before = in_the_lane().await;
        let lane = exchange(ask(r, "close")).await;
        let taken = in_the_lane().await - before;
        let hyper = exchange(ask(r, "close, x-hyper")).await;
        assert_eq!(lane, hyper, "{r:?}");
        // What was compared came from each: the lane took all but the request whose
        // session it cannot find, and none of hyper's.
        let expected = if r.1 == "/signed-out" { 0.0 } else { 1.0 };
        assert_eq!(taken, expected, "{r:?} in the lane");
        assert_eq!(in_the_lane().await - before, expected, "{r:?} in hyper");
        let keep = if i + 1 == requests.len() {
            "close"
        } else {
            "keep-alive"
        };
        all_lane += &ask(r, keep);
        all_hyper += &ask(r, if i == 0 { "keep-alive, x-hyper" } else { keep });
    }
    let before = in_the_lane().await;
    let lane = exchange(all_lane).await;
    // Up to the cookie naming no session; hyper answered the rest.
    let handed_over_at = requests.iter().position(|r| r.1 == "/signed-out").unwrap();
    assert_eq!(in_the_lane().await - before, handed_over_at as f64);
    assert_eq!(lane, exchange(all_hyper).await);
    // What was compared is what each request should get.
    for expected in [
        "HTTP/1.1 200 OK\r\nx-app: raw\r\ntransfer-encoding: chunked\r\n",
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nx-app: 1\r\ndate: (now)\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ndate: (now)\r\n\r\n",
        "content-type: text/plain\r\ncontent-length: 42\r\ndate: (now)\r\n\r\nHTTP/1.1",
        "HTTP/1.1 201 Created\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nvary: Accept\r\nvary: Cookie\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\ncontent-length: 4\r\n\r\nmany",
        "HTTP/1.1 502 Bad Gateway\r\n",
        "HTTP/1.1 401 Unauthorized\r\n",
        "HTTP/1.1 404 Not Found\r\n",
        "connection: close\r\n",
    ] {
        assert!(lane.contains(expected), "{expected:?} in {lane}");
    }
    assert!(lane.contains(&"0123456789abcdef".repeat(20_000)));
}

/// A request body of unknown length (chunked from the client) goes out chunked, and
/// one whose length is known goes out with it; both arrive whole.
#[tokio::test]
async fn request_bodies_go_out_framed_as_they_came() {
    let (app, _up) = behind_usher(false).await;
    let cookie = app.login("alice", "alice-password").await;
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..50).map(|i| Ok(vec![i as u8; 1000 + i])).collect();
    let total: usize = (0..50).map(|i| 1000 + i).sum();
    let echo = echo_of(
        client()
            .put(app.url("/upload"))
            .header("cookie", &cookie)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                pieces,
            ))),
    )
    .await;
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_len"], total);
    assert_eq!(header_values(&echo, "transfer-encoding"), ["chunked"]);
    assert!(header_values(&echo, "content-length").is_empty());
    let echo = echo_of(
        client()
            .post(app.url("/upload"))
            .header("cookie", &cookie)
            .body("0123456789"),
    )
    .await;
    assert_eq!(echo["body_len"], 10);
    assert_eq!(header_values(&echo, "content-length"), ["10"]);
    // A body-less POST still says it has none.
    let echo = echo_of(client().post(app.url("/upload")).header("cookie", &cookie)).await;
    assert_eq!(header_values(&echo, "content-length"), ["0"]);
}

/// An upstream that reads a kept-alive connection's second request and closes without
/// a word (the race of an app closing an idle connection as a request arrives): a GET
/// goes out again on a new connection; a POST, which may have done its work, is a 502
/// and reaches the app once.
#[tokio::test]
async fn only_idempotent_requests_are_sent_again_when_the_app_closes_unanswered() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let posts = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = posts.clone();
    let upstream = raw_upstream(move |mut conn, _| {
        let seen = seen.clone();
        async move {
            for n in 1.. {
                let Some(head) = conn.head().await else {
                    return;
                };
                if head.starts_with("POST") {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                if n == 2 {
                    return; // read, and closed unanswered
                }
                if !conn
                    .send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                {
                    return;
                }
            }
        }
    })
    .await;
    let (app, cookie) = alice_behind(upstream).await;
    let send = |method: reqwest::Method| {
        client()
            .request(method, app.url("/"))
            .header("cookie", &cookie)
            .send()
    };
    // First request on a connection: answered; the second on it is dropped unanswered,
    // and the GET is answered on a new connection.
    for _ in 0..3 {
        let r = send(reqwest::Method::GET).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    // Now the pooled connection has answered once: the POST is its second request.
    let r = send(reqwest::Method::POST).await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        posts.load(Ordering::SeqCst),
        1,
        "a POST is never sent twice"
    );
}

/// An app that answers before it has read the request's body (a 413 for an upload too
/// large) and then reads no more of it: its answer reaches the client, instead of Usher
/// waiting for ever to write the rest of a body nobody reads.
#[tokio::test]
async fn an_answer_before_the_whole_body_was_read_reaches_the_client() {
    let upstream = raw_upstream(|mut conn, _| async move {
        if conn.head().await.is_some() {
            let answer = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 9\r\n\r\ntoo large";
            conn.send(answer).await;
            // Kept open, and never read again.
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
    })
    .await;
    let (app, cookie) = alice_behind(upstream).await;
    // Far more than the sockets between Usher and the app can hold.
    let body = vec![1u8; 64 * 1024 * 1024];
    let sent = client()
        .post(app.url("/upload"))
        .header("cookie", &cookie)
        .body(body)
        .send();
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), sent)
        .await
        .expect("the app's early answer must not wait on the body");
    let r = r.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.text().await.unwrap(), "too large");
}

/// What the app sends right after its 101, in the same packet as the head, reaches the
/// client first, and the tunnel then carries both ways.
#[tokio::test]
async fn bytes_the_app_sends_with_its_101_go_through_the_tunnel_first() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = raw_upstream(|mut conn, _| async move {
        if conn.head().await.is_none() {
            return;
        }
        let switch = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nearly;";
        if !conn.send(switch).await {
            return;
        }
        // Then an echo.
        let mut chunk = [0u8; 64];
        while let Ok(n) = conn.stream.read(&mut chunk).await {
            if n == 0 || !conn.send(&chunk[..n]).await {
                return;
            }
        }
    })
    .await;
    let (app, cookie) = alice_behind(upstream).await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let wait = std::time::Duration::from_secs(10);
    while !got.ends_with(b"early;") {
        let n = tokio::time::timeout(wait, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no early bytes after {:?}", String::from_utf8_lossy(&got)))
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
}

/// A proxied request whose session is in memory leaves for the upstream with its head
/// written while hyper hands it over; one whose session is only in the store (made by
/// another node) goes the long way. Both reach the app with the same identity, carry
/// its answer back whole (HEAD without a body), and are counted once on the session.
#[tokio::test]
async fn proxied_requests_are_counted_once_from_memory_or_from_the_store() {
    let (app, _up) = behind_usher(false).await;
    let cookie = app.login("alice", "alice-password").await;
    let (made, other) = app.session_in_store_only("alice", "curl/8", "curl").await;
    let echo = |cookie: String| {
        let url = app.url("/counted?x=1");
        async move {
            let r = client()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-upstream"], "yes");
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    for (c, n) in [(&cookie, 3), (&other, 2)] {
        for _ in 0..n {
            let seen = echo(c.clone()).await;
            assert_eq!(seen["path"], "/counted?x=1");
            assert_eq!(header_values(&seen, "remote-user"), ["alice"]);
        }
    }
    let head = client()
        .head(app.url("/counted"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());

    let sessions = app.sessions_of("alice").await;
    let requests = |mine: bool| {
        sessions
            .iter()
            .find(|s| (s.id == made) != mine)
            .unwrap()
            .requests
    };
    assert_eq!(requests(true), 4, "three GETs and a HEAD, from memory");
    assert_eq!(requests(false), 2, "through the store, then from memory");
}
