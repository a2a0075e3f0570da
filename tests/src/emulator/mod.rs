//! A local emulator of the MagicEraser service, built from the captured protocol.
//!
//! Two listeners on 127.0.0.1 (two ports, hence two origins, like the real service):
//! - the API: `POST /api/magiceraser/v3/ai-image-watermark-remove-auto/create-job` (multipart,
//!   field `original_image_file`) and `GET /api/magiceraser/v2/ai-remove-object/get-job/{job_id}`,
//!   answering in the capture's JSON shapes;
//! - the CDN: `GET /datarm7/magiceraser/image/remove-watermark/{date}/output/{job_id}.jpg`, a small
//!   JPEG carrying the input's sha256 (read it back with [`source_sha256`]), and the `input/` path.
//!
//! [`Knobs`] inject seeded faults (HTTP 500/429, dropped connections, garbage, failed jobs, CDN
//! errors, truncation, an in-flight limit, systemic refusal), one [`Hostile`] behaviour at a
//! time, and what a wide-area network adds (a delay before each reply, one uplink shared by all
//! uploads); [`Counters`] and [`RecordedUpload`]s record everything the emulator saw. Every
//! accepted socket has `TCP_NODELAY` set, so no reply waits for the client's delayed ACK.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use eraser_tests::emulator::{Emulator, Knobs};
//! let emu = Emulator::start(Knobs { p_http_500: 0.2, ..Knobs::default() }).await?;
//! let base = emu.api_url(); // give this to the client under test
//! # let _ = base;
//! assert_eq!(emu.counters().create_jobs, 0);
//! # Ok(()) }
//! ```

mod api;
mod cdn;
mod connection;
mod faults;
mod images;
mod network;
mod state;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use self::connection::{ConnHandle, ConnRegistry, ControlledListener};
use self::state::Shared;

pub use self::images::{sample_jpeg, sample_png, sample_webp, source_sha256};
pub use self::wire::codes;

/// What the emulator does wrong, and how often. All randomness comes from one RNG seeded with
/// `seed`, so the same knobs and the same request order give the same faults.
///
/// Per API request one draw picks at most one of drop / 500 / 429 / garbage, in that order of
/// the cumulative probabilities (so keep their sum ≤ 1); per CDN request one draw picks at most
/// one of error / truncation.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// get-job says 300006 until this has passed since the job's creation. The current value is
    /// applied at each get-job, so lowering it releases jobs that are already waiting.
    pub processing_time: Duration,
    /// Probability an API request gets HTTP 500 (JSON or text body).
    pub p_http_500: f64,
    /// Probability an API request gets HTTP 429 with `Retry-After`.
    pub p_http_429: f64,
    /// Value of `Retry-After` on 429 (default 1).
    pub retry_after_secs: u64,
    /// Probability the connection is closed without a response (no job created).
    pub p_drop: f64,
    /// Probability a create-job creates its job and then closes the connection without
    /// answering: the reply lost on the way, which a client cannot tell from `p_drop`.
    pub p_lose_reply: f64,
    /// Probability of HTTP 200 with a non-JSON body.
    pub p_garbage: f64,
    /// Probability a job ends (at get-job) with `job_fail_code` instead of done; drawn once per
    /// job, at its creation.
    pub p_job_fail: f64,
    /// The code of a failed job (default 300010).
    pub job_fail_code: i64,
    /// Probability a CDN download answers 500 or 503.
    pub p_cdn_error: f64,
    /// Probability a CDN download is cut short (`Content-Length` promises more than is sent).
    pub p_truncate: f64,
    /// Jobs created and not yet finished processing above which create-job answers 429.
    pub max_in_flight: Option<usize>,
    /// When set, every create-job is refused with this code (systemic: credits, quota).
    pub refuse_code: Option<i64>,
    /// Zero bytes appended after each output JPEG's end, so results can be as large as real
    /// photos (tests of file size limits need results bigger than the ledger).
    pub output_padding: usize,
    /// One hostile behaviour, see [`Hostile`].
    pub hostile: Option<Hostile>,
    /// Waited before every reply of both listeners, after the request was handled (a job is
    /// created, and get-job reads the job's state, when the request arrives): a network's round
    /// trip.
    pub latency: Duration,
    /// When set, the bodies of all create-job requests together reach the service no faster
    /// than this many bytes per second: one uplink shared by every connection. A job is created
    /// once its whole body has passed.
    pub uplink_bytes_per_sec: Option<NonZeroU64>,
    /// Seed of the RNG behind every probability above.
    pub seed: u64,
}

