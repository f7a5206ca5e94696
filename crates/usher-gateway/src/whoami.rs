//! `/usher/whoami`: what Usher concluded about the caller's address, so an operator can
//! check a proxy setup with one request. Reads no cookie and counts nothing.

use crate::app::AppState;
use crate::client::ClientContext;
use axum::Json;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/whoami", get(whoami))
}

async fn whoami(ctx: ClientContext) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "client_ip": ctx.ip().to_string(),
        "peer": ctx.peer.to_string(),
        "peer_trusted": ctx.peer_trusted,
        "believed_header": ctx.believed().map(|h| h.header_name()),
        "header_malformed": ctx.resolved.malformed,
        "https": ctx.https,
        "host": ctx.host,
    }))
}
