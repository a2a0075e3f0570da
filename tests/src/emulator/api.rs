//! The API origin: create-job and get-job in the capture's JSON shapes, behind the fault knobs.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::connection::ConnHandle;
use super::faults;
use super::images::Format;
use super::network;
use super::state::{Job, Phase, Shared, header_pairs};
use super::wire::{self, Message, codes};
use super::{Hostile, RecordedUpload};

/// Path of create-job (POST, multipart).
pub(crate) const CREATE_JOB_PATH: &str =
    "/api/magiceraser/v3/ai-image-watermark-remove-auto/create-job";
/// Path of get-job (GET), without the job id.
pub(crate) const GET_JOB_PREFIX: &str = "/api/magiceraser/v2/ai-remove-object/get-job/";
/// The multipart field that carries the image.
const FILE_FIELD: &str = "original_image_file";
/// Largest create-job body accepted; larger ones get HTTP 413.
const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// The API routes: create-job's body through the shared uplink, every reply after the
/// latency, and create-job requests counted from their head to their reply.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let throttled = middleware::from_fn_with_state(shared.clone(), network::throttle_body);
    Router::new()
        .route(CREATE_JOB_PATH, post(create_job).layer(throttled))
        .route(&format!("{GET_JOB_PREFIX}{{job_id}}"), get(get_job))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            network::delay_reply,
        ))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            count_open_create_jobs,
        ))
        .with_state(shared)
}

/// Middleware of the API: keeps [`Counters::max_create_jobs_open`] and
/// [`Counters::create_job_time`] for create-job requests (a request the client abandons is
/// counted until it is dropped).
///
/// [`Counters::max_create_jobs_open`]: super::Counters::max_create_jobs_open
/// [`Counters::create_job_time`]: super::Counters::create_job_time
async fn count_open_create_jobs(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST || request.uri().path() != CREATE_JOB_PATH {
        return next.run(request).await;
    }
    let _open = OpenCreateJob::new(shared);
    next.run(request).await
}

/// One create-job request open, from its head to its reply or its end.
struct OpenCreateJob {
    shared: Arc<Shared>,
    since: Instant,
}

impl OpenCreateJob {
    fn new(shared: Arc<Shared>) -> Self {
        {
            let mut state = shared.lock();
            state.create_jobs_open += 1;
            let open = state.create_jobs_open;
            let max = &mut state.counters.max_create_jobs_open;
            *max = (*max).max(open);
        }
        OpenCreateJob {
            shared,
            since: Instant::now(),
        }
    }
}

impl Drop for OpenCreateJob {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.create_jobs_open = state.create_jobs_open.saturating_sub(1);
        state.counters.create_job_time += self.since.elapsed();
    }
}

/// The multipart body as read to its end.
struct Upload {
    /// Name of the file field, else of the first field, else "".
    field_name: String,
    file: Option<FilePart>,
}

struct FilePart {
    file_name: Option<String>,
    content_type: Option<String>,
    bytes: Bytes,
}

/// Reads every field to the final boundary, so a body cut short is an error, not an upload.
async fn read_upload(mut multipart: Multipart) -> Result<Upload, MultipartError> {
    let mut first_name: Option<String> = None;
    let mut file = None;
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == FILE_FIELD && file.is_none() {
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let bytes = field.bytes().await?;
            file = Some(FilePart {
                file_name,
                content_type,
                bytes,
            });
        } else {
            field.bytes().await?;
        }
        first_name.get_or_insert(name);
    }
    let field_name = if file.is_some() {
        FILE_FIELD.to_owned()
    } else {
        first_name.unwrap_or_default()
    };
    Ok(Upload { field_name, file })
}

fn envelope(status: StatusCode, code: i64, message: Message) -> Response {
    faults::json_response(status, wire::to_json(code, (), message))
}

fn has_value(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|value| !value.as_bytes().trim_ascii().is_empty())
}

