//! The batch pipeline: walk → fingerprint → record → upload → poll → download → place.
//!
//! The scan records every input in the ledger as fast as the disks allow; one coordinator
//! claims `new` images from the ledger as job slots free up, uploads them, polls every job from
//! a single schedule and hands finished ones to placement. The ledger is the only shared state,
//! so a second run on the same ledger, or the next run after a kill, simply picks up from it.

mod fingerprint;
pub mod layout;
mod limits;
mod listings;
mod place;
mod poll;
mod scan;
mod stop;
mod walk;

pub use stop::StopSignal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eraser_api::{Client, CreateJob, JobDone, JobId, JobState};
use eraser_store::{Claim, Failure, ImageStatus, InputState, Ledger, RunId, Sha256};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

pub use limits::Hooks;

use crate::cli::format_duration;
use crate::progress::{Counters, Progress};
use crate::summary::{FailureCount, Summary};

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

/// HTTP statuses of a create-job that refuse the account or the address rather than the image
/// (401, 402, 403, 404, 405, 410): repeated, they stop the run like a refusal code, instead of
/// failing every image of the archive.
fn refuses_everything(status: u16) -> bool {
    matches!(status, 401..=405 | 410)
}

/// Consecutive create-job refusals with one code that mean "the service refuses work".
const SYSTEMIC_REFUSALS: u32 = 3;
/// How long in-flight requests may finish after the first Ctrl-C or SIGTERM.
const GRACE: Duration = Duration::from_secs(5);
/// How often the run re-reads the ledger for jobs it does not track (resumed, other runs').
const REFRESH: Duration = Duration::from_secs(1);
/// The least time a single `get-job` look is given, whatever the job's deadline.
const MIN_LOOK: Duration = Duration::from_secs(5);
/// A run whose heartbeat is older than this is dead (other hosts; same host checks the pid).
pub(crate) const STALE_AFTER: Duration = eraser_store::RUN_STALE_AFTER;

