//! Which address is the client: the peer, or what a trusted proxy says (SPEC §6).
//!
//! A forwarded header is believed only when the peer is inside `proxy.trusted`, and
//! then only up to the right-most address that is not itself a trusted proxy: every
//! address left of that one was written by a party we do not trust.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpHeader {
    XForwardedFor,
    XRealIp,
    Forwarded,
}

impl ClientIpHeader {
    pub const CHOICES: &'static str = "X-Forwarded-For, X-Real-IP, Forwarded";

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(Self::XForwardedFor),
            "x-real-ip" => Some(Self::XRealIp),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }

    pub fn header_name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::XRealIp => "x-real-ip",
            Self::Forwarded => "forwarded",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

/// The outcome of resolving one request's client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub ip: IpAddr,
    /// The header that was believed, if any.
    pub believed: Option<ClientIpHeader>,
    /// A header from a trusted peer could not be read; the peer address was used.
    pub malformed: bool,
    /// The peer is one of the trusted proxies (an IPv4-mapped IPv6 peer as its IPv4
    /// address), so the other forwarded headers it sends are believed too.
    pub peer_trusted: bool,
}

/// Resolves the client IP of a request from `peer` and the values of the configured
/// header (all occurrences, in order).
pub fn resolve<'a>(
    peer: IpAddr,
    trusted: &TrustedProxies,
    header: ClientIpHeader,
    values: impl Iterator<Item = &'a [u8]>,
) -> Resolved {
    let peer = peer.to_canonical();
    let peer_trusted = trusted.contains(peer);
    let fallback = |malformed| Resolved {
        ip: peer,
        believed: None,
        malformed,
        peer_trusted,
    };
    if !peer_trusted {
        return fallback(false);
    }
    let mut entries: Vec<IpAddr> = Vec::new();
    let mut any = false;
    for value in values {
        any = true;
        let Ok(text) = std::str::from_utf8(value) else {
            return fallback(true);
        };
        let parsed = match header {
            ClientIpHeader::XForwardedFor => parse_list(text, parse_plain),
            ClientIpHeader::XRealIp => parse_plain(text.trim()).map(|ip| vec![ip]),
            ClientIpHeader::Forwarded => parse_forwarded(text),
        };
        match parsed {
            Some(mut ips) => entries.append(&mut ips),
            None => return fallback(true),
        }
    }
    if !any || entries.is_empty() {
        return fallback(false);
    }
    // Walk from the right: skip our own trusted proxies; the first stranger is the client.
    let ip = entries
        .iter()
        .rev()
        .copied()
        .find(|ip| !trusted.contains(*ip))
        .unwrap_or(entries[0]);
    Resolved {
        ip,
        believed: Some(header),
        malformed: false,
        peer_trusted,
    }
}

fn parse_list(text: &str, item: fn(&str) -> Option<IpAddr>) -> Option<Vec<IpAddr>> {
    text.split(',').map(|s| item(s.trim())).collect()
}

/// An address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_plain(s: &str) -> Option<IpAddr> {
    if s.len() > 64 {
        return None;
    }
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

/// RFC 7239: `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`.
fn parse_forwarded(text: &str) -> Option<Vec<IpAddr>> {
    let mut out = Vec::new();
    for element in text.split(',') {
        for pair in element.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                if pair.trim().is_empty() {
                    continue;
                }
                return None;
            };
            if !key.trim().eq_ignore_ascii_case("for") {
                continue;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            let bare = value
                .strip_prefix('[')
                .and_then(|v| v.split_once(']'))
                .map(|(inner, _)| inner)
                .unwrap_or(value);
            out.push(parse_plain(bare)?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        TrustedProxies::new(vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn run(peer: &str, header: ClientIpHeader, values: &[&str]) -> Resolved {
        resolve(
            ip(peer),
            &trusted(),
            header,
            values.iter().map(|v| v.as_bytes()),
        )
    }

    #[test]
    fn the_peer_is_trusted_by_its_canonical_address() {
        for peer in ["127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.1.2.3"] {
            let r = run(peer, ClientIpHeader::XForwardedFor, &[]);
            assert!(r.peer_trusted, "{peer}");
        }
        for peer in ["203.0.113.9", "::ffff:203.0.113.9", "::1"] {
            let r = run(peer, ClientIpHeader::XForwardedFor, &["1.2.3.4"]);
            assert!(!r.peer_trusted, "{peer}");
        }
    }

    #[test]
    fn untrusted_peer_is_never_believed() {
        let r = run("203.0.113.9", ClientIpHeader::XForwardedFor, &["1.2.3.4"]);
        assert_eq!(r.ip, ip("203.0.113.9"));
        assert_eq!(r.believed, None);
    }

    #[test]
    fn right_most_untrusted_address_wins() {
        let r = run(
            "127.0.0.1",
            ClientIpHeader::XForwardedFor,
            &["6.6.6.6, 1.2.3.4", "10.1.1.1"],
        );
        assert_eq!(r.ip, ip("1.2.3.4"));
        assert_eq!(r.believed, Some(ClientIpHeader::XForwardedFor));
    }

    #[test]
    fn malformed_falls_back_to_peer() {
        for bad in [
            "<script>",
            "1.2.3.4, a.b.c.d",
            "::ffff:1.2.3.4%eth0",
            &"9".repeat(4096),
        ] {
            let r = run("127.0.0.1", ClientIpHeader::XForwardedFor, &[bad]);
            assert_eq!(r.ip, ip("127.0.0.1"), "{bad}");
            assert!(r.malformed);
        }
    }

    #[test]
    fn real_ip_and_forwarded() {
        let r = run("127.0.0.1", ClientIpHeader::XRealIp, &["2001:db8::7"]);
        assert_eq!(r.ip, ip("2001:db8::7"));
        let r = run(
            "127.0.0.1",
            ClientIpHeader::Forwarded,
            &[r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711""#],
        );
        assert_eq!(r.ip, ip("2001:db8::1"));
        let r = run("::ffff:127.0.0.1", ClientIpHeader::XRealIp, &["5.6.7.8"]);
        assert_eq!(r.ip, ip("5.6.7.8"));
    }
}
