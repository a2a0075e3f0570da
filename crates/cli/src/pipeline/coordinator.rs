//! The coordinator: one task that owns the run's work at the service. It claims `new` images as
//! job slots free up and starts their uploads (`upload.rs`), polls every job from one schedule
//! (`poll.rs`), hands finished jobs to placement (`complete.rs`) and asks [`Health`] whether to
//! go on. Every request runs on a task of its own; the coordinator only reacts to what they
//! report ([`Event`]), so it never waits on the network itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eraser_api::{Client, JobId};
use eraser_store::{Ledger, RunId, ScanSession, Sha256};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::health::{Health, Verdict};
use super::limits::{Limiter, RateLimit, UploadWindow};
use super::scan::InputError;
use super::schedule::{Eta, Schedule};
use super::stop::Stop;
use super::unrecorded::Unrecorded;
use super::{Options, RunEnd};
use crate::progress::Counters;
use crate::summary::FailureCount;

/// How long in-flight requests may finish after the first Ctrl-C or SIGTERM.
const GRACE: Duration = Duration::from_secs(5);
/// How often the run re-reads the ledger for jobs it does not track (resumed, other runs').
const REFRESH: Duration = Duration::from_secs(1);
/// Longest the loop sleeps without looking around.
const TICK: Duration = Duration::from_millis(500);

/// A job this run is polling.
#[derive(Debug)]
pub(super) struct Job {
    pub job_id: JobId,
    pub size: u64,
    /// When it was submitted (estimated for resumed jobs).
    pub submitted: Instant,
    /// Submitted by this run (so the first poll waits for the estimate).
    pub ours: bool,
    /// The processing-time estimate its first look was scheduled from.
    pub expected: Duration,
    /// Its first look goes out early (see `Eta::first_look`).
    pub explore: bool,
    pub polls: u32,
    pub last_in_progress: Option<Duration>,
    pub task: JobTask,
}

/// The task a job has under way: at most one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobTask {
    None,
    /// A `get-job` (cut short when the run stops).
    Poll,
    /// Downloading and placing its result (finished when the run stops, within the grace).
    Completion,
}

/// What a finished task reports back to the coordinator.
pub(super) enum Event {
    Uploaded(super::upload::Uploaded),
    Polled(super::poll::Polled),
    Completed {
        sha: Sha256,
        result: anyhow::Result<()>,
    },
}

/// The state of the run's work at the service.
pub(super) struct Coordinator {
    /// When this run started: the earliest a resumed job's `--job-timeout` counts from.
    pub started: Instant,
    pub ledger: Ledger,
    pub client: Client,
    pub run: RunId,
    pub opts: Arc<Options>,
    pub counters: Arc<Counters>,
    /// The run's scan: a changed input found at upload time is recorded through it.
    pub scan: ScanSession,
    pub limiter: Arc<Limiter>,
    pub rate: Option<Arc<RateLimit>>,
    pub uploads: UploadWindow,
    pub downloads: Arc<Semaphore>,
    pub tasks: JoinSet<Event>,
    /// Jobs at the service that this run polls.
    pub jobs: HashMap<Sha256, Job>,
    /// Claims whose create-job is under way.
    pub uploading: HashSet<Sha256>,
    pub schedule: Schedule,
    pub eta: Eta,
    pub health: Health,
    /// Why the run stopped submitting, once it did (the first reason wins).
    pub stopped: Option<RunEnd>,
    /// Failures of this run that the ledger does not show as failed images (results not
    /// written), for the summary.
    pub run_failures: BTreeMap<String, FailureCount>,
    /// Done jobs whose result could not be fetched this run; left `processing` for the next.
    pub given_up: HashSet<Sha256>,
    /// The scan is over and the last claim found fewer images than it asked for: claiming
    /// again finds nothing until something is put back in the queue.
    pub exhausted: bool,
    /// Inputs hashed again this run because they changed before their upload (once each).
    pub rehashed: HashSet<std::path::PathBuf>,
    /// Job ids received while the ledger could not be reached, until it records them.
    pub unrecorded: Unrecorded,
}

