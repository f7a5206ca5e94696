//! The PostgreSQL backend against the shared conformance suite. Runs when
//! `USHER_TEST_POSTGRES_URL` is set (CI sets it); each test gets a database of its own.
#![allow(clippy::expect_used)]

use usher_store::conformance::{Harness, postgres_scratch};

async fn fresh() -> Option<Harness> {
    let (url, scratch) = postgres_scratch().await?;
    let store = usher_store::open(&url).await.expect("open");
    Some(Harness::new(store, scratch))
}

usher_store::conformance_tests!(fresh());
