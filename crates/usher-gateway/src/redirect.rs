//! Where a login or logout may send the browser next. An `rd` target is accepted when it
//! is a plain local path, or an http(s) URL on the request's own host or on a host of
//! `gateway.allowed_redirects`; everything else falls back to `/`.
//!
//! The check runs on the exact string that becomes the `Location` header, after the
//! WHATWG parser has normalised it, so what is judged is what the browser follows.

/// A redirect target that passed [`RedirectTarget::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTarget(String);

impl RedirectTarget {
    pub fn root() -> Self {
        Self("/".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Validates `rd` for a request to `host` (the Host header, maybe with a port) that
    /// arrived over https when `https` is set (then http:// targets are refused).
    pub fn parse(rd: &str, host: &str, https: bool, allowed: &[String]) -> Option<Self> {
        if rd.is_empty() || rd.len() > 4096 {
            return None;
        }
        // Browsers treat `\` as `/`, drop tabs and newlines, and some decode `%5c`:
        // none of these belongs in a redirect Usher emits. (Percent-decoding only: a
        // `+` in a query is a plus, not a space.)
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(rd).collect();
        let suspicious = |b: &u8| *b == b'\\' || b.is_ascii_control();
        if rd.bytes().any(|b| suspicious(&b) || b == b' ') || decoded.iter().any(suspicious) {
            return None;
        }
        if rd.starts_with('/') {
            if rd.starts_with("//") || decoded.starts_with(b"//") || decoded.starts_with(b"/\\") {
                return None;
            }
            let base = url::Url::parse(&format!("http://{host}/")).ok()?;
            let joined = base.join(rd).ok()?;
            if joined.host_str() != base.host_str() || joined.port() != base.port() {
                return None;
            }
            let mut out = joined.path().to_owned();
            if let Some(q) = joined.query() {
                out.push('?');
                out.push_str(q);
            }
            if let Some(f) = joined.fragment() {
                out.push('#');
                out.push_str(f);
            }
            // Dot segments may have collapsed into a scheme-relative `//host` (C19):
            // judge what is emitted, not what came in.
            if out.starts_with("//") || out.starts_with("/\\") {
                return None;
            }
            return Some(Self(out));
        }
        let url = url::Url::parse(rd).ok()?;
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => !https,
            _ => false,
        };
        if !scheme_ok || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let target = url.host_str()?.to_ascii_lowercase();
        let own = host
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(host)
            .to_ascii_lowercase();
        let own_full = match url.port() {
            Some(p) => format!("{target}:{p}"),
            None => target.clone(),
        };
        let same_host =
            own_full.eq_ignore_ascii_case(host) || (url.port().is_none() && target == own);
        let listed = allowed.iter().any(|a| host_matches(&target, a));
        (same_host || listed).then(|| Self(url.as_str().to_owned()))
    }
}

/// `entry` is a host name (`app.example.com`) or, with a leading dot, a domain and all
/// its subdomains (`.example.com`); matching is on label boundaries only.
fn host_matches(host: &str, entry: &str) -> bool {
    let entry = entry.trim().to_ascii_lowercase();
    match entry.strip_prefix('.') {
        Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
        None => host == entry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_on(rd: &str, https: bool) -> Option<String> {
        let allowed = ["app.example.com".to_owned(), ".corp.example".to_owned()];
        RedirectTarget::parse(rd, "good.example", https, &allowed).map(|t| t.0)
    }

    fn check(rd: &str) -> Option<String> {
        check_on(rd, false)
    }

    #[test]
    fn keeps_pluses_and_refuses_downgrades() {
        assert_eq!(
            check("/search?q=a+b%20c").as_deref(),
            Some("/search?q=a+b%20c")
        );
        assert_eq!(check_on("http://good.example/", true), None);
        assert_eq!(
            check_on("https://good.example/", true).as_deref(),
            Some("https://good.example/")
        );
    }

    #[test]
    fn accepts_local_paths_and_listed_hosts() {
        assert_eq!(check("/").as_deref(), Some("/"));
        assert_eq!(check("/app/x?y=1#z").as_deref(), Some("/app/x?y=1#z"));
        assert_eq!(check("/a/../b").as_deref(), Some("/b"));
        assert_eq!(
            check("https://good.example/x").as_deref(),
            Some("https://good.example/x")
        );
        assert_eq!(
            check("https://app.example.com/").as_deref(),
            Some("https://app.example.com/")
        );
        assert_eq!(
            check("https://wiki.corp.example/").as_deref(),
            Some("https://wiki.corp.example/")
        );
    }

    #[test]
    fn refuses_the_open_redirect_corpus() {
        for rd in [
            "https://evil.example",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\\/evil.example",
            "/%09/evil.example",
            "/%5Cevil.example",
            "/%2F%2Fevil.example",
            "/../\\evil.example",
            "/.%2e/%5cevil.example",
            "https:evil.example",
            "https://good.example@evil.example",
            "https://good.example.evil.example",
            "https://evilgood.example",
            "https://good.example%2eevil.example",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>",
            "%0d%0aLocation:%20https://evil.example",
            "https://good.example%00.evil.example",
            "https://good.example\\@evil.example",
            "https://good.example:443@evil.example",
            "//%E3%80%82evil.example",
            "https://malicious-corp.example/",
            "https://app.example.com.evil/",
            "/\tevil",
            "/.//evil.example",
            "/a/..//evil.example",
            "/%2e//evil.example",
            "/./\\evil.example",
            "",
        ] {
            assert_eq!(check(rd), None, "{rd:?} was accepted");
        }
    }
}
