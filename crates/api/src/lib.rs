//! Client for the MagicEraser watermark-removal web API.
//!
//! INTERFACE CONTRACT (kept stable for the cli crate; the implementation fills in the bodies):
//! - [`Client::builder`] → [`ClientBuilder`] → [`Client`] (cheap to clone).
//! - [`Client::create_job`] uploads one image and returns its [`JobId`].
//! - [`Client::get_job`] asks for a job's [`JobState`].
//! - [`Client::download`] fetches a result from the CDN into a file, atomically.
//! - [`ImageFormat::detect`] sniffs JPEG / PNG / WEBP by magic bytes.
//! - [`Error`] says whether the caller may retry ([`Error::is_retryable`]).

mod client;
mod error;
mod format;
mod model;
mod secret;

pub use client::{Client, ClientBuilder, CreateJob, Downloaded, RetryEvent, RetryPolicy};
pub use error::Error;
pub use format::ImageFormat;
pub use model::{JobDone, JobId, JobState};
pub use secret::Token;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default API origin of the real service.
pub const DEFAULT_BASE_URL: &str = "https://api.magiceraser.org";
/// Product code the web app sends.
pub const DEFAULT_PRODUCT_CODE: &str = "067003";
