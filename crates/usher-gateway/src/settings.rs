//! The gateway's resolved settings: already validated, typed, ready to use.

use crate::AccessLogTarget;
use std::time::Duration;
use usher_core::AccessRules;
use usher_core::client_ip::{ClientIpHeader, TrustedProxies};

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Where Usher's own pages live, e.g. `/usher` (no trailing slash).
    pub prefix: String,
    /// The protected app; `None` serves the built-in demo page.
    pub upstream: Option<http::Uri>,
    pub trusted: TrustedProxies,
    pub client_ip_header: ClientIpHeader,
    /// Base cookie name; `__Host-` (or `__Secure-` with a domain) is prepended over https.
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    /// Hosts a post-login redirect may point to, besides the request's own host.
    pub allowed_redirects: Vec<String>,
    /// The login page as browsers reach it, when Usher has a host of its own
    /// (`https://auth.example.com/usher/login`); else `<prefix>/login` on the app's host.
    pub login_url: Option<String>,
    /// A client that has not sent its complete request head within this is dropped.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// `Some(n)`: n threads serve connections, each keeping its own ([`crate::cores`]);
    /// `None`: the shared work-stealing runtime serves them.
    pub threads: Option<usize>,
    pub access_log: AccessLogTarget,
    /// Access log lines as JSON objects instead of Combined Log Format.
    pub access_log_json: bool,
    /// Serve `/metrics` on this address instead of under the prefix.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `access.public` and `tracking.ignore`.
    pub rules: AccessRules,
    /// `sessions.anonymous = "lazy"`: visitors of public paths get an anonymous
    /// session once they return its cookie (`"off"`: never).
    pub anonymous_sessions: bool,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            prefix: "/usher".into(),
            upstream: None,
            trusted: TrustedProxies::new(vec![
                ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
                ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ]),
            client_ip_header: ClientIpHeader::XForwardedFor,
            cookie_name: "usher_session".into(),
            cookie_domain: None,
            allowed_redirects: Vec::new(),
            login_url: None,
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            threads: None,
            access_log: AccessLogTarget::Off,
            access_log_json: false,
            metrics_listen: None,
            rules: AccessRules::new(&["/favicon.ico".to_owned()], Vec::new()).unwrap_or_default(),
            anonymous_sessions: true,
        }
    }
}
