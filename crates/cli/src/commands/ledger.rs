//! `eraser ledger status|list|show|retry|verify|export`: reading and repairing the ledger.
//!
//! Every command opens an existing ledger only (a missing one is a usage error naming the path).
//! Lists and exports are paged or streamed, so they start at once and stay flat at a million rows.
//! JSON output shows paths lossily as UTF-8; CSV keeps their raw bytes (on unix).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use eraser_store::{
    CreditsUsed, FailureGroup, ImageRow, ImageStatus, InputCounts, InputRow, InputState, Ledger,
    RejectKind, RejectedRow, Sha256, StatusCounts,
};
use futures_util::StreamExt as _;
use serde::Serialize;
use sha2::Digest as _;

use super::{global_overrides, print_warnings, say, stdout};
use crate::cli::{ExportFormat, GlobalArgs, LedgerCmd};
use crate::config::{Config, Environment};
use crate::exit::{LedgerUnavailable, Status, UsageError};

/// Rows fetched per page by `list` and `verify`.
const PAGE: u32 = 1000;
const STDOUT: &str = "writing to stdout";

/// Runs one `eraser ledger` command.
pub async fn run(global: &GlobalArgs, cmd: LedgerCmd, env: &Environment) -> anyhow::Result<Status> {
    let cfg = Config::resolve(&global_overrides(global), env)?;
    print_warnings(&cfg, global.quiet);
    let ledger = open_existing(&cfg.ledger.value).await?;
    let mut out = stdout();
    let status = match cmd {
        LedgerCmd::Status { json } => status(&ledger, json, &mut out).await?,
        LedgerCmd::List {
            rejected: Some(which),
            json,
            limit,
            ..
        } => list_rejected(&ledger, which.kind(), json, limit, &mut out).await?,
        LedgerCmd::List {
            status,
            json,
            limit,
            rejected: None,
        } => list(&ledger, status, json, limit, &mut out).await?,
        LedgerCmd::Show { key, json } => show(&ledger, &key, json, &mut out).await?,
        LedgerCmd::Retry { shas, done: false } => {
            retry(&ledger, &shas, global.quiet, &mut out).await?
        }
        LedgerCmd::Retry { shas, done: true } => {
            retry_done(&ledger, &shas, global.quiet, &mut out).await?
        }
        LedgerCmd::Verify { repair } => verify(&ledger, repair, global.quiet, &mut out).await?,
        LedgerCmd::Export { format } => export(&ledger, format, &mut out).await?,
    };
    out.flush().context(STDOUT)?;
    ledger.close().await;
    Ok(status)
}

/// Opens the ledger at `path`, never creating one.
async fn open_existing(path: &Path) -> anyhow::Result<Ledger> {
    if !path.try_exists().unwrap_or(true) {
        return Err(UsageError(format!(
            "no ledger at {}: `eraser run` creates it (or pass --ledger FILE / set ERASER_LEDGER)",
            path.display()
        ))
        .into());
    }
    Ledger::open_existing(&eraser_store::Location::file(path)).await.map_err(|e| {
        LedgerUnavailable {
            path: path.to_path_buf(),
            cause: Box::new(e),
        }
        .into()
    })
}

// --- status -------------------------------------------------------------------------------------

