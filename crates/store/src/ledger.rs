//! [`Ledger`]: every operation the pipeline and the commands need, on whichever backend its
//! [`Location`] names. Each method hands the call to the backend; the SQL lives there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;

use crate::patience::Patience;
#[cfg(feature = "postgres")]
use crate::postgres::Postgres;
use crate::scan::{FoundInputs, ScanSession, VersionStep};
#[cfg(feature = "sqlite")]
use crate::sqlite::Sqlite;
use crate::{
    Claim, ConsistencyReport, CreditsUsed, DoneRecord, Failure, FailureGroup, HostActivity,
    ImageRow, ImageStatus, InFlight, InputCounts, InputRow, InputState, Listing, Location, Lookup,
    RejectKind, RejectedRow, Result, Retried, RunId, RunProgress, ScanBatch, Sha256, StatusCounts,
};

/// The ledger. Cheap to clone (clones share the connections and any outage being waited out).
#[derive(Clone, Debug)]
pub struct Ledger {
    backend: Backend,
    patience: Arc<Patience>,
}

/// The backends: each has every method below, with the same signature.
#[derive(Clone, Debug)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(Sqlite),
    #[cfg(feature = "postgres")]
    Postgres(Postgres),
}

/// Calls the same method on whichever backend the ledger has.
macro_rules! on_backend {
    ($ledger:expr, $b:ident => $call:expr) => {
        match &$ledger.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($b) => $call,
            #[cfg(feature = "postgres")]
            Backend::Postgres($b) => $call,
        }
    };
}

/// Calls a backend method, waiting out an unreachable database (see [`Patience`]).
macro_rules! patiently {
    ($ledger:expr, $b:ident => $call:expr) => {{
        let mut attempt = 0;
        loop {
            let result = on_backend!($ledger, $b => $call);
            match $ledger.patience.judge(result, &mut attempt).await {
                std::ops::ControlFlow::Break(result) => break result,
                std::ops::ControlFlow::Continue(()) => continue,
            }
        }
    }};
}

/// How to open a ledger; [`Ledger::open`] and [`Ledger::open_existing`] are the usual shortcuts.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub(crate) create: bool,
    pub(crate) busy_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) outage_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            create: true,
            busy_timeout: Duration::from_secs(5),
            lease: crate::DEFAULT_LEASE,
            outage_timeout: Duration::ZERO,
        }
    }
}

impl OpenOptions {
    /// Creating a missing ledger file, a 5 s busy timeout, the default lease, no waiting for
    /// an unreachable database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a missing file (and its folders) is created; otherwise it is `Error::NotFound`.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// How long to wait for another process's lock before failing with `Error::Busy`.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long a run on another machine may go without a heartbeat before it is presumed
    /// dead (its claims taken back). Runs beat well within it (see [`Ledger::heartbeat`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long calls wait for a database that cannot be reached before failing with
    /// `Error::Unavailable` (zero, the default: they fail at once). Opening never waits.
    pub fn wait_for_database(mut self, timeout: Duration) -> Self {
        self.outage_timeout = timeout;
        self
    }

    /// Opens (and migrates) the ledger at `location`.
    pub async fn open(&self, location: &Location) -> Result<Ledger> {
        let backend = match location {
            #[cfg(feature = "sqlite")]
            Location::File(path) => Backend::Sqlite(Sqlite::open(path, self).await?),
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => Backend::Postgres(Postgres::open(url, self).await?),
            #[allow(unreachable_patterns, reason = "a build of one backend (sqlx prepare)")]
            other => {
                return Err(crate::Error::CannotOpen {
                    ledger: other.to_string(),
                    detail: "this build of eraser has no backend for it".into(),
                });
            }
        };
        Ok(Ledger {
            backend,
            patience: Arc::new(Patience::new(self.outage_timeout)),
        })
    }
}

// Opening and closing.
impl Ledger {
    /// Opens (creating a missing file) and migrates the ledger at `location`.
    pub async fn open(location: &Location) -> Result<Self> {
        OpenOptions::new().open(location).await
    }

    /// Opens an existing ledger; a missing file is an error (for `eraser ledger …`).
    pub async fn open_existing(location: &Location) -> Result<Self> {
        OpenOptions::new().create(false).open(location).await
    }

    /// A handle on the same connections whose calls fail at once when the database cannot be
    /// reached (to act before waiting: keep what must not be lost elsewhere first).
    pub fn without_waiting(&self) -> Ledger {
        Ledger {
            backend: self.backend.clone(),
            patience: Arc::new(Patience::default()),
        }
    }

