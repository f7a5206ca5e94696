//! The reverse proxy: forwards an authenticated request to the upstream with Usher's
//! identity headers, streams both bodies, and splices WebSocket (any Upgrade) tunnels.
//!
//! Client copies of identity headers are removed in every spelling (`Remote_User`,
//! `remote-user`, …) before Usher's own are added, and hop-by-hop headers named in
//! `Connection` are removed before that, so a client can neither inject an identity nor
//! make Usher drop one (Traefik CVE-2024-45410, Caddy GHSA-f59h-q822-g45g).

use crate::client::ClientContext;
use crate::gate::Identity;
use crate::pages;
use crate::upstream::wire::HeadWriter;
use crate::upstream::{self, Pool, Tunnel, UpstreamError};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::borrow::Cow;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Whether a client header (compared as a CGI gateway would: case-blind, `_` as `-`)
/// claims something only Usher or a trusted proxy may say: an identity, or where the
/// request came from. Frameworks trust `X-Forwarded-Prefix`, `Forwarded`,
/// `X-Original-URL` and friends, so all of them go.
fn is_reserved(name: &HeaderName) -> bool {
    // Compared in place (`_` read as `-`): this runs for every header of every request.
    let n = name.as_str().as_bytes();
    let starts = |p: &str| {
        n.len() >= p.len()
            && n.iter()
                .zip(p.bytes())
                .all(|(a, b)| (if *a == b'_' { b'-' } else { *a }) == b)
    };
    let is = |p: &str| n.len() == p.len() && starts(p);
    crate::identity::HEADERS.iter().any(|h| is(h.as_str()))
        || is("x-real-ip")
        || starts("x-forwarded-")
        || starts("x-original-")
        || is("forwarded")
}

/// Parsed once: a lookup or removal by `&str` parses the name every time, and these
/// run twice for every proxied request (issue 9). A `static`: each use of a `const`
/// array of names would build all ten and drop them.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A request ready to go upstream ([`Proxy::prepare`]).
pub struct Prepared {
    out: upstream::Outgoing,
    body: axum::body::Body,
    /// The client's side of a WebSocket, when it asks for one.
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

pub struct Proxy {
    pool: Arc<Pool>,
    upstream: Uri,
    /// The upstream's `Host` when the client sent none (HTTP/2 names it in the URI).
    host: HeaderValue,
    /// The session cookie's base name, kept from the upstream in every prefixed form.
    cookie_name: String,
}

impl Proxy {
    /// `None` for an upstream URL without a host (the configuration refuses those).
    /// `threads`: the serving threads ([`crate::cores`]), each of which keeps its own
    /// upstream connections (0: connections are served on the shared runtime).
    pub fn new(upstream: Uri, cookie_name: &str, threads: usize) -> Option<Self> {
        let pool = Pool::new(&upstream, threads)?;
        let host = HeaderValue::from_str(upstream.authority()?.as_str()).ok()?;
        Some(Self {
            pool,
            upstream,
            host,
            cookie_name: cookie_name.to_owned(),
        })
    }

    /// The request's path and query under the upstream's path, in origin form.
    fn target<'u>(&self, uri: &'u Uri) -> Option<Cow<'u, str>> {
        let base = self.upstream.path().trim_end_matches('/');
        let pq = uri.path_and_query()?;
        if base.is_empty() {
            // The common case: the request's own bytes.
            return Some(Cow::Borrowed(pq.as_str()));
        }
        Some(Cow::Owned(format!("{base}{pq}")))
    }

    /// The request as it will go out, its head written: all [`Proxy::send`] needs of
    /// it, so that the request itself — its headers slices of hyper's read buffer — can
    /// be let go before the upstream is waited for (see the server's `early`).
    /// `None` when the request cannot be forwarded: answer [`Proxy::unforwardable`].
    pub fn prepare(
        &self,
        mut req: Request,
        ctx: &ClientContext,
        auth: &Identity,
    ) -> Option<Prepared> {
        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let target = self.target(&parts.uri)?;
        let mut head = HeadWriter::new(&parts.method, &target);
        write_fields(
            &mut head,
            &parts.headers,
            &Outgoing {
                ctx,
                auth,
                upgrade: upgrade.as_ref(),
                cookie_name: &self.cookie_name,
                host: &self.host,
            },
        );
        let out = upstream::Outgoing::new(head, &parts.method, &body, upgrade.is_some());
        Some(Prepared {
            out,
            body,
            client_upgrade,
        })
    }

    /// The answer to a request [`Proxy::prepare`] cannot forward.
    pub fn unforwardable() -> Response {
        pages::error_page(
            StatusCode::BAD_REQUEST,
            "This request path cannot be forwarded.",
        )
    }

    /// Sends a [`Proxy::prepare`]d request, and answers with the upstream's answer.
    pub async fn send(&self, prepared: Prepared) -> Response {
        let Prepared {
            out,
            body,
            client_upgrade,
        } = prepared;
        let Some(client_upgrade) = client_upgrade else {
            return match self.pool.send(out, body).await {
                Ok(mut resp) => {
                    strip_hop_by_hop(resp.headers_mut());
                    resp.into_response()
                }
                Err(e) => self.unavailable(&e),
            };
        };
        let (mut resp, tunnel) = match self.pool.send_upgrade(out, body).await {
            Ok(r) => r,
            Err(e) => return self.unavailable(&e),
        };
        let Some(tunnel) = tunnel else {
            strip_hop_by_hop(resp.headers_mut());
            return resp;
        };
        tokio::spawn(async move {
            let Tunnel { mut stream, early } = tunnel;
            let client = match client_upgrade.await {
                Ok(c) => c,
                Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
            };
            let mut client = TokioIo::new(client);
            // What the upstream sent right after its 101 goes first.
            if client.write_all(&early).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut stream).await;
            }
        });
        resp
    }

    fn unavailable(&self, e: &UpstreamError) -> Response {
        tracing::warn!(error = %e, upstream = %self.upstream, "upstream request failed");
        pages::error_page(
            StatusCode::BAD_GATEWAY,
            "The application behind Usher is not answering. Try again shortly.",
        )
    }
}

