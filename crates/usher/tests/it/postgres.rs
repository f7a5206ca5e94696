//! Two Usher nodes on one PostgreSQL database (runs when USHER_TEST_POSTGRES_URL is set).

use std::time::{Duration, Instant};
use usher_core::Username;
use usher_store::conformance::postgres_scratch;
use usher_testkit::{Options, TestApp};

async fn status(app: &TestApp, cookie: &str) -> u16 {
    usher_testkit::status(&app.url("/"), cookie).await
}

#[tokio::test]
async fn two_nodes_share_sessions_counts_and_ends() {
    let Some((url, _db)) = postgres_scratch().await else {
        eprintln!("USHER_TEST_POSTGRES_URL is not set: skipped");
        return;
    };
    let a = TestApp::spawn_on(
        tempfile::tempdir().unwrap(),
        url.clone(),
        Options::default(),
    )
    .await;
    let b = TestApp::spawn_on(
        tempfile::tempdir().unwrap(),
        url.clone(),
        Options::default(),
    )
    .await;
    a.add_user("alice", "alice-password", false).await;
    let cookie = a.login("alice", "alice-password").await;
    for _ in 0..5 {
        assert_eq!(status(&a, &cookie).await, 200);
        assert_eq!(
            status(&b, &cookie).await,
            200,
            "node B knows a session made on A"
        );
    }
    a.flush().await;
    b.flush().await;
    let alice = Username::parse("alice").unwrap();
    let s = &a.store.sessions_of_user(&alice).await.unwrap()[0];
    assert_eq!(s.requests, 10, "counts from both nodes add up, none twice");

    assert_eq!(a.logout(&cookie).await, 303);
    let started = Instant::now();
    while status(&b, &cookie).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "node B still accepts after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B's late flush of its own touches must not revive the session.
    b.flush().await;
    assert!(b.store.sessions_live().await.unwrap().is_empty());

    // Sessions outlive a restart of both nodes.
    let cookie = b.login("alice", "alice-password").await;
    let (dir_a, url_a) = a.stop().await;
    let (_dir_b, _) = b.stop().await;
    let a = TestApp::spawn_on(dir_a, url_a, Options::default()).await;
    assert_eq!(status(&a, &cookie).await, 200);
    a.stop().await;
}
