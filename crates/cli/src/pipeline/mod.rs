//! The batch pipeline: walk → fingerprint → record → upload → poll → download → place.
//!
//! [`run`] is the table of contents. The scan (`scan.rs`, over `walk.rs` and `fingerprint.rs`)
//! records every input in the ledger as fast as the disks allow; the coordinator
//! (`coordinator.rs`) claims `new` images from the ledger as job slots free up, uploads them
//! (`upload.rs`), polls every job from one schedule (`poll.rs`, `schedule.rs`) and hands
//! finished ones to placement (`complete.rs`, `place.rs`), asking `health.rs` whether to go on.
//! A final pass gives every input of the run its output; `outcome.rs` decides how the run
//! ended. The ledger is the only shared state, so a second run on the same ledger, or the
//! next run after a kill, simply picks up from it.

mod complete;
mod coordinator;
mod fingerprint;
mod health;
pub mod layout;
mod limits;
mod listings;
mod outcome;
mod place;
mod poll;
mod scan;
mod schedule;
mod stop;
mod unrecorded;
mod upload;
mod walk;

pub use limits::Feedback;
pub use stop::StopSignal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eraser_api::Client;
use eraser_store::{Ledger, RunId};
use tokio::sync::Notify;

use self::coordinator::Coordinator;
use crate::progress::{Counters, Progress};
use crate::summary::Summary;

/// Where the run's input paths come from.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// Files and directories named on the command line.
    Paths(Vec<PathBuf>),
    /// Paths read from stdin, one per line, or NUL-separated when `nul`.
    Stdin { nul: bool },
}

/// Everything `eraser run` decided before the pipeline starts.
#[derive(Debug, Clone)]
pub struct Options {
    pub inputs: InputSource,
    pub out: PathBuf,
    /// Jobs in flight at the service (uploaded, not finished): `-j`.
    pub concurrency: usize,
    /// create-job requests in flight at once.
    pub upload_concurrency: usize,
    /// Downloads in flight at once.
    pub download_concurrency: usize,
    /// Hashing threads (0 = all cores).
    pub hash_threads: usize,
    /// API requests per second, when capped.
    pub rate: Option<f64>,
    /// A job still unfinished after this is failed (retryable).
    pub job_timeout: Duration,
    /// A service not reached, or refusing every upload, for this long ends the run.
    pub outage_timeout: Duration,
    /// Follow symlinked directories.
    pub follow: bool,
    /// Hard-link duplicate outputs instead of copying.
    pub link: bool,
    /// Replace files at the target that the ledger did not write.
    pub overwrite: bool,
    /// Put failed images back to `new` before starting.
    pub retry_failed: bool,
    /// Scan and report only; upload nothing.
    pub dry_run: bool,
    /// Upload as `<sha256>.<ext>` instead of the file's name.
    pub anonymous_names: bool,
    /// Attempts per image within a run for retryable failures.
    pub max_attempts: u32,
    /// Largest input uploaded; larger ones are reported before any upload.
    pub max_upload_bytes: u64,
    /// Where job ids the ledger cannot take when they arrive are kept until it can (`None`:
    /// no data folder; they are only logged).
    pub unrecorded_dir: Option<PathBuf>,
    /// Show progress (bars on a TTY, plain lines otherwise); false with --quiet.
    pub progress: bool,
    /// The command line, recorded with the run.
    pub command_line: String,
}

/// How a run ended; `exit.rs` turns it into an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every input has its output.
    Complete,
    /// Finished, some inputs failed.
    SomeFailed,
    /// The service refused work repeatedly with one code; submitting stopped.
    Refused { code: i64, message: String },
    /// Ctrl-C, SIGTERM or SIGHUP: requests in flight were finished and recorded.
    Interrupted(StopSignal),
    /// Requests got no answer from the service, even after retries, several times in a row
    /// (network or service down): submitting stopped and the run ended as after Ctrl-C, with
    /// nothing marked failed for the outage.
    Unavailable { message: String },
    /// Results could not be written into OUT several times in a row (full disk, quota,
    /// read-only file system, file size limit): submitting stopped, so no more is paid for
    /// results that cannot be kept; the jobs accepted are still polled, and their results
    /// wait at the service for the next run.
    OutUnwritable { message: String },
}