/// The protocol to tunnel, when the client asks to upgrade to WebSocket. Nothing else
/// is tunnelled: inside an `h2c` tunnel the client could send any identity header on
/// every later request, past Usher.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    // `Upgrade` first: most requests have none, and then one lookup settles it.
    let upgrade = headers
        .get(header::UPGRADE)
        .filter(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))?;
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        .then(|| upgrade.clone())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names the message has rather than ten removals (each one hashes
    // a name): most requests carry none of them, and most answers only `Connection`.
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| HOP_BY_HOP.contains(k))
        .cloned()
        .collect();
    if doomed.is_empty() {
        return;
    }
    doomed.extend(connection_listed(headers));
    for n in doomed {
        headers.remove(n);
    }
}

/// What Usher adds to a request on its way to the upstream.
struct Outgoing<'a> {
    ctx: &'a ClientContext,
    auth: &'a Identity,
    /// The protocol a WebSocket upgrade asks for.
    upgrade: Option<&'a HeaderValue>,
    cookie_name: &'a str,
    /// The upstream's `Host`, for a request that named none.
    host: &'a HeaderValue,
}

/// Writes the fields of the upstream request: the client's, less the hop-by-hop ones,
/// those only Usher may set, Usher's cookies and a credential Usher checked; then
/// Usher's own. Written straight into the head: changing the client's map first
/// (removals, nine inserts, the map grown) was a sixth of a proxied request's own
/// instructions (issue 9).
fn write_fields(head: &mut HeadWriter, headers: &HeaderMap, out: &Outgoing<'_>) {
    let Outgoing {
        ctx,
        auth,
        upgrade,
        cookie_name,
        host,
    } = *out;
    // One pass for what decides the rest (map lookups hash every name they ask for).
    let mut dropped = Vec::new();
    let mut has_host = false;
    // A trusted proxy's chain is extended; anyone else's is not believed.
    let mut prior: Vec<&[u8]> = Vec::new();
    for (name, value) in headers {
        if name == header::CONNECTION {
            dropped.extend(connection_tokens(value));
        } else if name == header::HOST {
            has_host = true;
        } else if ctx.peer_trusted && name == X_FORWARDED_FOR {
            prior.push(value.as_bytes());
        }
    }
    for (name, value) in headers {
        let skip = HOP_BY_HOP.contains(name)
            || dropped.contains(name)
            || is_reserved(name)
            || name == header::COOKIE
            // The credential was Usher's to check (an Usher token, or a user's
            // password): the app gets the identity headers, not the secret.
            || (auth.credential && name == header::AUTHORIZATION);
        if !skip {
            head.field(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if let Some(cookies) = app_cookies(headers, cookie_name) {
        head.field(b"cookie", &cookies);
    }
    if !has_host {
        head.field(b"host", host.as_bytes());
    }
    if let Some(proto) = upgrade {
        head.field(b"connection", b"upgrade");
        head.field(b"upgrade", proto.as_bytes());
    }
    for (name, value) in crate::identity::HEADERS
        .iter()
        .zip(crate::identity::values(Some(auth)))
    {
        head.field(name.as_str().as_bytes(), value.as_bytes());
    }
    head.field(b"x-real-ip", ip_value(ctx.ip()).as_bytes());
    let peer = ip_value(ctx.peer.ip().to_canonical());
    if prior.is_empty() {
        head.field(b"x-forwarded-for", peer.as_bytes());
    } else {
        let mut chain = prior.join(&b", "[..]);
        chain.extend_from_slice(b", ");
        chain.extend_from_slice(peer.as_bytes());
        head.field(b"x-forwarded-for", &chain);
    }
    head.field(
        b"x-forwarded-proto",
        if ctx.https { b"https" } else { b"http" },
    );
    // The client's `Host` as Usher read it; one that is not a valid value is sent
    // empty, as before.
    let forwarded_host = ctx.host.as_bytes();
    let valid = forwarded_host
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t');
    head.field(
        b"x-forwarded-host",
        if valid { forwarded_host } else { b"" },
    );
}

/// The names a `Connection` header lists: hop-by-hop too (RFC 9110 §7.6.1) — and a
/// client may name identity headers there to have a proxy drop them.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .collect()
}

/// The header names one `Connection` value lists.
fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = HeaderName> + '_ {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        // `keep-alive` and `close` are options, not names (and removed anyway).
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
}

/// Addresses written per worker thread (see [`ip_value`]).
const CACHED_IPS: usize = 8;

thread_local! {
    static IP_VALUES: std::cell::RefCell<[Option<(std::net::IpAddr, HeaderValue)>; CACHED_IPS]> =
        const { std::cell::RefCell::new([const { None }; CACHED_IPS]) };
}

/// An address as a header value. Two per proxied request (`X-Real-IP`, and the peer in
/// `X-Forwarded-For`), mostly the same few addresses (a load balancer's, a client's
/// keeping its connection): a value written before is cloned from a small per-thread
/// cache (direct-mapped by address; a clone touches a count only this thread uses).
fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    let slot = match ip {
        std::net::IpAddr::V4(v4) => u32::from(v4) as usize,
        std::net::IpAddr::V6(v6) => u128::from(v6) as usize,
    } % CACHED_IPS;
    IP_VALUES.with_borrow_mut(|cache| match &cache[slot] {
        Some((cached, value)) if *cached == ip => value.clone(),
        _ => {
            let value = write_ip(ip);
            cache[slot] = Some((ip, value.clone()));
            value
        }
    })
}

