//! The real binary: first start, restarts, kill -9, configuration errors, the user CLI.

use crate::support::{Running, serve, usher};
use std::time::{Duration, Instant};
use usher_core::{EndReason, Username};
use usher_store::StoreUrl;
use usher_testkit::{browser_login, client, hidden_field, session_cookie};

async fn login(server: &Running, user: &str, password: &str) -> String {
    let r = browser_login(&server.url(""), user, password, "/", None).await;
    assert_eq!(r.status(), 303, "login of {user}");
    session_cookie(&r, "usher_session").unwrap()
}

async fn status(server: &Running, cookie: &str) -> u16 {
    usher_testkit::status(&server.url("/"), cookie).await
}

fn store_url(dir: &std::path::Path) -> StoreUrl {
    StoreUrl::parse(&format!("sqlite://{}/usher-data/usher.db", dir.display())).unwrap()
}

#[tokio::test]
async fn first_start_creates_the_admin_and_shows_the_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    assert!(dir.path().join("usher-data/usher.db").exists());
    let file = dir.path().join("usher-data/initial-admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(password.len() >= 20);
    let err = server.stderr();
    assert!(
        err.contains("Created the administrator `admin`") && err.contains(&password),
        "{err}"
    );
    let cookie = login(&server, "admin", &password).await;
    let html = client()
        .get(server.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Hello, admin") && html.contains("Admin console"));
    assert!(server.terminate(), "exit code 0 on SIGTERM");
    let again = serve(dir.path(), &[]);
    assert!(
        !again.stderr().contains("Created the administrator"),
        "only once"
    );
    assert!(again.terminate());
}

#[tokio::test]
async fn the_admin_password_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &[
            ("USHER_ADMIN_PASSWORD", "from-the-env-123"),
            ("USHER_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    );
    assert!(
        !dir.path()
            .join("usher-data/initial-admin-password")
            .exists()
    );
    login(&server, "admin", "from-the-env-123").await;
    // log.format = json: Usher's own log lines are JSON objects, and the login line
    // names the session.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let err = server.stderr();
        let json: Vec<serde_json::Value> = err
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if json
            .iter()
            .any(|v| v["fields"]["message"] == "login" && v["fields"]["session"].is_string())
        {
            break;
        }
        assert!(Instant::now() < deadline, "no JSON login line: {err}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
}

#[tokio::test]
async fn a_sigterm_restart_keeps_browsers_signed_in_and_counting() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("USHER_ADMIN_PASSWORD", "admin-password")];
    let server = serve(dir.path(), &env);
    let cookie = login(&server, "admin", "admin-password").await;
    for _ in 0..5 {
        assert_eq!(status(&server, &cookie).await, 200);
    }
    assert!(server.terminate());
    let server = serve(dir.path(), &env);
    let html = client()
        .get(server.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"<span class="requests">6</span>"#),
        "{html}"
    );
    assert!(server.terminate());
}

#[tokio::test]
async fn kill_9_loses_no_login_or_logout_and_at_most_one_flush_of_counts() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("USHER_ADMIN_PASSWORD", "admin-password"),
        ("USHER_STORE_FLUSH_INTERVAL", "100ms"),
    ];
    let server = serve(dir.path(), &env);
    let kept = login(&server, "admin", "admin-password").await;
    let gone = login(&server, "admin", "admin-password").await;
    for _ in 0..10 {
        assert_eq!(status(&server, &kept).await, 200);
    }
    // Log `gone` out; the 303 is the acknowledgement.
    let page = client()
        .get(server.url("/usher/logout"))
        .header("cookie", &gone)
        .send()
        .await
        .unwrap();
    let csrf = hidden_field(&page.text().await.unwrap(), "csrf").unwrap();
    let r = client()
        .post(server.url("/usher/logout"))
        .header("cookie", &gone)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // Wait until one flush has carried the counts, then pull the plug.
    let store = usher_store::open(&store_url(dir.path())).await.unwrap();
    let admin = Username::parse("admin").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sessions = store.sessions_of_user(&admin).await.unwrap();
        if sessions
            .iter()
            .any(|s| s.ended_at.is_none() && s.requests == 10)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts never flushed: {sessions:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        assert_eq!(status(&server, &kept).await, 200);
    }
    server.kill9();
    drop(store);
    let server = serve(dir.path(), &env);
    assert_eq!(
        status(&server, &kept).await,
        200,
        "the login survived kill -9"
    );
    assert_eq!(
        status(&server, &gone).await,
        401,
        "the logout survived kill -9"
    );
    let store = usher_store::open(&store_url(dir.path())).await.unwrap();
    let sessions = store.sessions_of_user(&admin).await.unwrap();
    let live = sessions.iter().find(|s| s.ended_at.is_none()).unwrap();
    assert!(
        (10..=14).contains(&live.requests),
        "counts: {}",
        live.requests
    );
    let ended = sessions.iter().find(|s| s.ended_at.is_some()).unwrap();
    assert_eq!(ended.end_reason, Some(EndReason::Logout));
    server.kill9();
}

