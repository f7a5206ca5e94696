//! Errors of the engine, in terms a caller can act on.

use usher_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error("loading the live sessions stopped: {0}")]
    Load(String),
    #[error(transparent)]
    Full(#[from] crate::columns::Full),
}

impl From<usher_core::ids::IdError> for EngineError {
    fn from(e: usher_core::ids::IdError) -> Self {
        Self::Random(e.to_string())
    }
}
