//! Client for the MagicEraser watermark-removal web API.
//!
//! # The protocol
//!
//! Three exchanges, as captured from the service's web app:
//!
//! 1. **create-job** — `POST {base}/api/magiceraser/v3/ai-image-watermark-remove-auto/create-job`,
//!    `multipart/form-data` with one file part `original_image_file` (its Content-Type taken from
//!    the image's magic bytes). Answer: `{"code":100000,"result":{"job_id":"…"},"message":{…}}`.
//! 2. **get-job** — `GET {base}/api/magiceraser/v2/ai-remove-object/get-job/{job_id}`, polled.
//!    `code` 300006 means still in progress; 100000 means done, with `result.output_url` (a list
//!    of URLs on the service's CDN) and credit counters; any other code is a failure, explained
//!    in `message.en` (or another language).
//! 3. **download** — a plain `GET` of the output URL on the CDN, a different origin.
//!
//! API calls carry `Product-Serial`, `Product-Code` (`067003`), `Origin`/`Referer`
//! (`https://magiceraser.org`), `Accept: */*`, a `User-Agent` naming eraser, and `Authorization`
//! only when a token is configured. None of those reach the CDN.
//!
//! # What the client adds
//!
//! - Retries of retryable failures ([`Error::is_retryable`]) with exponential backoff, full
//!   jitter and `Retry-After`, bounded by a [`RetryPolicy`]; an observer hears of each retry.
//! - Size bounds on every body read, timeouts on every request, uploads streamed from disk
//!   (and optionally checked against the caller's sha256 on the way), downloads written
//!   atomically.
//! - A [`Token`] that never shows in `Debug`, `Display` or error messages.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//!
//! use eraser_api::{Client, CreateJob, JobState, Token};
//!
//! # async fn run() -> eraser_api::Result<()> {
//! let client = Client::builder()
//!     .product_serial("d92a85a2-7f15-40d0-975d-518d1610eb71")
//!     .token(std::env::var("ERASER_TOKEN").ok().map(Token::new))
//!     .build()?;
//!
//! let job = CreateJob { path: Path::new("photo.jpg"), file_name: None, expected_sha256: None };
//! let id = client.create_job(&job).await?;
//! let done = loop {
//!     match client.get_job(&id).await? {
//!         JobState::InProgress => tokio::time::sleep(Duration::from_secs(2)).await,
//!         JobState::Done(done) => break done,
//!         JobState::Failed { code, message } => {
//!             eprintln!("the service gave up on photo.jpg: {code} {message}");
//!             return Ok(());
//!         }
//!     }
//! };
//! let saved = client.download(&done.output_urls[0], Path::new("photo.clean.jpg")).await?;
//! println!("{} bytes, sha256 {}", saved.bytes, hex::encode(saved.sha256));
//! # Ok(())
//! # }
//! ```

pub mod atomic;
mod client;
mod create_job;
mod download;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod get_job;
mod model;
mod response;
mod retry;
mod secret;

pub use client::{
    Client, ClientBuilder, CreateJob, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_ORIGIN, DEFAULT_REFERER,
    DEFAULT_REQUEST_TIMEOUT, Downloaded,
};
pub use create_job::Submitted;
pub use error::Error;
pub use format::ImageFormat;
pub use model::{JobDone, JobId, JobState};
pub use retry::{RetryEvent, RetryPolicy};
pub use secret::Token;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default API origin of the real service.
pub const DEFAULT_BASE_URL: &str = "https://api.magiceraser.org";
/// Product code the web app sends.
pub const DEFAULT_PRODUCT_CODE: &str = "067003";
