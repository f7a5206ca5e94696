//! The request headers Usher reads on every request, found in one pass over the map.
//!
//! Each `HeaderMap::get` hashes the name and probes the table: a forward-auth request
//! asked eleven times (client IP, forwarded proto and host, Host, User-Agent, the
//! original URL's headers, Cookie twice, Authorization), about a tenth of Usher's own
//! work on it (issue 9, callgrind). A request carries a handful of headers; walking
//! them once and comparing names is cheaper than looking each one up.

use http::header::{AUTHORIZATION, COOKIE, FORWARDED, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue};
use usher_core::client_ip::ClientIpHeader;

/// What one pass found. Each field is the header's first value, as `HeaderMap::get`
/// gives it; the headers read with all their values (Cookie, the client IP header) say
/// whether there are more, and those come from the map itself.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    map: &'a HeaderMap,
    pub host: Option<&'a HeaderValue>,
    pub user_agent: Option<&'a HeaderValue>,
    pub authorization: Option<&'a HeaderValue>,
    pub x_forwarded_proto: Option<&'a HeaderValue>,
    pub x_forwarded_host: Option<&'a HeaderValue>,
    pub x_forwarded_uri: Option<&'a HeaderValue>,
    pub x_forwarded_method: Option<&'a HeaderValue>,
    pub x_original_url: Option<&'a HeaderValue>,
    pub x_original_method: Option<&'a HeaderValue>,
    cookie: Option<&'a HeaderValue>,
    more_cookies: bool,
    /// Present: `X-Forwarded-For`, `X-Real-IP`, `Forwarded`.
    client_ip: [bool; 3],
}

impl<'a> Head<'a> {
    pub fn scan(map: &'a HeaderMap) -> Self {
        let mut head = Self {
            map,
            host: None,
            user_agent: None,
            authorization: None,
            x_forwarded_proto: None,
            x_forwarded_host: None,
            x_forwarded_uri: None,
            x_forwarded_method: None,
            x_original_url: None,
            x_original_method: None,
            cookie: None,
            more_cookies: false,
            client_ip: [false; 3],
        };
        // Every value of every name, each name's values together and in order: the
        // first one seen is the one `get` would give.
        for (name, value) in map {
            // Standard names compare as an enum; the rest by their (lowercase) text.
            let slot = if name == HOST {
                &mut head.host
            } else if name == COOKIE {
                if head.cookie.is_some() {
                    head.more_cookies = true;
                }
                &mut head.cookie
            } else if name == USER_AGENT {
                &mut head.user_agent
            } else if name == AUTHORIZATION {
                &mut head.authorization
            } else if name == FORWARDED {
                head.client_ip[index(ClientIpHeader::Forwarded)] = true;
                continue;
            } else {
                match name.as_str() {
                    "x-forwarded-for" => {
                        head.client_ip[index(ClientIpHeader::XForwardedFor)] = true;
                        continue;
                    }
                    "x-real-ip" => {
                        head.client_ip[index(ClientIpHeader::XRealIp)] = true;
                        continue;
                    }
                    "x-forwarded-proto" => &mut head.x_forwarded_proto,
                    "x-forwarded-host" => &mut head.x_forwarded_host,
                    "x-forwarded-uri" => &mut head.x_forwarded_uri,
                    "x-forwarded-method" => &mut head.x_forwarded_method,
                    "x-original-url" => &mut head.x_original_url,
                    "x-original-method" => &mut head.x_original_method,
                    _ => continue,
                }
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        head
    }

    /// The whole map, for what is read only on rarer paths.
    pub fn map(&self) -> &'a HeaderMap {
        self.map
    }

    /// Every `Cookie` header's value, in order.
    pub fn cookies(&self) -> impl Iterator<Item = &'a HeaderValue> + use<'a> {
        let rest = self
            .more_cookies
            .then(|| self.map.get_all(COOKIE).iter().skip(1));
        self.cookie.into_iter().chain(rest.into_iter().flatten())
    }

    /// Whether the request carries any cookie.
    pub fn has_cookie(&self) -> bool {
        self.cookie.is_some()
    }

    /// Every value of the client IP header `h`, in order (none when it is absent, the
    /// common case for a client talking to Usher directly).
    pub fn client_ip(&self, h: ClientIpHeader) -> impl Iterator<Item = &'a HeaderValue> + use<'a> {
        let map = self.map;
        self.client_ip[index(h)]
            .then(|| map.get_all(crate::client::names::client_ip(h)).iter())
            .into_iter()
            .flatten()
    }
}

fn index(h: ClientIpHeader) -> usize {
    match h {
        ClientIpHeader::XForwardedFor => 0,
        ClientIpHeader::XRealIp => 1,
        ClientIpHeader::Forwarded => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn text(v: Option<&HeaderValue>) -> Option<&str> {
        v.map(|v| v.to_str().unwrap())
    }

    /// Whatever the headers, the pass finds what `get` and `get_all` would.
    #[test]
    fn finds_what_lookups_by_name_find() {
        let m = map(&[
            ("X-Forwarded-Host", "a.example"),
            ("cookie", "a=1"),
            ("Host", "usher.example"),
            ("x-forwarded-host", "b.example"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("user-agent", "curl/8"),
            ("Cookie", "b=2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-uri", "/x"),
            ("x-forwarded-method", "POST"),
            ("x-original-url", "https://a.example/y"),
            ("x-original-method", "PUT"),
            ("authorization", "Bearer t"),
            ("x-forwarded-for", "10.0.0.2"),
            ("accept", "text/html"),
        ]);
        let head = Head::scan(&m);
        for (found, name) in [
            (head.host, "host"),
            (head.user_agent, "user-agent"),
            (head.authorization, "authorization"),
            (head.x_forwarded_proto, "x-forwarded-proto"),
            (head.x_forwarded_host, "x-forwarded-host"),
            (head.x_forwarded_uri, "x-forwarded-uri"),
            (head.x_forwarded_method, "x-forwarded-method"),
            (head.x_original_url, "x-original-url"),
            (head.x_original_method, "x-original-method"),
        ] {
            assert_eq!(text(found), text(m.get(name)), "{name}");
            assert!(found.is_some(), "{name}");
        }
        assert_eq!(text(head.x_forwarded_host), Some("a.example"));
        let cookies: Vec<_> = head.cookies().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        let xff: Vec<_> = head
            .client_ip(ClientIpHeader::XForwardedFor)
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(xff, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(head.client_ip(ClientIpHeader::XRealIp).count(), 0);
        assert_eq!(head.client_ip(ClientIpHeader::Forwarded).count(), 0);
    }

    #[test]
    fn absent_headers_are_none() {
        let m = map(&[("accept", "*/*"), ("x-real-ip", "10.0.0.9")]);
        let head = Head::scan(&m);
        assert!(head.host.is_none() && head.user_agent.is_none());
        assert!(!head.has_cookie() && head.cookies().next().is_none());
        assert_eq!(head.client_ip(ClientIpHeader::XRealIp).count(), 1);
        let one = map(&[("cookie", "s=1")]);
        assert_eq!(Head::scan(&one).cookies().count(), 1);
    }
}