/// Runs the pipeline to completion (or interruption).
pub async fn run(
    ledger: &Ledger,
    client: &Client,
    opts: &Options,
    hooks: &Hooks,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let counters = Arc::clone(&hooks.counters);
    let stop = stop::Stop::watch();
    let interrupted = Arc::clone(&stop.notify);
    let opts = &Options {
        out: out_root(&opts.out, opts.dry_run)?,
        ..opts.clone()
    };

    let run = ledger
        .begin_run(&opts.command_line, &opts.out)
        .await
        .context("registering the run in the ledger")?;
    let reclaimed = ledger
        .recover(STALE_AFTER)
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
    let heartbeat = spawn_heartbeat(ledger.clone(), run);
    if !opts.dry_run {
        let out = opts.out.clone();
        tokio::task::spawn_blocking(move || {
            let n = place::sweep_staging(&out);
            if n > 0 {
                tracing::info!("removed {n} staging file(s) left in OUT by a run that died");
            }
        });
    }

    let progress = Progress::start(Arc::clone(&counters), opts.progress);
    let recorded = Arc::new(Notify::new());
    let scan = scan::Scan {
        ledger: ledger.clone(),
        run,
        out: opts.out.clone(),
        source: opts.inputs.clone(),
        follow: opts.follow,
        hash_threads: opts.hash_threads,
        max_upload_bytes: opts.max_upload_bytes,
        counters: Arc::clone(&counters),
        recorded: Arc::clone(&recorded),
    };
    let mut scan_task = tokio::spawn(scan.run());
    // Start from what earlier runs learned of the service's time; a lost hint is only a guess.
    let eta = match ledger.processing_estimate().await {
        Ok(Some(seconds)) => poll::Eta::starting_at(seconds),
        Ok(None) => poll::Eta::default(),
        Err(e) => {
            tracing::debug!("no processing estimate from the ledger: {e}");
            poll::Eta::default()
        }
    };

    let mut coordinator = Coordinator {
        started,
        ledger: ledger.clone(),
        client: client.clone(),
        run,
        opts: Arc::new(opts.clone()),
        counters: Arc::clone(&counters),
        limiter: Arc::clone(&hooks.limiter),
        rate: opts.rate.and_then(limits::RateLimit::new).map(Arc::new),
        // TODO(pipeline owner): bounded by the config's TRANSFERS_RANGE (1 to 256), far below
        // Semaphore::MAX_PERMITS; a checked constructor here would not depend on that.
        #[allow(clippy::disallowed_methods)]
        uploads: Arc::new(Semaphore::new(opts.upload_concurrency.max(1))),
        #[allow(clippy::disallowed_methods)]
        downloads: Arc::new(Semaphore::new(opts.download_concurrency.max(1))),
        tasks: JoinSet::new(),
        jobs: HashMap::new(),
        uploading: HashMap::new(),
        schedule: poll::Schedule::default(),
        eta,
        streak: None,
        unanswered: 0,
        unwritable: 0,
        unanswered_uploads: Vec::new(),
        unreached: limits::Patience::new(opts.outage_timeout),
        ever_answered: false,
        end: None,
        run_failures: BTreeMap::new(),
        given_up: HashSet::new(),
        exhausted: false,
        rehashed: HashSet::new(),
        hold: None,
        refused: limits::RefusalClock::new(opts.outage_timeout),
    };

    let mut scan_errors = Vec::new();
    let mut scan_done = false;
    if opts.dry_run {
        tokio::select! {
            r = &mut scan_task => { scan_errors = r.context("scan task failed")??; }
            _ = interrupted.notified() => {
                let signal = stop.requested().unwrap_or(StopSignal::Interrupt);
                coordinator.end = Some(RunEnd::Interrupted(signal));
                scan_task.abort();
            }
        }
    } else {
        let mut last_refresh = Instant::now() - REFRESH;
        let mut stopping_since: Option<Instant> = None;
        let mut next_progress = Instant::now();
        loop {
            if !scan_done && scan_task.is_finished() {
                scan_errors = (&mut scan_task).await.context("scan task failed")??;
                scan_done = true;
            }
            if let Some(signal) = stop.requested()
                && coordinator.end.is_none()
            {
                coordinator.end = Some(RunEnd::Interrupted(signal));
                stopping_since = Some(Instant::now());
                scan_task.abort();
                scan_done = true;
                tracing::warn!(
                    "{}: finishing requests in flight ({} again to quit at once)",
                    signal.name(),
                    signal.name()
                );
            }
            if matches!(coordinator.end, Some(RunEnd::Unavailable { .. }))
                && stopping_since.is_none()
            {
                stopping_since = Some(Instant::now());
                scan_task.abort();
                scan_done = true;
            }
            if let Some(since) = stopping_since
                && (coordinator.uploading.is_empty() && coordinator.tasks_other_than_polls() == 0
                    || since.elapsed() > GRACE)
            {
                break;
            }
            let mut claimed = 0;
            if coordinator.end.is_none() {
                claimed = coordinator.top_up(scan_done).await?;
                if last_refresh.elapsed() >= REFRESH {
                    coordinator.adopt_in_flight().await?;
                    last_refresh = Instant::now();
                }
            }
            // After a refusal the jobs already accepted are still polled to their end.
            if coordinator.end_is_submission_only() {
                coordinator.poll_due();
            }
            if scan_done
                && claimed == 0
                && coordinator.idle()
                && coordinator.end_is_submission_only()
                && Instant::now() >= next_progress
            {
                // Nothing unsettled in the whole ledger: nothing of this run either, known
                // without counting the run's images (a pass over all its inputs).
                let all = ledger.status_counts().await?;
                if all.uploading + all.processing == 0
                    && (all.new == 0 || coordinator.end.is_some())
                {
                    break;
                }
                let counting = Instant::now();
                let p = ledger.run_progress(run).await?;
                // While other runs' jobs are awaited, a large run's count is not repeated
                // more often than ten times what it took.
                next_progress = Instant::now() + counting.elapsed() * 10;
                let waiting = (p.images.uploading + p.images.processing)
                    .saturating_sub(coordinator.given_up.len() as u64);
                let claimable = p.images.new > 0 && coordinator.end.is_none();
                if waiting == 0 && !claimable {
                    break;
                }
                coordinator.exhausted = false;
                if waiting > 0 && coordinator.jobs.is_empty() {
                    // Another run holds these: wait for it to get job ids, then poll them too;
                    // if it died meanwhile, take its claims back and upload them here.
                    if p.images.uploading > 0 {
                        let n = ledger.recover(STALE_AFTER).await?;
                        if n > 0 {
                            Counters::add(&counters.repeat_uploads, n);
                            coordinator.exhausted = false;
                        }
                    }
                    coordinator.adopt_in_flight().await?;
                }
            }
            let mut wake = coordinator
                .schedule
                .next_due()
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(500))
                .min(Instant::now() + Duration::from_millis(500));
            // Uploads above the hold's level may go out once it ends.
            if let Some(hold) = coordinator.hold
                && hold.until > Instant::now()
            {
                wake = wake.min(hold.until);
            }
            tokio::select! {
                Some(done) = coordinator.tasks.join_next(), if !coordinator.tasks.is_empty() => {
                    match done {
                        Ok(event) => coordinator.handle(event).await?,
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => return Err(anyhow::anyhow!("a pipeline task failed: {e}")),
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = recorded.notified(), if !scan_done => {}
                _ = interrupted.notified(), if stopping_since.is_none() => {}
            }
        }
        coordinator.tasks.abort_all();
        while coordinator.tasks.join_next().await.is_some() {}
        for sha in coordinator.uploading.keys() {
            let _ = ledger.release_claim(sha).await;
        }
    }

    // Final pass: every input of this run gets its output, or is reported.
    let interrupted_now = !coordinator.end_is_submission_only();
    // A dry run writes nothing, so it places nothing either (not even a missing output of a
    // done image, which a real run would copy or download again).
    let mut report = if interrupted_now || opts.dry_run {
        FinalReport::default()
    } else {
        coordinator.final_pass().await?
    };
    progress.finish().await;
    if let Some(seconds) = coordinator.eta.overall()
        && !opts.dry_run
        && let Err(e) = ledger.set_processing_estimate(seconds).await
    {
        tracing::debug!("could not keep the processing estimate: {e}");
    }
    heartbeat.abort();

    let counted = ledger
        .end_progress(run)
        .await
        .context("counting the run's images")?;
    if counted.reused {
        tracing::debug!(
            "the run's images: the count of an earlier run over the same folders, nothing changed since"
        );
    }
    let p = counted.progress;
    if interrupted_now && !opts.dry_run {
        // No final pass: the outputs this run placed are known; the rest is the next run's.
        report.in_place = Counters::get(&counters.placed);
        report.pending = p.inputs.saturating_sub(report.in_place);
    }
    let mut summary = Summary {
        inputs: p.inputs,
        skipped: Counters::get(&counters.skipped),
        input_errors: scan_errors.len() as u64,
        unique_images: p.images.total,
        duplicates_saved: p.inputs.saturating_sub(p.images.total),
        hashed: Counters::get(&counters.hashed),
        uploads: Counters::get(&counters.uploads),
        repeat_uploads: Counters::get(&counters.repeat_uploads),
        resumed: Counters::get(&counters.resumed),
        downloads: Counters::get(&counters.downloads),
        copies: Counters::get(&counters.copies),
        already_done: report
            .in_place
            .saturating_sub(Counters::get(&counters.placed)),
        outputs_done: report.in_place,
        outputs_failed: report.failed + scan_errors.len() as u64,
        bytes_uploaded: Counters::get(&counters.bytes_uploaded),
        bytes_downloaded: Counters::get(&counters.bytes_downloaded),
        get_job_calls: Counters::get(&counters.get_jobs),
        retries: Counters::get(&counters.retries),
        concurrency_limit: hooks.limiter.current() as u64,
        concurrency_requested: opts.concurrency as u64,
        concurrency_lowest: hooks.limiter.settled() as u64,
        uploads_refused: Counters::get(&counters.refused_uploads),
        seconds: started.elapsed().as_secs_f64(),
        credits: crate::summary::Credits {
            p_credits: counters.p_credits.load(Ordering::Relaxed),
            s_credits: counters.s_credits.load(Ordering::Relaxed),
            need_credits: counters.need_credits.load(Ordering::Relaxed),
        },
        failures: report.failures,
        stopped: None,
        dry_run: opts.dry_run,
        ledger: ledger.path().display().to_string(),
        would_upload: opts.dry_run.then_some(p.images.new),
        pending: report.pending,
    };
    for e in &scan_errors {
        let f = summary
            .failures
            .entry(crate::summary::NOT_READ.into())
            .or_default();
        f.count += 1;
        f.message = format!("{}: {}", e.path.display(), e.reason);
    }
    let end = match coordinator.end.take() {
        Some(RunEnd::Refused { code, message }) => {
            summary.stopped = Some(format!("the service refuses work: code {code}: {message}"));
            RunEnd::Refused { code, message }
        }
        Some(RunEnd::Interrupted(signal)) => {
            summary.stopped = Some(format!(
                "interrupted ({}); run the same command again to resume",
                signal.name()
            ));
            RunEnd::Interrupted(signal)
        }
        Some(RunEnd::Unavailable { message }) => {
            summary.stopped = Some(format!(
                "the service cannot be reached: {message}; run the same command again once it can"
            ));
            RunEnd::Unavailable { message }
        }
        Some(RunEnd::OutUnwritable { message }) => {
            summary.stopped = Some(format!(
                "OUT cannot take results: {message}; make room (or lift the limit) and run the \
                 same command again"
            ));
            RunEnd::OutUnwritable { message }
        }
        _ if opts.dry_run && summary.input_errors > 0 => RunEnd::SomeFailed,
        _ if opts.dry_run => RunEnd::Complete,
        _ if summary.outputs_failed > 0 || summary.pending > 0 => RunEnd::SomeFailed,
        _ => RunEnd::Complete,
    };
    // The ledger has always kept run outcomes with hyphens ("some-failed").
    let outcome = end.name().replace('_', "-");
    let json = serde_json::to_string(&summary).unwrap_or_default();
    ledger
        .finish_run(run, &outcome, &json)
        .await
        .context("recording the end of the run")?;
    Ok(Outcome { end, summary })
}

/// OUT as an absolute path (created unless this is a dry run), so recorded outputs do not
/// depend on the folder eraser was started from.
/// A folder that cannot be used as OUT is a usage error (exit 2), found before any upload.
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
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Err(e) = ledger.heartbeat(run).await {
                tracing::warn!("ledger heartbeat: {e}");
            }
        }
    })
}

