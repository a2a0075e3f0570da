//! Wire types: the service's JSON envelope, job ids and job states.
//!
//! Every answer is `{"code": <int>, "result": {...}, "message": {"en": "...", "zh": "...", ...}}`.
//! Parsing is lenient on purpose: unknown fields are ignored, optional ones may be missing or of
//! an unexpected type, and only what a decision needs (the code, a job id, an output URL) is
//! required.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `code` of a successful call (job created, job done).
pub(crate) const CODE_SUCCESS: i64 = 100000;
/// `code` of a job still being processed.
pub(crate) const CODE_IN_PROGRESS: i64 = 300006;

/// Longest job id accepted from the service (a UUID has 36 characters).
const MAX_JOB_ID_LEN: usize = 200;

/// A job id as issued by `create-job` (opaque text, a UUID in practice).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// Wraps an id, e.g. one read back from the ledger.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    /// The id as text.
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
    /// Where the results can be fetched; never empty, no empty strings.
    pub output_urls: Vec<String>,
    pub credits_states: Option<i64>,
    pub need_credits: Option<i64>,
    pub p_credits: Option<i64>,
    pub s_credits: Option<i64>,
    /// The whole JSON body as received.
    pub raw: String,
}

/// The service's reply envelope, decoded leniently.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub code: i64,
    /// `result` when it is an object; anything else reads as empty.
    pub result: Map<String, Value>,
    /// `message.en`, else the first text in any language, else empty.
    pub message: String,
}

/// Why a body is not an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvelopeError {
    /// Not JSON at all (an HTML page, garbage).
    NotJson,
    /// JSON, but without an integer `code`.
    NoCode,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotJson => "the body is not JSON",
            Self::NoCode => "the JSON has no numeric \"code\"",
        })
    }
}

impl Envelope {
    /// Decodes a body; the `code` may be a number or a numeric string.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| EnvelopeError::NotJson)?;
        let Value::Object(mut top) = value else {
            return Err(EnvelopeError::NoCode);
        };
        let code = top
            .get("code")
            .and_then(as_integer)
            .ok_or(EnvelopeError::NoCode)?;
        let result = match top.remove("result") {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let message = top.get("message").map(message_text).unwrap_or_default();
        Ok(Self {
            code,
            result,
            message,
        })
    }

    /// `result.job_id` of a successful create-job, checked to be usable as an id.
    pub(crate) fn job_id(&self) -> Result<JobId, String> {
        let id = match self.result.get("job_id") {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err("create-job succeeded but result.job_id is not text".into()),
            None => return Err("create-job succeeded but its reply has no result.job_id".into()),
        };
        if id.len() > MAX_JOB_ID_LEN || id.chars().any(char::is_control) {
            return Err(
                "create-job returned a job_id that is too long or has control characters".into(),
            );
        }
        if !crate::client::usable_in_path(&id) {
            return Err(format!(
                "create-job returned the job_id {id:?}, which cannot be polled"
            ));
        }
        Ok(JobId(id))
    }

    /// The state a get-job reply describes; `raw` is the body it was parsed from.
    pub(crate) fn job_state(self, raw: String) -> Result<JobState, String> {
        match self.code {
            CODE_IN_PROGRESS => Ok(JobState::InProgress),
            CODE_SUCCESS => {
                let output_urls = output_urls(self.result.get("output_url"));
                if output_urls.is_empty() {
                    return Err("the job is reported done but its reply has no output_url".into());
                }
                let int = |key: &str| self.result.get(key).and_then(as_integer);
                Ok(JobState::Done(JobDone {
                    output_urls,
                    credits_states: int("credits_states"),
                    need_credits: int("need_credits"),
                    p_credits: int("p_credits"),
                    s_credits: int("s_credits"),
                    raw,
                }))
            }
            code => Ok(JobState::Failed {
                code,
                message: self.message,
            }),
        }
    }
}