impl Coordinator {
    pub async fn new(
        ledger: &Ledger,
        client: &Client,
        run: RunId,
        opts: Arc<Options>,
        feedback: &super::Feedback,
        scan: ScanSession,
        started: Instant,
    ) -> Self {
        // Start from what earlier runs learned of the service's time; a lost hint is a guess.
        let eta = match ledger.processing_estimate().await {
            Ok(Some(seconds)) => Eta::starting_at(seconds),
            Ok(None) => Eta::default(),
            Err(e) => {
                tracing::debug!("no processing estimate from the ledger: {e}");
                Eta::default()
            }
        };
        Self {
            started,
            ledger: ledger.clone(),
            client: client.clone(),
            run,
            counters: Arc::clone(&feedback.counters),
            scan,
            limiter: Arc::clone(&feedback.limiter),
            rate: opts.rate.and_then(RateLimit::new).map(Arc::new),
            uploads: UploadWindow::new(opts.upload_concurrency),
            downloads: Arc::new(super::limits::permits(opts.download_concurrency)),
            tasks: JoinSet::new(),
            jobs: HashMap::new(),
            uploading: HashSet::new(),
            schedule: Schedule::default(),
            eta,
            health: Health::new(opts.outage_timeout),
            stopped: None,
            run_failures: BTreeMap::new(),
            given_up: HashSet::new(),
            exhausted: false,
            rehashed: HashSet::new(),
            unrecorded: Unrecorded::new(opts.unrecorded_dir.as_deref(), ledger, run),
            opts,
        }
    }

    /// Works until every image of the run is settled, the run stops, or the service is lost;
    /// returns the scan's input errors. In a dry run, only waits for the scan.
    pub async fn drive(
        &mut self,
        mut scan: tokio::task::JoinHandle<anyhow::Result<Vec<InputError>>>,
        recorded: &Notify,
        stop: &Stop,
    ) -> anyhow::Result<Vec<InputError>> {
        if self.opts.dry_run {
            return tokio::select! {
                r = &mut scan => r.context("scan task failed")?,
                _ = stop.notify.notified() => {
                    scan.abort();
                    self.stop(RunEnd::Interrupted(stop.requested().unwrap_or(super::StopSignal::Interrupt)));
                    Ok(Vec::new())
                }
            };
        }
        let mut scan_errors = Vec::new();
        let mut scan_done = false;
        let mut last_refresh = Instant::now() - REFRESH;
        let mut stopping_since: Option<Instant> = None;
        let mut next_look_around = Instant::now();
        loop {
            if !scan_done && scan.is_finished() {
                scan_errors = (&mut scan).await.context("scan task failed")??;
                scan_done = true;
            }
            if let Some(signal) = stop.requested()
                && self.stopped.is_none()
            {
                tracing::warn!(
                    "{}: finishing requests in flight ({} again to quit at once)",
                    signal.name(),
                    signal.name()
                );
                self.stop(RunEnd::Interrupted(signal));
            }
            if !self.polls_go_on() && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
                scan.abort();
                scan_done = true;
            }
            if let Some(since) = stopping_since
                && (self.uploading.is_empty() && self.tasks_other_than_polls() == 0
                    || since.elapsed() > GRACE)
            {
                break;
            }
            let mut claimed = 0;
            if self.stopped.is_none() {
                claimed = self.top_up(scan_done).await?;
                if last_refresh.elapsed() >= REFRESH {
                    self.adopt_in_flight().await?;
                    last_refresh = Instant::now();
                }
            }
            // After a refusal the jobs already accepted are still polled to their end.
            if self.polls_go_on() {
                self.poll_due();
            }
            if scan_done
                && claimed == 0
                && self.idle()
                && self.polls_go_on()
                && Instant::now() >= next_look_around
            {
                let counting = Instant::now();
                if self.settled().await? {
                    break;
                }
                // While other runs' jobs are awaited, a large run's count is not repeated
                // more often than ten times what it took.
                next_look_around = Instant::now() + counting.elapsed() * 10;
            }
            let mut wake = self
                .schedule
                .next_due()
                .unwrap_or_else(|| Instant::now() + TICK)
                .min(Instant::now() + TICK);
            // Uploads above the hold's level may go out once it ends.
            if let Some(until) = self.health.hold_until()
                && until > Instant::now()
            {
                wake = wake.min(until);
            }
            tokio::select! {
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(event) => self.handle(event).await?,
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => return Err(anyhow::anyhow!("a pipeline task failed: {e}")),
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = recorded.notified(), if !scan_done => {}
                _ = stop.notify.notified(), if stopping_since.is_none() => {}
            }
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        for sha in std::mem::take(&mut self.uploading) {
            let _ = self.ledger.release_claim(self.run, &sha).await;
        }
        Ok(scan_errors)
    }

