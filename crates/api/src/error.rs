//! The one error type of the crate, and the rules that split retryable failures from permanent ones.

use std::path::PathBuf;
use std::time::Duration;

/// Everything the client can fail with; [`Error::is_retryable`] tells the caller whether
/// trying the same request again later can help.
///
/// Messages are sentences for the user. None of them ever contains the API token: headers are
/// never formatted, and text coming from the server is cleaned of control characters and of the
/// token before it lands here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection could not be made or broke (refused, reset, DNS, TLS, dropped mid-answer).
    /// `connect`: it failed while connecting, so nothing of the request was sent.
    /// `delivered`: the whole request had gone out (tracked for create-job only).
    #[error("network error talking to {url}: {detail}")]
    Transport {
        url: String,
        detail: String,
        connect: bool,
        delivered: bool,
    },
    /// No complete answer within the request timeout (connect included). `connect`: the
    /// connection was never made, so nothing of the request was sent. `delivered`: the whole
    /// request had gone out (tracked for create-job only).
    #[error("{url} did not answer within {} s", timeout.as_secs_f64())]
    Timeout {
        url: String,
        timeout: Duration,
        connect: bool,
        delivered: bool,
    },
    /// HTTP status outside 2xx (and not a failure envelope from the service).
    #[error("{}", http_sentence(*status, *retry_after))]
    Http {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The answer is not the service's JSON (an HTML error page, garbage); usually a hiccup.
    #[error("the answer from {url} is not the service's JSON: {reason}")]
    Decode { url: String, reason: String },
    /// The service answered with a failure code in its JSON envelope (not retryable).
    #[error("service refused with code {code}: {message}")]
    Api { code: i64, message: String },
    /// The input file cannot be uploaded (not an image, too large, not a file); fix the input.
    #[error("{}: {reason}", path.display())]
    InvalidInput { path: PathBuf, reason: String },
    /// The file's bytes no longer match the hash the caller gave; the upload was aborted
    /// before it completed, so the service never received it. Re-hash and try again.
    #[error("{}: the file changed since it was hashed; upload aborted", path.display())]
    InputChanged { path: PathBuf },
    /// A URL (or a redirect) that is not `http`/`https`; nothing was fetched from it.
    #[error("refusing to fetch {url}: only http and https URLs are allowed")]
    UnsupportedUrl { url: String },
    /// A downloaded result whose first bytes are not JPEG, PNG or WEBP.
    #[error("the result at {url} is not a JPEG, PNG or WEBP image")]
    NotAnImage { url: String },
    /// An answer larger than the configured bound; reading stopped at the bound.
    #[error("the answer from {url} is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// A download that ended before its announced length (or broke mid-way).
    #[error("the download from {url} stopped after {received} of {} bytes", expected_text(*expected))]
    Truncated {
        url: String,
        received: u64,
        expected: Option<u64>,
    },
    /// A well-formed answer that breaks the protocol (e.g. "done" without an output URL).
    #[error("the service broke its protocol: {reason}")]
    Protocol { reason: String },
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The client was configured with values it cannot use.
    #[error("invalid client configuration: {reason}")]
    Config { reason: String },
}

impl Error {
    /// True when the same request may succeed later (transport, timeout, 5xx, 408, 429, non-JSON
    /// body, truncated download).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } | Self::Decode { .. } => true,
            Self::Truncated { .. } => true,
            Self::Http { status, .. } => is_retryable_status(*status),
            Self::Api { .. }
            | Self::InvalidInput { .. }
            | Self::InputChanged { .. }
            | Self::UnsupportedUrl { .. }
            | Self::NotAnImage { .. }
            | Self::TooLarge { .. }
            | Self::Protocol { .. }
            | Self::Io { .. }
            | Self::Config { .. } => false,
        }
    }

    /// The last attempt could not even connect (refused, DNS, TLS, connect timeout): the
    /// service was not reached, so that attempt cannot have created anything.
    pub fn is_unreached(&self) -> bool {
        matches!(
            self,
            Self::Transport { connect: true, .. } | Self::Timeout { connect: true, .. }
        )
    }

    /// The whole request had gone out and no answer came back (connection cut, timeout): the
    /// service may have acted on it. For create-job, a job may exist and be charged for, and
    /// sending the image again may pay for it twice.
    pub fn maybe_delivered(&self) -> bool {
        matches!(
            self,
            Self::Transport {
                delivered: true,
                ..
            } | Self::Timeout {
                delivered: true,
                ..
            }
        )
    }

    /// Marks a connection failure or timeout of a request that had gone out whole as
    /// [`maybe_delivered`](Self::maybe_delivered); other errors are returned unchanged.
    pub(crate) fn after_delivery(mut self) -> Self {
        if let Self::Transport {
            connect: false,
            delivered,
            ..
        }
        | Self::Timeout {
            connect: false,
            delivered,
            ..
        } = &mut self
        {
            *delivered = true;
        }
        self
    }

    /// The server's `Retry-After`, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The service's failure code, for `Api` errors.
    pub fn api_code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status, for `Http` errors.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// 5xx, 408 (request timeout) and 429 (too many requests) are worth another try; other
/// statuses say the request itself is wrong.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

