//! `eraser ledger status|list|show|retry|verify|export`: reading and repairing the ledger.
//!
//! Every command opens an existing ledger only (a missing one is a usage error naming the path).
//! Lists and exports are paged or streamed, so they start at once and stay flat at a million rows.
//! JSON output shows paths lossily as UTF-8; CSV keeps their raw bytes (on unix).
//!
//! One file per verb; this module dispatches, opens the ledger and holds the JSON views and
//! helpers more than one verb shows.

mod export;
#[cfg(test)]
mod fixture;
mod list;
mod retry;
mod show;
mod status;
mod verify;

use std::borrow::Cow;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use eraser_store::{
    ImageRow, ImageStatus, InputRow, Ledger, Location, OpenOptions, RejectKind, RejectedRow,
    Sha256, StatusCounts,
};
use serde::Serialize;

use super::{flags, print_warnings, stdout};
use crate::cli::{GlobalArgs, LedgerCmd};
use crate::config::{Config, Environment};
use crate::exit::{LedgerUnavailable, Status, UsageError};

/// Rows fetched per page by `list` and `verify`.
const PAGE: u32 = 1000;
const STDOUT: &str = "writing to stdout";

/// Runs one `eraser ledger` command.
pub async fn run(global: &GlobalArgs, cmd: LedgerCmd, env: &Environment) -> anyhow::Result<Status> {
    let cfg = Config::resolve(&flags(global, None), env)?;
    print_warnings(&cfg, global.quiet);
    let ledger = open_existing(&cfg.ledger.value, cfg.lease.value).await?;
    let mut out = stdout();
    let status = match cmd {
        LedgerCmd::Status { json } => status::status(&ledger, json, &mut out).await?,
        LedgerCmd::List {
            rejected: Some(which),
            json,
            limit,
            ..
        } => list::list_rejected(&ledger, which.kind(), json, limit, &mut out).await?,
        LedgerCmd::List {
            status,
            json,
            limit,
            rejected: None,
        } => list::list(&ledger, status, json, limit, &mut out).await?,
        LedgerCmd::Show { key, json } => show::show(&ledger, &key, json, &mut out).await?,
        LedgerCmd::Retry { shas, done: false } => {
            retry::retry(&ledger, &shas, global.quiet, &mut out).await?
        }
        LedgerCmd::Retry { shas, done: true } => {
            retry::retry_done(&ledger, &shas, global.quiet, &mut out).await?
        }
        LedgerCmd::Verify { repair } => {
            verify::verify(&ledger, repair, global.quiet, &mut out).await?
        }
        LedgerCmd::Export { format } => export::export(&ledger, format, &mut out).await?,
    };
    out.flush().context(STDOUT)?;
    ledger.close().await;
    Ok(status)
}

/// Opens the ledger at `location`, never creating one.
async fn open_existing(location: &Location, lease: Duration) -> anyhow::Result<Ledger> {
    let missing = match location {
        Location::File(path) => !path.try_exists().unwrap_or(true),
        Location::Postgres(_) => false,
    };
    if missing {
        return Err(UsageError(format!(
            "no ledger at {location}: `eraser run` creates it (or pass --ledger FILE|URL / set \
             ERASER_LEDGER)"
        ))
        .into());
    }
    let opened = OpenOptions::new()
        .create(false)
        .lease(lease)
        .open(location)
        .await;
    opened.map_err(|e| match e {
        eraser_store::Error::NotFound { .. } => UsageError(format!(
            "no ledger at {location}: `eraser run` creates it (or pass --ledger FILE|URL / \
                 set ERASER_LEDGER)"
        ))
        .into(),
        e => LedgerUnavailable {
            ledger: location.to_string(),
            cause: Box::new(e),
        }
        .into(),
    })
}

