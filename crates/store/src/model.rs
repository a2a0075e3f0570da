use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// SHA-256 of an image's bytes; shown as 64 lower-case hex digits, keyed in the ledger by its 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}
impl FromStr for Sha256 {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }
}
impl Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where an image stands. Stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    /// Known, not yet sent.
    New,
    /// Claimed by a run that is sending it; no job id yet.
    Uploading,
    /// Accepted by the service (job id recorded); to be polled.
    Processing,
    /// Result downloaded and stored.
    Done,
    /// Given up on (see the error columns); `retry` puts it back to `new`.
    Failed,
}

impl ImageStatus {
    pub const ALL: [ImageStatus; 5] = [
        Self::New,
        Self::Uploading,
        Self::Processing,
        Self::Done,
        Self::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Uploading => "uploading",
            Self::Processing => "processing",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}
impl fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl FromStr for ImageStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?} (expected new, uploading, processing, done or failed)"
                )
            })
    }
}

/// One run of `eraser run`, as registered in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(pub i64);

/// Why a found file is not an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectKind {
    /// Not an image, found inside a folder: expected, nothing to fix.
    Skipped,
    /// Cannot be used (unreadable, over the upload limit, a named file that is not an image).
    Error,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skipped => "skipped",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RejectKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skipped" => Ok(Self::Skipped),
            "error" => Ok(Self::Error),
            other => Err(format!("unknown rejection kind `{other}`")),
        }
    }
}

/// A found file that a run could not use, as the scan reports it.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub path: PathBuf,
    pub kind: RejectKind,
    pub reason: String,
}

/// A rejected file as the ledger holds it (the latest run that saw it).
#[derive(Debug, Clone, Serialize)]
pub struct RejectedRow {
    pub path: PathBuf,
    pub kind: RejectKind,
    pub reason: String,
    pub run: i64,
    pub seen_at: DateTime<Utc>,
}

/// An input a run found unchanged (see [`crate::Ledger::record_unchanged`]).
#[derive(Debug, Clone)]
pub struct SeenInput {
    pub path: PathBuf,
    /// Its output in this run's OUT, used only when it has none there yet.
    pub planned_output: PathBuf,
}

/// What the ledger holds of a found file (path, size, mtime), for [`Ledger::look_up_inputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Not recorded, or recorded with another size or mtime: to hash.
    Changed,
    /// Recorded with this size and mtime, but this run must record it (an earlier walk did not
    /// find it, or no complete walk into this run's OUT has found it as it is, so it may have
    /// no plan there): [`Ledger::record_unchanged`].
    Unchanged,
    /// Recorded with this size and mtime and found as it is by a complete walk into this run's
    /// OUT (so planned there): nothing to write. This run's complete walk counts it as found
    /// ([`FoundInputs`]).
    Current(InputId),
}

/// An input's row id: how a walk tells the ledger which recorded inputs it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputId(pub i64);

/// The [`Lookup::Current`] inputs a walk found: one bit per row id (125 KiB per million
/// inputs), so that inputs a complete walk did not find can be told apart without a write per
/// file found.
#[derive(Debug, Default)]
pub struct FoundInputs {
    bits: Vec<u64>,
    /// Ids too large for the bitmap (never in practice: SQLite hands out row ids in order).
    others: std::collections::HashSet<i64>,
    /// Folders whose every input was found without a lookup (their listing was kept).
    folders: std::collections::HashSet<PathBuf>,
    len: u64,
}

impl FoundInputs {
    /// Largest id kept in the bitmap (16 MiB of bits).
    const BITMAP_IDS: i64 = 1 << 27;

    /// Adds an input; false when it was already there.
    pub fn insert(&mut self, id: InputId) -> bool {
        let added = match Self::slot(id) {
            Some((word, bit)) => {
                if self.bits.len() <= word {
                    self.bits.resize(word + 1, 0);
                }
                let fresh = self.bits[word] & bit == 0;
                self.bits[word] |= bit;
                fresh
            }
            None => self.others.insert(id.0),
        };
        self.len += u64::from(added);
        added
    }

    pub fn contains(&self, id: InputId) -> bool {
        match Self::slot(id) {
            Some((word, bit)) => self.bits.get(word).is_some_and(|w| w & bit != 0),
            None => self.others.contains(&id.0),
        }
    }

    /// Adds every input of `folder` (the `files` a kept listing names), found without lookups.
    pub fn insert_folder(&mut self, folder: PathBuf, files: u64) {
        if self.folders.insert(folder) {
            self.len += files;
        }
    }

    /// Whether the input at `path` was found, by its id or as a file of a folder found whole.
    pub fn holds(&self, id: InputId, path: &std::path::Path) -> bool {
        self.contains(id) || path.parent().is_some_and(|f| self.folders.contains(f))
    }

    /// How many distinct inputs were added.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(id: InputId) -> Option<(usize, u64)> {
        if !(0..Self::BITMAP_IDS).contains(&id.0) {
            return None;
        }
        let id = usize::try_from(id.0).ok()?;
        Some((id / 64, 1 << (id % 64)))
    }
}

/// An input file as seen by the scan, ready to record.
#[derive(Debug, Clone)]
pub struct InputRecord {
    /// Absolute, normalised path (non-UTF-8 bytes kept).
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub sha256: Sha256,
    /// `jpeg`, `png` or `webp`.
    pub format: String,
    /// Where this input's result goes (decided by the cli, kept stable by the ledger:
    /// when the path already has a planned output, the stored one wins).
    pub planned_output: PathBuf,
}

