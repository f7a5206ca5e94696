//! Usher's integration tests, in one binary: the real server on loopback ports, a real
//! SQLite file per test, HTTP from the outside.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod anonymous;
mod api;
mod api_clients;
mod binary;
mod browser;
mod console;
mod forward;
mod login;
mod operations;
mod postgres;
mod proxies;
mod proxy;
mod sessions;
mod support;
