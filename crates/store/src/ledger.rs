use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::stream::BoxStream;

use crate::{
    Claim, CreditsUsed, DoneRecord, Error, Failure, FailureGroup, ImageRow, ImageStatus, InFlight,
    InputCounts, InputRecord, InputRow, InputState, KnownInput, Result, RunId, RunProgress, Sha256,
    StatusCounts,
};

/// The ledger. Cheap to clone (one pool).
#[derive(Clone, Debug)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// Opens (creating if missing) and migrates the ledger at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let _ = path;
        Err(Error::Unimplemented)
    }
    /// Opens an existing ledger; a missing file is an error (for `eraser ledger …`).
    pub async fn open_existing(path: &Path) -> Result<Self> {
        let _ = path;
        Err(Error::Unimplemented)
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The product serial, generated once per ledger (UUID v4), race-safe across processes.
    pub async fn product_serial(&self) -> Result<String> {
        Err(Error::Unimplemented)
    }

    // --- runs -------------------------------------------------------------------------------
    /// Registers a run of this process (host name and pid recorded by the store).
    pub async fn begin_run(&self, command: &str) -> Result<RunId> {
        let _ = command;
        Err(Error::Unimplemented)
    }
    pub async fn heartbeat(&self, run: RunId) -> Result<()> {
        let _ = run;
        Err(Error::Unimplemented)
    }
    /// Marks the run finished with how it ended and its summary (JSON text).
    pub async fn finish_run(&self, run: RunId, outcome: &str, summary_json: &str) -> Result<()> {
        let _ = (run, outcome, summary_json);
        Err(Error::Unimplemented)
    }
    /// `uploading` images claimed by dead runs (same host and pid gone, or heartbeat older than
    /// `stale_after`) go back to `new`, counted in `repeat_uploads`. Live runs' claims are untouched.
    /// Returns how many were reclaimed.
    pub async fn recover(&self, stale_after: Duration) -> Result<u64> {
        let _ = stale_after;
        Err(Error::Unimplemented)
    }

    // --- inputs -----------------------------------------------------------------------------
    /// What the ledger knows of these paths (same order), for skipping unchanged files.
    pub async fn lookup_inputs(&self, paths: &[PathBuf]) -> Result<Vec<Option<KnownInput>>> {
        let _ = paths;
        Err(Error::Unimplemented)
    }
    /// Records a batch of inputs seen by `run` in one transaction: upserts each input
    /// (keeping an already planned output), inserts its image as `new` when unknown.
    pub async fn record_inputs(&self, run: RunId, batch: &[InputRecord]) -> Result<()> {
        let _ = (run, batch);
        Err(Error::Unimplemented)
    }
    /// Planned output paths already taken by other inputs (for collision resolution).
    pub async fn planned_output_owner(&self, output: &Path) -> Result<Option<PathBuf>> {
        let _ = output;
        Err(Error::Unimplemented)
    }
    /// Records that `output` was written for the input at `path`.
    pub async fn set_input_output(&self, path: &Path, output: &Path) -> Result<()> {
        let _ = (path, output);
        Err(Error::Unimplemented)
    }
    /// Clears the recorded output of an input (its file turned out missing or wrong).
    pub async fn clear_input_output(&self, path: &Path) -> Result<()> {
        let _ = path;
        Err(Error::Unimplemented)
    }

    // --- transitions (compare-and-set on status) ---------------------------------------------
    /// Moves up to `n` `new` images that have an input seen by `run` to `uploading`, held by `run`.
    pub async fn claim_for_upload(&self, run: RunId, n: u32) -> Result<Vec<Claim>> {
        let _ = (run, n);
        Err(Error::Unimplemented)
    }
    /// `uploading` → `processing` with the job id.
    pub async fn mark_processing(&self, sha: &Sha256, job_id: &str) -> Result<()> {
        let _ = (sha, job_id);
        Err(Error::Unimplemented)
    }
    /// `processing` → `done`.
    pub async fn mark_done(&self, sha: &Sha256, done: &DoneRecord) -> Result<()> {
        let _ = (sha, done);
        Err(Error::Unimplemented)
    }
    /// `uploading` or `processing` → `failed`; attempts + 1.
    pub async fn mark_failed(&self, sha: &Sha256, failure: &Failure) -> Result<()> {
        let _ = (sha, failure);
        Err(Error::Unimplemented)
    }
    /// `uploading` → `new` without counting an attempt (the upload was never sent).
    pub async fn release_claim(&self, sha: &Sha256) -> Result<()> {
        let _ = sha;
        Err(Error::Unimplemented)
    }
    /// `failed` → `new` for the given images (all failed ones when `None`). Returns how many.
    pub async fn requeue(&self, shas: Option<&[Sha256]>) -> Result<u64> {
        let _ = shas;
        Err(Error::Unimplemented)
    }
    /// `done` → `new`: the stored result is unusable and cannot be fetched again.
    pub async fn reset_done(&self, sha: &Sha256) -> Result<()> {
        let _ = sha;
        Err(Error::Unimplemented)
    }

    // --- queries ------------------------------------------------------------------------------
    pub async fn image(&self, sha: &Sha256) -> Result<Option<ImageRow>> {
        let _ = sha;
        Err(Error::Unimplemented)
    }
    pub async fn image_by_job(&self, job_id: &str) -> Result<Option<ImageRow>> {
        let _ = job_id;
        Err(Error::Unimplemented)
    }
    pub async fn input(&self, path: &Path) -> Result<Option<InputRow>> {
        let _ = path;
        Err(Error::Unimplemented)
    }
    pub async fn inputs_of_image(&self, sha: &Sha256) -> Result<Vec<InputRow>> {
        let _ = sha;
        Err(Error::Unimplemented)
    }
    /// Images by status from the counts table (constant time).
    pub async fn status_counts(&self) -> Result<StatusCounts> {
        Err(Error::Unimplemented)
    }
    pub async fn input_counts(&self) -> Result<InputCounts> {
        Err(Error::Unimplemented)
    }
    pub async fn failure_groups(&self) -> Result<Vec<FailureGroup>> {
        Err(Error::Unimplemented)
    }
    pub async fn credits_used(&self) -> Result<CreditsUsed> {
        Err(Error::Unimplemented)
    }
    /// Jobs in `processing`, oldest first, at most `limit`.
    pub async fn in_flight(&self, limit: u32) -> Result<Vec<InFlight>> {
        let _ = limit;
        Err(Error::Unimplemented)
    }
    /// `processing` images with an input seen by `run` (the resume set to poll).
    pub async fn run_in_flight(&self, run: RunId) -> Result<Vec<InFlight>> {
        let _ = run;
        Err(Error::Unimplemented)
    }
    pub async fn run_progress(&self, run: RunId) -> Result<RunProgress> {
        let _ = run;
        Err(Error::Unimplemented)
    }
    /// Inputs seen by `run` whose image is `done` and whose output is not recorded, paged by path.
    pub async fn run_unplaced(&self, run: RunId, after: Option<&Path>, limit: u32) -> Result<Vec<InputState>> {
        let _ = (run, after, limit);
        Err(Error::Unimplemented)
    }
    /// Inputs seen by `run` with their image state, paged by path (for the final report).
    pub async fn run_inputs(&self, run: RunId, after: Option<&Path>, limit: u32) -> Result<Vec<InputState>> {
        let _ = (run, after, limit);
        Err(Error::Unimplemented)
    }
    /// Images, optionally of one status, paged by sha256.
    pub async fn list_images(
        &self,
        status: Option<ImageStatus>,
        after: Option<&Sha256>,
        limit: u32,
    ) -> Result<Vec<ImageRow>> {
        let _ = (status, after, limit);
        Err(Error::Unimplemented)
    }
    /// Every input with its image state, streamed from one cursor (for export).
    pub fn export_inputs(&self) -> BoxStream<'_, Result<InputState>> {
        Box::pin(futures_util::stream::empty())
    }
    /// Every image, streamed from one cursor (for export and verify).
    pub fn export_images(&self) -> BoxStream<'_, Result<ImageRow>> {
        Box::pin(futures_util::stream::empty())
    }
}
