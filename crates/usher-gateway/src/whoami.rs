//! `/usher/whoami`: what Usher concluded about the caller's address, so an operator can
//! check a proxy setup with one request. Reads no cookie and counts nothing.

use crate::app::AppState;
use crate::client::ClientContext;
use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::routing::get;
use http::{HeaderMap, Uri};
use std::net::SocketAddr;
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/whoami", get(whoami))
}

async fn whoami(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    let ctx = ClientContext::new(&state.settings, peer, &headers, &uri);
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
