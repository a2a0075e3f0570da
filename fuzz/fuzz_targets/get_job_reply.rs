//! Any bytes as a get-job reply body: the parse never panics, ends in InProgress / Done / Failed
//! or a Decode / Protocol error, and no message or error shows the configured token.
#![no_main]

use eraser_api::fuzzing::{PLANTED_TOKEN, get_job_reply};
use eraser_api::{Error, JobState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match get_job_reply(body, Some(PLANTED_TOKEN)) {
        Ok(JobState::InProgress) => {}
        Ok(JobState::Done(done)) => {
            assert!(!done.output_urls.is_empty(), "done without output URL");
            assert!(
                done.output_urls.iter().all(|url| !url.trim().is_empty()),
                "blank output URL in {:?}",
                done.output_urls
            );
        }
        Ok(JobState::Failed { code, message }) => {
            assert!(
                code != 100000 && code != 300006,
                "code {code} read as failed"
            );
            assert!(!message.chars().any(char::is_control), "{message:?}");
            assert!(!message.contains(PLANTED_TOKEN), "token in {message:?}");
        }
        Err(err) => {
            assert!(
                matches!(err, Error::Decode { .. } | Error::Protocol { .. }),
                "unexpected error {err:?}"
            );
            assert!(!err.to_string().contains(PLANTED_TOKEN), "token in {err}");
        }
    }
});
