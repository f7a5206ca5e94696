//! API clients of the protected app: one `api` session per credential and client.

use base64::Engine as _;
use usher_core::{SessionKind, Username};
use usher_testkit::{Options, TestApp, Upstream, client};

async fn behind() -> (TestApp, Upstream) {
    let upstream = Upstream::spawn().await;
    let mut options = Options::default();
    options.gateway.upstream = Some(upstream.uri());
    let app = TestApp::spawn_with(options).await;
    app.add_user("alice", "alice-password", false).await;
    (app, upstream)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn call(app: &TestApp, auth: &str, ua: &str) -> (u16, serde_json::Value) {
    let r = client()
        .get(app.url("/api/things"))
        .header("authorization", auth)
        .header("user-agent", ua)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

fn api_sessions(app: &TestApp) -> Vec<usher_core::SessionInfo> {
    app.state
        .engine
        .sessions_of(&Username::parse("alice").unwrap())
        .into_iter()
        .filter(|s| s.kind == SessionKind::Api)
        .collect()
}

/// A client's first requests, sent at once, are one session between them.
#[tokio::test]
async fn first_requests_sent_at_once_make_one_session() {
    let (app, _up) = behind().await;
    let token = format!("Bearer {}", app.token_for("alice").await);
    let calls: Vec<_> = (0..8).map(|_| call(&app, &token, "fan-out/1.0")).collect();
    for (status, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    let sessions = api_sessions(&app);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].requests, 8);
}

#[tokio::test]
async fn a_token_client_is_one_session_not_one_per_request() {
    let (app, _up) = behind().await;
    let token = format!("Bearer {}", app.token_for("alice").await);
    for _ in 0..5 {
        let (s, echo) = call(&app, &token, "deploy-bot/1.0").await;
        assert_eq!(s, 200);
        let headers = echo["headers"].as_array().unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|h| h[0] == n)
                .map(|h| h[1].as_str().unwrap().to_owned())
        };
        assert_eq!(get("remote-user").as_deref(), Some("alice"));
        assert_eq!(
            get("authorization"),
            None,
            "Usher's credential is not passed on"
        );
    }
    let sessions = api_sessions(&app);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].requests, 5);
    // Another client with the same credential is another session.
    call(&app, &token, "deploy-bot/2.0").await;
    assert_eq!(api_sessions(&app).len(), 2);
    // Killing it ends it; the next call starts a new one, counted from 1.
    let first = sessions[0].id;
    app.state
        .engine
        .end(
            usher_store::SessionSelector::Ids(vec![first]),
            usher_core::EndReason::Killed,
            "root",
        )
        .await
        .unwrap();
    call(&app, &token, "deploy-bot/1.0").await;
    let again = api_sessions(&app);
    assert!(again.iter().all(|s| s.id != first));
    assert!(
        again
            .iter()
            .any(|s| s.user_agent == "deploy-bot/1.0" && s.requests == 1)
    );
    // A revoked token is refused.
    let id = app.store.token_list().await.unwrap()[0].id.clone();
    app.store
        .token_revoke(&id, usher_core::Clock::now(&usher_core::SystemClock))
        .await
        .unwrap();
    assert_eq!(call(&app, &token, "deploy-bot/1.0").await.0, 401);
}

#[tokio::test]
async fn basic_auth_clients_are_verified_once_and_tracked_alike() {
    let (app, _up) = behind().await;
    let good = basic("alice", "alice-password");
    for _ in 0..3 {
        assert_eq!(call(&app, &good, "curl/8.5").await.0, 200);
    }
    let sessions = api_sessions(&app);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].requests, 3);
    // A password change anywhere (here: as the CLI does, on the store) stops the old
    // password within a second, remembered or not.
    app.accounts()
        .set_password(
            &Username::parse("alice").unwrap(),
            "alice-password-2",
            "root",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while call(&app, &good, "curl/8.5").await.0 != 401 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "the old password still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let good = basic("alice", "alice-password-2");
    assert_eq!(call(&app, &good, "curl/8.5").await.0, 200);
    assert_eq!(
        call(&app, &basic("alice", "wrong-password"), "curl/8.5")
            .await
            .0,
        401
    );
    assert_eq!(call(&app, &basic("nobody", "x"), "curl/8.5").await.0, 401);
    assert_eq!(call(&app, "Basic !!!", "curl/8.5").await.0, 401);
    assert_eq!(call(&app, "Bearer ush_garbage", "curl/8.5").await.0, 401);
    // Disabling the user ends the session, and the remembered credential no longer works.
    app.accounts()
        .set_disabled(&Username::parse("alice").unwrap(), true, "root")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while call(&app, &good, "curl/8.5").await.0 != 401 {
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
