//! CSV fields as Usher writes them (the API's export and the CLI's `--format csv`):
//! quoted when needed, and defused when a spreadsheet would read them as a formula —
//! a User-Agent is attacker-controlled.

/// Appends `s` to `out` as one CSV field.
pub fn push_field(out: &mut String, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || s.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    out.push_str(&s.replace('"', "\"\""));
    if quote {
        out.push('"');
    }
}

/// One CSV line (without its newline).
pub fn line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(&mut out, f.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_and_defuses() {
        assert_eq!(
            super::line(&["a", "b,c", "say \"hi\"", "=1+1", "-x"]),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"'=1+1\",\"'-x\""
        );
    }
}
