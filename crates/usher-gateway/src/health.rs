//! Health endpoints for orchestrators. They never look at cookies, so they never create
//! or count a session.

use crate::app::AppState;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub fn router(metrics_here: bool) -> Router<Arc<AppState>> {
    let r = Router::new()
        .route("/healthz", get(live))
        .route("/livez", get(live))
        .route("/readyz", get(ready));
    if metrics_here {
        r.route("/metrics", get(metrics))
    } else {
        r
    }
}

/// Prometheus text; the live-session gauges are read from the index at each scrape.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.engine.update_gauges();
    let body = state.engine.metrics().encode();
    let mut r = body.into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    r
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    match state.engine.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response()
        }
    }
}