/// A job this run is polling.
#[derive(Debug)]
struct Job {
    job_id: JobId,
    size: u64,
    /// When it was submitted (estimated for resumed jobs).
    submitted: Instant,
    /// Submitted by this run (so the first poll waits for the estimate).
    ours: bool,
    /// The processing-time estimate its first look was scheduled from.
    expected: Duration,
    /// Its first look goes out early (see `poll::Eta::first_look`).
    explore: bool,
    polls: u32,
    last_in_progress: Option<Duration>,
    task: JobTask,
}

/// The task a job has under way: at most one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobTask {
    None,
    /// A `get-job` (cut short when the run stops).
    Poll,
    /// Downloading and placing its result (finished when the run stops, within the grace).
    Completion,
}

/// What a finished task reports back to the coordinator.
enum Event {
    Uploaded {
        claim: Claim,
        result: Result<JobId, eraser_api::Error>,
        /// Recording the job id, done by the upload task the moment its reply arrived.
        recorded: Result<(), eraser_store::Error>,
    },
    Polled {
        sha: Sha256,
        /// When the `get-job` went out (what the processing-time estimate learns from).
        asked: Instant,
        result: Result<JobState, eraser_api::Error>,
    },
    Completed {
        sha: Sha256,
        result: anyhow::Result<()>,
    },
}

struct Coordinator {
    /// When this run started: the earliest a resumed job's `--job-timeout` counts from.
    started: Instant,
    ledger: Ledger,
    client: Client,
    run: RunId,
    opts: Arc<Options>,
    counters: Arc<Counters>,
    limiter: Arc<limits::Limiter>,
    rate: Option<Arc<limits::RateLimit>>,
    uploads: Arc<Semaphore>,
    downloads: Arc<Semaphore>,
    tasks: JoinSet<Event>,
    /// Jobs at the service that this run polls.
    jobs: HashMap<Sha256, Job>,
    /// Claims whose create-job is under way.
    uploading: HashMap<Sha256, ()>,
    schedule: poll::Schedule,
    eta: poll::Eta,
    /// Consecutive create-job refusals: code, message, images.
    streak: Option<(i64, String, Vec<Sha256>)>,
    /// Consecutive requests that got no answer from the service, even after retries.
    unanswered: u32,
    /// The images whose uploads are among them (put back to `new` if the service is lost).
    unanswered_uploads: Vec<Sha256>,
    /// How long requests have failed to even connect with no answer from the service between.
    unreached: limits::Patience,
    /// Whether the service answered anything in this run: a service never reached (a wrong
    /// `--api-base`, no network) ends the run at once, not after the patience.
    ever_answered: bool,
    /// Consecutive results that OUT could not take for want of space or writability.
    unwritable: u32,
    end: Option<RunEnd>,
    run_failures: BTreeMap<String, FailureCount>,
    /// Done jobs whose result could not be fetched this run; left `processing` for the next.
    given_up: HashSet<Sha256>,
    /// The scan is over and the last claim found fewer images than it asked for: claiming
    /// again finds nothing until something is put back in the queue.
    exhausted: bool,
    /// Inputs hashed again this run because they changed before their upload (once each).
    rehashed: HashSet<PathBuf>,
    /// Set when the service refused an upload (429): what may be sent until `Retry-After`.
    hold: Option<limits::UploadHold>,
    /// How long every upload was refused while the service held none of this run's jobs.
    refused: limits::RefusalClock,
}

#[derive(Debug, Default)]
struct FinalReport {
    in_place: u64,
    failed: u64,
    pending: u64,
    failures: BTreeMap<String, FailureCount>,
}

