//! Output of a scenario: a table for people and, on request, JSON.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// A scenario's result.
pub trait Report: Serialize {
    /// Title of the table.
    fn title(&self) -> String;
    /// Rows of the table: name, value.
    fn rows(&self) -> Vec<(String, String)>;

    /// The table as text.
    fn table(&self) -> String {
        let rows = self.rows();
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("== {} ==\n", self.title());
        for (key, value) in rows {
            out.push_str(&format!("  {key:<width$}  {value}\n"));
        }
        out
    }
}

/// Prints the table and writes the JSON file when `json` is given.
pub fn emit<R: Report>(report: &R, json: Option<&Path>) -> Result<()> {
    print!("{}", report.table());
    if let Some(path) = json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(report).context("encode report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// A row helper.
pub fn row(key: &str, value: impl ToString) -> (String, String) {
    (key.to_owned(), value.to_string())
}

/// `1234.5` as `1,234.5`-style text with `decimals` decimals.
pub fn num(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(super::num(1234567.891, 1), "1,234,567.9");
        assert_eq!(super::num(12.0, 0), "12");
        assert_eq!(super::num(-1234.0, 0), "-1,234");
    }
}
