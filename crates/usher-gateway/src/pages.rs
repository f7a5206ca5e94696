//! Server-rendered pages (askama, auto-escaped) and the headers every Usher page carries.

use askama::Template;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// A strict policy: Usher's pages load nothing but their own stylesheet.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self' https: http:; base-uri 'none'; frame-ancestors 'none'";

pub fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    r
}

/// Headers for every response Usher itself produces: no caching of pages that show
/// session data, no sniffing, no framing, no referrer (login URLs carry `rd`).
pub fn secure_headers(h: &mut http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

pub fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            html(StatusCode::INTERNAL_SERVER_ERROR, "Internal error".into())
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub prefix: &'a str,
    pub csrf: &'a str,
    pub rd: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "demo.html")]
pub struct DemoPage<'a> {
    pub prefix: &'a str,
    pub display_name: &'a str,
    pub session_id: &'a str,
    pub requests: u64,
    pub admin: bool,
    pub signed_in: bool,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub prefix: &'a str,
    pub user: &'a str,
    pub session_id: &'a str,
    pub csrf: &'a str,
    pub rd: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub prefix: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub link: Option<&'a str>,
    pub link_text: &'a str,
}

/// An error page; the prefix is not known here, so its stylesheet link is relative to
/// the default. The message is escaped like everything else.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    render(
        status,
        &MessagePage {
            prefix: "/usher",
            title,
            message,
            link: None,
            link_text: "",
        },
    )
}