impl Coordinator {
    /// Jobs of this run the service is still working on (finished ones only wait for their
    /// result to be fetched).
    fn at_service(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.task != JobTask::Completion)
            .count()
    }

    fn idle(&self) -> bool {
        self.tasks.is_empty() && self.jobs.is_empty() && self.uploading.is_empty()
    }

    fn tasks_other_than_polls(&self) -> usize {
        self.tasks.len().saturating_sub(
            self.jobs
                .values()
                .filter(|j| j.task == JobTask::Poll)
                .count(),
        )
    }

    /// True unless the run was interrupted or lost the service (a refusal still lets in-flight
    /// work finish).
    fn end_is_submission_only(&self) -> bool {
        !matches!(
            self.end,
            Some(RunEnd::Interrupted(_) | RunEnd::Unavailable { .. })
        )
    }

    /// Claims new images for the free job slots and starts their uploads.
    async fn top_up(&mut self, scan_done: bool) -> anyhow::Result<usize> {
        // A job the service has finished no longer takes one of its slots while its result is
        // fetched; finished jobs beyond the downloads' own bound still count, so that they
        // cannot pile up behind a slow CDN.
        let at_service = self.at_service();
        let finished = self.jobs.len() - at_service;
        let waiting_to_fetch = finished.saturating_sub(self.opts.download_concurrency.max(1));
        let in_flight = at_service + waiting_to_fetch + self.uploading.len();
        // Claim no more than can be sent right away: a claim waiting for an upload slot would
        // still be sent after the service started refusing, and is a repeat risk at a kill.
        let sendable = self
            .opts
            .upload_concurrency
            .max(1)
            .saturating_sub(self.uploading.len());
        let mut free = self
            .limiter
            .current()
            .saturating_sub(in_flight)
            .min(sendable);
        if let Some(hold) = self.hold {
            match hold.allows(at_service + self.uploading.len()) {
                Some(n) => free = free.min(n),
                None => self.hold = None,
            }
        }
        if free == 0 || self.exhausted {
            return Ok(0);
        }
        let asked = free.min(256);
        let claims = self
            .ledger
            .claim_for_upload(self.run, asked as u32)
            .await
            .context("claiming images to upload")?;
        let n = claims.len();
        self.exhausted = scan_done && n < asked;
        for claim in claims {
            self.uploading.insert(claim.sha256, ());
            let client = self.client.clone();
            let permits = Arc::clone(&self.uploads);
            let rate = self.rate.clone();
            let anonymous = self.opts.anonymous_names;
            let counters = Arc::clone(&self.counters);
            let ledger = self.ledger.clone();
            self.tasks.spawn(async move {
                let permit = permits.acquire_owned().await;
                if let Some(rate) = rate {
                    rate.wait().await;
                }
                let name = anonymous.then(|| {
                    let ext = eraser_api::ImageFormat::from_name(&claim.format)
                        .map_or("jpg", |f| f.extension());
                    format!("{}.{ext}", claim.sha256)
                });
                let submitted = client
                    .submit(&CreateJob {
                        path: &claim.source_path,
                        file_name: name.as_deref(),
                        expected_sha256: Some(claim.sha256.0),
                    })
                    .await;
                drop(permit);
                let result = submitted.result;
                if submitted.lost_replies > 0 {
                    let n = submitted.lost_replies;
                    Counters::add(&counters.repeat_uploads, u64::from(n));
                    tracing::debug!(
                        "{n} upload(s) of {} went out whole and got no reply: the service may \
                         have made a job of each",
                        claim.source_path.display()
                    );
                    if let Err(e) = ledger.note_repeat_uploads(&claim.sha256, n).await {
                        tracing::warn!(
                            "cannot count a possible repeat upload of {}: {e}",
                            claim.source_path.display()
                        );
                    }
                }
                // Recorded here rather than by the coordinator, so a kill finds it recorded
                // however busy the coordinator is, and its sync to disk holds up no one else.
                let mut recorded = Ok(());
                if let Ok(job_id) = &result {
                    Counters::add(&counters.uploads, 1);
                    Counters::add(&counters.bytes_uploaded, claim.size);
                    recorded = ledger.mark_processing(&claim.sha256, job_id.as_str()).await;
                }
                Event::Uploaded {
                    claim,
                    result,
                    recorded,
                }
            });
        }
        Ok(n)
    }

    /// Starts `get-job` for every job that is due.
    fn poll_due(&mut self) {
        let now = Instant::now();
        while let Some(sha) = self.schedule.pop_due(now) {
            let Some(job) = self.jobs.get_mut(&sha) else {
                continue;
            };
            if job.task != JobTask::None {
                continue;
            }
            job.task = JobTask::Poll;
            job.polls += 1;
            let client = self.client.clone();
            let id = job.job_id.clone();
            let rate = self.rate.clone();
            let counters = Arc::clone(&self.counters);
            // A look that outlives the job's deadline (a slow or stuck reply) is cut short and
            // counts as "still in progress", so the timeout below always gets its say.
            // Every look gets a few seconds, so a job resumed long after it was submitted is
            // asked at least once before its age counts against it.
            let deadline = (job.submitted + self.opts.job_timeout).max(Instant::now() + MIN_LOOK);
            self.tasks.spawn(async move {
                if let Some(rate) = rate {
                    rate.wait().await;
                }
                Counters::add(&counters.get_jobs, 1);
                let asked = Instant::now();
                let result = tokio::time::timeout_at(deadline.into(), client.get_job(&id))
                    .await
                    .unwrap_or(Ok(JobState::InProgress));
                Event::Polled { sha, asked, result }
            });
        }
    }

    /// Polls jobs of this run's images that are `processing` but not tracked: jobs of an
    /// earlier, interrupted run, or of another run working on the same images.
    async fn adopt_in_flight(&mut self) -> anyhow::Result<()> {
        let rows = self
            .ledger
            .run_in_flight(self.run)
            .await
            .context("reading jobs in flight")?;
        let now_utc = chrono::Utc::now();
        for row in rows {
            if self.jobs.contains_key(&row.sha256)
                || self.uploading.contains_key(&row.sha256)
                || self.given_up.contains(&row.sha256)
            {
                continue;
            }
            // A job submitted by an earlier run gets this run's whole --job-timeout: the time
            // eraser was not running is not the job's fault, and giving up would mean paying
            // again for an image the service may be about to finish.
            let age = (now_utc - row.updated_at).to_std().unwrap_or_default();
            let submitted = Instant::now()
                .checked_sub(age)
                .unwrap_or_else(Instant::now)
                .max(self.started);
            Counters::add(&self.counters.resumed, 1);
            Counters::add(&self.counters.in_flight, 1);
            self.jobs.insert(
                row.sha256,
                Job {
                    job_id: JobId::new(row.job_id),
                    size: row.size,
                    submitted,
                    ours: false,
                    expected: Duration::ZERO,
                    explore: false,
                    polls: 0,
                    last_in_progress: None,
                    task: JobTask::None,
                },
            );
            self.schedule.at(Instant::now(), row.sha256);
        }
        Ok(())
    }

    async fn handle(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Uploaded {
                claim,
                result,
                recorded,
            } => self.uploaded(claim, result, recorded).await,
            Event::Polled { sha, asked, result } => self.polled(sha, asked, result).await,
            Event::Completed { sha, result } => {
                self.drop_job(&sha);
                if result.is_ok() {
                    self.unwritable = 0;
                }
                if let Err(e) = result {
                    self.out_unwritable(&e);
                    let told = crate::exit::one_line(&e);
                    let api = e
                        .chain()
                        .find_map(|c| c.downcast_ref::<eraser_api::Error>());
                    match api {
                        // A local write failure (read-only OUT, full disk) is not the image's:
                        // the result stays at the service for the next run to fetch.
                        Some(a)
                            if !a.is_retryable() && !matches!(a, eraser_api::Error::Io { .. }) =>
                        {
                            self.fail(&sha, None, &told, false).await?;
                        }
                        _ => {
                            // The job is done at the service: the next run downloads it again.
                            tracing::error!("{told}");
                            self.note_failure(crate::summary::NOT_PLACED, &told);
                            self.given_up.insert(sha);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Counts a result that OUT could not take because of the file system itself (no space,
    /// quota, read-only, file size limit); several in a row stop submitting, since every
    /// further job would be paid for and not kept.
    fn out_unwritable(&mut self, e: &anyhow::Error) {
        let full = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
                .is_some_and(|errno| {
                    [libc::ENOSPC, libc::EDQUOT, libc::EROFS, libc::EFBIG].contains(&errno)
                })
        });
        if !full {
            self.unwritable = 0;
            return;
        }
        self.unwritable += 1;
        if self.end.is_none() && self.unwritable >= SYSTEMIC_REFUSALS {
            let message = crate::exit::one_line(e);
            tracing::error!(
                "{} results in a row could not be written into OUT (last: {message}); not \
                 submitting more, the jobs accepted are still polled",
                self.unwritable
            );
            self.end = Some(RunEnd::OutUnwritable { message });
        }
    }

    async fn uploaded(
        &mut self,
        claim: Claim,
        result: Result<JobId, eraser_api::Error>,
        recorded: Result<(), eraser_store::Error>,
    ) -> anyhow::Result<()> {
        self.uploading.remove(&claim.sha256);
        let sha = claim.sha256;
        match result {
            Ok(job_id) => {
                self.streak = None;
                self.refused.accepted();
                self.answered();
                recorded.with_context(|| {
                    format!("recording job {job_id} for {}", claim.source_path.display())
                })?;
                Counters::add(&self.counters.in_flight, 1);
                let expected = self.eta.expect(claim.size);
                let (first, explore) = self.eta.first_look(expected);
                self.jobs.insert(
                    sha,
                    Job {
                        job_id,
                        size: claim.size,
                        submitted: Instant::now(),
                        ours: true,
                        expected,
                        explore,
                        polls: 0,
                        last_in_progress: None,
                        task: JobTask::None,
                    },
                );
                self.schedule.at(Instant::now() + first, sha);
            }
            Err(e) if e.http_status() == Some(429) => self.throttled_upload(claim, &e).await?,
            Err(e) => {
                let path = claim.source_path.display().to_string();
                // A refusal code from the service, or an HTTP status that refuses the account
                // or the address rather than the image (counted like those codes).
                let refused = e
                    .api_code()
                    .map(|code| (code, api_message(&e)))
                    .or_else(|| {
                        e.http_status()
                            .filter(|s| refuses_everything(*s))
                            .map(|status| (i64::from(status), e.to_string()))
                    });
                if let Some((code, message)) = refused {
                    self.answered();
                    self.fail(
                        &sha,
                        Some(code),
                        &format!("{message} (uploading {path})"),
                        false,
                    )
                    .await?;
                    self.refusal(code, message, sha).await?;
                } else if matches!(e, eraser_api::Error::InputChanged { .. }) {
                    self.input_changed(claim, &e).await?;
                } else if matches!(e, eraser_api::Error::InvalidInput { .. }) {
                    self.fail(&sha, None, &format!("{e}"), false).await?;
                } else if e.is_unreached() {
                    self.unreached_upload(claim, &e).await?;
                } else if e.is_retryable() {
                    self.fail(&sha, None, &format!("uploading {path}: {e}"), true)
                        .await?;
                    self.retry_within_run(&sha, claim.attempts + 1).await?;
                    self.unanswered(Some(sha), &e).await?;
                } else {
                    self.fail(&sha, None, &format!("uploading {path}: {e}"), false)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The service refused an upload for now (429, "too many jobs"): nothing was created, so
    /// the image goes back to `new` without counting an attempt, and no slot is held while
    /// waiting. The limit comes down (not below the jobs the service holds for this run), and
    /// until `Retry-After` uploads only replace jobs of this run that finish. A service that
    /// holds none of this run's jobs and refuses every upload for long counts as unavailable.
    async fn throttled_upload(
        &mut self,
        claim: Claim,
        e: &eraser_api::Error,
    ) -> anyhow::Result<()> {
        self.answered();
        self.back_in_queue(&claim).await?;
        Counters::add(&self.counters.retries, 1);
        Counters::add(&self.counters.refused_uploads, 1);
        let accepted = self.at_service();
        self.limiter.refused_upload(accepted);
        self.hold = Some(limits::UploadHold::new(e.retry_after(), accepted));
        tracing::debug!(
            "create-job for {} refused ({e}); {accepted} job(s) at the service, waiting {:?} \
             before sending more",
            claim.source_path.display(),
            e.retry_after()
        );
        let refused_for = self.refused.refused(accepted, Instant::now());
        if let Some(refused_for) = refused_for.filter(|_| self.end.is_none()) {
            tracing::error!(
                "the service refused every upload for {}s while holding none of this run's jobs \
                 (last: {e}); not submitting more",
                refused_for.as_secs()
            );
            self.end = Some(RunEnd::Unavailable {
                message: e.to_string(),
            });
        }
        Ok(())
    }

    /// The claimed input's bytes changed after hashing (nothing was uploaded under the old
    /// hash): hash it again and record its new content, so this run uploads the new bytes;
    /// the old image goes back to `new` (other inputs may still hold it) or is forgotten.
    /// A file that changes again, vanishes or stops being an image fails for this run.
    async fn input_changed(&mut self, claim: Claim, e: &eraser_api::Error) -> anyhow::Result<()> {
        let sha = claim.sha256;
        let path = claim.source_path;
        let known = self.ledger.input(&path).await?;
        let fresh = if self.rehashed.insert(path.clone()) {
            let p = path.clone();
            Some(
                tokio::task::spawn_blocking(move || fingerprint::fingerprint_file(&p))
                    .await
                    .context("hashing task failed")?,
            )
        } else {
            None
        };
        let (fp, known) = match (fresh, known) {
            (Some(Ok(fp)), Some(known)) => (fp, known),
            (Some(Err(again)), _) => {
                let msg = format!("{e}; hashing it again: {}", again.reason());
                return self.fail(&sha, None, &msg, true).await;
            }
            _ => {
                let msg = format!("{e}; not uploaded, the next run hashes it again");
                return self.fail(&sha, None, &msg, true).await;
            }
        };
        tracing::warn!(
            "{}: changed since it was hashed; hashed again, its new bytes are uploaded",
            path.display()
        );
        let record = eraser_store::InputRecord {
            path,
            size: fp.size,
            mtime_ns: fp.mtime_ns,
            sha256: fp.sha256,
            format: fp.format.as_str().to_owned(),
            // The recorded plan wins over this one (an input keeps its output path).
            planned_output: known.planned_output.unwrap_or_default(),
        };
        self.ledger
            .record_inputs(self.run, std::slice::from_ref(&record))
            .await
            .with_context(|| format!("recording the new bytes of {}", record.path.display()))?;
        self.ledger.release_claim(&sha).await?;
        self.ledger.forget_unused(&sha).await?;
        Counters::add(&self.counters.hashed, 1);
        self.exhausted = false;
        Ok(())
    }

    /// Counts consecutive refusals with one code; at the threshold, stops submitting and puts
    /// the refused images back to `new` (the refusal was the service's, not theirs).
    async fn refusal(&mut self, code: i64, message: String, sha: Sha256) -> anyhow::Result<()> {
        if matches!(self.end, Some(RunEnd::Refused { .. })) {
            self.ledger.requeue(Some(&[sha])).await?;
            return Ok(());
        }
        match &mut self.streak {
            Some((c, _, shas)) if *c == code => shas.push(sha),
            _ => self.streak = Some((code, message.clone(), vec![sha])),
        }
        let Some((code, message, shas)) = &self.streak else {
            return Ok(());
        };
        if shas.len() as u32 >= SYSTEMIC_REFUSALS {
            tracing::error!(
                "the service refused {} uploads in a row with code {code}: {message}; not submitting more",
                shas.len()
            );
            self.ledger.requeue(Some(shas)).await?;
            self.end = Some(RunEnd::Refused {
                code: *code,
                message: message.clone(),
            });
            self.streak = None;
        }
        Ok(())
    }

    /// The service answered (whatever it said): it can be reached.
    fn answered(&mut self) {
        self.unanswered = 0;
        self.unanswered_uploads.clear();
        self.ever_answered = true;
        if self.unreached.running() {
            tracing::warn!("the service answers again");
            self.unreached.reset();
            self.counters.set_reachable();
        }
    }

    /// A request whose last attempt could not even connect (refused, DNS, TLS, connect
    /// timeout): the network or the service is down. Nothing is stopped for a blip; the run
    /// ends as unavailable (as after Ctrl-C) once nothing has answered for the patience. A
    /// service that has not answered once in this run counts as unanswered requests do.
    async fn unreached(&mut self, e: &eraser_api::Error) -> anyhow::Result<()> {
        if !self.ever_answered {
            return self.unanswered(None, e).await;
        }
        if !self.unreached.running() && self.end.is_none() {
            tracing::warn!(
                "the service cannot be reached ({e}); waiting up to {} for it to come back \
                 (--outage-timeout)",
                format_duration(self.opts.outage_timeout)
            );
            self.counters.set_unreachable();
        }
        let Some(lasted) = self.unreached.lapsed(Instant::now()) else {
            return Ok(());
        };
        if self.end.is_none() {
            tracing::error!(
                "the service could not be reached for {}s (last: {e}); not submitting more, the \
                 jobs in flight are left for the next run",
                lasted.as_secs()
            );
            self.end = Some(RunEnd::Unavailable {
                message: e.to_string(),
            });
        }
        Ok(())
    }

    /// An upload that could not even connect: nothing was sent, so nothing was paid. The
    /// image goes back to the queue without counting an attempt.
    async fn unreached_upload(
        &mut self,
        claim: Claim,
        e: &eraser_api::Error,
    ) -> anyhow::Result<()> {
        self.back_in_queue(&claim).await?;
        tracing::debug!(
            "create-job for {} could not connect ({e}); back in the queue",
            claim.source_path.display()
        );
        self.unreached(e).await
    }

    /// A claimed image whose upload created nothing goes back to `new`, no attempt counted,
    /// and the queue is worth looking at again.
    async fn back_in_queue(&mut self, claim: &Claim) -> anyhow::Result<()> {
        self.ledger
            .release_claim(&claim.sha256)
            .await
            .with_context(|| {
                format!("putting {} back in the queue", claim.source_path.display())
            })?;
        self.exhausted = false;
        Ok(())
    }

    /// A request that got no usable answer even after the client's retries: an upload (`sha`)
    /// or a `get-job` whose connection failed. Several in a row mean the service cannot be
    /// reached (network or service down): submitting stops and the run ends as after Ctrl-C.
    /// Nothing is left failed for the outage: those uploads' images go back to `new`, and the
    /// jobs in flight stay `processing` for the next run to poll.
    async fn unanswered(
        &mut self,
        sha: Option<Sha256>,
        e: &eraser_api::Error,
    ) -> anyhow::Result<()> {
        if matches!(self.end, Some(RunEnd::Unavailable { .. })) {
            if let Some(sha) = sha {
                self.ledger.requeue(Some(&[sha])).await?;
            }
            return Ok(());
        }
        self.unanswered += 1;
        self.unanswered_uploads.extend(sha);
        if self.end.is_none() && self.unanswered >= SYSTEMIC_REFUSALS {
            tracing::error!(
                "{} requests in a row got no answer from the service (last: {e}); not \
                 submitting more, the jobs in flight are left for the next run",
                self.unanswered
            );
            self.ledger.requeue(Some(&self.unanswered_uploads)).await?;
            self.answered();
            self.end = Some(RunEnd::Unavailable {
                message: e.to_string(),
            });
        }
        Ok(())
    }

    async fn polled(
        &mut self,
        sha: Sha256,
        asked: Instant,
        result: Result<JobState, eraser_api::Error>,
    ) -> anyhow::Result<()> {
        match &result {
            // A connection that failed even after retries (a slow or broken answer is the
            // job's business: it ends at --job-timeout).
            Err(e) if e.is_unreached() => self.unreached(e).await?,
            Err(e @ eraser_api::Error::Transport { .. }) => self.unanswered(None, e).await?,
            Err(e) if e.api_code().is_none() => {}
            _ => self.answered(),
        }
        let Some(job) = self.jobs.get_mut(&sha) else {
            return Ok(());
        };
        job.task = JobTask::None;
        let elapsed = job.submitted.elapsed();
        // The service answered after this: the time to learn from, without the reply's trip.
        let asked = asked.saturating_duration_since(job.submitted);
        // An early first look says little when the job is still in progress (the estimate
        // is not in doubt), a lot when it is done.
        let explored = job.explore && job.polls == 1;
        match result {
            Ok(JobState::InProgress) => {
                if explored {
                    self.eta.explored_too_early();
                } else {
                    job.last_in_progress = Some(asked);
                }
                if elapsed > self.opts.job_timeout {
                    let msg = format!(
                        "job {} still unfinished after {:?} (--job-timeout); a retry polls it again, \
                         no new upload",
                        job.job_id, self.opts.job_timeout
                    );
                    self.drop_job(&sha);
                    // Not re-submitted within the run: the service may still finish it.
                    self.fail(&sha, None, &msg, true).await?;
                } else {
                    let expected = self.eta.expect(job.size);
                    let wait = if job.ours && job.polls == 1 && elapsed < expected {
                        expected - elapsed + poll::first_delay(Duration::ZERO)
                    } else {
                        poll::next_interval(expected, job.polls)
                    };
                    self.schedule.at(Instant::now() + wait, sha);
                }
            }
            Ok(JobState::Done(done)) => {
                if explored {
                    self.eta.learn_explored(job.size, asked);
                } else if job.ours {
                    let lower = job.last_in_progress.unwrap_or_default();
                    self.eta
                        .learn(job.size, lower, asked.max(lower), job.expected);
                }
                self.limiter.completed();
                job.task = JobTask::Completion;
                self.spawn_completion(sha, done);
            }
            Ok(JobState::Failed { code, message }) => {
                let id = job.job_id.clone();
                self.drop_job(&sha);
                self.fail(&sha, Some(code), &format!("job {id}: {message}"), false)
                    .await?;
            }
            Err(e) if e.is_retryable() && elapsed > self.opts.job_timeout => {
                let msg = format!(
                    "job {} unfinished after {:?} (--job-timeout; a retry polls it again, no new \
                     upload); last answer: {e}",
                    job.job_id, self.opts.job_timeout
                );
                self.drop_job(&sha);
                self.fail(&sha, None, &msg, true).await?;
            }
            Err(e) if e.is_retryable() => {
                // The client already retried; look again later.
                let expected = self.eta.expect(job.size);
                let wait = poll::next_interval(expected, job.polls.max(4));
                self.schedule.at(Instant::now() + wait, sha);
            }
            Err(e) => {
                let id = job.job_id.clone();
                self.drop_job(&sha);
                self.fail(&sha, e.api_code(), &format!("job {id}: {e}"), false)
                    .await?;
            }
        }
        Ok(())
    }

    fn drop_job(&mut self, sha: &Sha256) {
        if self.jobs.remove(sha).is_some() {
            Counters::sub_in_flight(&self.counters);
        }
    }

    /// Downloads a finished job's result for the first input, then copies for the others.
    fn spawn_completion(&mut self, sha: Sha256, done: JobDone) {
        let ledger = self.ledger.clone();
        let client = self.client.clone();
        let permits = Arc::clone(&self.downloads);
        let run = self.run;
        let opts = Arc::clone(&self.opts);
        let counters = Arc::clone(&self.counters);
        self.tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = complete(&ledger, &client, run, &opts, &counters, sha, &done).await;
            Event::Completed { sha, result }
        });
    }

    async fn fail(
        &mut self,
        sha: &Sha256,
        code: Option<i64>,
        message: &str,
        retryable: bool,
    ) -> anyhow::Result<()> {
        tracing::error!("{message}");
        let failure = Failure {
            code,
            message: message.to_owned(),
            retryable,
        };
        self.ledger
            .mark_failed(sha, &failure)
            .await
            .with_context(|| format!("recording the failure of image {sha}"))?;
        Ok(())
    }

    /// Retryable failures go back to `new` while attempts remain.
    async fn retry_within_run(&mut self, sha: &Sha256, attempts: u32) -> anyhow::Result<()> {
        if attempts < self.opts.max_attempts {
            self.ledger.requeue(Some(&[*sha])).await?;
            self.exhausted = false;
        }
        Ok(())
    }

    fn note_failure(&mut self, code: &str, message: &str) {
        let f = self.run_failures.entry(code.to_owned()).or_default();
        f.count += 1;
        f.message = message.to_owned();
    }

    /// Every input of this run: outputs checked and placed where missing; failures gathered.
    async fn final_pass(&mut self) -> anyhow::Result<FinalReport> {
        let mut report = FinalReport::default();
        for (code, f) in &self.run_failures {
            report.failures.insert(code.clone(), f.clone());
        }
        let mut after: Option<PathBuf> = None;
        let mut pending: JoinSet<(InputState, anyhow::Result<bool>)> = JoinSet::new();
        loop {
            let page = self
                .ledger
                .run_inputs(self.run, after.as_deref(), 1000)
                .await
                .context("reading this run's inputs")?;
            let Some(last) = page.last() else { break };
            after = Some(last.input.path.clone());
            for state in page {
                match state.status {
                    ImageStatus::Done => {
                        let ledger = self.ledger.clone();
                        let client = self.client.clone();
                        let opts = Arc::clone(&self.opts);
                        let counters = Arc::clone(&self.counters);
                        let run = self.run;
                        while pending.len() >= self.opts.download_concurrency.max(4) {
                            if let Some(r) = pending.join_next().await {
                                self.account(&mut report, r.context("placement task failed")?);
                            }
                        }
                        pending.spawn(async move {
                            let r =
                                materialize(&ledger, &client, run, &opts, &counters, &state).await;
                            (state, r)
                        });
                    }
                    ImageStatus::Failed => {
                        report.failed += 1;
                        let code = state
                            .error_code
                            .map_or_else(|| "none".to_owned(), |c| c.to_string());
                        let f = report.failures.entry(code).or_default();
                        f.count += 1;
                        f.message = state.error_message.clone().unwrap_or_default();
                    }
                    _ => report.pending += 1,
                }
            }
        }
        while let Some(r) = pending.join_next().await {
            self.account(&mut report, r.context("placement task failed")?);
        }
        Ok(report)
    }

    fn account(
        &self,
        report: &mut FinalReport,
        (state, result): (InputState, anyhow::Result<bool>),
    ) {
        match result {
            Ok(true) => report.in_place += 1,
            Ok(false) => report.pending += 1,
            Err(e) => {
                let told = crate::exit::one_line(&e);
                tracing::error!("{}: {told}", state.input.path.display());
                report.failed += 1;
                let f = report
                    .failures
                    .entry(crate::summary::OUTPUT.into())
                    .or_default();
                f.count += 1;
                f.message = told;
            }
        }
    }
}

/// The English message of an API refusal.
fn api_message(e: &eraser_api::Error) -> String {
    match e {
        eraser_api::Error::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A finished job: result downloaded for this run's first input of the image, then placed for
/// the run's other inputs with the same bytes.
async fn complete(
    ledger: &Ledger,
    client: &Client,
    run: RunId,
    opts: &Options,
    counters: &Counters,
    sha: Sha256,
    done: &JobDone,
) -> anyhow::Result<()> {
    let ours = ledger.run_inputs_of_image(run, &sha).await?;
    let mut stored: Option<(PathBuf, Sha256)> = None;
    let mut first_error = None;
    for input in &ours {
        let Some(dest) = place::destination(input) else {
            continue;
        };
        if let Err(e) = place::may_write(input, &dest, opts.overwrite) {
            first_error.get_or_insert(anyhow::Error::new(e));
            continue;
        }
        let target = place::Target {
            run,
            input: input.path.clone(),
            dest,
        };
        match &stored {
            None => {
                let (path, got) =
                    place::download_first(client, ledger, &sha, done, &target).await?;
                counters.add_credits(done);
                Counters::add(&counters.downloads, 1);
                Counters::add(&counters.bytes_downloaded, got.bytes);
                Counters::add(&counters.placed, 1);
                stored = Some((path, Sha256(got.sha256)));
            }
            Some((src, out_sha)) => {
                if place::copy_from(ledger, src, Some(*out_sha), &target, opts.link).await? {
                    Counters::add(&counters.copies, 1);
                    Counters::add(&counters.placed, 1);
                }
            }
        }
    }
    if stored.is_none() {
        // No input could take the result (each target occupied): keep the job as done with its
        // URL, so a later run with --overwrite can fetch it without paying again.
        place::record_done_unplaced(ledger, &sha, done).await?;
        counters.add_credits(done);
        if let Some(e) = first_error {
            tracing::warn!("{}", crate::exit::one_line(&e));
        }
    }
    Ok(())
}

/// Makes sure a done input's output is in place: nothing to do when it is; else a copy of the
/// stored result, or a fresh download. Returns false when the result cannot be had.
async fn materialize(
    ledger: &Ledger,
    client: &Client,
    run: RunId,
    opts: &Options,
    counters: &Counters,
    state: &InputState,
) -> anyhow::Result<bool> {
    if place::in_place(state, state.image_output_size) {
        return Ok(true);
    }
    let Some(dest) = place::destination(&state.input) else {
        anyhow::bail!("no output path recorded")
    };
    place::may_write(&state.input, &dest, opts.overwrite)?;
    let target = place::Target {
        run,
        input: state.input.path.clone(),
        dest,
    };
    let copy = |src: PathBuf| {
        let target = &target;
        async move {
            let copied =
                place::copy_from(ledger, &src, state.image_output_sha256, target, opts.link)
                    .await?;
            if copied {
                Counters::add(&counters.copies, 1);
                Counters::add(&counters.placed, 1);
            }
            anyhow::Ok(copied)
        }
    };
    if let Some(src) = &state.image_output_path
        && copy(src.clone()).await?
    {
        return Ok(true);
    }
    // The stored result is gone: another input's copy of it (checked against the result's
    // hash) needs neither the network nor a URL that may have expired.
    for other in ledger.inputs_of_image(&state.input.sha256).await? {
        if let Some(src) = other.output_path
            && state.image_output_path.as_ref() != Some(&src)
            && copy(src).await?
        {
            return Ok(true);
        }
    }
    let Some(url) = &state.output_url else {
        anyhow::bail!("the result is gone and no URL is recorded")
    };
    let got = place::download_again(client, ledger, url, &target)
        .await
        .map_err(|e| {
            let gone = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<eraser_api::Error>(),
                    Some(eraser_api::Error::Http {
                        status: 403 | 404 | 410,
                        ..
                    })
                )
            });
            if gone {
                e.context(format!(
                    "the result's URL no longer works; `eraser ledger retry --done {}` has the \
                     image made again (it costs a credit)",
                    state.input.sha256
                ))
            } else {
                e
            }
        })?;
    Counters::add(&counters.downloads, 1);
    Counters::add(&counters.bytes_downloaded, got.bytes);
    Counters::add(&counters.placed, 1);
    Ok(true)
}
