//! How the CLI prints lists: aligned tables with relative times for people, JSON and
//! CSV for scripts.

pub use usher_core::clock::ago;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Prints rows with a header, columns padded to their widest cell. Control characters
/// (from User-Agents, names) are shown escaped so they cannot rewrite the terminal.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let clean = |s: &str| -> String {
        s.chars()
            .flat_map(|c| c.escape_debug_if_control())
            .collect()
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

trait EscapeControl {
    fn escape_debug_if_control(self) -> Vec<char>;
}

impl EscapeControl for char {
    fn escape_debug_if_control(self) -> Vec<char> {
        if self.is_control() {
            self.escape_default().collect()
        } else {
            vec![self]
        }
    }
}

/// Prints CSV; fields a spreadsheet would take for a formula are defused.
pub fn csv(header: &[&str], rows: &[Vec<String>]) {
    println!("{}", header.join(","));
    for r in rows {
        println!("{}", usher_core::csv::line(r));
    }
}