/// `POST create-job`: reads the whole body, then, in this order: a random fault, the HTML
/// hostile page, missing product headers (400), missing file field (400), non-image (400),
/// `refuse_code` (200 with that code), the in-flight limit (429), else a new job (200), whose
/// reply `p_lose_reply` may drop.
async fn create_job(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let header_list = header_pairs(&headers);
    {
        let mut state = shared.lock();
        state.counters.create_job_requests += 1;
        state.counters.api_headers.push(header_list.clone());
    }

    let upload = match multipart {
        Ok(multipart) => read_upload(multipart).await,
        Err(_not_multipart) => {
            shared.lock().counters.rejected += 1;
            return envelope(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                wire::MSG_BAD_REQUEST,
            );
        }
    };
    let upload = match upload {
        Ok(upload) => upload,
        Err(error) => {
            // Cut short, malformed or too large: no job, and nothing recorded as an upload.
            shared.lock().counters.rejected += 1;
            let status = error.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                wire::MSG_TOO_LARGE
            } else {
                wire::MSG_BAD_REQUEST
            };
            return envelope(status, codes::BAD_REQUEST, message);
        }
    };

    let (sha256, size) = match &upload.file {
        Some(part) => (
            hex::encode(Sha256::digest(&part.bytes)),
            part.bytes.len() as u64,
        ),
        None => (hex::encode(Sha256::digest(b"")), 0),
    };
    let format = upload
        .file
        .as_ref()
        .and_then(|part| Format::sniff(&part.bytes));
    let mut record = RecordedUpload {
        headers: header_list,
        field_name: upload.field_name,
        file_name: upload.file.as_ref().and_then(|p| p.file_name.clone()),
        part_content_type: upload.file.as_ref().and_then(|p| p.content_type.clone()),
        sha256: sha256.clone(),
        size,
        job_id: None,
    };
    let now = Instant::now();

    let mut state = shared.lock();
    let knobs = state.knobs.clone();
    if let Some(fault) = faults::draw_api_fault(&knobs, &mut state.rng) {
        state.counters.faults_injected += 1;
        state.uploads.push(record);
        drop(state);
        return faults::api_fault_response(fault, knobs.retry_after_secs, &conn);
    }
    if knobs.hostile == Some(Hostile::HtmlErrorPage200) {
        state.counters.faults_injected += 1;
        state.uploads.push(record);
        return faults::html_error_page();
    }
    let refusal = if !has_value(&headers, "product-serial") || !has_value(&headers, "product-code")
    {
        Some((
            StatusCode::BAD_REQUEST,
            codes::MISSING_PRODUCT,
            wire::MSG_MISSING_PRODUCT,
        ))
    } else if upload.file.is_none() {
        Some((
            StatusCode::BAD_REQUEST,
            codes::MISSING_FILE,
            wire::MSG_MISSING_FILE,
        ))
    } else if format.is_none() {
        Some((
            StatusCode::BAD_REQUEST,
            codes::INVALID_IMAGE,
            wire::MSG_INVALID_IMAGE,
        ))
    } else {
        knobs
            .refuse_code
            .map(|code| (StatusCode::OK, code, wire::refusal_message(code)))
    };
    if let Some((status, code, message)) = refusal {
        state.counters.rejected += 1;
        state.uploads.push(record);
        return envelope(status, code, message);
    }
    if let Some(limit) = knobs.max_in_flight
        && state.jobs_in_flight(now) >= limit
    {
        state.counters.throttled += 1;
        state.uploads.push(record);
        return faults::too_many_requests(knobs.retry_after_secs);
    }

    // A job. Its id is a real random v4 UUID, not drawn from the seeded RNG: a restarted emulator
    // with the same seed must never hand out an id that a client's ledger already holds.
    let job_id = uuid::Uuid::new_v4().to_string();
    let failure = (state.rng.f64() < knobs.p_job_fail).then_some(knobs.job_fail_code);
    if failure.is_some() {
        state.counters.faults_injected += 1;
    }
    let input = upload
        .file
        .zip(format)
        .map(|(part, format)| (part.bytes, format.mime()));
    let job = Job {
        sha256,
        created: now,
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        failure,
        input,
        output: None,
    };
    state.add_job(job_id.clone(), job);
    record.job_id = Some(job_id.clone());
    state.uploads.push(record);
    // Drawn only when asked for, so the other knobs' seeded draws stay as they were.
    if knobs.p_lose_reply > 0.0 && state.rng.f64() < knobs.p_lose_reply {
        state.counters.replies_lost += 1;
        state.counters.faults_injected += 1;
        drop(state);
        return faults::api_fault_response(faults::ApiFault::Drop, knobs.retry_after_secs, &conn);
    }
    drop(state);

    let body = wire::to_json(codes::OK, wire::Created { job_id }, wire::MSG_CREATED);
    faults::json_response(StatusCode::OK, body)
}