impl Default for Knobs {
    /// No faults, instant processing, unpadded outputs, `Retry-After: 1`, failure code 300010,
    /// no latency, an unlimited uplink, seed 1.
    fn default() -> Self {
        Knobs {
            processing_time: Duration::ZERO,
            p_http_500: 0.0,
            p_http_429: 0.0,
            retry_after_secs: 1,
            p_drop: 0.0,
            p_lose_reply: 0.0,
            p_garbage: 0.0,
            p_job_fail: 0.0,
            job_fail_code: wire::codes::JOB_FAILED,
            p_cdn_error: 0.0,
            p_truncate: 0.0,
            max_in_flight: None,
            refuse_code: None,
            output_padding: 0,
            hostile: None,
            latency: Duration::ZERO,
            uplink_bytes_per_sec: None,
            seed: 1,
        }
    }
}

/// One hostile server behaviour (the binary's `--hostile` takes the kebab-case names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Hostile {
    /// Done with output_url ".../output/../../../etc/passwd.jpg".
    TraversalOutputUrl,
    /// Done with output_url ".../output/..%2F..%2F..%2Fetc%2Fpasswd.jpg".
    EncodedTraversalOutputUrl,
    /// Done with output_url "file:///etc/passwd".
    FileOutputUrl,
    /// The CDN answers 302 with Location: file:///etc/passwd.
    RedirectToFile,
    /// The CDN answers 302 with Location: ftp://127.0.0.1/x.jpg.
    RedirectToOtherScheme,
    /// get-job answers 300006 forever.
    NeverDone,
    /// get-job answers a 50 MiB JSON body (streamed, with its Content-Length).
    HugeJson,
    /// get-job answers an endless chunked body, until the client goes away.
    EndlessBody,
    /// get-job sends its body one byte per second.
    SlowDrip,
    /// Done with "output_url": [].
    EmptyOutputUrl,
    /// Done without output_url.
    MissingOutputUrl,
    /// The CDN serves text bytes as image/jpeg.
    NotAnImageOutput,
    /// Every API request answers HTTP 200 text/html "<html>…error…</html>".
    HtmlErrorPage200,
}

/// What the emulator saw and did; [`Emulator::counters`] returns a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// create-jobs that created a job.
    pub create_jobs: u64,
    /// Lower-case hex sha256 of the uploaded file -> jobs created for it.
    pub create_jobs_by_sha: HashMap<String, u64>,
    /// All create-job requests, refused, faulted and aborted ones included.
    pub create_job_requests: u64,
    /// All get-job requests.
    pub get_jobs: u64,
    /// Job id as requested -> get-job requests for it.
    pub get_jobs_by_job: HashMap<String, u64>,
    /// CDN GETs that served a full output image.
    pub downloads: u64,
    /// All CDN requests.
    pub download_requests: u64,
    /// Responses altered by a knob: random faults, failed jobs (counted at creation), hostile
    /// answers. 429s of the in-flight limit are counted in `throttled` instead.
    pub faults_injected: u64,
    /// create-jobs refused: no serial/code, no or broken multipart body, not an image, refuse_code.
    pub rejected: u64,
    /// create-jobs answered 429 because `max_in_flight` jobs were processing.
    pub throttled: u64,
    /// Jobs created whose reply was never sent (`p_lose_reply`): each a job the client paid
    /// for without knowing it.
    pub replies_lost: u64,
    /// Highest number of jobs in processing at once.
    pub max_in_flight_seen: u64,
    /// Highest number of create-job requests open at once (from the request's head to its
    /// reply, latency included): the uploads a client keeps in flight.
    pub max_create_jobs_open: u64,
    /// Total time create-job requests were open, summed over requests; divided by a run's
    /// length it is the mean number of uploads in flight (Little's law).
    pub create_job_time: Duration,
    /// Headers of every API request (lower-case names), in order.
    pub api_headers: Vec<Vec<(String, String)>>,
    /// Headers of every CDN request (lower-case names), in order.
    pub cdn_headers: Vec<Vec<(String, String)>>,
}

/// One create-job whose multipart body was read to its end (aborted bodies are not recorded).
#[derive(Debug, Clone)]
pub struct RecordedUpload {
    /// Request headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Multipart field name of the file (must be `original_image_file`; else the first field's
    /// name, or "" when the body had no field at all).
    pub field_name: String,
    /// The part's filename.
    pub file_name: Option<String>,
    /// The part's Content-Type.
    pub part_content_type: Option<String>,
    /// Lower-case hex sha256 of the part's bytes.
    pub sha256: String,
    /// Size of the part's bytes.
    pub size: u64,
    /// The job created for it, if one was.
    pub job_id: Option<String>,
}

/// A running emulator; dropping it stops both listeners and closes their open connections.
pub struct Emulator {
    shared: Arc<Shared>,
    api_addr: SocketAddr,
    cdn_addr: SocketAddr,
    // Held for their Drop. Field order is drop order: stop serving first, then end the
    // background runtime if any.
    _servers: Servers,
    thread: Option<BackgroundThread>,
}

