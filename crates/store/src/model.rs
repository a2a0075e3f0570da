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

/// What one host does on the ledger, for `ledger status`: hosts with a run alive, a job in
/// flight or an image done since the time asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostActivity {
    pub host: String,
    /// Its runs not finished whose heartbeat is within the lease (and, on this host, whose
    /// process exists).
    pub runs_alive: u64,
    /// Jobs its runs submitted that the service still holds.
    pub in_flight: u64,
    /// Images whose result came since the time asked about (jobs its runs submitted).
    pub done_since: u64,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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

/// Every counter the ledger keeps, as kept or as recounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub images: StatusCounts,
    pub inputs: InputCounts,
    pub credits: CreditsUsed,
}

/// What `check_consistency` found (for tests and `eraser ledger verify`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsistencyReport {
    /// The database's own check (`PRAGMA integrity_check` on SQLite); `["ok"]` when sound.
    pub integrity: Vec<String>,
    /// Rows whose references point nowhere.
    pub foreign_key_violations: u64,
    /// Images by status as kept, and recounted.
    pub counts_table: StatusCounts,
    pub recount: StatusCounts,
    /// Inputs and files not used as kept, and recounted.
    pub input_counts_table: InputCounts,
    pub input_recount: InputCounts,
    /// Credits of done images as kept, and recounted.
    pub credits_table: CreditsUsed,
    pub credits_recount: CreditsUsed,
}

impl ConsistencyReport {
    pub(crate) fn new(
        integrity: Vec<String>,
        foreign_key_violations: u64,
        kept: Counted,
        recount: Counted,
    ) -> Self {
        Self {
            integrity,
            foreign_key_violations,
            counts_table: kept.images,
            recount: recount.images,
            input_counts_table: kept.inputs,
            input_recount: recount.inputs,
            credits_table: kept.credits,
            credits_recount: recount.credits,
        }
    }

    /// True when the database is sound, every reference resolves and every counter is exact.
    pub fn is_ok(&self) -> bool {
        self.integrity == ["ok"]
            && self.foreign_key_violations == 0
            && self.counts_table == self.recount
            && self.input_counts_table == self.input_recount
            && self.credits_table == self.credits_recount
    }
}