/// `GET get-job/{job_id}`: a random fault, the HTML hostile page, 300004 for an unknown id,
/// else the job's phase in the capture's shape (or the hostile variant of it).
async fn get_job(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    state.counters.get_jobs += 1;
    *state
        .counters
        .get_jobs_by_job
        .entry(job_id.clone())
        .or_default() += 1;
    state.counters.api_headers.push(header_pairs(&headers));

    let knobs = state.knobs.clone();
    if let Some(fault) = faults::draw_api_fault(&knobs, &mut state.rng) {
        state.counters.faults_injected += 1;
        drop(state);
        return faults::api_fault_response(fault, knobs.retry_after_secs, &conn);
    }
    if knobs.hostile == Some(Hostile::HtmlErrorPage200) {
        state.counters.faults_injected += 1;
        return faults::html_error_page();
    }
    let Some(job) = state.jobs.get(&job_id) else {
        return envelope(StatusCode::OK, codes::JOB_NOT_FOUND, wire::MSG_NOT_FOUND);
    };
    let phase = state.phase(job, now);
    let date = job.date.clone();
    let hostile = knobs.hostile.filter(|h| affects_get_job(*h, phase));
    if hostile.is_some() {
        state.counters.faults_injected += 1;
    }
    drop(state);

    let input_url = shared.input_url(&job_id, &date);
    let body = match phase {
        Phase::InProgress => wire::to_json(
            codes::IN_PROGRESS,
            wire::InProgress {
                input_url: input_url.clone(),
            },
            wire::MSG_IN_PROGRESS,
        ),
        Phase::Failed(code) => wire::to_json(code, (), wire::MSG_FAILED),
        Phase::Done => {
            let output_url = output_urls(&shared, &job_id, &date, hostile);
            let done = wire::Done {
                credits_states: 2,
                need_credits: 0,
                output_url,
                input_url: input_url.clone(),
                job_id,
                p_credits: 0,
                s_credits: 0,
            };
            wire::to_json(codes::OK, done, wire::MSG_DONE)
        }
    };
    match hostile {
        Some(Hostile::HugeJson) => faults::huge_json(&input_url),
        Some(Hostile::EndlessBody) => faults::endless_body(),
        Some(Hostile::SlowDrip) => faults::slow_drip(body),
        _ => faults::json_response(StatusCode::OK, body),
    }
}

/// Whether `hostile` changes a get-job answer in `phase` (for the fault counter).
fn affects_get_job(hostile: Hostile, phase: Phase) -> bool {
    match hostile {
        Hostile::NeverDone | Hostile::HugeJson | Hostile::EndlessBody | Hostile::SlowDrip => true,
        Hostile::TraversalOutputUrl
        | Hostile::EncodedTraversalOutputUrl
        | Hostile::FileOutputUrl
        | Hostile::EmptyOutputUrl
        | Hostile::MissingOutputUrl => phase == Phase::Done,
        Hostile::RedirectToFile
        | Hostile::RedirectToOtherScheme
        | Hostile::NotAnImageOutput
        | Hostile::HtmlErrorPage200 => false,
    }
}

/// The `output_url` list of a done job; the traversal variants carry `?job=` so the CDN can
/// still serve the job's output at whatever path the client makes of them.
fn output_urls(
    shared: &Shared,
    job_id: &str,
    date: &str,
    hostile: Option<Hostile>,
) -> Option<Vec<String>> {
    let folder = format!(
        "{}/datarm7/magiceraser/image/remove-watermark/{date}/output",
        shared.cdn_url
    );
    match hostile {
        Some(Hostile::TraversalOutputUrl) => Some(vec![format!(
            "{folder}/../../../etc/passwd.jpg?job={job_id}"
        )]),
        Some(Hostile::EncodedTraversalOutputUrl) => Some(vec![format!(
            "{folder}/..%2F..%2F..%2Fetc%2Fpasswd.jpg?job={job_id}"
        )]),
        Some(Hostile::FileOutputUrl) => Some(vec!["file:///etc/passwd".to_owned()]),
        Some(Hostile::EmptyOutputUrl) => Some(Vec::new()),
        Some(Hostile::MissingOutputUrl) => None,
        _ => Some(vec![shared.output_url(job_id, date)]),
    }
}

/// Any other API path: 404, headers recorded like every API request.
async fn not_found(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared
        .lock()
        .counters
        .api_headers
        .push(header_pairs(&headers));
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}
