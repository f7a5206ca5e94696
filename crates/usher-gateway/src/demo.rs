//! The built-in page served when no upstream is configured: proof that the gate works.

use crate::app::AppState;
use crate::pages::{DemoPage, render};
use axum::response::Response;
use http::StatusCode;
use usher_engine::sessions::Authenticated;

pub fn page(state: &AppState, auth: &Authenticated) -> Response {
    let (name, admin) = match &auth.user {
        Some(u) => (u.display_name.as_str(), u.is_admin()),
        None => ("visitor", false),
    };
    render(
        StatusCode::OK,
        &DemoPage {
            prefix: state.prefix(),
            display_name: name,
            session_id: auth.session.id.as_str(),
            requests: auth.session.requests(),
            admin,
        },
    )
}
