//! The session engine: the in-memory index every request is checked against, the
//! write-behind of request counts, expiry, and the change feed that tells this node of
//! sessions ended elsewhere; plus accounts and passwords.
//!
//! Architecture invariant: no HTTP here, and no SQL; the engine talks to storage only
//! through `usher_store::Store`, and learns the time only from its `Clock`.

pub mod accounts;
pub mod clients;
mod columns;
mod error;
mod index;
pub mod intern;
pub mod metrics;
pub mod password;
pub mod sessions;
pub mod sharded;
pub mod throttle;
pub mod timeline;

pub use accounts::Accounts;
pub use error::EngineError;
pub use metrics::Metrics;
pub use password::PasswordHasher;
pub use sessions::{Engine, EngineConfig, LiveSession, RequestInfo};
