//! API errors: `{"error": {"code", "message"}}` with a fitting status; client errors
//! say what to change, server errors are logged in full and shown with an operation id.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use usher_core::query::QueryError;
use usher_engine::EngineError;
use usher_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    param: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
        }
    }

    /// What is wrong, in words (the console shows it on its pages).
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let message = e.to_string();
        Self::invalid(&e.param, message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(StoreError::NotFound(what)) => {
                Self::not_found(format!("{what} not found"))
            }
            EngineError::Store(StoreError::Conflict(what)) => {
                Self::new(StatusCode::CONFLICT, "conflict", what)
            }
            EngineError::Store(e @ StoreError::LimitReached(_)) => {
                Self::new(StatusCode::CONFLICT, "session_limit", e.to_string())
            }
            EngineError::Store(StoreError::Unavailable(why)) => {
                tracing::warn!(error = %why, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; nothing was changed; try again shortly",
                )
            }
            EngineError::Invalid(msg) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg)
            }
            other => {
                let op = usher_core::SessionId::generate()
                    .map(|id| id.to_string())
                    .unwrap_or_default();
                tracing::error!(op = %op, error = %other, "API request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error; quote operation id {op} to your administrator"),
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(p) = self.param {
            error["param"] = serde_json::Value::String(p);
        }
        let mut r = (
            self.status,
            serde_json::json!({ "error": error }).to_string(),
        )
            .into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"usher\""),
            );
        }
        r
    }
}
