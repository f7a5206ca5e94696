//! Configuration: what the user typed (file, environment, flags — in rising order of
//! precedence) as `RawConfig`, then resolved into typed settings. Every mistake names
//! the key, says what was wrong and what is allowed.

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use usher_core::client_ip::{ClientIpHeader, TrustedProxies};
use usher_core::{HumanDuration, SessionPolicy};
use usher_engine::EngineConfig;
use usher_gateway::{AccessLogTarget, GatewaySettings};
use usher_store::StoreUrl;

/// Sections of `usher.toml`; `USHER_<SECTION>_<KEY>` maps onto them.
const SECTIONS: [&str; 11] = [
    "server", "upstream", "store", "sessions", "limits", "proxy", "tracking", "history", "access",
    "gateway", "log",
];

/// A list given as a TOML array or, from the environment, as `a,b,c`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(transparent)]
pub struct List(pub Vec<String>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Seq(Vec<String>),
            One(String),
        }
        Ok(match Either::deserialize(d)? {
            Either::Seq(v) => Self(v),
            Either::One(s) => Self(
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect(),
            ),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: String,
    pub prefix: String,
    /// Serve `/metrics` on this address instead of under the prefix.
    pub metrics_listen: Option<String>,
    pub header_read_timeout: HumanDuration,
    pub drain_timeout: HumanDuration,
    /// Threads that each serve their own connections; unset: the shared runtime.
    pub threads: Option<usize>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            prefix: "/usher".into(),
            metrics_listen: None,
            header_read_timeout: HumanDuration::from_secs(10),
            drain_timeout: HumanDuration::from_secs(10),
            threads: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    pub url: String,
    pub flush_interval: HumanDuration,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            url: "sqlite://usher-data/usher.db".into(),
            flush_interval: HumanDuration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    pub idle_timeout: HumanDuration,
    pub absolute_timeout: HumanDuration,
    pub anonymous: String,
    pub anonymous_idle_timeout: HumanDuration,
    pub max_anonymous: u64,
    pub cookie_name: String,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            idle_timeout: HumanDuration::from_secs(30 * 60),
            absolute_timeout: HumanDuration::from_secs(12 * 3600),
            anonymous: "lazy".into(),
            anonymous_idle_timeout: HumanDuration::from_secs(5 * 60),
            max_anonymous: 100_000,
            cookie_name: "usher_session".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_sessions_per_user: u32,
    pub on_limit: String,
    /// Per-group overrides, e.g. `[limits.per_group] admins = 1`.
    pub per_group: std::collections::BTreeMap<String, u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions_per_user: 0,
            on_limit: "evict_oldest".into(),
            per_group: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    pub trusted: List,
    pub client_ip_header: String,
}

impl Default for Proxy {
    fn default() -> Self {
        Self {
            trusted: List(vec!["127.0.0.1/32".into(), "::1/128".into()]),
            client_ip_header: "X-Forwarded-For".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IgnoreRule {
    /// Glob over the normalised request path (`/status`, `/health/*`, `/metrics/**`).
    pub path: Option<String>,
    /// Glob over the User-Agent, ignoring case (`Pingdom*`, `*kube-probe*`).
    pub user_agent: Option<String>,
    /// The resolved client address: an address or CIDR range (`10.0.0.0/8`).
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tracking {
    pub ignore: Vec<IgnoreRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct History {
    pub retention: HumanDuration,
}

impl Default for History {
    fn default() -> Self {
        Self {
            retention: HumanDuration::from_secs(400 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    pub public: List,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            public: List(vec!["/favicon.ico".into()]),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gateway {
    pub allowed_redirects: List,
    pub cookie_domain: Option<String>,
    /// The login page as browsers reach it when Usher has a host of its own.
    pub login_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub access: String,
    pub format: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            access: "stdout".into(),
            format: "text".into(),
        }
    }
}

/// Configuration as typed by the user, after layering.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: Server,
    pub upstream: Upstream,
    pub store: Store,
    pub sessions: Sessions,
    pub limits: Limits,
    pub proxy: Proxy,
    pub tracking: Tracking,
    pub history: History,
    pub access: Access,
    pub gateway: Gateway,
    pub log: Log,
}

/// Flags that override configuration.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub store: Option<String>,
    pub log_format: Option<String>,
}

/// Validated settings, ready to wire.
#[derive(Debug, Clone)]
pub struct Settings {
    pub raw: RawConfig,
    pub listen: SocketAddr,
    pub store: StoreUrl,
    pub gateway: GatewaySettings,
    pub engine: EngineConfig,
    /// Where `initial-admin-password` goes: the SQLite file's folder.
    pub data_dir: PathBuf,
}

/// The configuration file to read: `--config`, else `./usher.toml` when it exists.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_owned()),
        None => {
            let default = PathBuf::from("usher.toml");
            default.exists().then_some(default)
        }
    }
}

pub fn load(explicit: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = config_path(explicit) {
        if !path.exists() {
            bail!(
                "the configuration file {} does not exist (check --config, or leave it out to use the defaults)",
                path.display()
            );
        }
        fig = fig.merge(Toml::file_exact(&path));
    }
    fig = fig.merge(
        Env::prefixed("USHER_")
            .filter(|k| {
                // Keys arrive here in their original case; figment lowercases later.
                let k = k.as_str().to_ascii_lowercase();
                SECTIONS
                    .iter()
                    .any(|s| k.len() > s.len() && k.starts_with(s) && k.as_bytes()[s.len()] == b'_')
            })
            .map(|k| k.as_str().to_ascii_lowercase().replacen('_', ".", 1).into()),
    );
    if let Some(v) = &overrides.listen {
        fig = fig.merge(Serialized::default("server.listen", v));
    }
    if let Some(v) = &overrides.upstream {
        fig = fig.merge(Serialized::default("upstream.url", v));
    }
    if let Some(v) = &overrides.store {
        fig = fig.merge(Serialized::default("store.url", v));
    }
    if let Some(v) = &overrides.log_format {
        fig = fig.merge(Serialized::default("log.format", v));
    }
    let raw: RawConfig = fig.extract().map_err(|e| {
        let msgs: Vec<String> = e.into_iter().map(|e| describe(&e)).collect();
        anyhow::anyhow!("invalid configuration: {}", msgs.join("; "))
    })?;
    resolve(raw)
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `sessions.idle_timeout: <what is wrong> (from usher.toml)`: the key in lowercase as
/// written in the file, and where the bad value came from.
fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".").to_ascii_lowercase();
    let from = match &e.metadata {
        Some(m) if m.name.contains("environment") => {
            format!(
                " (from the environment variable USHER_{})",
                key.replace('.', "_").to_ascii_uppercase()
            )
        }
        Some(m) => match &m.source {
            Some(src) => format!(" (from {src})"),
            None => format!(" (from {})", m.name),
        },
        None => String::new(),
    };
    if key.is_empty() {
        format!("{}{from}", e.kind)
    } else {
        format!("{key}: {}{from}", e.kind)
    }
}

pub fn resolve(raw: RawConfig) -> anyhow::Result<Settings> {
    let listen: SocketAddr = raw.server.listen.parse().with_context(|| {
        format!(
            "server.listen: `{}` is not an address and port such as 127.0.0.1:8080 or [::1]:8080",
            raw.server.listen
        )
    })?;
    let prefix = raw.server.prefix.trim_end_matches('/').to_owned();
    if !prefix.starts_with('/')
        || prefix.len() < 2
        || !prefix[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    {
        bail!(
            "server.prefix: `{}` must be a path such as /usher (letters, digits, - _ . /)",
            raw.server.prefix
        );
    }
    let upstream = match raw.upstream.url.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(u) => {
            let uri: http::Uri = u.parse().with_context(|| {
                format!("upstream.url: `{u}` is not a URL such as http://127.0.0.1:3000")
            })?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                bail!(
                    "upstream.url: `{u}` must be an http:// URL with a host, such as http://127.0.0.1:3000"
                );
            }
            Some(uri)
        }
    };
    let store = StoreUrl::parse(&raw.store.url).map_err(|e| anyhow::anyhow!("store.url: {e}"))?;
    if raw.store.flush_interval.is_zero() {
        bail!("store.flush_interval: must be more than 0, e.g. 1s");
    }
    let policy = SessionPolicy {
        idle_timeout: raw.sessions.idle_timeout.get(),
        absolute_timeout: raw.sessions.absolute_timeout.get(),
        anonymous_idle_timeout: raw.sessions.anonymous_idle_timeout.get(),
    };
    if raw.sessions.idle_timeout.is_zero() || raw.sessions.absolute_timeout.is_zero() {
        bail!("sessions.idle_timeout and sessions.absolute_timeout must be more than 0");
    }
    if !matches!(raw.sessions.anonymous.as_str(), "lazy" | "off") {
        bail!(
            "sessions.anonymous: `{}` is not allowed; use \"lazy\" or \"off\"",
            raw.sessions.anonymous
        );
    }
    let cookie = &raw.sessions.cookie_name;
    if cookie.is_empty()
        || cookie.len() > 64
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        bail!("sessions.cookie_name: `{cookie}` must be 1-64 letters, digits, _ or -");
    }
    if !matches!(raw.limits.on_limit.as_str(), "evict_oldest" | "deny") {
        bail!(
            "limits.on_limit: `{}` is not allowed; use \"evict_oldest\" or \"deny\"",
            raw.limits.on_limit
        );
    }
    let mut nets = Vec::new();
    for entry in &raw.proxy.trusted.0 {
        let net: ipnet::IpNet = entry
            .parse()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                anyhow::anyhow!(
                    "proxy.trusted: `{entry}` is not an address or CIDR range such as 10.0.0.0/8"
                )
            })?;
        nets.push(net);
    }
    let client_ip_header = ClientIpHeader::parse(&raw.proxy.client_ip_header).ok_or_else(|| {
        anyhow::anyhow!(
            "proxy.client_ip_header: `{}` is not allowed; use one of {}",
            raw.proxy.client_ip_header,
            ClientIpHeader::CHOICES
        )
    })?;
    if !matches!(raw.log.format.as_str(), "text" | "json") {
        bail!(
            "log.format: `{}` is not allowed; use \"text\" or \"json\"",
            raw.log.format
        );
    }
    let mut ignore = Vec::new();
    for (n, rule) in raw.tracking.ignore.iter().enumerate() {
        let r = usher_core::IgnoreRule::new(
            rule.path.as_deref(),
            rule.user_agent.as_deref(),
            rule.ip.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("tracking.ignore[{n}]: {e}"))?;
        ignore.push(r);
    }
    let rules = usher_core::AccessRules::new(&raw.access.public.0, ignore)
        .map_err(|e| anyhow::anyhow!("access.public: {e}"))?;
    let access_log = match raw.log.access.trim() {
        "stdout" => AccessLogTarget::Stdout,
        "off" => AccessLogTarget::Off,
        "" => bail!("log.access: empty; use \"stdout\", \"off\" or a file path"),
        path => AccessLogTarget::File(PathBuf::from(path)),
    };
    let metrics_listen = match raw.server.metrics_listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!(
                "server.metrics_listen: `{a}` is not an address and port such as 127.0.0.1:9100"
            )
        })?),
    };
    let cookie_domain = match raw.gateway.cookie_domain.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) => {
            let bare = d.trim_start_matches('.');
            if !is_host_name(bare) {
                bail!(
                    "gateway.cookie_domain: `{d}` must be a domain name such as example.com (no scheme, port or path)"
                );
            }
            Some(bare.to_ascii_lowercase())
        }
    };
    let login_url = match raw.gateway.login_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(u) => {
            let ok = http::Uri::try_from(u).ok().is_some_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.query().is_none()
            });
            if !ok {
                bail!(
                    "gateway.login_url: `{u}` must be an absolute URL without a query, such as https://auth.example.com/usher/login"
                );
            }
            Some(u.to_owned())
        }
    };
    for entry in &raw.gateway.allowed_redirects.0 {
        if !is_host_name(entry.strip_prefix('.').unwrap_or(entry)) {
            bail!(
                "gateway.allowed_redirects: `{entry}` must be a host name (app.example.com) or a leading-dot domain (.example.com), without scheme, port or path"
            );
        }
    }
    let data_dir = match &store {
        StoreUrl::Sqlite { path } => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        StoreUrl::Postgres { .. } => PathBuf::from("usher-data"),
    };
    let threads = match raw.server.threads {
        Some(0) => bail!(
            "server.threads must be 1 or more (leave it out to serve connections on the shared runtime)"
        ),
        n => n,
    };
    let gateway = GatewaySettings {
        prefix,
        upstream,
        trusted: TrustedProxies::new(nets),
        client_ip_header,
        cookie_name: cookie.clone(),
        cookie_domain,
        allowed_redirects: raw.gateway.allowed_redirects.0.clone(),
        login_url,
        header_read_timeout: raw.server.header_read_timeout.as_std(),
        drain_timeout: raw.server.drain_timeout.as_std(),
        threads,
        access_log,
        access_log_json: raw.log.format == "json",
        metrics_listen,
        rules,
        anonymous_sessions: raw.sessions.anonymous == "lazy",
    };
    let mut per_group = Vec::new();
    for (group, n) in &raw.limits.per_group {
        let g = usher_core::Group::parse(group)
            .map_err(|e| anyhow::anyhow!("limits.per_group: {e}"))?;
        per_group.push((g, *n));
    }
    let concurrency = usher_core::ConcurrencyPolicy {
        max_per_user: raw.limits.max_sessions_per_user,
        on_limit: if raw.limits.on_limit == "deny" {
            usher_core::OnLimit::Deny
        } else {
            usher_core::OnLimit::EvictOldest
        },
        per_group,
    };
    let engine = EngineConfig {
        concurrency,
        retention: raw.history.retention.get(),
        max_anonymous: raw.sessions.max_anonymous,
        policy,
        flush_interval: raw
            .store
            .flush_interval
            .as_std()
            .max(Duration::from_millis(10)),
    };
    Ok(Settings {
        raw,
        listen,
        store,
        gateway,
        engine,
        data_dir,
    })
}
