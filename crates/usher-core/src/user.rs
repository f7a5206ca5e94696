//! Users and groups as the domain sees them.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// The group whose members may use the admin console and the API.
pub const ADMINS: &str = "admins";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a user name is 1 to 64 characters of letters, digits and . _ @ + - (got {0:?})")]
    User(String),
    #[error("a group name is 1 to 64 characters of a-z, 0-9, . _ - (got {0:?})")]
    Group(String),
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A user's name. Shared, not copied: every live session of a user holds the same one
/// (a clone is a reference count), which a million sessions of a thousand users feel.
/// `Arc<String>`, not `Arc<str>`: a thin pointer, 8 bytes in every live session.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(Arc<String>);

impl Username {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'));
        if ok {
            Ok(Self(Arc::new(s.to_owned())))
        } else {
            Err(NameError::User(shorten(s)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

impl Serialize for Username {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Group(String);

impl Group {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Group(shorten(s)))
        }
    }

    pub fn admins() -> Self {
        Self(ADMINS.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user account. `password_hash` is an argon2id PHC string, or `None` for accounts
/// that cannot log in with a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: Username,
    pub display_name: String,
    pub email: String,
    pub groups: Vec<Group>,
    pub disabled: bool,
    pub password_hash: Option<String>,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
}

impl User {
    pub fn new(name: Username, now: Timestamp) -> Self {
        Self {
            display_name: name.as_str().to_owned(),
            name,
            email: String::new(),
            groups: Vec::new(),
            disabled: false,
            password_hash: None,
            created_at: now,
            last_login_at: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g.as_str() == ADMINS)
    }

    /// Groups as one comma-separated string, as the `Remote-Groups` header carries them.
    pub fn groups_joined(&self) -> String {
        let names: Vec<&str> = self.groups.iter().map(Group::as_str).collect();
        names.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_parse_or_say_why() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("bob.smith@example.com").is_ok());
        for bad in ["", "a b", "<script>", "x\0", &"a".repeat(65), "é"] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn groups_are_lowercase_words() {
        assert!(Group::parse("admins").is_ok());
        assert!(Group::parse("Admins").is_err());
        assert!(Group::parse("a,b").is_err());
    }
}

/// One line of the inactive-users report: a user with no login since a date, with
/// where they last signed in from and when Usher last saw them at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InactiveUser {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Username,
    pub display_name: String,
    pub email: String,
    pub disabled: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_login_at: Option<Timestamp>,
    /// The address of their latest session's first request.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub last_login_ip: Option<std::net::IpAddr>,
    /// The last request Usher saw on any of their sessions.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_activity_at: Option<Timestamp>,
}

/// A bearer token for the REST API, as listed (its secret is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub owner: Username,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_used_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
}
