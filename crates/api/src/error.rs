use std::path::PathBuf;
use std::time::Duration;

/// Everything the client can fail with; [`Error::is_retryable`] tells the caller whether
/// trying the same request again later can help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder until the implementation lands.
    #[error("not implemented")]
    Unimplemented,
    /// The service answered with a failure code in its JSON envelope (not retryable).
    #[error("service refused with code {code}: {message}")]
    Api { code: i64, message: String },
    /// The input file cannot be uploaded (not an image, unreadable, changed); fix the input.
    #[error("{}: {reason}", path.display())]
    InvalidInput { path: PathBuf, reason: String },
    /// HTTP status outside 2xx.
    #[error("HTTP {status}")]
    Http { status: u16, retry_after: Option<Duration> },
}

impl Error {
    /// True when the same request may succeed later (transport, 5xx, 408, 429, non-JSON body).
    pub fn is_retryable(&self) -> bool {
        false
    }
    /// The server's `Retry-After`, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// The service's failure code, for `Api` errors.
    pub fn api_code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}