    /// Since when the database has been unreachable, while calls are waiting for it.
    pub fn unreachable_since(&self) -> Option<std::time::Instant> {
        self.patience.unreachable_since()
    }

    /// Where this ledger lives (shown with any password masked).
    pub fn location(&self) -> &Location {
        on_backend!(self, b => b.location())
    }

    /// Closes every connection of this handle and its clones (they fail afterwards).
    pub async fn close(&self) {
        on_backend!(self, b => b.close().await)
    }
}

// The run registry and the ledger's own facts.
impl Ledger {
    /// Registers a run of this process (host name and pid recorded by the store) into `out_root`.
    pub async fn begin_run(&self, command: &str, out_root: &Path) -> Result<RunId> {
        patiently!(self, b => b.begin_run(command, out_root).await)
    }

    /// Refreshes the run's heartbeat. A live run must beat well within the lease of the
    /// others (every [`Ledger::heartbeat_every`]), or its claims may be taken back.
    pub async fn heartbeat(&self, run: RunId) -> Result<()> {
        patiently!(self, b => b.heartbeat(run).await)
    }

    /// Marks the run finished with how it ended and its summary (JSON text).
    pub async fn finish_run(&self, run: RunId, outcome: &str, summary_json: &str) -> Result<()> {
        patiently!(self, b => b.finish_run(run, outcome, summary_json).await)
    }

    /// `uploading` images claimed by dead runs go back to `new`, counted in `repeat_uploads`.
    /// A run is dead when finished, when its heartbeat is older than the lease, or when it
    /// ran on this host and its process is gone. Returns how many were taken back.
    pub async fn recover(&self) -> Result<u64> {
        patiently!(self, b => b.recover().await)
    }

    /// How often a run beats: a sixth of the lease, at most 5 s, so that a few beats lost to a
    /// busy database do not make a live run look dead.
    pub fn heartbeat_every(&self) -> Duration {
        (self.lease() / 6).min(Duration::from_secs(5))
    }

    /// The lease this handle judges other runs by.
    pub fn lease(&self) -> Duration {
        on_backend!(self, b => b.lease)
    }

    /// The product serial, generated once per ledger (UUID v4), race-safe across processes.
    pub async fn product_serial(&self) -> Result<String> {
        patiently!(self, b => b.product_serial().await)
    }

    /// The service's processing time per image (seconds) learned by the last run that saw
    /// jobs finish, so the next run's first looks start from it instead of a guess.
    pub async fn processing_estimate(&self) -> Result<Option<f64>> {
        patiently!(self, b => b.processing_estimate().await)
    }

    /// Records the processing time per image a run learned.
    pub async fn set_processing_estimate(&self, seconds: f64) -> Result<()> {
        patiently!(self, b => b.set_processing_estimate(seconds).await)
    }
}

// The scan.
impl Ledger {
    /// Starts `run`'s scan: see [`ScanSession`].
    pub async fn begin_scan(&self, run: RunId) -> Result<ScanSession> {
        let version = patiently!(self, b => b.inputs_version().await)?;
        Ok(ScanSession::new(self.clone(), run, version))
    }

    pub(crate) async fn kept_listings(
        &self,
        run: RunId,
        version: i64,
        limit: usize,
    ) -> Result<std::collections::HashMap<PathBuf, Listing>> {
        patiently!(self, b => b.kept_listings(run, version, limit).await)
    }

    pub(crate) async fn keep_listings(
        &self,
        run: RunId,
        version: i64,
        listings: &[(PathBuf, Listing)],
    ) -> Result<bool> {
        patiently!(self, b => b.keep_listings(run, version, listings).await)
    }

    pub(crate) async fn holds_inputs_under(&self, folder: &Path) -> Result<bool> {
        patiently!(self, b => b.holds_inputs_under(folder).await)
    }

    pub(crate) async fn look_up_inputs(
        &self,
        run: RunId,
        files: &[(&Path, u64, i64)],
    ) -> Result<Vec<(Lookup, Option<i64>)>> {
        patiently!(self, b => b.look_up_inputs(run, files).await)
    }

    pub(crate) async fn planned_output_owners(
        &self,
        outputs: &[PathBuf],
    ) -> Result<std::collections::HashMap<PathBuf, PathBuf>> {
        patiently!(self, b => b.planned_output_owners(outputs).await)
    }

