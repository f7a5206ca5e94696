//! Reading and writing Usher's session cookie.
//!
//! Reading is strict: a name that appears twice with different values (cookie tossing
//! from a sibling domain) binds to nothing, and look-alike names are never read.

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The cookie name to use for a request: `__Host-` over https (no Domain allowed),
/// `__Secure-` over https when a cookie domain is configured, the bare name over http.
pub fn cookie_name(base: &str, https: bool, domain: Option<&str>) -> String {
    match (https, domain) {
        (true, None) => format!("__Host-{base}"),
        (true, Some(_)) => format!("__Secure-{base}"),
        (false, _) => base.to_owned(),
    }
}

/// The value of cookie `name`, if it appears exactly once (or always with one value).
/// Works on bytes: another cookie with non-ASCII bytes (an app's `name=José`) must not
/// hide Usher's.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    read_in(headers.get_all(COOKIE).iter(), name).and_then(|v| std::str::from_utf8(v).ok())
}

/// [`read`] over the values of the `Cookie` headers, as bytes (a token is decoded
/// from them without a UTF-8 check first).
pub fn read_in<'a>(values: impl Iterator<Item = &'a HeaderValue>, name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    let mut found: Option<&[u8]> = None;
    // `pairs`, but a pair that cannot be Usher's is skipped on its first bytes rather
    // than cut in two and trimmed (issue 9: a tenth of a forward-auth check was here).
    let candidates = split(values).filter_map(|pair| {
        let rest = pair.trim_ascii_start().strip_prefix(name)?;
        let v = rest.trim_ascii_start().strip_prefix(b"=")?;
        Some(v.trim_ascii())
    });
    for v in candidates {
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        match found {
            Some(prev) if prev != v => return None,
            _ => found = Some(v),
        }
    }
    found
}

/// Every `name=value` pair of every `Cookie` header, trimmed, as bytes.
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    pieces(headers).filter_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
    })
}

/// Every `;`-separated piece of every `Cookie` header, untrimmed.
fn pieces(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    split(headers.get_all(COOKIE).iter())
}

fn split<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> impl Iterator<Item = &'a [u8]> {
    values.flat_map(|value| {
        // memchr's vector search, not `split`'s byte at a time: a cookie header is
        // scanned on every request (issue 9).
        let mut rest = Some(value.as_bytes());
        std::iter::from_fn(move || {
            let r = rest?;
            Some(match memchr::memchr(b';', r) {
                Some(i) => {
                    rest = Some(&r[i + 1..]);
                    &r[..i]
                }
                None => {
                    rest = None;
                    r
                }
            })
        })
    })
}

/// A `Set-Cookie` value carrying `value`. No `Max-Age`: the cookie lives as long as the
/// browser session, and the server decides when the session is over.
pub fn set(name: &str, value: &str, https: bool, domain: Option<&str>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if https {
        c.push_str("; Secure");
    }
    if let (Some(d), false) = (domain, name.starts_with("__Host-")) {
        c.push_str("; Domain=");
        c.push_str(d);
    }
    c
}

/// A `Set-Cookie` value that removes the cookie (same attributes, or browsers ignore it).
pub fn clear(name: &str, https: bool, domain: Option<&str>) -> String {
    let mut c = set(name, "", https, domain);
    c.push_str("; Max-Age=0");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn reads_one_value_and_refuses_ambiguity() {
        assert_eq!(
            read(&headers(&["a=1; usher_session=xyz; b=2"]), "usher_session"),
            Some("xyz")
        );
        assert_eq!(
            read(
                &headers(&["usher_session=x", "usher_session=x"]),
                "usher_session"
            ),
            Some("x")
        );
        assert_eq!(
            read(
                &headers(&["usher_session=x; usher_session=y"]),
                "usher_session"
            ),
            None
        );
        assert_eq!(
            read(&headers(&["__Host-usher_session=x"]), "usher_session"),
            None
        );
        assert_eq!(
            read(&headers(&["usher_sessionx=1; =; ;;"]), "usher_session"),
            None
        );
        assert_eq!(
            read(
                &headers(&["a=1;usher_session = spaced ;b"]),
                "usher_session"
            ),
            Some("spaced")
        );
        assert_eq!(
            read(
                &headers(&["usher_session; usher_session=x"]),
                "usher_session"
            ),
            Some("x"),
            "a bare name is no value"
        );
    }

    #[test]
    fn attributes() {
        assert_eq!(cookie_name("s", true, None), "__Host-s");
        let c = set("__Host-s", "v", true, Some("example.com"));
        assert_eq!(c, "__Host-s=v; Path=/; HttpOnly; SameSite=Lax; Secure");
        let c = set("__Secure-s", "v", true, Some("example.com"));
        assert!(c.ends_with("; Domain=example.com"));
        assert!(clear("s", false, None).ends_with("Max-Age=0"));
    }
}