/// `ledger status --json`.
#[derive(Debug, Serialize)]
struct StatusReport {
    ledger: String,
    images: StatusCounts,
    inputs: InputCounts,
    /// Jobs the service holds (status `processing`).
    in_flight: u64,
    oldest_in_flight: Option<OldestJob>,
    credits: CreditsUsed,
    failures: Vec<FailureGroup>,
    /// The service's processing time per image learned by the last run, in seconds.
    processing_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct OldestJob {
    job_id: String,
    sha256: String,
    since: DateTime<Utc>,
    age_seconds: i64,
}

async fn status(ledger: &Ledger, json: bool, out: &mut impl Write) -> anyhow::Result<Status> {
    let images = ledger.status_counts().await?;
    let oldest = ledger
        .in_flight(1)
        .await?
        .into_iter()
        .next()
        .map(|job| OldestJob {
            age_seconds: (Utc::now() - job.updated_at).num_seconds().max(0),
            job_id: job.job_id,
            sha256: job.sha256.to_string(),
            since: job.updated_at,
        });
    let report = StatusReport {
        ledger: ledger.location().to_string(),
        images,
        inputs: ledger.input_counts().await?,
        in_flight: images.processing,
        oldest_in_flight: oldest,
        credits: ledger.credits_used().await?,
        failures: ledger.failure_groups().await?,
        processing_seconds: ledger.processing_estimate().await?,
    };
    let text = if json {
        let mut line = serde_json::to_string(&report).context("encoding the status")?;
        line.push('\n');
        line
    } else {
        render_status(&report)
    };
    out.write_all(text.as_bytes()).context(STDOUT)?;
    Ok(Status::Done)
}

/// The aligned human block of `ledger status`.
fn render_status(r: &StatusReport) -> String {
    let mut s = String::new();
    let i = &r.images;
    let mut row = |label: &str, value: String| {
        let _ = writeln!(s, "{label:>10}  {value}");
    };
    row("ledger", r.ledger.clone());
    row("images", counts_line(i));
    row(
        "inputs",
        format!(
            "{} total: {} done, {} failed",
            r.inputs.total, r.inputs.done, r.inputs.failed
        ),
    );
    if r.inputs.skipped + r.inputs.rejected > 0 {
        row(
            "not used",
            format!(
                "{} errors, {} not images (eraser ledger list --rejected)",
                r.inputs.rejected, r.inputs.skipped
            ),
        );
    }
    row(
        "in flight",
        match &r.oldest_in_flight {
            Some(o) => format!(
                "{} jobs; oldest {} for {}",
                r.in_flight,
                o.job_id,
                format_age(o.age_seconds)
            ),
            None => format!("{} jobs", r.in_flight),
        },
    );
    if let Some(seconds) = r.processing_seconds {
        row(
            "service",
            format!("about {seconds:.1} s per image (learned by the last run)"),
        );
    }
    row(
        "credits",
        format!(
            "p {} s {} need {}",
            r.credits.p_credits, r.credits.s_credits, r.credits.need_credits
        ),
    );
    for f in &r.failures {
        let code = f
            .code
            .map_or_else(|| "no code".to_string(), |c| format!("code {c}"));
        row("failed", format!("{} × {code}: {}", f.count, f.message));
    }
    if !r.failures.is_empty() {
        row("see", "eraser ledger list --status failed".into());
    }
    s
}

/// `5 total: 1 new, …` for a status count.
fn counts_line(i: &StatusCounts) -> String {
    format!(
        "{} total: {} new, {} uploading, {} processing, {} done, {} failed",
        i.total, i.new, i.uploading, i.processing, i.done, i.failed
    )
}

fn input_counts_line(i: &InputCounts) -> String {
    format!(
        "{} inputs: {} done, {} failed; {} skipped, {} rejected",
        i.total, i.done, i.failed, i.skipped, i.rejected
    )
}

/// `75` → `1m15s`; `7300` → `2h01m`.
fn format_age(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

// --- list -----------------------------------------------------------------------------------------

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

async fn list(
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

/// `ledger list --rejected`: files found but not used, by path.
async fn list_rejected(
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

// --- show -----------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct ShowJson<'a> {
    image: Option<ImageJson<'a>>,
    inputs: Vec<InputJson<'a>>,
}

/// Looks `key` up as an existing input path, else a sha256 (64 hex digits), else a job id.
async fn show(
    ledger: &Ledger,
    key: &str,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    if let Some(rejected) = find_rejected(ledger, Path::new(key)).await? {
        let text = if json {
            let mut line = serde_json::to_string(&RejectedJson::from(&rejected))
                .context("encoding a rejected file")?;
            line.push('\n');
            line
        } else {
            render_rejected(&rejected)
        };
        out.write_all(text.as_bytes()).context(STDOUT)?;
        return Ok(Status::Done);
    }
    // A path is looked up even when the file is gone: the ledger still holds the input.
    let input = match parse_sha(key) {
        Some(_) => None,
        None => find_input(ledger, Path::new(key)).await?,
    };
    let image =
        if let Some(input) = input {
            Some(ledger.image(&input.sha256).await?.with_context(|| {
                format!("the ledger has no image {} for input {key}", input.sha256)
            })?)
        } else if Path::new(key).exists() {
            anyhow::bail!("{key} is not an input in the ledger")
        } else if let Some(sha) = parse_sha(key) {
            ledger.image(&sha).await?
        } else {
            ledger.image_by_job(key).await?
        }
        .with_context(|| format!("no input, image or job {key} in the ledger"))?;
    let inputs = ledger.inputs_of_image(&image.sha256).await?;

    let text = if json {
        let view = ShowJson {
            image: Some((&image).into()),
            inputs: inputs.iter().map(Into::into).collect(),
        };
        let mut line = serde_json::to_string(&view).context("encoding the image")?;
        line.push('\n');
        line
    } else {
        render_image(&image, &inputs)
    };
    out.write_all(text.as_bytes()).context(STDOUT)?;
    Ok(Status::Done)
}

/// The input row of a path as given: tried absolute, then with symlinks resolved.
async fn find_input(ledger: &Ledger, path: &Path) -> anyhow::Result<Option<InputRow>> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    if let Some(row) = ledger.input(&absolute).await? {
        return Ok(Some(row));
    }
    match std::fs::canonicalize(path) {
        Ok(real) if real != absolute => Ok(ledger.input(&real).await?),
        _ => Ok(None),
    }
}

/// The rejection of a path as given (absolute), unless the path is an input now.
async fn find_rejected(ledger: &Ledger, path: &Path) -> anyhow::Result<Option<RejectedRow>> {
    let Ok(absolute) = std::path::absolute(path) else {
        return Ok(None);
    };
    if ledger.input(&absolute).await?.is_some() {
        return Ok(None);
    }
    Ok(ledger.rejected(&absolute).await?)
}

/// The aligned human block of `ledger show` for a rejected file.
fn render_rejected(r: &RejectedRow) -> String {
    let mut s = String::new();
    let mut row = |label: &str, value: String| {
        let _ = writeln!(s, "{label:>10}  {value}");
    };
    row("path", printable(&r.path.to_string_lossy()).into_owned());
    let outcome = match r.kind {
        RejectKind::Skipped => "skipped (not an image)",
        RejectKind::Error => "error (not used)",
    };
    row("outcome", outcome.into());
    row("reason", r.reason.clone());
    row(
        "seen",
        format!(
            "by run {} at {}",
            r.run,
            r.seen_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    );
    s
}

/// A sha256 given on the command line: exactly 64 hex digits.
fn parse_sha(text: &str) -> Option<Sha256> {
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase().parse().ok())
        .flatten()
}

/// The aligned human block of `ledger show`.
fn render_image(r: &ImageRow, inputs: &[InputRow]) -> String {
    let mut s = String::new();
    let mut row = |label: &str, value: String| {
        let _ = writeln!(s, "{label:>10}  {value}");
    };
    row("sha256", r.sha256.to_string());
    row("status", r.status.to_string());
    row("format", format!("{} ({} bytes)", r.format, r.size));
    row("job", r.job_id.clone().unwrap_or_else(|| "-".into()));
    if let Some(p) = &r.output_path {
        let sha = r
            .output_sha256
            .map_or_else(|| "sha256 unknown".into(), |s| format!("sha256 {s}"));
        let size = r
            .output_size
            .map_or_else(String::new, |n| format!(", {n} bytes"));
        row("result", format!("{} ({sha}{size})", p.display()));
    }
    if let Some(url) = &r.output_url {
        row("url", url.clone());
    }
    row(
        "attempts",
        format!("{} ({} repeat uploads)", r.attempts, r.repeat_uploads),
    );
    if r.error_code.is_some() || r.error_message.is_some() {
        let code = r
            .error_code
            .map_or_else(|| "no code".into(), |c| format!("code {c}"));
        let retry = match r.retryable {
            Some(true) => " (retryable)",
            Some(false) => " (not retryable)",
            None => "",
        };
        row(
            "error",
            format!(
                "{code}: {}{retry}",
                r.error_message.as_deref().unwrap_or("")
            ),
        );
    }
    if r.status == ImageStatus::Done {
        let c = |v: Option<i64>| v.map_or_else(|| "-".into(), |v| v.to_string());
        row(
            "credits",
            format!(
                "states {} need {} p {} s {}",
                c(r.credits_states),
                c(r.need_credits),
                c(r.p_credits),
                c(r.s_credits)
            ),
        );
    }
    row("created", r.created_at.to_rfc3339());
    row("updated", r.updated_at.to_rfc3339());
    row("inputs", inputs.len().to_string());
    for i in inputs {
        let out = match (&i.output_path, &i.planned_output) {
            (Some(o), _) => o.display().to_string(),
            (None, Some(p)) => format!("(not placed yet; planned {})", p.display()),
            (None, None) => "(not placed yet)".into(),
        };
        let gone = i
            .missing
            .map_or_else(String::new, |run| format!(" (not found by run {})", run.0));
        row("", format!("{} → {out}{gone}", i.path.display()));
    }
    s
}

// --- retry ----------------------------------------------------------------------------------------

async fn retry(
    ledger: &Ledger,
    shas: &[String],
    quiet: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let parsed = parse_shas(shas)?;
    let retried = if parsed.is_empty() {
        ledger.retry_failed(None).await?
    } else {
        ledger.retry_failed(Some(&parsed)).await?
    };
    writeln!(
        out,
        "{} failed image(s) put back to new; the next `eraser run` tries them again",
        retried.to_upload
    )
    .context(STDOUT)?;
    if retried.to_poll > 0 {
        writeln!(
            out,
            "{} timed-out job(s) put back to processing; the next `eraser run` polls them \
             (no new upload unless the service says the job failed)",
            retried.to_poll
        )
        .context(STDOUT)?;
    }
    let moved = retried.to_upload + retried.to_poll;
    say_left_alone(parsed.len(), moved, "failed", quiet);
    Ok(Status::Done)
}

/// Sha256s given on the command line; the first that is not one is a usage error.
fn parse_shas(shas: &[String]) -> Result<Vec<Sha256>, UsageError> {
    shas.iter()
        .map(|s| {
            parse_sha(s).ok_or_else(|| UsageError(format!("{s:?} is not a sha256 (64 hex digits)")))
        })
        .collect()
}

/// Tells on stderr how many of the images named were left as they were.
fn say_left_alone(named: usize, moved: u64, what: &str, quiet: bool) {
    let skipped = (named as u64).saturating_sub(moved);
    if skipped > 0 && !quiet {
        say(&format!(
            "{skipped} of the images given were not {what} and were left as they are"
        ));
    }
}

/// `ledger retry --done SHA…`: done images whose result cannot be had any more go back to `new`
/// (the next run pays for them again, so only the images named are touched).
async fn retry_done(
    ledger: &Ledger,
    shas: &[String],
    quiet: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let parsed = parse_shas(shas)?;
    let mut n = 0u64;
    for sha in &parsed {
        match ledger.reset_done(sha).await {
            Ok(()) => n += 1,
            Err(
                eraser_store::Error::IllegalTransition { .. }
                | eraser_store::Error::UnknownImage { .. },
            ) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("resetting {sha}"))),
        }
    }
    writeln!(
        out,
        "{n} done image(s) put back to new; the next `eraser run` uploads them again (each costs a credit)"
    )
    .context(STDOUT)?;
    say_left_alone(parsed.len(), n, "done (or not in the ledger)", quiet);
    Ok(Status::Done)
}

