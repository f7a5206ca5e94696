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
    /// Data in the store that Usher cannot read back; a bug or a hand edit.
    #[error("the store holds data Usher cannot read: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Other(String),
}