    pub(crate) async fn record_scan_batch(
        &self,
        run: RunId,
        batch: &ScanBatch,
    ) -> Result<(Vec<i64>, VersionStep)> {
        patiently!(self, b => b.record_scan_batch(run, batch).await)
    }

    pub(crate) async fn complete_walk(
        &self,
        run: RunId,
        found: &FoundInputs,
    ) -> Result<(u64, VersionStep)> {
        patiently!(self, b => b.complete_walk(run, found).await)
    }
}

// Claims and transitions: each a compare-and-set on the image's status.
impl Ledger {
    /// Moves up to `n` `new` images that have an input of `run` to `uploading`, held by `run`,
    /// oldest first. Two processes claiming at once never get the same image.
    pub async fn claim_for_upload(&self, run: RunId, n: u32) -> Result<Vec<Claim>> {
        patiently!(self, b => b.claim_for_upload(run, n).await)
    }

    /// `uploading` (held by `run`) → `processing` with the job id; counts the upload as an
    /// attempt. Durable before it returns: the job id is what keeps the next run from paying
    /// again. A claim taken over by another run is `Error::ClaimLost`.
    pub async fn mark_processing(&self, run: RunId, sha: &Sha256, job_id: &str) -> Result<()> {
        patiently!(self, b => b.mark_processing(run, sha, job_id).await)
    }

    /// `processing` → `done`, recording the result and clearing any earlier error.
    pub async fn mark_done(&self, sha: &Sha256, done: &DoneRecord) -> Result<()> {
        patiently!(self, b => b.mark_done(sha, done).await)
    }

    /// `uploading` (held by `run`) or `processing` → `failed`, recording the error; an upload
    /// that failed while sending counts as an attempt.
    pub async fn mark_failed(&self, run: RunId, sha: &Sha256, failure: &Failure) -> Result<()> {
        patiently!(self, b => b.mark_failed(run, sha, failure).await)
    }

    /// `uploading` (held by `run`) → `new` without counting an attempt (nothing was sent).
    pub async fn release_claim(&self, run: RunId, sha: &Sha256) -> Result<()> {
        patiently!(self, b => b.release_claim(run, sha).await)
    }

    /// Deletes a `new` image that no input holds any more; returns whether it was deleted.
    pub async fn forget_unused(&self, sha: &Sha256) -> Result<bool> {
        patiently!(self, b => b.forget_unused(sha).await)
    }

    /// `failed` → `new` for the given images (all failed ones when `None`); returns how many.
    pub async fn requeue(&self, shas: Option<&[Sha256]>) -> Result<u64> {
        patiently!(self, b => b.requeue(shas).await)
    }

    /// What the user asked to retry: each failed image back to `new`, except a job eraser only
    /// stopped waiting for, which goes back to `processing` to be polled again.
    pub async fn retry_failed(&self, shas: Option<&[Sha256]>) -> Result<Retried> {
        patiently!(self, b => b.retry_failed(shas).await)
    }

    /// `done` → `new`: the result is lost and cannot be fetched again.
    pub async fn reset_done(&self, sha: &Sha256) -> Result<()> {
        patiently!(self, b => b.reset_done(sha).await)
    }

    /// Counts `n` uploads of the image that may have created a job eraser never heard of.
    pub async fn note_repeat_uploads(&self, sha: &Sha256, n: u32) -> Result<()> {
        patiently!(self, b => b.note_repeat_uploads(sha, n).await)
    }

    /// Forgets where a done image's result was stored (the file is gone), keeping its job and
    /// URL so the next run downloads it again instead of uploading.
    pub async fn clear_image_output(&self, sha: &Sha256) -> Result<()> {
        patiently!(self, b => b.clear_image_output(sha).await)
    }
}

// Outputs of inputs.
impl Ledger {
    /// Records that `output` was written for the input at `path`, in `run`'s OUT.
    pub async fn set_input_output(&self, run: RunId, path: &Path, output: &Path) -> Result<()> {
        patiently!(self, b => b.set_input_output(run, path, output).await)
    }

    /// Clears the recorded outputs of an input, in every OUT (its file turned out missing).
    pub async fn clear_input_output(&self, path: &Path) -> Result<()> {
        patiently!(self, b => b.clear_input_output(path).await)
    }
}

// Questions.
impl Ledger {
    /// Images by status (maintained counters, no scan).
    pub async fn status_counts(&self) -> Result<StatusCounts> {
        patiently!(self, b => b.status_counts().await)
    }

