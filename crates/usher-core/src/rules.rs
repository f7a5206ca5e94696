//! Which request paths are open to anonymous visitors (`access.public`) and which
//! requests are served but never counted (`tracking.ignore`).
//!
//! Rules match one normalised form of the path (SECURITY SEC-51): the query is never
//! part of it, unreserved percent-escapes are decoded, dot segments removed and `//`
//! collapsed. A path that could mean something else to the application behind — an
//! encoded `/`, `\`, `#`, `;` or NUL, or a raw `\` or `;` — matches no rule at all, so
//! it is never public (it fails closed to "sign in") and never ignored (it is counted).

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use std::borrow::Cow;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("`{0}` must be a path starting with / (e.g. /favicon.ico, /static/*, /docs/**)")]
    NotAPath(String),
    #[error("`{pattern}` is not a valid pattern: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error("`{0}` is not an address or CIDR range such as 10.0.0.0/8")]
    BadNetwork(String),
    #[error("a rule must name at least one of path, user_agent, ip")]
    EmptyRule,
}

/// One `tracking.ignore` entry: every field it names must match.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRule {
    path: Option<GlobMatcher>,
    user_agent: Option<GlobMatcher>,
    ip: Option<IpNet>,
}

impl IgnoreRule {
    /// `path` is a glob over the normalised path (`*` stays within a segment, `**`
    /// crosses them); `user_agent` a glob over the whole User-Agent, ignoring case;
    /// `ip` an address or CIDR range of the resolved client address.
    pub fn new(
        path: Option<&str>,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<Self, RuleError> {
        if path.is_none() && user_agent.is_none() && ip.is_none() {
            return Err(RuleError::EmptyRule);
        }
        let path = path
            .map(path_glob)
            .transpose()?
            .map(|g| g.compile_matcher());
        let user_agent = user_agent
            .map(|p| {
                GlobBuilder::new(p)
                    .case_insensitive(true)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| bad_glob(p, &e))
            })
            .transpose()?
            .map(|g| g.compile_matcher());
        let ip = ip.map(parse_network).transpose()?;
        Ok(Self {
            path,
            user_agent,
            ip,
        })
    }

    fn matches(&self, path: Option<&str>, user_agent: &str, ip: IpAddr) -> bool {
        let path_ok = match (&self.path, path) {
            (None, _) => true,
            (Some(g), Some(p)) => g.is_match(p),
            (Some(_), None) => false,
        };
        path_ok
            && self
                .user_agent
                .as_ref()
                .is_none_or(|g| g.is_match(user_agent))
            && self.ip.is_none_or(|n| n.contains(&ip))
    }
}

/// `access.public` and `tracking.ignore`, compiled once at start.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    public: Option<GlobSet>,
    ignore: Vec<IgnoreRule>,
}

impl AccessRules {
    pub fn new(public: &[String], ignore: Vec<IgnoreRule>) -> Result<Self, RuleError> {
        let public = if public.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            for p in public {
                set.add(path_glob(p)?);
            }
            Some(set.build().map_err(|e| RuleError::BadGlob {
                pattern: public.join(", "),
                reason: e.to_string(),
            })?)
        };
        Ok(Self { public, ignore })
    }

    /// Is this request path (as received: query allowed, not yet normalised) open to
    /// anonymous visitors?
    pub fn is_public(&self, raw_path: &str) -> bool {
        match (&self.public, normalize(raw_path)) {
            (Some(set), Some(p)) => set.is_match(p.as_ref()),
            _ => false,
        }
    }

    /// Is this request one to serve without counting or recording it?
    pub fn is_ignored(&self, raw_path: Option<&str>, user_agent: &str, ip: IpAddr) -> bool {
        if self.ignore.is_empty() {
            return false;
        }
        let path = raw_path.and_then(normalize);
        self.ignore
            .iter()
            .any(|r| r.matches(path.as_deref(), user_agent, ip))
    }

    pub fn has_ignore_rules(&self) -> bool {
        !self.ignore.is_empty()
    }
}

fn bad_glob(pattern: &str, e: &globset::Error) -> RuleError {
    RuleError::BadGlob {
        pattern: pattern.to_owned(),
        reason: e.kind().to_string(),
    }
}

fn path_glob(pattern: &str) -> Result<Glob, RuleError> {
    if !pattern.starts_with('/') {
        return Err(RuleError::NotAPath(pattern.to_owned()));
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| bad_glob(pattern, &e))
}

fn parse_network(s: &str) -> Result<IpNet, RuleError> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| RuleError::BadNetwork(s.to_owned()))
}