fn http_sentence(status: u16, retry_after: Option<Duration>) -> String {
    let mut text = format!("the server answered HTTP {status}");
    if let Some(reason) = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(wait) = retry_after {
        text.push_str(&format!(", asking to retry after {} s", wait.as_secs_f64()));
    }
    text
}

fn expected_text(expected: Option<u64>) -> String {
    expected.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string())
}

/// Longest piece of server-provided text (a message, a URL) kept in an error.
const MAX_FOREIGN_TEXT: usize = 300;

/// Makes server-provided text safe to print: control characters (terminal escapes, newlines)
/// become spaces, the token (if the server echoed it) is masked, and the length is bounded.
pub(crate) fn clean_foreign_text(text: &str, secret: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_FOREIGN_TEXT + 3));
    for (count, ch) in text.chars().enumerate() {
        if count == MAX_FOREIGN_TEXT {
            out.push('…');
            break;
        }
        out.push(if ch.is_control() { ' ' } else { ch });
    }
    // Masked after control characters became spaces, so a token echoed with a tab or newline
    // in place of its space is caught too.
    match secret {
        Some(secret) => mask_secret(&out, secret),
        None => out,
    }
}

/// Replaces the secret, each of its whitespace-separated parts long enough to be secret on
/// their own (`Bearer <value>` → `<value>`), and the secret with its whitespace changed.
pub(crate) fn mask_secret(text: &str, secret: &str) -> String {
    let mut out = text.to_owned();
    let secret = secret.trim();
    if secret.is_empty() {
        return out;
    }
    let spaced: String = secret
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    for needle in [secret, spaced.as_str()] {
        if out.contains(needle) {
            out = out.replace(needle, "<redacted>");
        }
    }
    for part in secret.split_whitespace().filter(|p| p.len() >= 8) {
        if out.contains(part) {
            out = out.replace(part, "<redacted>");
        }
    }
    out
}

/// A URL as shown in errors: no query string (signed CDN parameters are noise), no user info,
/// cleaned and bounded like any server-provided text.
pub(crate) fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Both only fail for URLs without a host, which then have no user info to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    clean_foreign_text(shown.as_str(), None)
}

/// Like [`display_url`] for text that may not even parse as a URL.
pub(crate) fn display_url_text(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(url) => display_url(&url),
        Err(_) => clean_foreign_text(text, None),
    }
}

/// The innermost cause of a transport failure, as a short sentence ("connection refused").
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    clean_foreign_text(&current.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_that_reached_the_service_and_lost_its_answer_may_have_been_delivered() {
        let cut = Error::Transport {
            url: "u".into(),
            detail: "connection reset".into(),
            connect: false,
            delivered: false,
        };
        assert!(!cut.maybe_delivered(), "not before the caller says so");
        assert!(cut.after_delivery().maybe_delivered());
        let timed_out = Error::Timeout {
            url: "u".into(),
            timeout: Duration::from_secs(1),
            connect: false,
            delivered: false,
        };
        assert!(timed_out.after_delivery().maybe_delivered());
        let refused = Error::Transport {
            url: "u".into(),
            detail: "connection refused".into(),
            connect: true,
            delivered: false,
        };
        assert!(!refused.after_delivery().maybe_delivered());
        let answered = Error::Http {
            status: 500,
            retry_after: None,
        };
        assert!(!answered.after_delivery().maybe_delivered());
    }

    #[test]
    fn server_errors_and_throttling_are_retryable_other_client_errors_are_not() {
        for status in [500, 502, 503, 504, 408, 429] {
            let err = Error::Http {
                status,
                retry_after: None,
            };
            assert!(err.is_retryable(), "{status} should be retryable");
        }
        for status in [400, 401, 403, 404, 413, 301] {
            let err = Error::Http {
                status,
                retry_after: None,
            };
            assert!(!err.is_retryable(), "{status} should be permanent");
        }
    }

    #[test]
    fn api_refusals_are_permanent_and_carry_their_code() {
        let err = Error::Api {
            code: 300010,
            message: "no credits".into(),
        };
        assert!(!err.is_retryable());
        assert_eq!(err.api_code(), Some(300010));
        assert_eq!(
            err.to_string(),
            "service refused with code 300010: no credits"
        );
    }

    #[test]
    fn retry_after_is_reported_only_for_http_errors() {
        let wait = Duration::from_secs(3);
        let err = Error::Http {
            status: 429,
            retry_after: Some(wait),
        };
        assert_eq!(err.retry_after(), Some(wait));
        assert!(err.to_string().contains("429"));
        assert!(err.to_string().contains("retry after 3 s"));
        assert_eq!(Error::Protocol { reason: "x".into() }.retry_after(), None);
    }

    #[test]
    fn foreign_text_loses_control_characters_and_the_token() {
        let cleaned = clean_foreign_text("bad\x1b[31m token sk-123\nnext", Some("sk-123"));
        assert_eq!(cleaned, "bad [31m token <redacted> next");
    }

    #[test]
    fn foreign_text_is_bounded() {
        let long = "x".repeat(10_000);
        assert!(clean_foreign_text(&long, None).chars().count() <= MAX_FOREIGN_TEXT + 1);
    }

    #[test]
    fn urls_in_errors_lose_query_and_credentials() {
        let url = url::Url::parse("https://user:pw@cdn.example/out.jpg?sig=abc#frag").unwrap();
        assert_eq!(display_url(&url), "https://cdn.example/out.jpg");
    }
}
