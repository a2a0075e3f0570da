//! The emulator's shared state: knobs, the seeded RNG, jobs, counters and recorded uploads, behind
//! one mutex that handlers hold only for short, await-free sections.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::http::HeaderMap;
use bytes::Bytes;

use super::network::Uplink;
use super::{Counters, Hostile, Knobs, RecordedUpload};

/// Total bytes of uploaded originals kept to serve the CDN's `input/` path; beyond it inputs are
/// not kept (that path then answers 404), so a long soak cannot grow memory without bound.
const INPUT_RETENTION_BUDGET: u64 = 256 * 1024 * 1024;

/// One job the emulator created.
#[derive(Debug)]
pub(crate) struct Job {
    /// Lower-case hex sha256 of the uploaded bytes.
    pub(crate) sha256: String,
    pub(crate) created: Instant,
    /// The `YYYY-MM-DD` folder of its CDN URLs (UTC day of creation).
    pub(crate) date: String,
    /// The failure code it ends with, decided at creation; `None` means it succeeds.
    pub(crate) failure: Option<i64>,
    /// The original bytes and their MIME type, while within the retention budget.
    pub(crate) input: Option<(Bytes, &'static str)>,
    /// The output JPEG, generated on first download.
    pub(crate) output: Option<Bytes>,
}

/// Where a job stands for get-job and the CDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    InProgress,
    Done,
    Failed(i64),
}

/// Everything mutable, under one lock.
pub(crate) struct State {
    pub(crate) knobs: Knobs,
    /// Draws for API requests.
    pub(crate) rng: fastrand::Rng,
    /// Draws for CDN requests, apart: a CDN fault sequence then does not depend on how the
    /// client's API and CDN requests interleave, so a seed that injects a fault always does.
    pub(crate) cdn_rng: fastrand::Rng,
    pub(crate) jobs: HashMap<String, Job>,
    /// Creation instants of jobs possibly still processing, oldest first.
    in_flight: VecDeque<Instant>,
    retained_input_bytes: u64,
    pub(crate) counters: Counters,
    pub(crate) uploads: Vec<RecordedUpload>,
    /// create-job requests between their head's arrival and their reply.
    pub(crate) create_jobs_open: u64,
}

impl State {
    /// The phase of `job` now, under the current knobs.
    pub(crate) fn phase(&self, job: &Job, now: Instant) -> Phase {
        let processed = now.saturating_duration_since(job.created) >= self.knobs.processing_time;
        if !processed || self.knobs.hostile == Some(Hostile::NeverDone) {
            Phase::InProgress
        } else if let Some(code) = job.failure {
            Phase::Failed(code)
        } else {
            Phase::Done
        }
    }

    /// Jobs created less than `processing_time` ago (finished ones are forgotten).
    pub(crate) fn jobs_in_flight(&mut self, now: Instant) -> usize {
        let processing_time = self.knobs.processing_time;
        while self
            .in_flight
            .front()
            .is_some_and(|created| now.saturating_duration_since(*created) >= processing_time)
        {
            self.in_flight.pop_front();
        }
        self.in_flight.len()
    }

    /// Registers a new job and updates the job and in-flight counters.
    pub(crate) fn add_job(&mut self, id: String, mut job: Job) {
        if let Some((bytes, _)) = &job.input {
            let size = bytes.len() as u64;
            if self.retained_input_bytes + size <= INPUT_RETENTION_BUDGET {
                self.retained_input_bytes += size;
            } else {
                job.input = None;
            }
        }
        // The new job counts as processing at its creation, even with a zero processing time.
        let in_flight = self.jobs_in_flight(job.created) as u64 + 1;
        self.in_flight.push_back(job.created);
        self.counters.max_in_flight_seen = self.counters.max_in_flight_seen.max(in_flight);
        self.counters.create_jobs += 1;
        *self
            .counters
            .create_jobs_by_sha
            .entry(job.sha256.clone())
            .or_default() += 1;
        self.jobs.insert(id, job);
    }
}

/// State shared by both listeners' handlers.
pub(crate) struct Shared {
    pub(crate) cdn_url: String,
    state: Mutex<State>,
    /// True while result downloads are held (see [`super::Emulator::hold_downloads`]).
    pub(crate) downloads_held: tokio::sync::watch::Sender<bool>,
    /// The uplink every create-job body shares.
    pub(crate) uplink: Uplink,
}

impl Shared {
    pub(crate) fn new(cdn_url: String, knobs: Knobs) -> Self {
        let (rng, cdn_rng) = rngs(knobs.seed);
        Shared {
            cdn_url,
            downloads_held: tokio::sync::watch::Sender::new(false),
            uplink: Uplink::default(),
            state: Mutex::new(State {
                knobs,
                rng,
                cdn_rng,
                jobs: HashMap::new(),
                in_flight: VecDeque::new(),
                retained_input_bytes: 0,
                counters: Counters::default(),
                uploads: Vec::new(),
                create_jobs_open: 0,
            }),
        }
    }

    /// Locks the state; a panic elsewhere cannot poison the emulator for the remaining tests.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the knobs and reseeds the RNGs from them.
    pub(crate) fn set_knobs(&self, knobs: Knobs) {
        let mut state = self.lock();
        (state.rng, state.cdn_rng) = rngs(knobs.seed);
        state.knobs = knobs;
    }

    /// The CDN URL of a job's original, in the capture's shape.
    pub(crate) fn input_url(&self, job_id: &str, date: &str) -> String {
        format!(
            "{}/datarm7/magiceraser/image/remove-watermark/{date}/input/{job_id}_original_.jpg\
             ?x-oss-process=image/format,jpg/quality,Q_100/resize,m_lfit,w_3000,h_3000",
            self.cdn_url
        )
    }

    /// The CDN URL of a job's output, in the capture's shape.
    pub(crate) fn output_url(&self, job_id: &str, date: &str) -> String {
        format!(
            "{}/datarm7/magiceraser/image/remove-watermark/{date}/output/{job_id}.jpg",
            self.cdn_url
        )
    }
}

/// Request headers as (lower-case name, value) pairs; non-UTF-8 values are converted lossily.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The API's and the CDN's RNGs for `seed`.
pub(crate) fn rngs(seed: u64) -> (fastrand::Rng, fastrand::Rng) {
    (
        fastrand::Rng::with_seed(seed),
        fastrand::Rng::with_seed(seed ^ 0xcd4_cd4_cd4),
    )
}
