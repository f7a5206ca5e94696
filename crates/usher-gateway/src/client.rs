//! What Usher knows about the client of one request: its address (through trusted
//! proxies only), whether it came over https, the host it asked for, its User-Agent.

use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use usher_core::client_ip::{self, ClientIpHeader, Resolved};
use usher_engine::RequestInfo;

use crate::app::AppState;
use crate::error::HttpError;
use crate::head::Head;
use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ClientContext {
    pub peer: SocketAddr,
    pub resolved: Resolved,
    pub https: bool,
    /// Host (with port, if any) the client asked for.
    pub host: String,
    pub user_agent: String,
    pub peer_trusted: bool,
}

impl ClientContext {
    pub fn new(state: &AppState, peer: SocketAddr, head: &Head<'_>, uri: &http::Uri) -> Self {
        let settings = &state.settings;
        let header = settings.client_ip_header;
        let resolved = client_ip::resolve(
            peer.ip(),
            &settings.trusted,
            header,
            head.client_ip(header).map(|v| v.as_bytes()),
        );
        if resolved.malformed {
            malformed(state, peer, header);
        }
        // Decided once, with the client IP (the list is not searched twice a request).
        let peer_trusted = resolved.peer_trusted;
        let forwarded = |value: Option<&HeaderValue>| {
            peer_trusted
                .then_some(value)
                .flatten()
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(',').next().unwrap_or("").trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let https = match forwarded(head.x_forwarded_proto) {
            Some(p) => p.eq_ignore_ascii_case("https"),
            None => uri.scheme_str() == Some("https"),
        };
        let host = forwarded(head.x_forwarded_host)
            .filter(|h| valid_host(h))
            .or_else(|| {
                head.host
                    .and_then(|v| v.to_str().ok())
                    .filter(|h| valid_host(h))
                    .map(str::to_owned)
            })
            .or_else(|| uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let user_agent = head
            .user_agent
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        Self {
            peer,
            resolved,
            https,
            host,
            user_agent,
            peer_trusted,
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.resolved.ip
    }

    pub fn request_info(&self) -> RequestInfo<'_> {
        RequestInfo {
            ip: self.resolved.ip,
            user_agent: &self.user_agent,
            host: &self.host,
        }
    }

    pub fn believed(&self) -> Option<ClientIpHeader> {
        self.resolved.believed
    }
}

/// A malformed client IP header is a proxy misconfiguration, not an event: logged the
/// first time (with what to check), then only counted in
/// `usher_client_ip_header_malformed_total`, so a broken proxy cannot flood the log.
fn malformed(state: &AppState, peer: SocketAddr, header: ClientIpHeader) {
    state.engine.metrics().client_ip_header_malformed.inc();
    if !state
        .malformed_ip_logged
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            peer = %peer,
            header = header.header_name(),
            "a trusted proxy sent a client IP header Usher cannot read; using the peer address. Check the proxy's configuration and proxy.client_ip_header. Logged once; later ones are counted in usher_client_ip_header_malformed_total"
        );
    }
}

/// A Host header Usher is willing to repeat in URLs and forward upstream.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

/// Handlers take the client context as an extractor; it needs the peer address the
/// server loop attaches to every request.
impl FromRequestParts<Arc<AppState>> for ClientContext {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, HttpError> {
        // Computed once by the access log, when it is on.
        if let Some(ctx) = parts.extensions.remove::<ClientContext>() {
            return Ok(ctx);
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or_else(|| HttpError::Internal("no peer address on the request".into()))?;
        Ok(Self::new(
            state,
            peer,
            &Head::scan(&parts.headers),
            &parts.uri,
        ))
    }
}

/// The client IP headers' names, parsed once: a lookup by `&str` parses and validates
/// the name each time (issue 9: a few percent of a forward-auth request).
pub(crate) mod names {
    use http::HeaderName;

    const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

    /// `proxy.client_ip_header`'s name, parsed once (constants: a `from_static` in the
    /// match would check the name on every request), for the same reason.
    pub fn client_ip(h: usher_core::client_ip::ClientIpHeader) -> HeaderName {
        use usher_core::client_ip::ClientIpHeader as H;
        match h {
            H::XForwardedFor => X_FORWARDED_FOR,
            H::XRealIp => X_REAL_IP,
            H::Forwarded => http::header::FORWARDED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::names;
    use usher_core::client_ip::ClientIpHeader;

    #[test]
    fn the_parsed_client_ip_header_is_the_configured_one() {
        for h in [
            ClientIpHeader::XForwardedFor,
            ClientIpHeader::XRealIp,
            ClientIpHeader::Forwarded,
        ] {
            assert_eq!(names::client_ip(h).as_str(), h.header_name());
        }
    }
}
