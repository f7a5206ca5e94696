//! The built-in page served when no upstream is configured: proof that the gate works.

use crate::app::AppState;
use crate::gate::Identity;
use crate::pages::{DemoPage, render};
use axum::response::Response;
use http::StatusCode;

pub fn page(state: &AppState, auth: &Identity) -> Response {
    let (name, admin) = match &auth.user {
        Some(u) => (u.display_name.as_str(), u.is_admin()),
        None => ("visitor", false),
    };
    render(
        StatusCode::OK,
        &DemoPage {
            prefix: state.prefix(),
            display_name: name,
            session_id: auth.session.as_ref().map_or("", |s| s.id.as_str()),
            requests: auth
                .session
                .as_ref()
                .map_or(0, |s| state.engine.requests(s)),
            admin,
            signed_in: auth.user.is_some(),
        },
    )
}
