//! Usher's domain: sessions, users, events, policies and the clock.
//!
//! Architecture invariant: this crate knows no HTTP, no SQL and no wall clock. Time
//! arrives through [`Clock`]; everything that can be wrong in user input is a type
//! with a `parse` that says what is wrong.

pub mod client_ip;
pub mod clock;
pub mod csv;
pub mod duration;
pub mod event;
pub mod ids;
pub mod policy;
pub mod query;
pub mod rules;
pub mod session;
pub mod user;
pub mod user_agent;

pub use clock::{Clock, ManualClock, SystemClock};
pub use duration::HumanDuration;
pub use event::{Event, EventKind};
pub use ids::{SessionId, Token, TokenHash};
pub use jiff::Timestamp;
pub use policy::{ConcurrencyPolicy, OnLimit, SessionLimit, SessionPolicy};
pub use query::{Listable, SessionQuery};
pub use rules::{AccessRules, IgnoreRule};
pub use session::{ClientSnapshot, EndReason, NewSession, SessionInfo, SessionKind, SessionRecord};
pub use user::{ApiToken, Group, InactiveUser, User, Username};