    /// Nothing is left for this run to do: no image of it unsettled (uploading or processing,
    /// except jobs given up on for this run) and none to claim. When other runs hold some of
    /// its images, their jobs are polled too; claims of a run that died are taken back.
    async fn settled(&mut self) -> anyhow::Result<bool> {
        // Nothing unsettled in the whole ledger: nothing of this run either, known without
        // counting the run's images.
        let all = self.ledger.status_counts().await?;
        if all.uploading + all.processing == 0 && (all.new == 0 || self.stopped.is_some()) {
            return Ok(true);
        }
        let p = self.ledger.run_progress(self.run).await?;
        let waiting =
            (p.images.uploading + p.images.processing).saturating_sub(self.given_up.len() as u64);
        let claimable = p.images.new > 0 && self.stopped.is_none();
        if waiting == 0 && !claimable {
            return Ok(true);
        }
        self.exhausted = false;
        if waiting > 0 && self.jobs.is_empty() {
            // Another run holds these: wait for it to get job ids, then poll them too; if it
            // died meanwhile, take its claims back and upload them here.
            if p.images.uploading > 0 {
                let n = self.ledger.recover().await?;
                Counters::add(&self.counters.repeat_uploads, n);
            }
            self.adopt_in_flight().await?;
        }
        Ok(false)
    }

    async fn handle(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Uploaded(uploaded) => self.uploaded(uploaded).await,
            Event::Polled(polled) => self.polled(polled).await,
            Event::Completed { sha, result } => self.completed(sha, result).await,
        }
    }

    /// The run stops submitting for `end` (the first reason given wins).
    pub fn stop(&mut self, end: RunEnd) {
        self.stopped.get_or_insert(end);
    }

    /// Acts on what [`Health`] concluded: refused images back to `new`, the run stopped.
    pub async fn follow(&mut self, verdict: Verdict) -> anyhow::Result<()> {
        if !verdict.requeue.is_empty() {
            self.ledger
                .requeue(Some(&verdict.requeue))
                .await
                .context("putting refused images back in the queue")?;
            self.exhausted = false;
        }
        if let Some(end) = verdict.end
            && self.stopped.is_none()
        {
            tracing::error!("{}", verdict.why);
            self.stop(end);
        }
        Ok(())
    }

    /// True unless the run was interrupted or lost the service: a refusal, or an OUT that
    /// takes no more results, still lets the jobs accepted finish.
    pub fn polls_go_on(&self) -> bool {
        !matches!(
            self.stopped,
            Some(RunEnd::Interrupted(_) | RunEnd::Unavailable { .. })
        )
    }

    /// Jobs of this run the service is still working on (finished ones only wait for their
    /// result to be fetched).
    pub fn at_service(&self) -> usize {
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

    pub fn drop_job(&mut self, sha: &Sha256) {
        if self.jobs.remove(sha).is_some() {
            Counters::sub_in_flight(&self.counters);
        }
    }

    /// Records an image's failure (logged as an error).
    pub async fn fail(
        &mut self,
        sha: &Sha256,
        code: Option<i64>,
        message: &str,
        retryable: bool,
    ) -> anyhow::Result<()> {
        tracing::error!("{message}");
        let failure = eraser_store::Failure {
            code,
            message: message.to_owned(),
            retryable,
        };
        match self.ledger.mark_failed(self.run, sha, &failure).await {
            // Taken over by another run that presumed this one dead: its record stands.
            Err(eraser_store::Error::ClaimLost { .. }) => Ok(()),
            other => other.with_context(|| format!("recording the failure of image {sha}")),
        }
    }

    /// A failure this run saw that the ledger does not hold as a failed image.
    pub fn note_failure(&mut self, code: &str, message: &str) {
        let f = self.run_failures.entry(code.to_owned()).or_default();
        f.count += 1;
        f.message = message.to_owned();
    }

    /// Keeps what this run learned of the service's time for the next run.
    pub async fn keep_estimate(&self) {
        if let Some(seconds) = self.eta.overall()
            && !self.opts.dry_run
            && let Err(e) = self.ledger.set_processing_estimate(seconds).await
        {
            tracing::debug!("could not keep the processing estimate: {e}");
        }
    }
}
