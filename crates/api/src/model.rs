use std::fmt;

use serde::{Deserialize, Serialize};

/// A job id as issued by `create-job` (opaque text, a UUID in practice).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `get-job` says about a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Code 300006: still being processed.
    InProgress,
    /// Code 100000: finished; the result is at `output_urls[0]`.
    Done(JobDone),
    /// Any other code: the service gave up on this image.
    Failed { code: i64, message: String },
}

/// The `result` of a finished job, plus the raw reply for the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDone {
    pub output_urls: Vec<String>,
    pub credits_states: Option<i64>,
    pub need_credits: Option<i64>,
    pub p_credits: Option<i64>,
    pub s_credits: Option<i64>,
    /// The whole JSON body as received.
    pub raw: String,
}
