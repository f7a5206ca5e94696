//! The one backend-neutral error every store converts into at its edge.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// The database cannot be reached or written right now (locked, disk full, down).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Unsupported(String),
    /// The user already holds the most sessions allowed, and the policy is to refuse.
    #[error("the user already has {0} session(s), the most allowed")]
    LimitReached(u32),
    /// Data in the store that Usher cannot read back; a bug or a hand edit.
    #[error("the store holds data Usher cannot read: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Other(String),
}

/// Whether a database error code means "not now" rather than "never": SQLite's
/// numeric result codes (BUSY 5, LOCKED 6, READONLY 8, IOERR 10, FULL 13, CANTOPEN 14)
/// and PostgreSQL's SQLSTATE classes 08 (connection), 53 (resources, disk full),
/// 57 (operator intervention, shutdown) and 58 (system I/O).
fn transient(code: &str) -> bool {
    match code.parse::<i64>() {
        Ok(n) if code.len() < 5 || n > 99_999 => matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14),
        _ => ["08", "53", "57", "58"].iter().any(|c| code.starts_with(c)),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                if db.is_unique_violation() {
                    StoreError::Conflict(db.message().to_owned())
                } else if db.code().is_some_and(|c| transient(&c)) {
                    StoreError::Unavailable(db.message().to_owned())
                } else {
                    StoreError::Other(e.to_string())
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Other(format!("migration failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transient_codes() {
        assert!(super::transient("5"));
        assert!(super::transient("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(super::transient("13"));
        assert!(!super::transient("19")); // SQLITE_CONSTRAINT
        assert!(super::transient("08006"));
        assert!(super::transient("53100"));
        assert!(!super::transient("23505"));
        assert!(!super::transient("42P01"));
    }
}
