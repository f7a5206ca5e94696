//! The store URL: `sqlite://PATH` or `postgres://…`, parsed once; the backend follows
//! from the scheme. Its `Debug` and `Display` never show a password.

use std::fmt;
use std::path::PathBuf;

#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a store URL: use sqlite://PATH (e.g. sqlite://usher-data/usher.db) or postgres://USER@HOST/DB"
)]
pub struct StoreUrlError(String);

impl StoreUrl {
    pub fn parse(s: &str) -> Result<Self, StoreUrlError> {
        let err = || StoreUrlError(redact(s));
        if let Some(rest) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err(err());
            }
            Ok(Self::Sqlite { path: path.into() })
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres { url: s.to_owned() })
        } else {
            Err(err())
        }
    }
}

/// Hides the password of `scheme://user:password@host`.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let creds = &s[start + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &s[..start + 3], &s[at..]),
                None => s.to_owned(),
            }
        }
        _ => s.to_owned(),
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            Self::Postgres { url } => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        assert_eq!(
            StoreUrl::parse("sqlite://usher-data/usher.db"),
            Ok(StoreUrl::Sqlite {
                path: "usher-data/usher.db".into()
            })
        );
        let pg = StoreUrl::parse("postgres://u:hunter2@db/usher");
        assert_eq!(
            pg.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            "postgres://u:***@db/usher"
        );
        assert!(!format!("{pg:?}").contains("hunter2"));
        assert!(StoreUrl::parse("mysql://x").is_err());
        assert!(StoreUrl::parse("sqlite://").is_err());
    }
}
