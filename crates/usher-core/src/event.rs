//! History events (SPEC §2): what happened, to whom, from where, done by whom.

use crate::ids::SessionId;
use crate::session::EndReason;
use jiff::Timestamp;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Login,
    LoginFailed,
    Logout,
    Expired,
    Killed,
    Evicted,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserRemoved,
    PasswordChanged,
}

impl EventKind {
    pub const ALL: [Self; 11] = [
        Self::Login,
        Self::LoginFailed,
        Self::Logout,
        Self::Expired,
        Self::Killed,
        Self::Evicted,
        Self::UserCreated,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::UserRemoved,
        Self::PasswordChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::Logout => "logout",
            Self::Expired => "expired",
            Self::Killed => "killed",
            Self::Evicted => "evicted",
            Self::UserCreated => "user_created",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::UserRemoved => "user_removed",
            Self::PasswordChanged => "password_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The event that records a session ending for `reason`. A session ended because
    /// its user was disabled is recorded as killed; the `user_disabled` event itself
    /// is recorded once for the user.
    pub fn for_end(reason: EndReason) -> Self {
        match reason {
            EndReason::Logout => Self::Logout,
            EndReason::IdleTimeout | EndReason::AbsoluteTimeout => Self::Expired,
            EndReason::Killed | EndReason::UserDisabled => Self::Killed,
            EndReason::Evicted => Self::Evicted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Position in the history (0 until stored); newer events have larger ids.
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The user concerned; for `login_failed`, the name that was tried (possibly not a user).
    pub user: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub session: Option<SessionId>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// Who did it: a user name, `cli`, or `system` for timeouts.
    pub actor: Option<String>,
    /// A short free-form detail, such as the end reason.
    pub detail: Option<String>,
}

impl Event {
    pub fn new(at: Timestamp, kind: EventKind) -> Self {
        Self {
            id: 0,
            at,
            kind,
            user: None,
            session: None,
            ip: None,
            user_agent: None,
            actor: None,
            detail: None,
        }
    }
}