// --- verify ---------------------------------------------------------------------------------------

/// What is wrong with a file the ledger relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileProblem {
    NoPath,
    Missing,
    Unreadable(String),
    Mismatch { actual: Sha256 },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoPath => f.write_str("no stored result recorded"),
            Self::Missing => f.write_str("missing"),
            Self::Unreadable(e) => write!(f, "unreadable ({e})"),
            Self::Mismatch { actual } => write!(f, "content changed (sha256 {actual})"),
        }
    }
}

/// Checks that `path` exists and, when `expected` is known, holds exactly those bytes.
/// No path (or an empty one) is [`FileProblem::NoPath`].
fn check_file(path: Option<&Path>, expected: Option<Sha256>) -> Result<(), FileProblem> {
    let path = path
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or(FileProblem::NoPath)?;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FileProblem::Missing),
        Err(e) => return Err(FileProblem::Unreadable(e.to_string())),
    };
    let Some(expected) = expected else {
        return Ok(());
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FileProblem::Unreadable(e.to_string())),
        }
    }
    let actual = Sha256(hasher.finalize().into());
    if actual == expected {
        Ok(())
    } else {
        Err(FileProblem::Mismatch { actual })
    }
}

/// [`check_file`] on the blocking pool.
async fn check_file_async(
    path: Option<PathBuf>,
    expected: Option<Sha256>,
) -> Result<(), FileProblem> {
    tokio::task::spawn_blocking(move || check_file(path.as_deref(), expected))
        .await
        .unwrap_or_else(|e| Err(FileProblem::Unreadable(format!("check aborted: {e}"))))
}