impl Emulator {
    /// Starts both listeners (API and CDN, two different ports = two origins) on 127.0.0.1:0
    /// inside the current tokio runtime.
    pub async fn start(knobs: Knobs) -> std::io::Result<Emulator> {
        Self::start_on(0, 0, knobs).await
    }

    /// Same as [`Emulator::start`], but on a dedicated background thread with its own runtime,
    /// for plain `#[test]`s, benches and the binary. Dropping the returned value stops it.
    pub fn spawn(knobs: Knobs) -> std::io::Result<Emulator> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-magiceraser")
            .enable_all()
            .build()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let join = std::thread::Builder::new()
            .name("fake-magiceraser".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let started = Emulator::start(knobs).await;
                    let ok = started.is_ok();
                    if ready_tx.send(started).is_ok() && ok {
                        // Serve until the handle is dropped (which sends or drops `stop_tx`).
                        let _ = stop_rx.await;
                    }
                });
                // Dropping the runtime here ends every connection task.
            })?;
        let mut emulator = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("emulator thread ended before starting"))??;
        emulator.thread = Some(BackgroundThread {
            stop: Some(stop_tx),
            join: Some(join),
        });
        Ok(emulator)
    }

    /// Same as [`Emulator::start`] but binding the API and the CDN to given ports (0 = any).
    pub async fn start_on(api_port: u16, cdn_port: u16, knobs: Knobs) -> std::io::Result<Emulator> {
        let api_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, api_port)).await?;
        let cdn_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, cdn_port)).await?;
        let api_addr = api_listener.local_addr()?;
        let cdn_addr = cdn_listener.local_addr()?;
        let shared = Arc::new(Shared::new(format!("http://{cdn_addr}"), knobs));

        let api_registry = Arc::new(ConnRegistry::default());
        let cdn_registry = Arc::new(ConnRegistry::default());
        let api_app =
            api::router(shared.clone()).into_make_service_with_connect_info::<ConnHandle>();
        let cdn_app =
            cdn::router(shared.clone()).into_make_service_with_connect_info::<ConnHandle>();
        let api_task = tokio::spawn(
            axum::serve(
                ControlledListener::new(api_listener, api_registry.clone()),
                api_app,
            )
            .into_future(),
        );
        let cdn_task = tokio::spawn(
            axum::serve(
                ControlledListener::new(cdn_listener, cdn_registry.clone()),
                cdn_app,
            )
            .into_future(),
        );
        Ok(Emulator {
            shared,
            api_addr,
            cdn_addr,
            _servers: Servers {
                tasks: vec![api_task.abort_handle(), cdn_task.abort_handle()],
                registries: vec![api_registry, cdn_registry],
            },
            thread: None,
        })
    }

    /// The API origin, "http://127.0.0.1:PORT" (no trailing slash).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The CDN origin, "http://127.0.0.1:PORT" (no trailing slash).
    pub fn cdn_url(&self) -> String {
        format!("http://{}", self.cdn_addr)
    }

    /// Changes behaviour while running; the RNG is reseeded with `knobs.seed`.
    pub fn set_knobs(&self, knobs: Knobs) {
        self.shared.set_knobs(knobs);
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Every create-job whose body was read to its end, in order.
    pub fn uploads(&self) -> Vec<RecordedUpload> {
        self.shared.lock().uploads.clone()
    }

    /// Forgets every job, as the service does once results expire: their get-job and CDN
    /// URLs answer as for unknown jobs (404 on the CDN).
    pub fn expire_jobs(&self) {
        self.shared.lock().jobs.clear();
    }

    /// Holds every result download (the CDN answers nothing) until [`Emulator::release_downloads`]:
    /// a slow CDN, without timing.
    pub fn hold_downloads(&self) {
        self.shared.downloads_held.send_replace(true);
    }

    /// Lets held and later result downloads through.
    pub fn release_downloads(&self) {
        self.shared.downloads_held.send_replace(false);
    }

    /// Zeroes the counters and forgets the recorded uploads (jobs stay known).
    pub fn reset_counters(&self) {
        let mut state = self.shared.lock();
        state.counters = Counters::default();
        state.uploads.clear();
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("api", &self.api_addr)
            .field("cdn", &self.cdn_addr)
            .field("background_thread", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

/// The accept loops and the live connections of both listeners.
struct Servers {
    tasks: Vec<AbortHandle>,
    registries: Vec<Arc<ConnRegistry>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for registry in &self.registries {
            registry.kill_all();
        }
    }
}

/// The thread and runtime behind [`Emulator::spawn`].
struct BackgroundThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Drop for BackgroundThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            // Joining makes "dropped" mean "ports closed"; the runtime's shutdown is quick
            // because every connection task is cancelled with it.
            let _ = join.join();
        }
    }
}
