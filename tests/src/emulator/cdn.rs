//! The CDN origin: serves each done job's output JPEG (carrying its input's sha256) and the
//! uploaded originals, records the headers every request brought, and applies the CDN knobs.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use super::Hostile;
use super::faults::{self, CdnFault};
use super::images;
use super::network;
use super::state::{Phase, Shared, header_pairs};

const FOLDER: &str = "/datarm7/magiceraser/image/remove-watermark";

/// The CDN routes, every reply after the latency.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(&format!("{FOLDER}/{{date}}/output/{{file}}"), get(output))
        .route(&format!("{FOLDER}/{{date}}/input/{{file}}"), get(input))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            network::delay_reply,
        ))
        .with_state(shared)
}

/// What a CDN request asks for.
enum Target<'a> {
    /// The output of the job named `<id>.jpg` in the `date` folder, or by `?job=<id>`.
    Output {
        file_id: Option<&'a str>,
        date: Option<&'a str>,
        query_job: Option<&'a str>,
    },
    /// The original of the job named `<id>_original_.jpg` in the `date` folder.
    Input {
        file_id: Option<&'a str>,
        date: &'a str,
    },
}

/// `?job=<id>`, which the hostile traversal URLs carry so that whatever path a client makes of
/// them still names the job (the real CDN ignores query strings it does not know).
fn query_job(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|pair| pair.strip_prefix("job="))
}

async fn output(
    State(shared): State<Arc<Shared>>,
    Path((date, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let target = Target::Output {
        file_id: file.strip_suffix(".jpg"),
        date: Some(&date),
        query_job: query_job(query.as_deref()),
    };
    until_downloads_released(&shared).await;
    serve(&shared, target, &headers)
}

/// Waits while a test holds result downloads.
async fn until_downloads_released(shared: &Shared) {
    let mut held = shared.downloads_held.subscribe();
    let _ = held.wait_for(|held| !*held).await;
}

async fn input(
    State(shared): State<Arc<Shared>>,
    Path((date, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let target = Target::Input {
        file_id: file.strip_suffix("_original_.jpg"),
        date: &date,
    };
    serve(&shared, target, &headers)
}

async fn fallback(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let target = Target::Output {
        file_id: None,
        date: None,
        query_job: query_job(query.as_deref()),
    };
    until_downloads_released(&shared).await;
    serve(&shared, target, &headers)
}

/// Counts and records the request, then answers: a random CDN fault, a hostile redirect or
/// non-image, 404 for what is not there (unknown job, not done yet, failed), else the bytes.
fn serve(shared: &Shared, target: Target<'_>, headers: &HeaderMap) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    state.counters.download_requests += 1;
    state.counters.cdn_headers.push(header_pairs(headers));
    let knobs = state.knobs.clone();
    let fault = faults::draw_cdn_fault(&knobs, &mut state.cdn_rng);
    if let Some(CdnFault::Error(status)) = fault {
        state.counters.faults_injected += 1;
        return faults::cdn_error_response(status);
    }
    let is_output = matches!(target, Target::Output { .. });
    let redirect = match knobs.hostile {
        Some(Hostile::RedirectToFile) if is_output => Some("file:///etc/passwd"),
        Some(Hostile::RedirectToOtherScheme) if is_output => Some("ftp://127.0.0.1/x.jpg"),
        _ => None,
    };
    if let Some(location) = redirect {
        state.counters.faults_injected += 1;
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }

    let found = match target {
        Target::Output {
            file_id,
            date,
            query_job,
        } => {
            let by_file = file_id
                .and_then(|id| state.jobs.get_key_value(id))
                .filter(|(_, job)| date.is_none_or(|d| d == job.date));
            let job = by_file.or_else(|| query_job.and_then(|id| state.jobs.get_key_value(id)));
            job.filter(|(_, job)| state.phase(job, now) == Phase::Done)
                .map(|(id, job)| Found::Output {
                    id: id.clone(),
                    sha256: job.sha256.clone(),
                    cached: job.output.clone(),
                })
        }
        Target::Input { file_id, date } => file_id
            .and_then(|id| state.jobs.get(id))
            .filter(|job| job.date == date)
            .and_then(|job| job.input.clone())
            .map(|(bytes, mime)| Found::Input { bytes, mime }),
    };
    let Some(found) = found else {
        return no_such_key();
    };
    if is_output && knobs.hostile == Some(Hostile::NotAnImageOutput) {
        state.counters.faults_injected += 1;
        return (
            [(header::CONTENT_TYPE, "image/jpeg")],
            "This is not an image. It is text, served as image/jpeg.\n",
        )
            .into_response();
    }
    let truncate = fault == Some(CdnFault::Truncate);
    if truncate {
        state.counters.faults_injected += 1;
    }
    drop(state);

    let (bytes, mime) = match found {
        Found::Input { bytes, mime } => (bytes, mime),
        Found::Output { id, sha256, cached } => {
            let bytes = match cached {
                Some(bytes) => bytes,
                None => match images::output_jpeg(&sha256) {
                    Ok(mut jpeg) => {
                        jpeg.resize(jpeg.len() + knobs.output_padding, 0);
                        let jpeg = Bytes::from(jpeg);
                        if let Some(job) = shared.lock().jobs.get_mut(&id) {
                            job.output = Some(jpeg.clone());
                        }
                        jpeg
                    }
                    Err(error) => {
                        let message = format!("emulator could not encode the output: {error}");
                        return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
                    }
                },
            };
            if !truncate {
                shared.lock().counters.downloads += 1;
            }
            (bytes, "image/jpeg")
        }
    };
    if truncate {
        return faults::truncated_response(bytes, mime);
    }
    let mut response = bytes.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    response
}

/// What a CDN request resolved to.
enum Found {
    Output {
        id: String,
        sha256: String,
        cached: Option<Bytes>,
    },
    Input {
        bytes: Bytes,
        mime: &'static str,
    },
}

/// The object-storage style 404.
fn no_such_key() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
         <Message>The specified key does not exist.</Message></Error>\n",
    )
        .into_response()
}
