//! CSRF protection: HMAC synchronizer tokens bound to the session (or, before login, to
//! a short-lived pre-session cookie), plus the Fetch-Metadata/Origin check as a second
//! layer.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Name of the pre-session cookie the login form is bound to.
pub const LOGIN_COOKIE: &str = "usher_login";

#[derive(Clone)]
pub struct CsrfKey(Vec<u8>);

impl CsrfKey {
    pub fn new(secret: Vec<u8>) -> Self {
        Self(secret)
    }

    /// The server secret, for keyed hashes elsewhere (never sent anywhere).
    pub fn key_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The token for a form bound to `binding` (a session's token hash, or the
    /// pre-session cookie), for purpose `purpose`.
    pub fn token(&self, purpose: &str, binding: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(binding);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    pub fn verify(&self, purpose: &str, binding: &[u8], presented: &str) -> bool {
        let expected = self.token(purpose, binding);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Refuses requests a browser marks as cross-site, or whose `Origin` is another host.
///
/// With `Referrer-Policy: no-referrer` (which Usher's pages send, since login URLs carry
/// `rd`), browsers send `Origin: null` on form posts; then the Fetch-Metadata header
/// decides, and without one the request is refused (the CSRF token is still checked
/// on top of this in every case).
pub fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    if site == Some(b"cross-site") {
        return false;
    }
    match headers.get(http::header::ORIGIN) {
        None => true,
        Some(origin) if origin.as_bytes() == b"null" => {
            matches!(site, Some(b"same-origin" | b"same-site" | b"none"))
        }
        Some(origin) => {
            let Ok(origin) = origin.to_str() else {
                return false;
            };
            url::Url::parse(origin)
                .ok()
                .and_then(|u| {
                    let h = u.host_str()?.to_owned();
                    Some(match u.port() {
                        Some(p) => format!("{h}:{p}"),
                        None => h,
                    })
                })
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn origin_and_fetch_metadata() {
        let host = "app.example:8080";
        assert!(same_origin(&h(&[]), host));
        assert!(same_origin(
            &h(&[("origin", "http://app.example:8080")]),
            host
        ));
        assert!(!same_origin(
            &h(&[("origin", "https://evil.example")]),
            host
        ));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")]), host));
        // What a browser sends under Referrer-Policy: no-referrer.
        assert!(same_origin(
            &h(&[("origin", "null"), ("sec-fetch-site", "same-origin")]),
            host
        ));
        assert!(!same_origin(&h(&[("origin", "null")]), host));
        assert!(!same_origin(
            &h(&[("origin", "null"), ("sec-fetch-site", "cross-site")]),
            host
        ));
    }
}