/// An image claimed for upload by a run.
#[derive(Debug, Clone)]
pub struct Claim {
    pub sha256: Sha256,
    pub size: u64,
    pub format: String,
    /// One input file (seen by this run) holding these bytes.
    pub source_path: PathBuf,
    /// Attempts so far, this one excluded.
    pub attempts: u32,
}

/// Everything learned when a job finished and its result was stored.
#[derive(Debug, Clone, Default)]
pub struct DoneRecord {
    pub output_url: String,
    pub output_path: PathBuf,
    pub output_sha256: Option<Sha256>,
    pub output_size: u64,
    pub credits_states: Option<i64>,
    pub need_credits: Option<i64>,
    pub p_credits: Option<i64>,
    pub s_credits: Option<i64>,
    /// The raw JSON of the done reply.
    pub raw_response: String,
}

/// A failure, as recorded on the image.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The service's code, when the service gave one.
    pub code: Option<i64>,
    pub message: String,
    pub retryable: bool,
}

/// What [`Ledger::retry_failed`](crate::Ledger::retry_failed) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retried {
    /// Images back to `new`: the next run uploads them (a credit each).
    pub to_upload: u64,
    /// Jobs eraser had stopped waiting for, back to `processing`: the next run polls them.
    pub to_poll: u64,
}

/// A full image row.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    pub sha256: Sha256,
    pub size: u64,
    pub format: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub status: ImageStatus,
    pub job_id: Option<String>,
    pub output_url: Option<String>,
    pub output_path: Option<PathBuf>,
    pub output_sha256: Option<Sha256>,
    pub output_size: Option<u64>,
    pub attempts: u32,
    /// Uploads that may have been paid for besides the job the image holds: claims taken back
    /// from dead runs, and uploads whose reply was lost after the whole image had gone out.
    pub repeat_uploads: u32,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub retryable: Option<bool>,
    pub credits_states: Option<i64>,
    pub need_credits: Option<i64>,
    pub p_credits: Option<i64>,
    pub s_credits: Option<i64>,
    pub claimed_by: Option<RunId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A full input row.
#[derive(Debug, Clone, Serialize)]
pub struct InputRow {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub sha256: Sha256,
    pub planned_output: Option<PathBuf>,
    /// Set once the output file was written (or copied) for this input.
    pub output_path: Option<PathBuf>,
    pub last_run: Option<RunId>,
    pub last_seen: DateTime<Utc>,
    /// The run whose complete walk of this input's folder did not find it (deleted, moved, no
    /// longer usable); `None` while it is there.
    pub missing: Option<RunId>,
}

/// An input of a run together with its image's state (what `place` and `list` need).
#[derive(Debug, Clone, Serialize)]
pub struct InputState {
    pub input: InputRow,
    pub status: ImageStatus,
    pub image_output_path: Option<PathBuf>,
    pub image_output_sha256: Option<Sha256>,
    /// Size of the stored result, so an output in place is checked without another query.
    pub image_output_size: Option<u64>,
    pub output_url: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
}

/// A job the service is working on (status `processing`).
#[derive(Debug, Clone)]
pub struct InFlight {
    pub sha256: Sha256,
    pub job_id: String,
    pub size: u64,
    pub updated_at: DateTime<Utc>,
}

/// Images by status, from the maintained counts table (no scan).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub total: u64,
    pub new: u64,
    pub uploading: u64,
    pub processing: u64,
    pub done: u64,
    pub failed: u64,
}

/// Inputs, by their image's outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InputCounts {
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    /// Found files that are not images (inside folders).
    pub skipped: u64,
    /// Found files that could not be used.
    pub rejected: u64,
}

/// Failures grouped by code.
#[derive(Debug, Clone, Serialize)]
pub struct FailureGroup {
    pub code: Option<i64>,
    pub message: String,
    pub count: u64,
}

/// Credits summed over done images.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CreditsUsed {
    pub p_credits: i64,
    pub s_credits: i64,
    pub need_credits: i64,
}

/// Progress of one run: its images (those with an input seen by the run) by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    pub images: StatusCounts,
    /// Inputs seen by the run.
    pub inputs: u64,
}

/// A run's progress at its end, and whether it was a count kept by an earlier run over the
/// same folders in the same ledger state (see [`crate::Ledger::end_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndProgress {
    pub progress: RunProgress,
    pub reused: bool,
}

/// What `check_consistency` found (for tests and `eraser ledger verify`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsistencyReport {
    /// Lines of `PRAGMA integrity_check`; `["ok"]` when the file is sound.
    pub integrity: Vec<String>,
    /// Rows whose foreign keys point nowhere (`PRAGMA foreign_key_check`).
    pub foreign_key_violations: u64,
    /// The maintained counts table.
    pub counts_table: StatusCounts,
    /// The same counts from a full recount of the images table.
    pub recount: StatusCounts,
    /// The maintained input tallies.
    pub input_counts_table: InputCounts,
    /// The same tallies from a full recount of the inputs and rejected files.
    pub input_recount: InputCounts,
}

impl ConsistencyReport {
    /// True when the file is sound, every reference resolves and the counts are exact.
    pub fn is_ok(&self) -> bool {
        self.integrity == ["ok"]
            && self.foreign_key_violations == 0
            && self.counts_table == self.recount
            && self.input_counts_table == self.input_recount
    }
}