    /// Inputs in total, by their image's outcome, and files found but not used (counters).
    pub async fn input_counts(&self) -> Result<InputCounts> {
        patiently!(self, b => b.input_counts().await)
    }

    /// Credits summed over done images (counters).
    pub async fn credits_used(&self) -> Result<CreditsUsed> {
        patiently!(self, b => b.credits_used().await)
    }

    /// Failed images grouped by error code, largest group first, with one message of each.
    pub async fn failure_groups(&self) -> Result<Vec<FailureGroup>> {
        patiently!(self, b => b.failure_groups().await)
    }

    /// What each host does on the ledger: runs alive, jobs in flight, images done since
    /// `since` (e.g. the start of the caller's day), by host name.
    pub async fn hosts(&self, since: chrono::DateTime<chrono::Utc>) -> Result<Vec<HostActivity>> {
        patiently!(self, b => b.hosts(since).await)
    }

    /// Jobs in `processing`, oldest first, at most `limit`.
    pub async fn in_flight(&self, limit: u32) -> Result<Vec<InFlight>> {
        patiently!(self, b => b.in_flight(limit).await)
    }

    /// `processing` images with an input of `run` (the jobs to poll), oldest first.
    pub async fn run_in_flight(&self, run: RunId) -> Result<Vec<InFlight>> {
        patiently!(self, b => b.run_in_flight(run).await)
    }

    /// The run's images (distinct contents among its inputs) by status, and its inputs.
    pub async fn run_progress(&self, run: RunId) -> Result<RunProgress> {
        patiently!(self, b => b.run_progress(run).await)
    }

    /// The run's inputs with their image's state, paged by path.
    pub async fn run_inputs(
        &self,
        run: RunId,
        after: Option<&Path>,
        limit: u32,
    ) -> Result<Vec<InputState>> {
        patiently!(self, b => b.run_inputs(run, after, limit).await)
    }

    /// The run's inputs holding these bytes, by path, with their placement in the run's OUT.
    pub async fn run_inputs_of_image(&self, run: RunId, sha: &Sha256) -> Result<Vec<InputRow>> {
        patiently!(self, b => b.run_inputs_of_image(run, sha).await)
    }

    /// The image with this content, if known.
    pub async fn image(&self, sha: &Sha256) -> Result<Option<ImageRow>> {
        patiently!(self, b => b.image(sha).await)
    }

    /// The image the service knows under this job id, if any.
    pub async fn image_by_job(&self, job_id: &str) -> Result<Option<ImageRow>> {
        patiently!(self, b => b.image_by_job(job_id).await)
    }

    /// The input at this path, if recorded.
    pub async fn input(&self, path: &Path) -> Result<Option<InputRow>> {
        patiently!(self, b => b.input(path).await)
    }

    /// Every input holding these bytes, by path.
    pub async fn inputs_of_image(&self, sha: &Sha256) -> Result<Vec<InputRow>> {
        patiently!(self, b => b.inputs_of_image(sha).await)
    }

    /// Why the file at `path` was not used, if a run found it so.
    pub async fn rejected(&self, path: &Path) -> Result<Option<RejectedRow>> {
        patiently!(self, b => b.rejected(path).await)
    }

    /// Images, optionally of one status, paged by sha256.
    pub async fn list_images(
        &self,
        status: Option<ImageStatus>,
        after: Option<&Sha256>,
        limit: u32,
    ) -> Result<Vec<ImageRow>> {
        patiently!(self, b => b.list_images(status, after, limit).await)
    }

    /// Files found but not used, optionally of one kind, paged by path.
    pub async fn list_rejected(
        &self,
        kind: Option<RejectKind>,
        after: Option<&Path>,
        limit: u32,
    ) -> Result<Vec<RejectedRow>> {
        patiently!(self, b => b.list_rejected(kind, after, limit).await)
    }

    /// Every input with its image's state, by path, streamed from one cursor.
    pub fn export_inputs(&self) -> BoxStream<'_, Result<InputState>> {
        on_backend!(self, b => b.export_inputs())
    }

    /// Every image, by sha256, streamed from one cursor.
    pub fn export_images(&self) -> BoxStream<'_, Result<ImageRow>> {
        on_backend!(self, b => b.export_images())
    }

    /// The ledger's soundness and its counters against a full recount (reads everything).
    pub async fn check_consistency(&self) -> Result<ConsistencyReport> {
        patiently!(self, b => b.check_consistency().await)
    }
}
