//! Seeded fault decisions and the broken answers they produce: 500, 429, dropped connections,
//! garbage, CDN errors, truncated downloads and the hostile bodies (huge, endless, slow drip).

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;

use super::Knobs;
use super::connection::ConnHandle;
use super::wire::{self, codes};

/// A fault on an API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiFault {
    /// Close the connection without answering.
    Drop,
    /// HTTP 500 with a JSON envelope (`json`) or a text body.
    Http500 { json: bool },
    /// HTTP 429 with `Retry-After`.
    Http429,
    /// HTTP 200 whose body is not JSON: a cut JSON prefix (`cut_json`) or plain text.
    Garbage { cut_json: bool },
}

/// One draw for an API request: drop, 500, 429 or garbage by cumulative probability.
pub(crate) fn draw_api_fault(knobs: &Knobs, rng: &mut fastrand::Rng) -> Option<ApiFault> {
    let r = rng.f64();
    let mut edge = knobs.p_drop;
    if r < edge {
        return Some(ApiFault::Drop);
    }
    edge += knobs.p_http_500;
    if r < edge {
        return Some(ApiFault::Http500 { json: rng.bool() });
    }
    edge += knobs.p_http_429;
    if r < edge {
        return Some(ApiFault::Http429);
    }
    edge += knobs.p_garbage;
    if r < edge {
        return Some(ApiFault::Garbage {
            cut_json: rng.bool(),
        });
    }
    None
}

/// A fault on a CDN request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CdnFault {
    /// HTTP 500 or 503 with a text body.
    Error(StatusCode),
    /// Send `Content-Length` of the whole file, then half of it, then close.
    Truncate,
}

/// One draw for a CDN request: error or truncation by cumulative probability.
pub(crate) fn draw_cdn_fault(knobs: &Knobs, rng: &mut fastrand::Rng) -> Option<CdnFault> {
    let r = rng.f64();
    if r < knobs.p_cdn_error {
        let status = if rng.bool() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Some(CdnFault::Error(status));
    }
    if r < knobs.p_cdn_error + knobs.p_truncate {
        return Some(CdnFault::Truncate);
    }
    None
}

/// The answer to an API request hit by `fault`.
pub(crate) fn api_fault_response(
    fault: ApiFault,
    retry_after_secs: u64,
    conn: &ConnHandle,
) -> Response {
    match fault {
        ApiFault::Drop => {
            conn.kill();
            // Never written: the connection's writes fail from now on.
            StatusCode::OK.into_response()
        }
        ApiFault::Http500 { json: true } => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            wire::to_json(codes::SERVER_ERROR, (), wire::MSG_SERVER_ERROR),
        ),
        ApiFault::Http500 { json: false } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        ApiFault::Http429 => too_many_requests(retry_after_secs),
        ApiFault::Garbage { cut_json: true } => json_response(
            StatusCode::OK,
            br#"{"code":100000,"result":{"job_"#.to_vec(),
        ),
        ApiFault::Garbage { cut_json: false } => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            "upstream said: \u{fffd}\u{fffd} garbage, not JSON",
        )
            .into_response(),
    }
}

/// HTTP 429 with `Retry-After` and a JSON envelope.
pub(crate) fn too_many_requests(retry_after_secs: u64) -> Response {
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        wire::to_json(codes::TOO_MANY_REQUESTS, (), wire::MSG_TOO_MANY),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// HTTP 200 text/html error page, as proxies and captive portals send.
pub(crate) fn html_error_page() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><head><title>502 Bad Gateway</title></head>\
         <body><h1>error</h1><p>The upstream server returned an error.</p></body></html>",
    )
        .into_response()
}

/// A JSON body with its Content-Type.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The body of a CDN error.
pub(crate) fn cdn_error_response(status: StatusCode) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        "CDN upstream error",
    )
        .into_response()
}

