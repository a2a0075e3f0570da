//! Entry points for the fuzz targets (`fuzz/`) and the property tests: the reply parsers exactly
//! as [`Client::get_job`](crate::Client::get_job) and
//! [`Client::create_job`](crate::Client::create_job) run them on a body they have read.
//!
//! Hidden from the docs and not a stable API: it exists so hostile bytes can be thrown at the
//! parsing without a server in the loop.

use url::Url;

use crate::create_job::job_id_of;
use crate::get_job::job_state_of;
use crate::response::decode_answer;
use crate::{DEFAULT_BASE_URL, Error, JobId, JobState, Result};

/// A token for callers to configure and then look for: no parsed message or error may show it.
pub const PLANTED_TOKEN: &str = "sk-planted-token-0451";

/// The job id the get-job parser is told it is asking about.
pub const JOB_ID: &str = "5725caa4-2be6-4dd1-916f-d62e772624c2";

/// Parses a 2xx get-job body as `Client::get_job` does, with `token` as the configured token.
///
/// Never panics. `Ok` is the job's state; `Err` is [`Error::Decode`] (not the service's JSON)
/// or [`Error::Protocol`] (JSON that breaks the protocol).
pub fn get_job_reply(body: &[u8], token: Option<&str>) -> Result<JobState> {
    let answer = decode_answer(body, &reply_url()?)?;
    job_state_of(answer, &JobId::new(JOB_ID), token)
}

/// Parses a 2xx create-job body as `Client::create_job` does, with `token` as the configured
/// token.
///
/// Never panics. `Ok` is the new job's id; `Err` is [`Error::Decode`], [`Error::Api`] (a
/// failure code) or [`Error::Protocol`] (success without a usable `job_id`).
pub fn create_job_reply(body: &[u8], token: Option<&str>) -> Result<JobId> {
    let answer = decode_answer(body, &reply_url()?)?;
    job_id_of(answer, token)
}

/// The URL a decode error names; the real client names the endpoint it called.
fn reply_url() -> Result<Url> {
    Url::parse(DEFAULT_BASE_URL).map_err(|e| Error::Config {
        reason: format!("the default base URL does not parse: {e}"),
    })
}
