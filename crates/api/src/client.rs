use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, ImageFormat, JobId, JobState, Result, Token};

/// Bounds for the client's own per-request retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (>= 1).
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, full jitter.
    pub base_delay: Duration,
    /// Cap on a single backoff.
    pub max_delay: Duration,
    /// Total time budget for one call including its retries.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// Told to the observer before each retry; lets the caller adapt (e.g. fewer jobs in flight on 429).
#[derive(Debug, Clone)]
pub struct RetryEvent {
    /// Which call: "create-job", "get-job" or "download".
    pub operation: &'static str,
    /// HTTP status when the failure had one (429, 500, ...).
    pub status: Option<u16>,
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    /// How long the client will wait before the next attempt.
    pub delay: Duration,
}

/// Builder for [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    _private: (),
}

impl ClientBuilder {
    pub fn base_url(self, _url: impl Into<String>) -> Self {
        self
    }
    pub fn product_serial(self, _serial: impl Into<String>) -> Self {
        self
    }
    pub fn product_code(self, _code: impl Into<String>) -> Self {
        self
    }
    pub fn token(self, _token: Option<Token>) -> Self {
        self
    }
    pub fn user_agent(self, _ua: impl Into<String>) -> Self {
        self
    }
    pub fn origin(self, _origin: impl Into<String>) -> Self {
        self
    }
    pub fn referer(self, _referer: impl Into<String>) -> Self {
        self
    }
    /// An extra header sent on every API call (never to the CDN).
    pub fn header(self, _name: impl Into<String>, _value: impl Into<String>) -> Self {
        self
    }
    pub fn connect_timeout(self, _d: Duration) -> Self {
        self
    }
    pub fn request_timeout(self, _d: Duration) -> Self {
        self
    }
    pub fn retry(self, _policy: RetryPolicy) -> Self {
        self
    }
    /// Largest JSON body accepted from the API.
    pub fn max_response_bytes(self, _n: u64) -> Self {
        self
    }
    /// Largest result file accepted from the CDN.
    pub fn max_download_bytes(self, _n: u64) -> Self {
        self
    }
    /// Largest input file uploaded.
    pub fn max_upload_bytes(self, _n: u64) -> Self {
        self
    }
    pub fn on_retry(self, _observer: Arc<dyn Fn(&RetryEvent) + Send + Sync>) -> Self {
        self
    }
    pub fn build(self) -> Result<Client> {
        Err(Error::Unimplemented)
    }
}

/// One image to upload.
#[derive(Debug, Clone)]
pub struct CreateJob<'a> {
    pub path: &'a Path,
    /// Filename sent in the multipart part; `None` = the path's file name.
    pub file_name: Option<&'a str>,
    /// When set, the bytes streamed are hashed on the way and the upload is aborted
    /// (before the body completes) if they do not match: never uploaded under the wrong hash.
    pub expected_sha256: Option<[u8; 32]>,
}

/// A result file written by [`Client::download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub sha256: [u8; 32],
    pub bytes: u64,
    pub format: ImageFormat,
}

/// The MagicEraser client. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    _private: (),
}

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder { _private: () }
    }

    pub async fn create_job(&self, _job: &CreateJob<'_>) -> Result<JobId> {
        Err(Error::Unimplemented)
    }

    pub async fn get_job(&self, _id: &JobId) -> Result<JobState> {
        Err(Error::Unimplemented)
    }

    pub async fn download(&self, _url: &str, _dest: &Path) -> Result<Downloaded> {
        Err(Error::Unimplemented)
    }
}
