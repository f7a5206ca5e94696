//! The admin console's entry; the full console comes with its own issue. Admins only:
//! others get 403, anonymous visitors are sent to sign in.

use crate::app::AppState;
use crate::client::ClientContext;
use crate::error::HttpError;
use crate::gate;
use crate::pages::{AdminPage, render};
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/", get(dashboard))
}

async fn dashboard(
    State(state): State<Arc<AppState>>,
    ctx: ClientContext,
    req: Request,
) -> Response {
    let auth = match state.session(&ctx, req.headers()).await {
        Ok(Some((_, auth))) => auth,
        Ok(None) => return gate::unauthenticated(&state, &ctx, &req),
        Err(e) => return HttpError::from(e).into_response(),
    };
    let Some(user) = auth.user.as_ref().filter(|u| u.is_admin()) else {
        return HttpError::Forbidden(
            "The admin console is for members of the admins group. Ask an administrator to add you.".into(),
        )
        .into_response();
    };
    render(
        StatusCode::OK,
        &AdminPage {
            prefix: state.prefix(),
            user: user.name.as_str(),
            live: state.engine.live_count(),
        },
    )
}
