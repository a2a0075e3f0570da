//! Any bytes as a create-job reply body: the parse never panics, ends in a pollable job id or a
//! Decode / Api / Protocol error, and no error shows the configured token.
#![no_main]

use eraser_api::Error;
use eraser_api::fuzzing::{PLANTED_TOKEN, create_job_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match create_job_reply(body, Some(PLANTED_TOKEN)) {
        Ok(id) => {
            let id = id.as_str();
            assert!(!matches!(id, "" | "." | ".."), "unpollable id {id:?}");
            assert!(id.len() <= 200, "id of {} bytes", id.len());
            assert!(!id.chars().any(char::is_control), "{id:?}");
        }
        Err(err) => {
            assert!(
                matches!(
                    err,
                    Error::Decode { .. } | Error::Api { .. } | Error::Protocol { .. }
                ),
                "unexpected error {err:?}"
            );
            assert_ne!(err.api_code(), Some(100000), "success read as a refusal");
            let shown = err.to_string();
            assert!(!shown.contains(PLANTED_TOKEN), "token in {shown}");
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }
});
