//! Properties of the get-job and create-job reply parsers on hostile bodies, run through the
//! same entry points the fuzz targets use (`eraser_api::fuzzing`): whatever the body, the parse
//! ends in one of the documented shapes, never a panic, and nothing it keeps is unsafe to print.

use eraser_api::fuzzing::{PLANTED_TOKEN, create_job_reply, get_job_reply};
use eraser_api::{Error, JobState};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The token the client is configured with; bodies echo it now and then.
const TOKEN: &str = PLANTED_TOKEN;
/// Longest printable server text: 300 characters and an ellipsis.
const MAX_SHOWN_CHARS: usize = 301;

/// Text a hostile server might send: empty, dots, the token inside anything, control
/// characters, long runs, any unicode.
fn texts() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("  ".to_owned()),
        Just(TOKEN.to_owned()),
        "[a-z0-9./%-]{0,12}",
        "https://cdn\\.example/[a-z]{1,8}\\.jpg",
        any::<String>(),
        ".{290,320}",
        (any::<String>(), any::<String>()).prop_map(|(a, b)| format!("{a}{TOKEN}\n{b}")),
    ]
    .boxed()
}

/// Any JSON scalar, text included.
fn scalars() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        texts().prop_map(Value::from),
    ]
    .boxed()
}

/// `code` values: the two meaningful ones as numbers and strings, and anything else.
fn codes() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => Just(json!(100000)),
        2 => Just(json!(300006)),
        1 => Just(json!("100000")),
        1 => Just(json!(" 300006 ")),
        1 => Just(json!(100000.0)),
        2 => any::<i64>().prop_map(Value::from),
        1 => scalars(),
    ]
    .boxed()
}

/// `result.output_url`: a list (of texts or junk), a lone text, or junk.
fn output_urls() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => vec(prop_oneof![3 => texts().prop_map(Value::from), 1 => scalars()], 0..3)
            .prop_map(Value::from),
        1 => texts().prop_map(Value::from),
        1 => scalars(),
    ]
    .boxed()
}

/// `result`: an object with some of the known keys, or something that is not an object.
fn results() -> BoxedStrategy<Value> {
    let object = (
        option::weighted(0.8, output_urls()),
        option::weighted(0.8, prop_oneof![texts().prop_map(Value::from), scalars()]),
        option::of(scalars()),
        option::of(scalars()),
    )
        .prop_map(|(output_url, job_id, credits_states, p_credits)| {
            let mut map = Map::new();
            let fields = [
                ("output_url", output_url),
                ("job_id", job_id),
                ("credits_states", credits_states),
                ("p_credits", p_credits),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    map.insert(key.to_owned(), value);
                }
            }
            Value::Object(map)
        });
    prop_oneof![3 => object, 1 => scalars()].boxed()
}

/// `message`: per-language texts (or junk), a bare text, or junk.
fn messages() -> BoxedStrategy<Value> {
    prop_oneof![
        btree_map("en|zh|id|[a-z]{2}", scalars(), 0..3)
            .prop_map(|langs| Value::Object(langs.into_iter().collect())),
        texts().prop_map(Value::from),
        scalars(),
    ]
    .boxed()
}

/// An envelope with some of its three fields.
fn envelopes() -> BoxedStrategy<Value> {
    (
        option::weighted(0.9, codes()),
        option::weighted(0.9, results()),
        option::of(messages()),
    )
        .prop_map(|(code, result, message)| {
            let mut map = Map::new();
            let fields = [("code", code), ("result", result), ("message", message)];
            for (key, value) in fields {
                if let Some(value) = value {
                    map.insert(key.to_owned(), value);
                }
            }
            Value::Object(map)
        })
        .boxed()
}

/// Bodies: envelopes whole or cut short, other JSON, and raw bytes.
fn bodies() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => envelopes().prop_map(|v| v.to_string().into_bytes()),
        1 => (envelopes(), any::<proptest::sample::Index>()).prop_map(|(v, cut)| {
            let mut bytes = v.to_string().into_bytes();
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes
        }),
        1 => scalars().prop_map(|v| v.to_string().into_bytes()),
        1 => vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

/// A body whose `code` is the integer `code`, the rest of the envelope arbitrary.
fn body_with_code(code: i64, mut envelope: Value) -> Vec<u8> {
    if let Value::Object(map) = &mut envelope {
        map.insert("code".to_owned(), Value::from(code));
    }
    envelope.to_string().into_bytes()
}

/// Server text that is safe to show: no control characters, bounded, no token.
fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
        && text.chars().count() <= MAX_SHOWN_CHARS
        && !text.contains(TOKEN)
}

