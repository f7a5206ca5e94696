//! The SQLite backend against the shared conformance suite.
#![allow(clippy::expect_used)]

async fn fresh() -> Option<usher_store::conformance::Harness> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = usher_store::StoreUrl::parse(&format!("sqlite://{}/usher.db", dir.path().display()))
        .expect("url");
    let store = usher_store::open(&url).await.expect("open");
    Some(usher_store::conformance::Harness::new(store, dir))
}

usher_store::conformance_tests!(fresh());