/// Tally of a verify pass.
#[derive(Debug, Default)]
struct Tally {
    images: u64,
    /// Done images without a stored result (finished while every output path was taken).
    unstored: u64,
    outputs: u64,
    problems: u64,
    repaired: u64,
}

/// Like `restic check`: the ledger file is sound (integrity, references, counts); every done
/// image's stored result exists with its sha256; every recorded input output exists.
/// `--repair` clears what is broken so the next run makes it again (not the file's own damage).
async fn verify(
    ledger: &Ledger,
    repair: bool,
    quiet: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let mut tally = Tally::default();
    // The file itself first: SQLite's integrity, references, the counts. Not repairable here.
    let consistency = ledger.check_consistency().await?;
    let mut file_problems: Vec<String> = consistency
        .integrity
        .iter()
        .filter(|l| *l != "ok")
        .map(|l| format!("integrity check: {l}"))
        .collect();
    if consistency.foreign_key_violations > 0 {
        let n = consistency.foreign_key_violations;
        file_problems.push(format!("{n} row(s) refer to rows that do not exist"));
    }
    if consistency.counts_table != consistency.recount {
        file_problems.push(format!(
            "the status counts ({}) differ from a recount ({})",
            counts_line(&consistency.counts_table),
            counts_line(&consistency.recount)
        ));
    }
    if consistency.input_counts_table != consistency.input_recount {
        file_problems.push(format!(
            "the input tallies ({}) differ from a recount ({})",
            input_counts_line(&consistency.input_counts_table),
            input_counts_line(&consistency.input_recount)
        ));
    }
    for problem in file_problems {
        tally.problems += 1;
        writeln!(out, "ledger: {problem}").context(STDOUT)?;
    }
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());

    let mut after: Option<Sha256> = None;
    loop {
        let rows = ledger
            .list_images(Some(ImageStatus::Done), after.as_ref(), PAGE)
            .await?;
        let full = rows.len() == PAGE as usize;
        after = rows.last().map(|r| r.sha256);
        let checked: Vec<(ImageRow, Result<(), FileProblem>)> = futures_util::stream::iter(rows)
            .map(|row| async move {
                let result = check_file_async(row.output_path.clone(), row.output_sha256).await;
                (row, result)
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
        for (row, result) in checked {
            tally.images += 1;
            if matches!(result, Err(FileProblem::NoPath)) {
                // Finished but never stored (every output path was taken): nothing to verify.
                tally.unstored += 1;
                continue;
            }
            let Err(problem) = result else { continue };
            tally.problems += 1;
            let shown = row
                .output_path
                .as_deref()
                .map_or_else(|| "-".into(), |p| p.display().to_string());
            write!(
                out,
                "image {}: stored result {shown}: {problem}",
                row.sha256
            )
            .context(STDOUT)?;
            if repair {
                match repair_image(ledger, &row, &problem).await {
                    Ok(done) => {
                        tally.repaired += 1;
                        write!(out, "; repaired: {done}").context(STDOUT)?;
                    }
                    Err(e) => write!(out, "; repair failed: {}", crate::exit::one_line(&e))
                        .context(STDOUT)?,
                }
            }
            writeln!(out).context(STDOUT)?;
        }
        if !full {
            break;
        }
    }

    // Inputs: collected first, repaired after the cursor is closed (no writes under a reader).
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut inputs = ledger.export_inputs();
    while let Some(state) = inputs.next().await {
        let state = state?;
        let Some(output) = &state.input.output_path else {
            continue;
        };
        tally.outputs += 1;
        if !output.try_exists().unwrap_or(false) {
            tally.problems += 1;
            writeln!(
                out,
                "input {}: output {}: missing",
                state.input.path.display(),
                output.display()
            )
            .context(STDOUT)?;
            if repair {
                missing.push(state.input.path.clone());
            }
        }
    }
    drop(inputs);
    for path in missing {
        match ledger.clear_input_output(&path).await {
            Ok(()) => tally.repaired += 1,
            Err(e) => {
                writeln!(out, "input {}: repair failed: {e}", path.display()).context(STDOUT)?
            }
        }
    }
    out.flush().context(STDOUT)?;

    let remaining = tally.problems - tally.repaired;
    if !quiet {
        let mut line = format!(
            "verified {} done images and {} recorded outputs: {} problem(s)",
            tally.images - tally.unstored,
            tally.outputs,
            tally.problems
        );
        if tally.unstored > 0 {
            let _ = write!(
                line,
                " ({} done images have no stored result to check)",
                tally.unstored
            );
        }
        if repair && tally.repaired > 0 {
            let _ = write!(
                line,
                ", {} repaired; the next `eraser run` makes the outputs again",
                tally.repaired
            );
        }
        if !repair && remaining > 0 {
            line.push_str("; `eraser ledger verify --repair` clears them for the next run");
        }
        say(&line);
    }
    Ok(if remaining == 0 {
        Status::Done
    } else {
        Status::ProblemsFound
    })
}

/// Repairs a done image whose stored result is broken: restored from an intact copy (another
/// input's output with the same sha256) when there is one. Otherwise the broken file (eraser's
/// own) is removed and forgotten, so the next run downloads the result again from the service —
/// no new upload. Only an image whose result URL is unknown goes back to `new`.
async fn repair_image(
    ledger: &Ledger,
    row: &ImageRow,
    problem: &FileProblem,
) -> anyhow::Result<String> {
    let inputs = ledger.inputs_of_image(&row.sha256).await?;
    if let Some(stored) = &row.output_path {
        for input in &inputs {
            let Some(copy) = input.output_path.as_ref().filter(|c| *c != stored) else {
                continue;
            };
            if check_file_async(Some(copy.clone()), row.output_sha256)
                .await
                .is_ok()
            {
                restore(copy, stored).await?;
                return Ok(format!("restored from {}", copy.display()));
            }
        }
    }
    if *problem != FileProblem::Missing
        && let Some(stored) = &row.output_path
    {
        let _ = std::fs::remove_file(stored);
    }
    for input in &inputs {
        if input.output_path.is_some() && input.output_path == row.output_path {
            ledger.clear_input_output(&input.path).await?;
        }
    }
    if row.output_url.as_deref().is_some_and(|u| !u.is_empty()) {
        ledger.clear_image_output(&row.sha256).await?;
        return Ok(
            "no intact copy; the next run downloads the result again (no new upload)".into(),
        );
    }
    ledger.reset_done(&row.sha256).await?;
    Ok(
        "no intact copy and no result URL; the image is new again and the next run uploads it"
            .into(),
    )
}

/// Copies `from` to `to` through a temporary file in `to`'s folder and a rename.
async fn restore(from: &Path, to: &Path) -> anyhow::Result<()> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let dir = to.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tmp = to.clone().into_os_string();
        tmp.push(".eraser-repair.tmp");
        let tmp = PathBuf::from(tmp);
        let copied = std::fs::copy(&from, &tmp)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &to));
        if copied.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        copied.with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
    })
    .await
    .context("the copy was aborted")?
}

