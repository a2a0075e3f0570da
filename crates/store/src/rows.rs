//! Rows as the databases return them (plain integers, text, byte strings, timestamps) and
//! their checked conversion into the public row types, shared by both backends. A value that
//! does not decode is [`crate::Error::InvalidData`] naming the ledger.

use chrono::{DateTime, Utc};

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;

use crate::{
    Counted, CreditsUsed, Error, ImageRow, ImageStatus, InputCounts, InputRow, InputState,
    RejectedRow, Result, RunId, Sha256, StatusCounts,
};

/// An `images` row (every column but the raw response).
pub(crate) struct RawImage {
    pub sha256: Vec<u8>,
    pub size: i64,
    pub format: String,
    pub status: String,
    pub claimed_by: Option<i64>,
    pub job_id: Option<String>,
    pub output_url: Option<String>,
    pub output_path: Option<Vec<u8>>,
    pub output_sha256: Option<String>,
    pub output_size: Option<i64>,
    pub attempts: i64,
    pub repeat_uploads: i64,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub retryable: Option<bool>,
    pub credits_states: Option<i64>,
    pub need_credits: Option<i64>,
    pub p_credits: Option<i64>,
    pub s_credits: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An `inputs` row.
pub(crate) struct RawInput {
    pub path: Vec<u8>,
    pub size: i64,
    pub mtime_ns: i64,
    pub sha256: Vec<u8>,
    pub planned_output: Option<Vec<u8>>,
    pub output_path: Option<Vec<u8>>,
    pub last_run: Option<i64>,
    pub last_seen: DateTime<Utc>,
    pub missing: Option<i64>,
}

/// A `rejected_inputs` row, before its kind is checked.
pub(crate) struct RawRejected {
    pub path: Vec<u8>,
    pub kind: String,
    pub reason: String,
    pub run: i64,
    pub seen_at: DateTime<Utc>,
}

/// An `inputs` row joined with the state of its image.
pub(crate) struct RawInputState {
    pub path: Vec<u8>,
    pub size: i64,
    pub mtime_ns: i64,
    pub sha256: Vec<u8>,
    pub planned_output: Option<Vec<u8>>,
    pub output_path: Option<Vec<u8>>,
    pub last_run: Option<i64>,
    pub last_seen: DateTime<Utc>,
    pub missing: Option<i64>,
    pub status: String,
    pub image_output_path: Option<Vec<u8>>,
    pub image_output_sha256: Option<String>,
    pub image_output_size: Option<i64>,
    pub output_url: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
}

/// Decodes rows of the ledger shown as the wrapped name (named in errors).
pub(crate) struct Decoder<'a>(pub &'a str);

