//! User-Agent handling: cut to a bounded size, and a human summary ("Firefox 131 on Linux").

/// Longest User-Agent kept, in bytes (SPEC §2).
pub const MAX_USER_AGENT: usize = 512;

/// Cuts `ua` to [`MAX_USER_AGENT`] bytes on a character boundary.
pub fn truncate(ua: &str) -> &str {
    if ua.len() <= MAX_USER_AGENT {
        return ua;
    }
    let mut end = MAX_USER_AGENT;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}

/// A short description of the client for lists; never empty.
pub fn summarize(ua: &str) -> String {
    if ua.trim().is_empty() {
        return "Unknown client".to_owned();
    }
    if let Some(r) = woothee::parser::Parser::new().parse(ua)
        && r.name != woothee::woothee::VALUE_UNKNOWN
        && matches!(
            r.category,
            "pc" | "smartphone" | "mobilephone" | "appliance"
        )
    {
        let major = r.version.split('.').next().unwrap_or("");
        let mut out = r.name.to_owned();
        if !major.is_empty() && major != woothee::woothee::VALUE_UNKNOWN {
            out.push(' ');
            out.push_str(major);
        }
        if r.os != woothee::woothee::VALUE_UNKNOWN {
            out.push_str(" on ");
            out.push_str(r.os);
        }
        return out;
    }
    // Tools and bots: their first product token is the best name they give.
    let first = ua.split_whitespace().next().unwrap_or(ua);
    first.chars().filter(|c| !c.is_control()).take(48).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";
        assert_eq!(summarize(ff), "Firefox 131 on Linux");
        assert_eq!(summarize("curl/8.5.0"), "curl/8.5.0");
        assert_eq!(summarize(""), "Unknown client");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let long = "é".repeat(400);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_USER_AGENT);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate("short"), "short");
    }
}