// --- export ---------------------------------------------------------------------------------------

/// An input with its image's state as one JSON line (paths lossily UTF-8).
#[derive(Debug, Serialize)]
struct InputStateJson<'a> {
    #[serde(flatten)]
    input: InputJson<'a>,
    status: ImageStatus,
    stored_output: Option<Cow<'a, str>>,
    stored_output_sha256: Option<String>,
    output_url: Option<&'a str>,
    error_code: Option<i64>,
    error_message: Option<&'a str>,
}

impl<'a> From<&'a InputState> for InputStateJson<'a> {
    fn from(s: &'a InputState) -> Self {
        Self {
            input: (&s.input).into(),
            status: s.status,
            stored_output: s.image_output_path.as_deref().map(Path::to_string_lossy),
            stored_output_sha256: s.image_output_sha256.map(|h| h.to_string()),
            output_url: s.output_url.as_deref(),
            error_code: s.error_code,
            error_message: s.error_message.as_deref(),
        }
    }
}

/// The CSV columns of `ledger export --format csv`.
const CSV_HEADER: [&str; 13] = [
    "path",
    "size",
    "mtime_ns",
    "sha256",
    "status",
    "planned_output",
    "output_path",
    "stored_output",
    "stored_output_sha256",
    "output_url",
    "error_code",
    "error_message",
    "last_seen",
];

async fn export(
    ledger: &Ledger,
    format: ExportFormat,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let mut rows = ledger.export_inputs();
    match format {
        ExportFormat::Jsonl => {
            while let Some(state) = rows.next().await {
                let state = state?;
                let line = serde_json::to_string(&InputStateJson::from(&state))
                    .context("encoding an input")?;
                writeln!(out, "{line}").context(STDOUT)?;
            }
        }
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(&mut *out);
            csv.write_record(CSV_HEADER).map_err(csv_error)?;
            while let Some(state) = rows.next().await {
                csv.write_record(csv_record(&state?)).map_err(csv_error)?;
            }
            csv.flush().context(STDOUT)?;
        }
    }
    Ok(Status::Done)
}

/// One CSV record, in [`CSV_HEADER`] order; paths as raw bytes.
fn csv_record(s: &InputState) -> [Vec<u8>; 13] {
    let opt_path = |p: &Option<PathBuf>| p.as_deref().map_or_else(Vec::new, path_bytes);
    let opt = |v: Option<String>| v.unwrap_or_default().into_bytes();
    let i = &s.input;
    [
        path_bytes(&i.path),
        i.size.to_string().into_bytes(),
        i.mtime_ns.to_string().into_bytes(),
        i.sha256.to_string().into_bytes(),
        s.status.as_str().as_bytes().to_vec(),
        opt_path(&i.planned_output),
        opt_path(&i.output_path),
        opt_path(&s.image_output_path),
        opt(s.image_output_sha256.map(|h| h.to_string())),
        opt(s.output_url.clone()),
        opt(s.error_code.map(|c| c.to_string())),
        opt(s.error_message.clone()),
        i.last_seen.to_rfc3339().into_bytes(),
    ]
}

