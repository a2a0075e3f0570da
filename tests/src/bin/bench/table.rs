//! The one table the bench prints: a Markdown table, aligned for the terminal and written as it
//! is into `docs/performance.md`.

use std::fmt::Write as _;

/// How a row compares with its target.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The target is met; the text adds detail (may be empty).
    Met(String),
    /// The target is missed; the text says what limits it.
    Missed(String),
    /// A figure to read, with no pass/fail target.
    Info(String),
    /// Not measured, and why (a missing tool).
    Skipped(String),
    /// The measurement itself failed.
    Error(String),
}

impl Verdict {
    /// `Met` when `ok`, else `Missed`, with the same note.
    pub fn check(ok: bool, note: impl Into<String>) -> Verdict {
        let note = note.into();
        if ok {
            Verdict::Met(note)
        } else {
            Verdict::Missed(note)
        }
    }

    fn text(&self) -> String {
        let with = |word: &str, note: &str| {
            if note.is_empty() {
                word.to_owned()
            } else {
                format!("{word}: {note}")
            }
        };
        match self {
            Verdict::Met(note) => with("met", note),
            Verdict::Missed(note) => with("MISSED", note),
            Verdict::Info(note) => with("info", note),
            Verdict::Skipped(why) => format!("skipped ({why})"),
            Verdict::Error(why) => with("ERROR", why),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    pub measured: String,
    pub reference: String,
    pub ratio: String,
    /// The baseline binary's figure and ratio, with `--baseline`.
    pub baseline: Option<String>,
    pub target: &'static str,
    pub verdict: Verdict,
}

impl Row {
    /// A row with nothing measured (skipped or failed).
    pub fn empty(name: &'static str, target: &'static str, verdict: Verdict) -> Row {
        Row {
            name,
            measured: "—".into(),
            reference: "—".into(),
            ratio: "—".into(),
            baseline: None,
            target,
            verdict,
        }
    }
}

/// Renders the rows as an aligned Markdown table; with `baseline`, a "baseline" column after
/// the ratio ("—" in rows without a baseline figure).
pub fn render(rows: &[Row], baseline: bool) -> String {
    let mut header = vec!["row", "measured", "reference (same run)", "ratio"];
    if baseline {
        header.push("baseline (same run)");
    }
    header.extend(["target", "verdict"]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.name.to_owned(),
                r.measured.clone(),
                r.reference.clone(),
                r.ratio.clone(),
            ];
            if baseline {
                cells.push(r.baseline.clone().unwrap_or_else(|| "—".into()));
            }
            cells.extend([r.target.to_owned(), r.verdict.text()]);
            cells
        })
        .collect();
    let header: Vec<String> = header.into_iter().map(str::to_owned).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    line(&mut out, &header, &widths);
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    line(&mut out, &rule, &widths);
    for row in &cells {
        line(&mut out, row, &widths);
    }
    out
}

fn line(out: &mut String, cells: &[String], widths: &[usize]) {
    out.push('|');
    for (cell, &w) in cells.iter().zip(widths) {
        let pad = w.saturating_sub(cell.chars().count());
        let _ = write!(out, " {cell}{} |", " ".repeat(pad));
    }
    out.push('\n');
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// A duration in the unit that reads best: `850 ms`, `12.3 s`.
pub fn secs(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn every_line_of_the_table_has_the_same_width() {
        let rows = [
            Row::empty("hash", "≥ 0.9", Verdict::Met(String::new())),
            Row::empty("status", "≤ 30 ms", Verdict::Missed("a long note".into())),
        ];
        for baseline in [false, true] {
            let text = render(&rows, baseline);
            let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
            assert_eq!(widths.len(), 4);
            assert!(widths.iter().all(|&w| w == widths[0]), "{text}");
        }
    }

    #[test]
    fn the_baseline_column_comes_after_the_ratio_only_when_asked_for() {
        let mut row = Row::empty("wan", "≤ 1.1 × ideal", Verdict::Met(String::new()));
        row.ratio = "1.05 × ideal".into();
        row.baseline = Some("15.8 s · 1.39 × ideal".into());
        let with = render(std::slice::from_ref(&row), true);
        let header: Vec<&str> = with
            .lines()
            .next()
            .expect("header")
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(header[4..6], ["ratio", "baseline (same run)"]);
        assert!(with.contains("| 15.8 s · 1.39 × ideal |"), "{with}");
        let without = render(&[row], false);
        assert!(
            !without.contains("baseline") && !without.contains("15.8 s"),
            "{without}"
        );
    }
}
