//! The one place where failures become HTTP statuses. Client errors say precisely what
//! is wrong; server errors are logged in full under an operation id and shown opaque.

use crate::pages;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use usher_engine::EngineError;
use usher_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<EngineError> for HttpError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(StoreError::NotFound(what)) => {
                tracing::debug!(%what, "not found");
                Self::NotFound
            }
            EngineError::Store(StoreError::Unavailable(why)) => Self::Unavailable(why),
            EngineError::Invalid(msg) => Self::BadRequest(msg),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                let op = operation_id();
                tracing::error!(op = %op, error = %detail, "request failed");
                format!(
                    "Something went wrong on our side. Quote operation id {op} to your administrator."
                )
            }
            Self::Unavailable(detail) => {
                let op = operation_id();
                tracing::warn!(op = %op, error = %detail, "store unavailable");
                format!(
                    "Usher cannot reach its store right now; try again in a moment (operation id {op})."
                )
            }
            other => other.to_string(),
        };
        pages::error_page(status, &message)
    }
}

fn operation_id() -> String {
    usher_core::SessionId::generate()
        .map(|id| id.to_string())
        .unwrap_or_else(|_| "unknown".into())
}