/// An integer given as a JSON number (integral) or as a numeric string.
fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `message.en`, else the first non-empty text of any language, else a bare string message.
fn message_text(message: &Value) -> String {
    match message {
        Value::String(text) => text.clone(),
        Value::Object(langs) => langs
            .get("en")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .or_else(|| {
                langs
                    .values()
                    .filter_map(Value::as_str)
                    .find(|t| !t.is_empty())
            })
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// `output_url` as a list of non-empty strings; a lone string is accepted too.
fn output_urls(value: Option<&Value>) -> Vec<String> {
    let texts: Vec<&str> = match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    texts
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED_CREATE_JOB: &str = include_str!("../tests/fixtures/create_job_response.json");
    const CAPTURED_GET_JOB_DOING: &str = include_str!("../tests/fixtures/get_job_doing.json");
    const CAPTURED_GET_JOB_DONE: &str = include_str!("../tests/fixtures/get_job_done.json");

    #[test]
    fn captured_create_job_reply_yields_its_job_id() {
        let envelope = Envelope::parse(CAPTURED_CREATE_JOB.as_bytes()).unwrap();
        assert_eq!(envelope.code, CODE_SUCCESS);
        assert_eq!(envelope.message, "Request Success");
        assert_eq!(
            envelope.job_id().unwrap(),
            JobId::new("5725caa4-2be6-4dd1-916f-d62e772624c2")
        );
    }

    #[test]
    fn captured_get_job_doing_reply_is_in_progress() {
        let envelope = Envelope::parse(CAPTURED_GET_JOB_DOING.as_bytes()).unwrap();
        assert_eq!(envelope.message, "Image generation in progress.");
        let state = envelope.job_state(CAPTURED_GET_JOB_DOING.into()).unwrap();
        assert_eq!(state, JobState::InProgress);
    }

    #[test]
    fn captured_get_job_done_reply_is_parsed_field_by_field() {
        let envelope = Envelope::parse(CAPTURED_GET_JOB_DONE.as_bytes()).unwrap();
        let state = envelope.job_state(CAPTURED_GET_JOB_DONE.into()).unwrap();
        let expected = JobDone {
            output_urls: vec![
                "https://cdn.magiceraser.org/datarm7/magiceraser/image/remove-watermark/\
                 2025-11-03/output/5725caa4-2be6-4dd1-916f-d62e772624c2.jpg"
                    .into(),
            ],
            credits_states: Some(2),
            need_credits: Some(0),
            p_credits: Some(0),
            s_credits: Some(0),
            raw: CAPTURED_GET_JOB_DONE.into(),
        };
        assert_eq!(state, JobState::Done(expected));
    }

    proptest::proptest! {
        #[test]
        fn any_body_parses_or_is_refused_without_panicking(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(envelope) = Envelope::parse(&body) {
                let _ = envelope.job_id();
                let _ = envelope.job_state(String::new());
            }
        }

        #[test]
        fn every_code_but_success_and_progress_is_a_failed_job(code in proptest::prelude::any::<i64>()) {
            proptest::prop_assume!(code != CODE_SUCCESS && code != CODE_IN_PROGRESS);
            let body = format!(r#"{{"code":{code},"message":{{"en":"why"}}}}"#);
            let state = Envelope::parse(body.as_bytes()).unwrap().job_state(body.clone()).unwrap();
            proptest::prop_assert_eq!(state, JobState::Failed { code, message: "why".into() });
        }
    }

    #[test]
    fn message_prefers_english_then_any_language() {
        let body = br#"{"code":300010,"message":{"zh":"\u5931\u8d25","en":"Failed"}}"#;
        assert_eq!(Envelope::parse(body).unwrap().message, "Failed");
        let body = br#"{"code":300010,"message":{"zh":"\u5931\u8d25"}}"#;
        assert_eq!(Envelope::parse(body).unwrap().message, "\u{5931}\u{8d25}");
        let body = br#"{"code":300010}"#;
        assert_eq!(Envelope::parse(body).unwrap().message, "");
    }

    #[test]
    fn code_may_be_a_numeric_string() {
        assert_eq!(
            Envelope::parse(br#"{"code":"300006"}"#).unwrap().code,
            300006
        );
    }

    #[test]
    fn html_is_not_json_and_json_without_code_is_refused() {
        assert_eq!(
            Envelope::parse(b"<html>502</html>"),
            Err(EnvelopeError::NotJson)
        );
        assert_eq!(
            Envelope::parse(br#"{"status":"ok"}"#),
            Err(EnvelopeError::NoCode)
        );
        assert_eq!(Envelope::parse(b"[1,2]"), Err(EnvelopeError::NoCode));
    }

    #[test]
    fn done_without_output_url_is_a_protocol_error() {
        for body in [
            r#"{"code":100000,"result":{}}"#,
            r#"{"code":100000,"result":{"output_url":[]}}"#,
            r#"{"code":100000,"result":{"output_url":[""]}}"#,
            r#"{"code":100000}"#,
        ] {
            let envelope = Envelope::parse(body.as_bytes()).unwrap();
            assert!(envelope.job_state(body.into()).is_err(), "{body}");
        }
    }

    #[test]
    fn done_with_only_output_url_tolerates_missing_credits() {
        let body =
            r#"{"code":100000,"result":{"output_url":"https://cdn/x.jpg","p_credits":"n/a"}}"#;
        let state = Envelope::parse(body.as_bytes())
            .unwrap()
            .job_state(body.into())
            .unwrap();
        let JobState::Done(done) = state else {
            panic!("not done: {state:?}")
        };
        assert_eq!(done.output_urls, ["https://cdn/x.jpg"]);
        assert_eq!(done.p_credits, None);
        assert_eq!(done.credits_states, None);
    }

    #[test]
    fn any_other_code_is_a_failed_job_with_its_message() {
        let body = r#"{"code":300011,"result":{},"message":{"en":"Image processing failed"}}"#;
        let state = Envelope::parse(body.as_bytes())
            .unwrap()
            .job_state(body.into())
            .unwrap();
        assert_eq!(
            state,
            JobState::Failed {
                code: 300011,
                message: "Image processing failed".into()
            }
        );
    }

    #[test]
    fn job_id_must_be_present_and_sane() {
        let ok = Envelope::parse(br#"{"code":100000,"result":{"job_id":"abc"}}"#).unwrap();
        assert_eq!(ok.job_id().unwrap().as_str(), "abc");
        for body in [
            r#"{"code":100000,"result":{}}"#,
            r#"{"code":100000,"result":{"job_id":""}}"#,
            r#"{"code":100000,"result":{"job_id":".."}}"#,
            r#"{"code":100000,"result":{"job_id":"a\nb"}}"#,
            r#"{"code":100000,"result":{"job_id":{"x":1}}}"#,
        ] {
            assert!(
                Envelope::parse(body.as_bytes()).unwrap().job_id().is_err(),
                "{body}"
            );
        }
    }
}
