//! Sessions as stored and reasoned about: what a session is, how it can end.

use crate::ids::{SessionId, TokenHash};
use crate::user::Username;
use jiff::Timestamp;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A browser with the cookie from the login page.
    Web,
    /// A bearer-token or basic-auth client.
    Api,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "web" => Some(Self::Web),
            "api" => Some(Self::Api),
            _ => None,
        }
    }
}

/// Why a session ended (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Logout,
    IdleTimeout,
    AbsoluteTimeout,
    Killed,
    Evicted,
    UserDisabled,
}

impl EndReason {
    pub const ALL: [Self; 6] = [
        Self::Logout,
        Self::IdleTimeout,
        Self::AbsoluteTimeout,
        Self::Killed,
        Self::Evicted,
        Self::UserDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::IdleTimeout => "idle_timeout",
            Self::AbsoluteTimeout => "absolute_timeout",
            Self::Killed => "killed",
            Self::Evicted => "evicted",
            Self::UserDisabled => "user_disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one request tells about the client: where it came from and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSnapshot {
    pub ip: IpAddr,
    /// Raw User-Agent, already cut to [`crate::user_agent::MAX_USER_AGENT`] bytes.
    pub user_agent: String,
    pub host: String,
}

/// A session about to be created (login).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: SessionId,
    pub token_hash: TokenHash,
    pub user: Option<Username>,
    pub kind: SessionKind,
    pub created_at: Timestamp,
    pub client: ClientSnapshot,
    /// How many web sessions the user may hold, counting this one.
    pub limit: Option<crate::policy::SessionLimit>,
}

/// A session as lists, the API and the CLI show it (never its token or token hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[a-z2-7]{12}$"))]
    pub id: SessionId,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub user: Option<Username>,
    #[serde(rename = "type")]
    pub kind: SessionKind,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ip: IpAddr,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub first_ip: IpAddr,
    pub user_agent: String,
    pub client: String,
    pub host: String,
    pub requests: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_access_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

impl SessionInfo {
    /// The view of a stored session under `policy`: it expires when the policy says
    /// (anonymous ones on their own idle timeout), or expired when it ended.
    pub fn of_stored(r: &SessionRecord, policy: &crate::SessionPolicy) -> Self {
        let expires = r.ended_at.unwrap_or_else(|| {
            policy
                .of(r.user.is_none())
                .expires_at(r.created_at, r.last_access_at)
        });
        Self::from_record(r, expires)
    }

    /// The view of a stored session; `expires_at` is the caller's to work out (it
    /// depends on the policy, or is the end for an ended session).
    pub fn from_record(r: &SessionRecord, expires_at: Timestamp) -> Self {
        Self {
            id: r.id,
            user: r.user.clone(),
            kind: r.kind,
            ip: r.ip,
            first_ip: r.first_ip,
            user_agent: r.user_agent.clone(),
            client: r.client.clone(),
            host: r.host.clone(),
            requests: r.requests,
            created_at: r.created_at,
            last_access_at: r.last_access_at,
            expires_at,
        }
    }
}

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub token_hash: TokenHash,
    pub user: Option<Username>,
    pub kind: SessionKind,
    pub ip: IpAddr,
    pub first_ip: IpAddr,
    pub user_agent: String,
    pub client: String,
    pub host: String,
    pub requests: u64,
    pub created_at: Timestamp,
    pub last_access_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<EndReason>,
    pub ended_by: Option<String>,
}