impl RunEnd {
    /// How the end is named to scripts (`--json`'s `"end"`) and, with hyphens, in the ledger.
    pub fn name(&self) -> &'static str {
        match self {
            RunEnd::Complete => "complete",
            RunEnd::SomeFailed => "some_failed",
            RunEnd::Refused { .. } => "refused",
            RunEnd::Interrupted(_) => "interrupted",
            RunEnd::Unavailable { .. } => "unavailable",
            RunEnd::OutUnwritable { .. } => "out_unwritable",
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub end: RunEnd,
    pub summary: Summary,
}

/// Runs the pipeline to completion (or interruption).
pub async fn run(
    ledger: &Ledger,
    client: &Client,
    opts: &Options,
    feedback: &Feedback,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let opts = Arc::new(Options {
        out: out_root(&opts.out, opts.dry_run)?,
        ..opts.clone()
    });
    let stop = stop::Stop::watch();
    let run = begin(ledger, &opts, &feedback.counters).await?;
    let heartbeat = spawn_heartbeat(ledger.clone(), run);
    let progress = Progress::start(Arc::clone(&feedback.counters), opts.progress);

    let session = ledger
        .begin_scan(run)
        .await
        .context("starting the scan in the ledger")?;
    let recorded = Arc::new(Notify::new());
    let scan = tokio::spawn(
        scan::Scan {
            session: session.clone(),
            out: opts.out.clone(),
            source: opts.inputs.clone(),
            follow: opts.follow,
            hash_threads: opts.hash_threads,
            max_upload_bytes: opts.max_upload_bytes,
            counters: Arc::clone(&feedback.counters),
            recorded: Arc::clone(&recorded),
        }
        .run(),
    );
    let mut work = Coordinator::new(
        ledger,
        client,
        run,
        Arc::clone(&opts),
        feedback,
        session,
        started,
    )
    .await;
    let scan_errors = match work.drive(scan, &recorded, &stop).await {
        Ok(errors) => errors,
        Err(e) if work.unrecorded.count() > 0 => {
            return Err(e.context(format!(
                "{} job id(s) the ledger could not take are kept in {}: the next run records                  them before uploading anything",
                work.unrecorded.count(),
                work.unrecorded.shown()
            )));
        }
        Err(e) => return Err(e),
    };

    // Every input of this run gets its output, or is reported (a dry run writes nothing, and a
    // stopped run leaves the rest to the next).
    let report = if opts.dry_run || !work.polls_go_on() {
        complete::FinalReport::default()
    } else {
        work.final_pass().await?
    };
    progress.finish().await;
    work.keep_estimate().await;
    heartbeat.abort();

    let counted = ledger
        .run_progress(run)
        .await
        .context("counting the run's images")?;
    let (end, summary) = outcome::conclude(outcome::Ending {
        opts: &opts,
        feedback,
        started,
        stopped: work.stopped.take(),
        report,
        progress: counted,
        scan_errors,
        ledger: ledger.location().to_string(),
    });
    // The ledger has always kept run outcomes with hyphens ("some-failed").
    let json = serde_json::to_string(&summary).unwrap_or_default();
    ledger
        .finish_run(run, &end.name().replace('_', "-"), &json)
        .await
        .context("recording the end of the run")?;
    Ok(Outcome { end, summary })
}

/// Registers the run, takes back the claims of runs that died, puts failed images back in the
/// queue when asked, and clears what dead runs left staged in OUT.
async fn begin(ledger: &Ledger, opts: &Options, counters: &Counters) -> anyhow::Result<RunId> {
    let run = ledger
        .begin_run(&opts.command_line, &opts.out)
        .await
        .context("registering the run in the ledger")?;
    // Before any claim is taken back: a kept job id keeps its image from being uploaded again.
    let repeats = unrecorded::record_kept(opts.unrecorded_dir.as_deref(), ledger).await?;
    Counters::add(&counters.repeat_uploads, repeats);
    let reclaimed = ledger
        .recover()
        .await
        .context("recovering claims of dead runs")?;
    if reclaimed > 0 {
        tracing::warn!(
            "{reclaimed} upload(s) of a run that died are sent again (they may have reached the service)"
        );
        Counters::add(&counters.repeat_uploads, reclaimed);
    }
    if opts.retry_failed && !opts.dry_run {
        let retried = ledger
            .retry_failed(None)
            .await
            .context("putting failed images back in the queue")?;
        tracing::info!(
            "{} failed image(s) put back in the queue, {} timed-out job(s) to poll again",
            retried.to_upload,
            retried.to_poll
        );
    }
    if !opts.dry_run {
        let out = opts.out.clone();
        tokio::task::spawn_blocking(move || {
            let n = place::sweep_staging(&out);
            if n > 0 {
                tracing::info!("removed {n} staging file(s) left in OUT by a run that died");
            }
        });
    }
    Ok(run)
}

/// OUT as an absolute path (created unless this is a dry run), so recorded outputs do not
/// depend on the folder eraser was started from. A folder that cannot be used as OUT is a
/// usage error (exit 2), found before any upload.
fn out_root(out: &std::path::Path, dry_run: bool) -> anyhow::Result<PathBuf> {
    let usage = |what: &str, e: std::io::Error| {
        anyhow::Error::new(crate::exit::UsageError(format!(
            "cannot {what} OUT {}: {e}",
            out.display()
        )))
    };
    if !dry_run {
        std::fs::create_dir_all(out).map_err(|e| usage("create", e))?;
        return std::fs::canonicalize(out).map_err(|e| usage("resolve", e));
    }
    std::path::absolute(out).map_err(|e| usage("resolve", e))
}

fn spawn_heartbeat(ledger: Ledger, run: RunId) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ledger.heartbeat_every()).await;
            if let Err(e) = ledger.heartbeat(run).await {
                tracing::warn!("ledger heartbeat: {e}");
            }
        }
    })
}
