//! The identity headers Usher hands to the app: the same five, always all of them, on
//! the reverse proxy's requests and on forward-auth answers alike.

use crate::gate::Identity;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Identity headers. Every one is always set — empty when unknown — so a proxy that
/// copies them overwrites whatever the client sent (Caddy GHSA-7r4p-vjf4-gxv4). Made
/// once: the request path builds none.
pub const HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("remote-user"),
    HeaderName::from_static("remote-groups"),
    HeaderName::from_static("remote-name"),
    HeaderName::from_static("remote-email"),
    HeaderName::from_static("x-usher-session"),
];

/// Sets the identity headers for `auth` (all empty for `None`).
pub fn set(headers: &mut HeaderMap, auth: Option<&Identity>) {
    // Raw UTF-8 (obs-text) rather than nothing for names like "José"; control
    // characters, which no header may carry, give an empty value.
    let value = |s: &str| {
        HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
    };
    let user = auth.and_then(|a| a.user.as_deref());
    let values = [
        user.map(|u| value(u.name.as_str())),
        user.map(|u| {
            HeaderValue::from_maybe_shared(bytes::Bytes::from(u.groups_joined()))
                .unwrap_or_else(|_| HeaderValue::from_static(""))
        }),
        user.map(|u| value(&u.display_name)),
        user.map(|u| value(&u.email)),
        auth.and_then(|a| a.session.as_ref())
            .map(|s| value(s.id.as_str())),
    ];
    for (name, v) in HEADERS.into_iter().zip(values) {
        headers.insert(name, v.unwrap_or_else(|| HeaderValue::from_static("")));
    }
}