impl Decoder<'_> {
    fn invalid(&self, detail: impl std::fmt::Display) -> Error {
        Error::invalid(self.0, detail)
    }

    /// An image's key: its 32 bytes.
    pub(crate) fn decode_sha(&self, bytes: &[u8]) -> Result<Sha256> {
        <[u8; 32]>::try_from(bytes)
            .map(Sha256)
            .map_err(|_| self.invalid(format!("sha256 of {} bytes, not 32", bytes.len())))
    }

    /// A result's SHA-256, stored as hex text.
    pub(crate) fn decode_opt_hex_sha(&self, text: Option<String>) -> Result<Option<Sha256>> {
        text.map(|t| {
            t.parse()
                .map_err(|e| self.invalid(format!("sha256 {t:?}: {e}")))
        })
        .transpose()
    }

    pub(crate) fn decode_status(&self, text: &str) -> Result<ImageStatus> {
        text.parse().map_err(|e: String| self.invalid(e))
    }

    pub(crate) fn decode_image(&self, r: RawImage) -> Result<ImageRow> {
        Ok(ImageRow {
            sha256: self.decode_sha(&r.sha256)?,
            size: to_u64(r.size),
            format: r.format,
            status: self.decode_status(&r.status)?,
            job_id: r.job_id,
            output_url: r.output_url,
            output_path: r.output_path.map(path_from_bytes),
            output_sha256: self.decode_opt_hex_sha(r.output_sha256)?,
            output_size: r.output_size.map(to_u64),
            attempts: to_u32(r.attempts),
            repeat_uploads: to_u32(r.repeat_uploads),
            error_code: r.error_code,
            error_message: r.error_message,
            retryable: r.retryable,
            credits_states: r.credits_states,
            need_credits: r.need_credits,
            p_credits: r.p_credits,
            s_credits: r.s_credits,
            claimed_by: r.claimed_by.map(RunId),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    pub(crate) fn decode_input(&self, r: RawInput) -> Result<InputRow> {
        Ok(InputRow {
            path: path_from_bytes(r.path),
            size: to_u64(r.size),
            mtime_ns: r.mtime_ns,
            sha256: self.decode_sha(&r.sha256)?,
            planned_output: r.planned_output.map(path_from_bytes),
            output_path: r.output_path.map(path_from_bytes),
            last_run: r.last_run.map(RunId),
            last_seen: r.last_seen,
            missing: r.missing.map(RunId),
        })
    }

    pub(crate) fn decode_input_state(&self, r: RawInputState) -> Result<InputState> {
        let input = RawInput {
            path: r.path,
            size: r.size,
            mtime_ns: r.mtime_ns,
            sha256: r.sha256,
            planned_output: r.planned_output,
            output_path: r.output_path,
            last_run: r.last_run,
            last_seen: r.last_seen,
            missing: r.missing,
        };
        Ok(InputState {
            input: self.decode_input(input)?,
            status: self.decode_status(&r.status)?,
            image_output_path: r.image_output_path.map(path_from_bytes),
            image_output_sha256: self.decode_opt_hex_sha(r.image_output_sha256)?,
            image_output_size: r.image_output_size.map(to_u64),
            output_url: r.output_url,
            error_code: r.error_code,
            error_message: r.error_message,
        })
    }

    pub(crate) fn decode_rejected(&self, r: RawRejected) -> Result<RejectedRow> {
        Ok(RejectedRow {
            path: path_from_bytes(r.path),
            kind: r.kind.parse().map_err(|e: String| self.invalid(e))?,
            reason: r.reason,
            run: r.run,
            seen_at: r.seen_at,
        })
    }
}

/// Counters by name, as a backend read them (shards summed).
pub(crate) struct Counters(pub Vec<(String, i64)>);

impl Counters {
    fn get(&self, name: &str) -> i64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Every kept count (the version of the inputs, not a count, is not among them).
    pub(crate) fn counted(&self) -> Counted {
        let [new, uploading, processing, done, failed] =
            ImageStatus::ALL.map(|s| to_u64(self.get(&format!("images_{s}"))));
        Counted {
            images: StatusCounts {
                total: new + uploading + processing + done + failed,
                new,
                uploading,
                processing,
                done,
                failed,
            },
            inputs: InputCounts {
                total: to_u64(self.get("inputs")),
                done: to_u64(self.get("inputs_done")),
                failed: to_u64(self.get("inputs_failed")),
                skipped: to_u64(self.get("rejected_skipped")),
                rejected: to_u64(self.get("rejected_error")),
            },
            credits: CreditsUsed {
                p_credits: self.get("p_credits"),
                s_credits: self.get("s_credits"),
                need_credits: self.get("need_credits"),
            },
        }
    }
}

/// A stored path back from its raw bytes.
pub(crate) fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

/// Counts and sizes are non-negative in the schema; a negative one decodes as 0.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Sizes larger than a database integer saturate (no real file comes close).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Counters saturate instead of wrapping.
pub(crate) fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(if v < 0 { 0 } else { u32::MAX })
}

/// Adds per-host counts into `hosts`, keeping them ordered by host name.
pub(crate) fn merge_host_counts(
    hosts: &mut Vec<crate::HostActivity>,
    counts: impl IntoIterator<Item = (String, u64)>,
    field: fn(&mut crate::HostActivity) -> &mut u64,
) {
    for (host, n) in counts {
        let at = match hosts.binary_search_by(|h| h.host.as_str().cmp(&host)) {
            Ok(at) => at,
            Err(at) => {
                hosts.insert(
                    at,
                    crate::HostActivity {
                        host,
                        ..crate::HostActivity::default()
                    },
                );
                at
            }
        };
        *field(&mut hosts[at]) += n;
    }
}
