//! Usher's HTTP face: the gate every request outside the prefix passes (session check,
//! then reverse proxy or demo page), login and logout, health, and the server loop.
//!
//! Architecture invariant: status codes are decided in `error.rs` and by the handlers
//! of this crate only; the engine and the store below know nothing of HTTP.

pub mod access_log;
mod admin;
mod admin_reports;
mod anonymous;
pub mod api;
mod api_clients;
mod app;
mod client;
mod connections;
mod cookie;
mod cores;
mod csrf;
mod demo;
mod error;
mod form;
mod forward;
mod gate;
mod head;
pub(crate) mod health;
mod identity;
mod lane;
mod login;
mod me;
mod pages;
mod proxy;
pub mod redirect;
mod server;
mod settings;
mod upstream;
mod whoami;

pub use access_log::AccessLogTarget;
pub use app::{AppState, router};
pub use server::{Server, ServerError};
pub use settings::GatewaySettings;