/// `Content-Length` promises all of `bytes`; half is sent, then the connection is cut.
pub(crate) fn truncated_response(bytes: Bytes, content_type: &'static str) -> Response {
    let full_len = bytes.len();
    let half = bytes.slice(..full_len / 2);
    enum Step {
        Half,
        Cut,
        Done,
    }
    let body = stream::unfold(Step::Half, move |step| {
        let half = half.clone();
        async move {
            match step {
                Step::Half => Some((Ok(half), Step::Cut)),
                Step::Cut => {
                    // Let the server write out the first half before the error tears down the
                    // connection (a pending poll of the body makes it flush).
                    tokio::task::yield_now().await;
                    let cut =
                        io::Error::new(io::ErrorKind::BrokenPipe, "truncated by the emulator");
                    Some((Err(cut), Step::Done))
                }
                Step::Done => None,
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(full_len));
    response
}

/// Size of the [`huge_json`] body.
pub(crate) const HUGE_JSON_BYTES: usize = 50 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// A valid 50 MiB in-progress envelope, streamed in 64 KiB chunks with its Content-Length.
pub(crate) fn huge_json(input_url: &str) -> Response {
    let head = format!(r#"{{"code":300006,"result":{{"input_url":"{input_url}","padding":""#);
    let tail = r#""},"message":{"en":"Image generation in progress.","zh":"图片生成中。"}}"#;
    let padding = HUGE_JSON_BYTES.saturating_sub(head.len() + tail.len());
    let total = head.len() + padding + tail.len();
    let filler = Bytes::from(vec![b'a'; CHUNK]);
    let chunks = std::iter::once(Bytes::from(head))
        .chain(
            (0..padding.div_ceil(CHUNK))
                .map(move |i| filler.slice(..CHUNK.min(padding - i * CHUNK))),
        )
        .chain(std::iter::once(Bytes::from_static(tail.as_bytes())))
        .map(Ok::<_, io::Error>);
    let mut response = json_response_streamed(Body::from_stream(stream::iter(chunks)));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    response
}

/// A JSON-looking body that never ends (chunked); it stops when the client goes away, because
/// the server then drops the body.
pub(crate) fn endless_body() -> Response {
    let head = Bytes::from_static(br#"{"code":300006,"result":{"padding":""#);
    let filler = Bytes::from(vec![b'a'; CHUNK]);
    let chunks = std::iter::once(head)
        .chain(std::iter::repeat(filler))
        .map(Ok::<_, io::Error>);
    json_response_streamed(Body::from_stream(stream::iter(chunks)))
}

/// `body` sent one byte per second, with its Content-Length.
pub(crate) fn slow_drip(body: Vec<u8>) -> Response {
    let len = body.len();
    let bytes = Bytes::from(body);
    let drip = stream::unfold(0usize, move |sent| {
        let bytes = bytes.clone();
        async move {
            if sent >= bytes.len() {
                return None;
            }
            if sent > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some((Ok::<_, io::Error>(bytes.slice(sent..=sent)), sent + 1))
        }
    });
    let mut response = json_response_streamed(Body::from_stream(drip));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

fn json_response_streamed(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs() -> Knobs {
        Knobs {
            p_drop: 0.1,
            p_http_500: 0.2,
            p_http_429: 0.2,
            p_garbage: 0.2,
            ..Knobs::default()
        }
    }

    #[test]
    fn same_seed_draws_the_same_api_faults() {
        let mut a = fastrand::Rng::with_seed(42);
        let mut b = fastrand::Rng::with_seed(42);
        let draws_a: Vec<_> = (0..200).map(|_| draw_api_fault(&knobs(), &mut a)).collect();
        let draws_b: Vec<_> = (0..200).map(|_| draw_api_fault(&knobs(), &mut b)).collect();
        assert_eq!(draws_a, draws_b);
    }

    #[test]
    fn every_api_fault_kind_occurs_with_its_probability_set() {
        let mut rng = fastrand::Rng::with_seed(3);
        let draws: Vec<_> = (0..500)
            .map(|_| draw_api_fault(&knobs(), &mut rng))
            .collect();
        assert!(draws.contains(&Some(ApiFault::Drop)));
        assert!(
            draws
                .iter()
                .any(|d| matches!(d, Some(ApiFault::Http500 { .. })))
        );
        assert!(draws.contains(&Some(ApiFault::Http429)));
        assert!(
            draws
                .iter()
                .any(|d| matches!(d, Some(ApiFault::Garbage { .. })))
        );
        assert!(draws.contains(&None));
    }

    #[test]
    fn zero_probabilities_never_fault() {
        let mut rng = fastrand::Rng::with_seed(9);
        let quiet = Knobs::default();
        assert!((0..1000).all(|_| draw_api_fault(&quiet, &mut rng).is_none()));
        assert!((0..1000).all(|_| draw_cdn_fault(&quiet, &mut rng).is_none()));
    }

    #[test]
    fn probability_one_always_faults() {
        let mut rng = fastrand::Rng::with_seed(9);
        let always = Knobs {
            p_truncate: 1.0,
            ..Knobs::default()
        };
        assert!((0..100).all(|_| draw_cdn_fault(&always, &mut rng) == Some(CdnFault::Truncate)));
    }

    /// The e2e fault tests download 15 results: with the CDN's own RNG their seeds inject a
    /// fault within those first draws whatever the order of the client's requests.
    #[test]
    fn the_e2e_cdn_seeds_fault_within_fifteen_downloads() {
        for (seed, knobs) in [
            (
                503,
                Knobs {
                    p_cdn_error: 0.3,
                    ..Knobs::default()
                },
            ),
            (
                9,
                Knobs {
                    p_truncate: 0.3,
                    ..Knobs::default()
                },
            ),
        ] {
            let (_, mut cdn) = crate::emulator::state::rngs(seed);
            assert!(
                (0..15).any(|_| draw_cdn_fault(&knobs, &mut cdn).is_some()),
                "seed {seed}"
            );
        }
    }
}