/// A path's bytes: raw on unix (non-UTF-8 names survive), lossy UTF-8 elsewhere.
fn path_bytes(p: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        p.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        p.to_string_lossy().into_owned().into_bytes()
    }
}

/// csv's error hides its io::Error from the source chain; unwrap it so a closed stdout is seen.
fn csv_error(e: csv::Error) -> anyhow::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => anyhow::Error::new(io).context(STDOUT),
        other => anyhow::anyhow!("cannot write CSV: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sha_of(bytes: &[u8]) -> Sha256 {
        Sha256(sha2::Sha256::digest(bytes).into())
    }

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

    #[test]
    fn intact_file_passes_the_check() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jpg");
        std::fs::write(&path, b"result bytes").expect("write");
        assert_eq!(
            check_file(Some(&path), Some(sha_of(b"result bytes"))),
            Ok(())
        );
    }

    #[test]
    fn changed_file_is_a_mismatch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jpg");
        std::fs::write(&path, b"other bytes").expect("write");
        assert_eq!(
            check_file(Some(&path), Some(sha_of(b"result bytes"))),
            Err(FileProblem::Mismatch {
                actual: sha_of(b"other bytes")
            })
        );
    }

    #[test]
    fn missing_file_and_missing_path_are_problems() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            check_file(Some(&dir.path().join("gone")), None),
            Err(FileProblem::Missing)
        );
        assert_eq!(check_file(None, None), Err(FileProblem::NoPath));
        assert_eq!(
            check_file(Some(Path::new("")), None),
            Err(FileProblem::NoPath)
        );
    }

    #[tokio::test]
    async fn restore_copies_through_a_temp_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let from = dir.path().join("copy.jpg");
        let to = dir.path().join("store/sub/result.jpg");
        std::fs::write(&from, b"intact").expect("write");
        restore(&from, &to).await.expect("restore");
        assert_eq!(std::fs::read(&to).expect("read"), b"intact");
        let leftovers: Vec<_> = std::fs::read_dir(to.parent().expect("parent"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn ages_are_short_and_readable() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(75), "1m15s");
        assert_eq!(format_age(7300), "2h01m");
        assert_eq!(format_age(90_000), "1d01h");
    }

    #[test]
    fn status_json_has_the_documented_shape() {
        let report = StatusReport {
            ledger: "/l.db".into(),
            images: StatusCounts {
                total: 3,
                new: 1,
                uploading: 0,
                processing: 1,
                done: 1,
                failed: 0,
            },
            inputs: InputCounts {
                total: 4,
                done: 2,
                failed: 0,
                skipped: 1,
                rejected: 1,
            },
            in_flight: 1,
            oldest_in_flight: None,
            credits: CreditsUsed::default(),
            failures: vec![],
            processing_seconds: Some(1.5),
        };
        let v: serde_json::Value = serde_json::to_value(&report).expect("json");
        assert_eq!(v["processing_seconds"], 1.5);
        assert!(render_status(&report).contains("about 1.5 s per image"));
        for key in ["total", "new", "uploading", "processing", "done", "failed"] {
            assert!(v["images"][key].is_u64(), "images.{key}");
        }
        for key in ["total", "done", "failed", "skipped", "rejected"] {
            assert!(v["inputs"][key].is_u64(), "inputs.{key}");
        }
        for key in [
            "in_flight",
            "oldest_in_flight",
            "credits",
            "failures",
            "ledger",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
    }

    fn sample_state(path: PathBuf) -> InputState {
        let now = Utc::now() - Duration::from_secs(1);
        InputState {
            input: InputRow {
                path,
                size: 10,
                mtime_ns: 7,
                sha256: sha_of(b"in"),
                planned_output: Some("/out/a, b.jpg".into()),
                output_path: None,
                last_run: None,
                last_seen: now,
                missing: None,
            },
            status: ImageStatus::Failed,
            image_output_path: None,
            image_output_sha256: None,
            image_output_size: None,
            output_url: None,
            error_code: Some(300010),
            error_message: Some("no \"credits\"\nleft".into()),
        }
    }

    #[test]
    fn csv_rows_round_trip_through_a_csv_reader() {
        let mut wtr = csv::Writer::from_writer(Vec::new());
        wtr.write_record(CSV_HEADER).expect("header");
        wtr.write_record(csv_record(&sample_state("/in/a.png".into())))
            .expect("row");
        let bytes = wtr.into_inner().expect("flush");
        let mut rdr = csv::Reader::from_reader(bytes.as_slice());
        let headers = rdr.headers().expect("headers").clone();
        assert_eq!(headers.iter().collect::<Vec<_>>(), CSV_HEADER);
        let rows: Vec<csv::StringRecord> = rdr.records().collect::<Result<_, _>>().expect("rows");
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "/in/a.png");
        assert_eq!(&rows[0][4], "failed");
        assert_eq!(&rows[0][5], "/out/a, b.jpg");
        assert_eq!(&rows[0][11], "no \"credits\"\nleft");
    }

    #[cfg(unix)]
    #[test]
    fn csv_keeps_non_utf8_path_bytes() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw = std::ffi::OsStr::from_bytes(b"/in/\xff.png");
        assert_eq!(csv_record(&sample_state(raw.into()))[0], b"/in/\xff.png");
    }

    #[cfg(unix)]
    #[test]
    fn jsonl_shows_non_utf8_paths_lossily_instead_of_failing() {
        use std::os::unix::ffi::OsStrExt as _;
        let state = sample_state(std::ffi::OsStr::from_bytes(b"/in/\xff.png").into());
        let line = serde_json::to_string(&InputStateJson::from(&state)).expect("encodes");
        assert!(line.contains("/in/\u{fffd}.png"), "{line}");
        assert!(line.contains("\"status\":\"failed\""), "{line}");
    }

    /// A real ledger in a temp dir with helpers to put images in the `done` state.
    struct Fixture {
        dir: tempfile::TempDir,
        ledger: Ledger,
        run: eraser_store::RunId,
    }

    impl Fixture {
        async fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let ledger = Ledger::open(&dir.path().join("ledger.db"))
                .await
                .expect("open ledger");
            let run = ledger
                .begin_run("eraser run test", &dir.path().join("out"))
                .await
                .expect("begin run");
            Self { dir, ledger, run }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        /// Records inputs `names` (all holding `content`) with planned outputs in `out/`.
        async fn record(&self, names: &[&str], content: &[u8]) -> Sha256 {
            let sha = sha_of(content);
            let batch: Vec<eraser_store::InputRecord> = names
                .iter()
                .map(|name| eraser_store::InputRecord {
                    path: self.path(&format!("in/{name}.png")),
                    size: content.len() as u64,
                    mtime_ns: 1,
                    sha256: sha,
                    format: "png".into(),
                    planned_output: self.path(&format!("out/{name}.jpg")),
                })
                .collect();
            self.ledger
                .record_inputs(self.run, &batch)
                .await
                .expect("record inputs");
            sha
        }

        /// Takes every `new` image through upload to `done`, writing `result` for each input
        /// (the first input's file is the stored result).
        async fn finish_all(&self, names_by_sha: &[(Sha256, &[&str])], result: &[u8]) {
            let claims = self
                .ledger
                .claim_for_upload(self.run, 100)
                .await
                .expect("claim");
            assert_eq!(claims.len(), names_by_sha.len());
            std::fs::create_dir_all(self.path("out")).expect("mkdir out");
            for (n, (sha, names)) in names_by_sha.iter().enumerate() {
                self.ledger
                    .mark_processing(sha, &format!("job-{n}"))
                    .await
                    .expect("processing");
                let stored = self.path(&format!("out/{}.jpg", names[0]));
                let done = eraser_store::DoneRecord {
                    output_url: format!("http://127.0.0.1:9/{n}.jpg"),
                    output_path: stored,
                    output_sha256: Some(sha_of(result)),
                    output_size: result.len() as u64,
                    ..Default::default()
                };
                self.ledger.mark_done(sha, &done).await.expect("done");
                for name in *names {
                    let out = self.path(&format!("out/{name}.jpg"));
                    std::fs::write(&out, result).expect("write output");
                    let input = self.path(&format!("in/{name}.png"));
                    self.ledger
                        .set_input_output(self.run, &input, &out)
                        .await
                        .expect("set output");
                }
            }
        }

        async fn verify(&self, repair: bool) -> (Status, String) {
            let mut out = Vec::new();
            let status = verify(&self.ledger, repair, true, &mut out)
                .await
                .expect("verify runs");
            (status, String::from_utf8(out).expect("utf-8"))
        }
    }

    #[tokio::test]
    async fn verify_passes_when_every_output_is_in_place() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a", "b"], b"image a").await;
        fx.finish_all(&[(sha, &["a", "b"])], b"result a").await;
        assert_eq!(fx.verify(false).await, (Status::Done, String::new()));
    }

    #[tokio::test]
    async fn verify_reports_a_missing_result_and_changes_nothing() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.finish_all(&[(sha, &["a"])], b"result a").await;
        std::fs::remove_file(fx.path("out/a.jpg")).expect("rm");
        let (status, text) = fx.verify(false).await;
        assert_eq!(status, Status::ProblemsFound);
        assert!(text.contains("missing"), "{text}");
        assert_eq!(fx.ledger.status_counts().await.expect("counts").done, 1);
    }

    #[tokio::test]
    async fn verify_reports_a_changed_result() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.finish_all(&[(sha, &["a"])], b"result a").await;
        std::fs::write(fx.path("out/a.jpg"), b"edited").expect("edit");
        let (status, text) = fx.verify(false).await;
        assert_eq!(status, Status::ProblemsFound);
        assert!(text.contains("content changed"), "{text}");
    }

    #[tokio::test]
    async fn repair_without_a_copy_keeps_the_image_done_for_a_download_and_clears_its_output() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.finish_all(&[(sha, &["a"])], b"result a").await;
        std::fs::remove_file(fx.path("out/a.jpg")).expect("rm");
        let (status, text) = fx.verify(true).await;
        assert_eq!(status, Status::Done, "{text}");
        let counts = fx.ledger.status_counts().await.expect("counts");
        assert_eq!((counts.new, counts.done), (0, 1), "no new upload is needed");
        let image = fx.ledger.image(&sha).await.expect("query").expect("image");
        assert_eq!(image.output_path, None);
        assert!(image.output_url.is_some());
        let input = fx.ledger.input(&fx.path("in/a.png")).await.expect("query");
        assert_eq!(input.and_then(|i| i.output_path), None);
        assert_eq!(fx.verify(false).await.0, Status::Done);
    }

    #[tokio::test]
    async fn repair_restores_the_stored_result_from_an_intact_copy() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a", "b"], b"image a").await;
        fx.finish_all(&[(sha, &["a", "b"])], b"result a").await;
        std::fs::remove_file(fx.path("out/a.jpg")).expect("rm");
        let (status, text) = fx.verify(true).await;
        assert_eq!(status, Status::Done, "{text}");
        assert!(text.contains("restored from"), "{text}");
        assert_eq!(
            std::fs::read(fx.path("out/a.jpg")).expect("restored"),
            b"result a"
        );
        assert_eq!(fx.ledger.status_counts().await.expect("counts").done, 1);
    }

    #[tokio::test]
    async fn repair_clears_a_missing_duplicate_output_only() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a", "b"], b"image a").await;
        fx.finish_all(&[(sha, &["a", "b"])], b"result a").await;
        std::fs::remove_file(fx.path("out/b.jpg")).expect("rm");
        let (status, text) = fx.verify(true).await;
        assert_eq!(status, Status::Done, "{text}");
        let b = fx.ledger.input(&fx.path("in/b.png")).await.expect("query");
        assert_eq!(b.and_then(|i| i.output_path), None);
        let a = fx.ledger.input(&fx.path("in/a.png")).await.expect("query");
        assert_eq!(a.and_then(|i| i.output_path), Some(fx.path("out/a.jpg")));
        assert_eq!(fx.ledger.status_counts().await.expect("counts").done, 1);
    }

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

    #[tokio::test]
    async fn retry_done_puts_only_the_named_done_images_back_to_new() {
        let fx = Fixture::new().await;
        let done = fx.record(&["a"], b"image a").await;
        let other = fx.record(&["b"], b"image b").await;
        for claim in fx.ledger.claim_for_upload(fx.run, 2).await.expect("claim") {
            fx.ledger
                .mark_processing(&claim.sha256, "job")
                .await
                .expect("processing");
        }
        let record = eraser_store::DoneRecord {
            output_url: "http://cdn/x.jpg".into(),
            output_path: "/out/a.jpg".into(),
            ..Default::default()
        };
        fx.ledger.mark_done(&done, &record).await.expect("done");
        let mut out = Vec::new();

        retry_done(
            &fx.ledger,
            &[done.to_string(), other.to_string()],
            true,
            &mut out,
        )
        .await
        .expect("retry --done");

        assert!(String::from_utf8_lossy(&out).starts_with("1 done image(s)"));
        let counts = fx.ledger.status_counts().await.expect("counts");
        assert_eq!((counts.new, counts.done, counts.processing), (1, 0, 1));
    }

    #[tokio::test]
    async fn retry_puts_failed_images_back_to_new() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.ledger.claim_for_upload(fx.run, 1).await.expect("claim");
        let failure = eraser_store::Failure {
            code: Some(300010),
            message: "no".into(),
            retryable: false,
        };
        fx.ledger.mark_failed(&sha, &failure).await.expect("fail");
        let mut out = Vec::new();
        retry(&fx.ledger, &[sha.to_string()], true, &mut out)
            .await
            .expect("retry");
        assert!(String::from_utf8_lossy(&out).starts_with("1 failed image(s)"));
        assert_eq!(fx.ledger.status_counts().await.expect("counts").new, 1);
    }

    #[tokio::test]
    async fn export_csv_has_a_header_and_one_row_per_input() {
        let fx = Fixture::new().await;
        fx.record(&["a", "b"], b"image a").await;
        let mut out = Vec::new();
        export(&fx.ledger, ExportFormat::Csv, &mut out)
            .await
            .expect("export");
        let mut rdr = csv::Reader::from_reader(out.as_slice());
        assert_eq!(
            rdr.headers().expect("headers").iter().collect::<Vec<_>>(),
            CSV_HEADER
        );
        assert_eq!(rdr.records().count(), 2);
    }

    #[tokio::test]
    async fn show_finds_an_image_by_job_id() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.finish_all(&[(sha, &["a"])], b"result a").await;
        let mut out = Vec::new();
        show(&fx.ledger, "job-0", true, &mut out)
            .await
            .expect("show");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["image"]["sha256"], sha.to_string());
        assert_eq!(v["inputs"].as_array().map(Vec::len), Some(1));
    }

    #[tokio::test]
    async fn missing_ledger_is_a_usage_error_and_is_not_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("none.db");
        let err = open_existing(&path).await.expect_err("must fail");
        assert_eq!(crate::exit::code(&Err(err)), 2);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn status_json_counts_a_real_ledger() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a", "b"], b"image a").await;
        fx.finish_all(&[(sha, &["a", "b"])], b"result a").await;
        fx.record(&["c"], b"image c").await;
        let mut out = Vec::new();
        status(&fx.ledger, true, &mut out).await.expect("status");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("one json object");
        assert_eq!(v["images"]["total"], 2);
        assert_eq!(v["images"]["done"], 1);
        assert_eq!(v["images"]["new"], 1);
        assert_eq!(v["inputs"]["total"], 3);
        assert_eq!(v["ledger"], fx.path("ledger.db").display().to_string());
    }
}