/// The one form of a request path that rules see; `None` when the path carries
/// something the application might read differently (see the module comment). A
/// path that is already in that form (the common case) is returned as it is.
pub fn normalize(raw: &str) -> Option<Cow<'_, str>> {
    let path = raw.split('?').next().unwrap_or("");
    if !path.starts_with('/') || path.contains(['\\', ';', '#', '\0']) {
        return None;
    }
    if !path.contains('%') && !path.contains("//") && !path.contains("/.") {
        return Some(Cow::Borrowed(path));
    }
    // Decode unreserved escapes only; any other escape stays as written, except the
    // ones that change how the path splits, which make it unmatchable.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if matches!(v, b'/' | b'\\' | b'#' | b';' | 0 | b'?') {
                return None;
            }
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                decoded.push(char::from(v));
            } else {
                decoded.push('%');
                decoded.push_str(&std::str::from_utf8(hex).ok()?.to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(char::from(bytes[i]));
            i += 1;
        }
    }
    // Remove dot segments (RFC 3986 §5.2.4) and empty segments (`//`).
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = n == last,
            ".." => {
                out.pop();
                trailing_slash = n == last;
            }
            "" => trailing_slash = n == last,
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    Some(Cow::Owned(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(public: &[&str]) -> AccessRules {
        let public: Vec<String> = public.iter().map(|s| s.to_string()).collect();
        AccessRules::new(&public, Vec::new()).unwrap()
    }

    #[test]
    fn normalises_one_documented_way() {
        for (raw, want) in [
            ("/", Some("/")),
            ("/a/b", Some("/a/b")),
            ("/a//b", Some("/a/b")),
            ("/a/./b", Some("/a/b")),
            ("/a/../b", Some("/b")),
            ("/../../b", Some("/b")),
            ("/a/b/", Some("/a/b/")),
            ("/a/b/..", Some("/a/")),
            ("/%61dmin", Some("/admin")),
            ("/%2e%2e/admin", Some("/admin")),
            ("/public/%2e%2e/admin", Some("/admin")),
            ("/a%20b", Some("/a%20b")),
            ("/a%c3%a9", Some("/a%C3%A9")),
            ("/public?x=/admin", Some("/public")),
            ("/public%2f..%2fadmin", None),
            ("/public%2F", None),
            ("/public\\..\\admin", None),
            ("/public;/../admin", None),
            ("/public%3b", None),
            ("/public%00", None),
            ("/public%23", None),
            ("/public%", None),
            ("/public%zz", None),
            ("public", None),
        ] {
            assert_eq!(normalize(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn public_paths_match_after_normalisation_and_never_on_the_query() {
        let r = rules(&["/favicon.ico", "/static/*", "/docs/**"]);
        assert!(r.is_public("/favicon.ico"));
        assert!(r.is_public("/favicon.ico?v=2"));
        assert!(r.is_public("/static/app.css"));
        assert!(!r.is_public("/static/a/b.css"), "* stays in one segment");
        assert!(r.is_public("/docs/a/b/c.html"));
        assert!(r.is_public("/x/../favicon.ico"));
        assert!(r.is_public("//favicon.ico"));
        // C7: the query never decides.
        assert!(!r.is_public("/admin?/favicon.ico"));
        assert!(!r.is_public("/admin#/favicon.ico"));
        // C12/C13: a path the app may split differently is not public.
        assert!(!r.is_public("/static/..%2fadmin"));
        assert!(!r.is_public("/static/x;/../../admin"));
        assert!(!r.is_public("/docs/%2e%2e/admin"));
        assert!(!r.is_public("/FAVICON.ICO"), "case-sensitive");
        assert!(!rules(&[]).is_public("/favicon.ico"));
    }

    #[test]
    fn ignore_rules_need_every_field_they_name() {
        let ping = IgnoreRule::new(None, Some("Pingdom*"), None).unwrap();
        let status = IgnoreRule::new(Some("/status"), None, Some("10.0.0.0/8")).unwrap();
        let r = AccessRules::new(&[], vec![ping, status]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(r.is_ignored(Some("/x"), "pingdom.com_bot 1.4", ip("1.2.3.4")));
        assert!(!r.is_ignored(Some("/x"), "Mozilla Pingdom", ip("1.2.3.4")));
        assert!(r.is_ignored(Some("/status?full=1"), "curl", ip("10.1.2.3")));
        assert!(!r.is_ignored(Some("/status"), "curl", ip("11.1.2.3")));
        assert!(!r.is_ignored(Some("/status/x"), "curl", ip("10.1.2.3")));
        assert!(!r.is_ignored(None, "curl", ip("10.1.2.3")), "unknown path");
        let v6 = IgnoreRule::new(None, None, Some("2001:db8::/32")).unwrap();
        let r = AccessRules::new(&[], vec![v6]).unwrap();
        assert!(r.is_ignored(None, "", ip("2001:db8::1")));
        assert!(!r.is_ignored(None, "", ip("2001:db9::1")));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        assert_eq!(
            IgnoreRule::new(None, None, None).unwrap_err(),
            RuleError::EmptyRule
        );
        assert!(matches!(
            IgnoreRule::new(None, None, Some("10.0.0.0/99")),
            Err(RuleError::BadNetwork(_))
        ));
        assert!(matches!(
            AccessRules::new(&["favicon.ico".into()], vec![]),
            Err(RuleError::NotAPath(_))
        ));
        assert!(matches!(
            AccessRules::new(&["/a/[b".into()], vec![]),
            Err(RuleError::BadGlob { .. })
        ));
    }
}
