//! `eraser ledger list`: images one per line (a table or JSON lines), or with `--rejected` the
//! files runs found but did not use.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use eraser_store::{ImageRow, ImageStatus, Ledger, RejectKind, RejectedRow, Sha256};

use super::{ImageJson, PAGE, RejectedJson, STDOUT, printable};
use crate::exit::Status;

pub(super) async fn list(
    ledger: &Ledger,
    status: Option<ImageStatus>,
    json: bool,
    limit: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    if !json {
        writeln!(
            out,
            "{:<64}  {:<10}  {:<4}  {:>10}  {:>5}  {:<36}  ERROR",
            "SHA256", "STATUS", "FMT", "SIZE", "TRIES", "JOB"
        )
        .context(STDOUT)?;
    }
    let mut left = limit.unwrap_or(u64::MAX);
    let mut after: Option<Sha256> = None;
    while left > 0 {
        let want = u32::try_from(left.min(u64::from(PAGE))).unwrap_or(PAGE);
        let rows = ledger.list_images(status, after.as_ref(), want).await?;
        for row in &rows {
            if json {
                let line =
                    serde_json::to_string(&ImageJson::from(row)).context("encoding an image")?;
                writeln!(out, "{line}").context(STDOUT)?;
            } else {
                writeln!(out, "{}", table_row(row)).context(STDOUT)?;
            }
        }
        left = left.saturating_sub(rows.len() as u64);
        match rows.last() {
            Some(last) if rows.len() == want as usize => after = Some(last.sha256),
            _ => break,
        }
    }
    out.flush().context(STDOUT)?;
    Ok(Status::Done)
}

/// `ledger list --rejected`: files found but not used, by path.
pub(super) async fn list_rejected(
    ledger: &Ledger,
    kind: Option<RejectKind>,
    json: bool,
    limit: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    if !json {
        writeln!(out, "{:<7}  {:>5}  PATH: REASON", "KIND", "RUN").context(STDOUT)?;
    }
    let mut left = limit.unwrap_or(u64::MAX);
    let mut after: Option<PathBuf> = None;
    while left > 0 {
        let want = u32::try_from(left.min(u64::from(PAGE))).unwrap_or(PAGE);
        let rows = ledger.list_rejected(kind, after.as_deref(), want).await?;
        for row in &rows {
            if json {
                let line = serde_json::to_string(&RejectedJson::from(row))
                    .context("encoding a rejected file")?;
                writeln!(out, "{line}").context(STDOUT)?;
            } else {
                writeln!(out, "{}", rejected_row(row)).context(STDOUT)?;
            }
        }
        left = left.saturating_sub(rows.len() as u64);
        match rows.last() {
            Some(last) if rows.len() == want as usize => after = Some(last.path.clone()),
            _ => break,
        }
    }
    out.flush().context(STDOUT)?;
    Ok(Status::Done)
}

/// One line of the `ledger list --rejected` table (control characters in names shown escaped).
fn rejected_row(r: &RejectedRow) -> String {
    format!(
        "{:<7}  {:>5}  {}: {}",
        r.kind.as_str(),
        r.run,
        printable(&r.path.to_string_lossy()),
        r.reason.replace(['\n', '\r'], " ")
    )
}

/// One line of the `ledger list` table.
fn table_row(r: &ImageRow) -> String {
    let error = match (&r.error_code, &r.error_message) {
        (Some(code), Some(m)) => format!("code {code}: {m}"),
        (Some(code), None) => format!("code {code}"),
        (None, Some(m)) => m.clone(),
        (None, None) => String::new(),
    };
    let line = format!(
        "{:<64}  {:<10}  {:<4}  {:>10}  {:>5}  {:<36}  {}",
        r.sha256.to_string(),
        r.status.as_str(),
        r.format,
        r.size,
        r.attempts,
        r.job_id.as_deref().unwrap_or("-"),
        error.replace(['\n', '\r'], " ")
    );
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::ledger::fixture::Fixture;

    #[tokio::test]
    async fn list_json_stops_at_the_limit_and_filters_by_status() {
        let fx = Fixture::new().await;
        for n in 0..3u8 {
            fx.record(&[&format!("i{n}")], &[n; 8]).await;
        }
        let mut out = Vec::new();
        list(&fx.ledger, Some(ImageStatus::New), true, Some(2), &mut out)
            .await
            .expect("list");
        let lines: Vec<serde_json::Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l["status"] == "new"));
        let mut none = Vec::new();
        list(&fx.ledger, Some(ImageStatus::Done), true, None, &mut none)
            .await
            .expect("list");
        assert!(none.is_empty());
    }
}