/// IPv4 is written by hand: `Display` goes through the formatter (and a padding buffer)
/// per octet, a few percent of a proxied request.
fn write_ip(ip: std::net::IpAddr) -> HeaderValue {
    let std::net::IpAddr::V4(v4) = ip else {
        return HeaderValue::from_maybe_shared(bytes::Bytes::from(ip.to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            buf[len] = b'0' + d;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The upstream has no use for Usher's credentials: the `Cookie` it gets holds the
/// app's own cookies byte for byte, and none of Usher's (`None`: no cookie is left).
fn app_cookies(headers: &HeaderMap, cookie_name: &str) -> Option<Vec<u8>> {
    let mut kept: Vec<u8> = Vec::new();
    for (name, value) in crate::cookie::pairs(headers) {
        let bare = name
            .strip_prefix(b"__Host-")
            .or_else(|| name.strip_prefix(b"__Secure-"))
            .unwrap_or(name);
        if bare == cookie_name.as_bytes() || name == crate::csrf::LOGIN_COOKIE.as_bytes() {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(name);
        kept.push(b'=');
        kept.extend_from_slice(value);
    }
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.10.100.199",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string());
        }
        // Twice: the second time many come from the per-thread cache, whose slots the
        // first pass shared between addresses.
        for _ in 0..2 {
            for o in 0..=255u8 {
                let ip = std::net::IpAddr::from([o, 255 - o, 0, o]);
                assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string());
            }
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Custom, Remote-User"),
            ("keep-alive", "timeout=5"),
            ("x-custom", "1"),
            ("remote-user", "mallory"),
            ("content-type", "text/plain"),
            ("transfer-encoding", "chunked"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);
        // Nothing hop-by-hop: nothing goes.
        let mut plain = HeaderMap::new();
        plain.insert(header::HOST, HeaderValue::from_static("a"));
        plain.insert(header::COOKIE, HeaderValue::from_static("b=1"));
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn reserved_names_are_matched_as_a_cgi_gateway_reads_them() {
        for reserved in [
            "remote-user",
            "remote_user",
            "REMOTE_GROUPS",
            "x-usher-session",
            "x_real_ip",
            "x-forwarded-prefix",
            "x_forwarded_for",
            "x-original-url",
            "forwarded",
        ] {
            let n = HeaderName::from_bytes(reserved.as_bytes()).unwrap();
            assert!(is_reserved(&n), "{reserved}");
        }
        for kept in [
            "remote",
            "remote-user-x",
            "x-forwarded",
            "forwardedx",
            "cookie",
            "x-real-ips",
        ] {
            let n = HeaderName::from_bytes(kept.as_bytes()).unwrap();
            assert!(!is_reserved(&n), "{kept}");
        }
    }
}