proptest! {
    #[test]
    fn a_get_job_reply_is_a_state_or_a_decode_or_protocol_error(body in bodies()) {
        match get_job_reply(&body, Some(TOKEN)) {
            Ok(JobState::InProgress | JobState::Done(_) | JobState::Failed { .. }) => {}
            Err(err) => {
                prop_assert!(
                    matches!(err, Error::Decode { .. } | Error::Protocol { .. }),
                    "unexpected error {err:?}"
                );
                prop_assert!(!err.to_string().contains(TOKEN));
            }
        }
    }

    #[test]
    fn a_done_job_always_has_usable_output_urls_and_keeps_its_body(body in bodies()) {
        if let Ok(JobState::Done(done)) = get_job_reply(&body, Some(TOKEN)) {
            prop_assert!(!done.output_urls.is_empty());
            for url in &done.output_urls {
                prop_assert!(!url.is_empty() && url.trim() == url, "{url:?}");
            }
            // Kept whole for the ledger, but never with the token in it.
            prop_assert!(!done.raw.contains(TOKEN));
            prop_assert_eq!(done.raw, String::from_utf8_lossy(&body).replace(TOKEN, "<redacted>"));
        }
    }

    #[test]
    fn a_failed_jobs_message_is_printable_bounded_and_free_of_the_token(body in bodies()) {
        if let Ok(JobState::Failed { code, message }) = get_job_reply(&body, Some(TOKEN)) {
            prop_assert!(code != 100000 && code != 300006);
            prop_assert!(printable(&message), "{message:?}");
        }
    }

    #[test]
    fn any_code_but_success_decides_the_state_alone(code: i64, envelope in envelopes()) {
        prop_assume!(code != 100000);
        let state = get_job_reply(&body_with_code(code, envelope), Some(TOKEN));
        match state {
            Ok(JobState::InProgress) => prop_assert_eq!(code, 300006),
            Ok(JobState::Failed { code: failed, .. }) => {
                prop_assert_ne!(code, 300006);
                prop_assert_eq!(failed, code);
            }
            other => prop_assert!(false, "code {} gave {:?}", code, other),
        }
    }

    #[test]
    fn a_create_job_reply_is_an_id_or_a_decode_api_or_protocol_error(body in bodies()) {
        if let Err(err) = create_job_reply(&body, Some(TOKEN)) {
            prop_assert!(
                matches!(err, Error::Decode { .. } | Error::Api { .. } | Error::Protocol { .. }),
                "unexpected error {err:?}"
            );
            prop_assert!(!err.to_string().contains(TOKEN));
        }
    }

    #[test]
    fn an_accepted_job_id_can_be_polled(body in bodies()) {
        if let Ok(id) = create_job_reply(&body, Some(TOKEN)) {
            let id = id.as_str();
            prop_assert!(!matches!(id, "" | "." | ".."), "{id:?}");
            prop_assert!(id.len() <= 200);
            prop_assert!(!id.chars().any(char::is_control), "{id:?}");
        }
    }

    #[test]
    fn any_code_but_success_is_a_refusal_with_a_printable_message(
        code: i64,
        envelope in envelopes(),
    ) {
        prop_assume!(code != 100000);
        match create_job_reply(&body_with_code(code, envelope), Some(TOKEN)) {
            Err(Error::Api { code: refused, message }) => {
                prop_assert_eq!(refused, code);
                prop_assert!(printable(&message), "{message:?}");
            }
            other => prop_assert!(false, "code {} gave {:?}", code, other),
        }
    }
}

#[test]
fn the_captured_replies_parse_through_the_fuzzing_entry_points() {
    let created = include_bytes!("fixtures/create_job_response.json");
    let doing = include_bytes!("fixtures/get_job_doing.json");
    let done = include_bytes!("fixtures/get_job_done.json");
    assert_eq!(
        create_job_reply(created, None).unwrap().as_str(),
        "5725caa4-2be6-4dd1-916f-d62e772624c2"
    );
    assert_eq!(get_job_reply(doing, None).unwrap(), JobState::InProgress);
    assert!(matches!(
        get_job_reply(done, None).unwrap(),
        JobState::Done(_)
    ));
}

#[test]
fn a_token_with_a_space_stays_hidden_when_echoed_with_a_tab_instead() {
    let token = "Bearer s3cr3t-value";
    let body = br#"{"code":300011,"message":{"en":"bad token Bearer\ts3cr3t-value"}}"#;
    let Ok(JobState::Failed { message, .. }) = get_job_reply(body, Some(token)) else {
        panic!("not a failed job");
    };
    assert!(!message.contains("s3cr3t-value"), "{message:?}");
}

#[test]
fn a_token_echoed_in_a_done_reply_is_masked_in_the_raw_body_kept_for_the_ledger() {
    let token = "Bearer s3cr3t-value";
    let body = br#"{"code":100000,"result":{"output_url":["https://cdn.example/o.jpg"],"echo":"s3cr3t-value"},"message":{"en":"ok"}}"#;
    let Ok(JobState::Done(done)) = get_job_reply(body, Some(token)) else {
        panic!("not a done job");
    };
    assert!(!done.raw.contains("s3cr3t-value"), "{}", done.raw);
    assert!(done.raw.contains("<redacted>"));
}