/// An image as one JSON object (paths lossily UTF-8).
#[derive(Debug, Serialize)]
struct ImageJson<'a> {
    sha256: String,
    status: ImageStatus,
    size: u64,
    format: &'a str,
    job_id: Option<&'a str>,
    output_url: Option<&'a str>,
    output_path: Option<Cow<'a, str>>,
    output_sha256: Option<String>,
    output_size: Option<u64>,
    attempts: u32,
    repeat_uploads: u32,
    error_code: Option<i64>,
    error_message: Option<&'a str>,
    retryable: Option<bool>,
    credits_states: Option<i64>,
    need_credits: Option<i64>,
    p_credits: Option<i64>,
    s_credits: Option<i64>,
    claimed_by: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl<'a> From<&'a ImageRow> for ImageJson<'a> {
    fn from(r: &'a ImageRow) -> Self {
        Self {
            sha256: r.sha256.to_string(),
            status: r.status,
            size: r.size,
            format: &r.format,
            job_id: r.job_id.as_deref(),
            output_url: r.output_url.as_deref(),
            output_path: r.output_path.as_deref().map(Path::to_string_lossy),
            output_sha256: r.output_sha256.map(|s| s.to_string()),
            output_size: r.output_size,
            attempts: r.attempts,
            repeat_uploads: r.repeat_uploads,
            error_code: r.error_code,
            error_message: r.error_message.as_deref(),
            retryable: r.retryable,
            credits_states: r.credits_states,
            need_credits: r.need_credits,
            p_credits: r.p_credits,
            s_credits: r.s_credits,
            claimed_by: r.claimed_by.map(|run| run.0),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// An input as one JSON object (paths lossily UTF-8).
#[derive(Debug, Serialize)]
struct InputJson<'a> {
    path: Cow<'a, str>,
    size: u64,
    mtime_ns: i64,
    sha256: String,
    planned_output: Option<Cow<'a, str>>,
    output_path: Option<Cow<'a, str>>,
    last_run: Option<i64>,
    last_seen: DateTime<Utc>,
    /// The run whose complete walk did not find it (null while it is there).
    missing: Option<i64>,
}

impl<'a> From<&'a InputRow> for InputJson<'a> {
    fn from(r: &'a InputRow) -> Self {
        Self {
            path: r.path.to_string_lossy(),
            size: r.size,
            mtime_ns: r.mtime_ns,
            sha256: r.sha256.to_string(),
            planned_output: r.planned_output.as_deref().map(Path::to_string_lossy),
            output_path: r.output_path.as_deref().map(Path::to_string_lossy),
            last_run: r.last_run.map(|run| run.0),
            last_seen: r.last_seen,
            missing: r.missing.map(|run| run.0),
        }
    }
}

/// A rejected file as one JSON object (path lossily UTF-8).
#[derive(Debug, Serialize)]
struct RejectedJson<'a> {
    path: Cow<'a, str>,
    kind: RejectKind,
    reason: &'a str,
    run: i64,
    seen_at: DateTime<Utc>,
}

impl<'a> From<&'a RejectedRow> for RejectedJson<'a> {
    fn from(r: &'a RejectedRow) -> Self {
        Self {
            path: r.path.to_string_lossy(),
            kind: r.kind,
            reason: &r.reason,
            run: r.run,
            seen_at: r.seen_at,
        }
    }
}

/// Control characters (a newline in a file name) shown escaped, so one row stays one line.
fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `5 total: 1 new, …` for a status count.
fn counts_line(i: &StatusCounts) -> String {
    format!(
        "{} total: {} new, {} uploading, {} processing, {} done, {} failed",
        i.total, i.new, i.uploading, i.processing, i.done, i.failed
    )
}

/// A sha256 given on the command line: exactly 64 hex digits.
fn parse_sha(text: &str) -> Option<Sha256> {
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase().parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_argument_is_64_hex_digits_any_case() {
        let hex = "AB".repeat(32);
        assert_eq!(
            parse_sha(&hex).map(|s| s.to_string()),
            Some("ab".repeat(32))
        );
        assert!(parse_sha(&"ab".repeat(31)).is_none());
        assert!(parse_sha(&format!("{}zz", "ab".repeat(31))).is_none());
        assert!(parse_sha("5725caa4-2be6-4dd1-916f-d62e772624c2").is_none());
    }

    #[tokio::test]
    async fn missing_ledger_is_a_usage_error_and_is_not_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("none.db");
        let err = open_existing(&Location::file(&path), eraser_store::DEFAULT_LEASE)
            .await
            .expect_err("must fail");
        assert_eq!(crate::exit::code(&Err(err)), 2);
        assert!(!path.exists());
    }
}