/// The names of the threads `usher serve` runs (Linux: /proc/PID/task/*/comm).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn server_threads_sets_how_many_threads_serve_connections() {
    // Unset, the shared runtime serves: no serving threads of their own.
    let dir = tempfile::tempdir().unwrap();
    let shared = serve(dir.path(), &[("USHER_ADMIN_PASSWORD", "admin-password")]);
    let names = thread_names(shared.child.id());
    assert!(
        !names.iter().any(|n| n.starts_with("usher-core-")),
        "{names:?}"
    );
    assert!(shared.terminate());

    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &[
            ("USHER_ADMIN_PASSWORD", "admin-password"),
            ("USHER_SERVER_THREADS", "3"),
        ],
    );
    let mut cores: Vec<_> = thread_names(server.child.id())
        .into_iter()
        .filter(|n| n.starts_with("usher-core-"))
        .collect();
    cores.sort();
    assert_eq!(cores, ["usher-core-0", "usher-core-1", "usher-core-2"]);
    // Connections spread over the three, each served whole: each client signs in and
    // is let through, again and again, on its own kept-alive connection.
    let mut tasks = Vec::new();
    for _ in 0..9 {
        let base = server.url("");
        tasks.push(tokio::spawn(async move {
            let r = browser_login(&base, "admin", "admin-password", "/", None).await;
            assert_eq!(r.status(), 303);
            let cookie = session_cookie(&r, "usher_session").unwrap();
            let client = client();
            for _ in 0..5 {
                let status = client
                    .get(format!("{base}/usher/auth/request"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        server.terminate(),
        "a clean stop with three serving threads"
    );
}

#[tokio::test]
async fn configuration_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("usher.toml"),
        "[sessions]\nidle_timout = \"5m\"\n",
    )
    .unwrap();
    let (code, _, err) = usher(dir.path(), &["config", "check"], "", &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("idle_timout") && err.contains("usher.toml"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("usher.toml"),
        "[sessions]\nidle_timeout = \"5m\"\n",
    )
    .unwrap();
    let (code, out, _) = usher(dir.path(), &["config", "check"], "", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("\"idle_timeout\": \"5m\""), "{out}");

    let cases: [(&[(&str, &str)], &str); 12] = [
        (&[("USHER_ACCESS_PUBLIC", "status")], "access.public"),
        (&[("USHER_ACCESS_PUBLIC", "/a/[b")], "access.public"),
        (
            &[("USHER_SESSIONS_ANONYMOUS", "maybe")],
            "sessions.anonymous",
        ),
        (
            &[("USHER_GATEWAY_COOKIE_DOMAIN", "https://example.com")],
            "gateway.cookie_domain",
        ),
        (
            &[("USHER_GATEWAY_ALLOWED_REDIRECTS", "*.example.com")],
            "gateway.allowed_redirects",
        ),
        (&[("USHER_SESSIONS_IDLE_TIMEOUT", "10x")], "idle_timeout"),
        (&[("USHER_SERVER_LISTEN", "localhost")], "server.listen"),
        (&[("USHER_PROXY_TRUSTED", "10.0.0.0/33")], "proxy.trusted"),
        (
            &[("USHER_PROXY_CLIENT_IP_HEADER", "X-Client")],
            "proxy.client_ip_header",
        ),
        (&[("USHER_SESSIONS_BOGUS", "1")], "bogus"),
        (
            &[("USHER_SERVER_THREADS", "0")],
            "server.threads must be 1 or more",
        ),
        (&[("USHER_SERVER_THREADS", "two")], "threads"),
    ];
    for (env, key) in cases {
        let (code, _, err) = usher(dir.path(), &["config", "check"], "", env);
        assert_ne!(code, 0, "{env:?}");
        assert!(err.contains(key), "{env:?}: {err}");
    }
    for (rule, says) in [
        (
            "ip = \"10.0.0.0/99\"",
            "tracking.ignore[1]: `10.0.0.0/99` is not an address",
        ),
        ("", "tracking.ignore[1]: a rule must name at least one of"),
        ("colour = \"red\"", "colour"),
    ] {
        let toml =
            format!("[[tracking.ignore]]\npath = \"/status\"\n[[tracking.ignore]]\n{rule}\n");
        std::fs::write(dir.path().join("usher.toml"), toml).unwrap();
        let (code, _, err) = usher(dir.path(), &["config", "check"], "", &[]);
        assert_ne!(code, 0, "{rule}");
        assert!(err.contains(says), "{rule}: {err}");
    }
    std::fs::write(
        dir.path().join("usher.toml"),
        "[sessions]\nidle_timeout = \"5m\"\n",
    )
    .unwrap();
    // Flags beat the environment, which beats the file.
    let (code, out, _) = usher(
        dir.path(),
        &["config", "check"],
        "",
        &[("USHER_SESSIONS_IDLE_TIMEOUT", "7m")],
    );
    assert_eq!(code, 0);
    assert!(out.contains("\"idle_timeout\": \"7m\""), "{out}");
    let (code, _, err) = usher(dir.path(), &["serve", "--listen", "nope"], "", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("server.listen"), "{err}");
    // Secrets never appear in what `config check` prints.
    let (code, out, _) = usher(
        dir.path(),
        &["config", "check"],
        "",
        &[(
            "USHER_STORE_URL",
            "postgres://usher:hunter2secret@db.example/usher",
        )],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("postgres://usher:***@db.example/usher") && !out.contains("hunter2secret"),
        "{out}"
    );
    let (code, _, err) = usher(
        dir.path(),
        &["--config", "missing.toml", "config", "check"],
        "",
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("missing.toml"), "{err}");
}

#[tokio::test]
async fn user_commands_act_on_a_running_server_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("USHER_ADMIN_PASSWORD", "admin-password")];
    let server = serve(dir.path(), &env);
    let d = dir.path();
    let (code, out, err) = usher(
        d,
        &["user", "add", "bob", "--password-stdin"],
        "bob-password\n",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created user bob"));
    let (code, _, err) = usher(
        d,
        &["user", "add", "bob", "--password-stdin"],
        "bob-password\n",
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = usher(
        d,
        &["user", "add", "carol", "--password-stdin"],
        "short\n",
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("too short"), "{err}");
    let (code, _, err) = usher(
        d,
        &["user", "add", "bad name!", "--password-stdin"],
        "long-enough\n",
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("user name"), "{err}");
    let (code, _, err) = usher(d, &["user", "add", "dave"], "", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("--password-stdin"), "{err}");

    let cookie = login(&server, "bob", "bob-password").await;
    assert_eq!(status(&server, &cookie).await, 200);
    let (code, out, _) = usher(d, &["user", "list"], "", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("bob") && out.contains("admin"), "{out}");
    let (code, out, _) = usher(d, &["user", "list", "--format", "json"], "", &[]);
    assert_eq!(code, 0);
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2);

    let (code, _, _) = usher(
        d,
        &["user", "passwd", "bob", "--password-stdin"],
        "new-bob-password\n",
        &[],
    );
    assert_eq!(code, 0);
    let (code, out, _) = usher(d, &["user", "disable", "bob"], "", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("ended 1 session"), "{out}");
    let started = Instant::now();
    while status(&server, &cookie).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _, _) = usher(d, &["user", "enable", "bob"], "", &[]);
    assert_eq!(code, 0);
    let fresh = login(&server, "bob", "new-bob-password").await;
    let (code, out, _) = usher(d, &["user", "remove", "bob"], "", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("ended 1 session"), "{out}");
    let started = Instant::now();
    while status(&server, &fresh).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _, err) = usher(d, &["user", "disable", "bob"], "", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no user bob"), "{err}");
    assert!(server.terminate());
}

#[tokio::test]
async fn the_session_cli_works_on_the_store_and_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = [("USHER_ADMIN_PASSWORD", "admin-password")];
    let server = serve(d, &env);
    let (code, _, _) = usher(
        d,
        &["user", "add", "bob", "--password-stdin"],
        "bob-password\n",
        &[],
    );
    assert_eq!(code, 0);
    let admin = login(&server, "admin", "admin-password").await;
    let bob = login(&server, "bob", "bob-password").await;
    for _ in 0..3 {
        assert_eq!(status(&server, &bob).await, 200);
    }

    // On the store, in the server's directory.
    let (code, out, err) = usher(
        d,
        &["sessions", "list", "--sort", "user", "--order", "asc"],
        "",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("SESSION") && lines[0].contains("LAST ACCESS"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].contains("admin") && lines[2].contains("bob"),
        "{out}"
    );
    assert!(out.contains(" ago"), "relative times: {out}");
    let (_, out, _) = usher(
        d,
        &["sessions", "list", "--user", "bob", "--format", "json"],
        "",
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], 1);
    let bob_sid = v["items"][0]["id"].as_str().unwrap().to_owned();
    let (_, out, _) = usher(d, &["sessions", "list", "--format", "csv"], "", &[]);
    assert!(
        out.starts_with("SESSION,USER,TYPE,IP,CLIENT,REQUESTS,LAST ACCESS,CREATED\n"),
        "{out}"
    );
    let (code, _, err) = usher(d, &["sessions", "list", "--sort", "banana"], "", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("sort"), "{err}");
    let (code, _, err) = usher(d, &["sessions", "kill", "not-an-id"], "", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("not-an-id"), "{err}");
    let (code, out, _) = usher(d, &["sessions", "kill", "aaaaaaaaaaaa"], "", &[]);
    assert_eq!(code, 3, "nothing matched: {out}");
    let (code, out, _) = usher(d, &["sessions", "kill", &bob_sid], "", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("ended 1 session"));
    let started = Instant::now();
    while status(&server, &bob).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Tokens, and the same commands through the running server's API.
    let (code, secret, err) = usher(d, &["token", "create", "ops laptop"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let secret = secret.trim().to_owned();
    assert!(secret.starts_with("ush_"), "{secret}");
    let remote = [
        ("USHER_SERVER", server.url("")),
        ("USHER_TOKEN", secret.clone()),
    ];
    let remote: Vec<(&str, &str)> = remote.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bob = login(&server, "bob", "bob-password").await;
    let (code, out, err) = usher(
        d,
        &["sessions", "list", "--user", "bob", "--format", "json"],
        "",
        &remote,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], 1);
    let (code, out, _) = usher(d, &["sessions", "kill", "--user", "bob"], "", &remote);
    assert_eq!(code, 0);
    assert!(out.contains("ended 1 session"), "{out}");
    assert_eq!(
        status(&server, &bob).await,
        401,
        "through the API it is immediate"
    );
    let (code, out, _) = usher(
        d,
        &["history", "--user", "bob", "--format", "json"],
        "",
        &remote,
    );
    assert_eq!(code, 0);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[..3], ["killed", "login", "killed"], "{kinds:?}");
    // Where was bob a moment ago? (Both of his sessions have ended since.)
    let now = jiff::Timestamp::from_second(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
    .unwrap();
    let (code, out, err) = usher(
        d,
        &[
            "history",
            "--user",
            "bob",
            "--at",
            &now.to_string(),
            "--format",
            "json",
        ],
        "",
        &remote,
    );
    assert_eq!(code, 0, "{err}");
    let at: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(at.as_array().is_some(), "{out}");
    let (code, out, _) = usher(d, &["history", "--at", "2000-01-01"], "", &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("SESSION"), "{out}");
    let (code, out, _) = usher(d, &["report", "inactive", "--since", "2000-01-01"], "", &[]);
    assert_eq!(code, 0);
    assert!(
        !out.contains("bob") && !out.contains("admin "),
        "everyone logged in since 2000: {out}"
    );
    client()
        .get(server.url("/health"))
        .header("user-agent", "UptimeRobot/2.0")
        .send()
        .await
        .unwrap();
    let (code, out, err) = usher(d, &["clients", "--format", "json"], "", &remote);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("UptimeRobot/2.0"), "{out}");
    let (code, _, err) = usher(d, &["clients"], "", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("--server"), "{err}");
    let (_, out, _) = usher(d, &["token", "list", "--format", "json"], "", &remote);
    let tokens: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    assert!(!out.contains(&secret[4..]), "secrets are never listed");
    let (code, _, _) = usher(d, &["token", "revoke", &id], "", &[]);
    assert_eq!(code, 0);
    let (code, _, err) = usher(d, &["sessions", "list"], "", &remote);
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    let (code, _, _) = usher(d, &["token", "revoke", &id], "", &[]);
    assert_eq!(code, 3);
    let (code, _, err) = usher(
        d,
        &["sessions", "list"],
        "",
        &[("USHER_SERVER", "http://127.0.0.1:1")],
    );
    assert_ne!(code, 0);
    assert!(err.contains("USHER_TOKEN"), "{err}");
    let _ = admin;
    assert!(server.terminate());

    let (code, out, _) = usher(d, &["completions", "bash"], "", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("usher") && out.contains("sessions"));
}
