//! How hard eraser pushes the service: adaptive jobs in flight (AIMD), uploads in flight (what
//! the jobs need), and an optional request-rate cap.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eraser_api::RetryEvent;

use crate::progress::Counters;

/// Jobs-in-flight limit: starts at `-j`, halves when the service answers 429 (at most once per
/// cool-down), grows back by one per `limit` completed jobs.
#[derive(Debug)]
pub struct Limiter {
    max: f64,
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    limit: f64,
    last_cut: Option<Instant>,
    lowest: f64,
}

const COOL_DOWN: Duration = Duration::from_secs(2);

impl Limiter {
    pub fn new(max: usize) -> Self {
        let max = max.max(1) as f64;
        Self {
            max,
            state: Mutex::new(LimiterState {
                limit: max,
                last_cut: None,
                lowest: max,
            }),
        }
    }

    /// Jobs allowed in flight now.
    pub fn current(&self) -> usize {
        self.lock().limit.floor().max(1.0) as usize
    }

    /// The lowest limit the run was pushed down to.
    pub fn settled(&self) -> usize {
        let s = self.lock();
        s.limit.min(s.lowest.max(1.0)).floor().max(1.0) as usize
    }

    /// The service said "too many": halve, unless we just did.
    pub fn throttled(&self) {
        self.cut(1);
    }

    /// The service refused an upload while it held `accepted` of our jobs: halve, unless we
    /// just did, but not below `accepted` (the service took that many).
    pub fn refused_upload(&self, accepted: usize) {
        self.cut(accepted);
    }

    fn cut(&self, floor: usize) {
        let mut s = self.lock();
        if s.last_cut.is_none_or(|t| t.elapsed() >= COOL_DOWN) {
            s.limit = (s.limit / 2.0).max(floor as f64).max(1.0).min(s.limit);
            s.lowest = s.lowest.min(s.limit);
            s.last_cut = Some(Instant::now());
            tracing::info!(
                "service is throttling: jobs in flight limited to {}",
                s.limit.floor()
            );
        }
    }

    /// A job finished: grow back slowly.
    pub fn completed(&self) {
        let mut s = self.lock();
        s.limit = (s.limit + 1.0 / s.limit).min(self.max);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How many create-jobs may be in flight at once: what `-j` needs by Little's law, bounded by
/// `--upload-concurrency`, which is also what a kill in the middle of sending can cost (each
/// upload in flight may have created a job whose id the kill lost).
///
/// To keep `jobs` at the service, a job must be sent every (processing + create-job time) /
/// `jobs` seconds; each send takes the create-job time, so about `jobs × create / (processing +
/// create)` are in flight at once, plus one so a slow reply does not leave a slot empty.
#[derive(Debug)]
pub struct UploadWindow {
    cap: usize,
    /// Create-job time (request sent to reply read), seconds, averaged over recent uploads.
    create: Option<f64>,
}

impl UploadWindow {
    /// The fewest in flight: a slow reply never leaves the service without a new job.
    const MIN: usize = 2;

    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            create: None,
        }
    }

    /// A create-job took `took`.
    pub fn took(&mut self, took: Duration) {
        let t = took.as_secs_f64();
        self.create = Some(self.create.map_or(t, |c| c * 0.8 + t * 0.2));
    }

    /// Uploads that may be in flight beside `jobs` jobs allowed at the service.
    pub fn size(&self, jobs: usize, eta: &super::schedule::Eta) -> usize {
        let Some(create) = self.create else {
            // Nothing measured yet: the first wave goes out as fast as the cap allows.
            return self.cap;
        };
        let processing = eta.overall().unwrap_or(1.0).max(0.0);
        let needed = jobs as f64 * create / (processing + create).max(f64::EPSILON);
        let needed = if needed.is_finite() {
            needed.ceil() as usize + 1
        } else {
            self.cap
        };
        needed.clamp(Self::MIN.min(self.cap), self.cap)
    }
}

/// A semaphore of `n` permits (at least one, at most tokio's maximum, whatever `n` is).
#[allow(
    clippy::disallowed_methods,
    reason = "the count is clamped to what Semaphore::new accepts"
)]
pub fn permits(n: usize) -> tokio::sync::Semaphore {
    tokio::sync::Semaphore::new(n.clamp(1, tokio::sync::Semaphore::MAX_PERMITS))
}

/// A cap on API requests per second (`--rate`), shared by every request.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimit {
    pub fn new(per_second: f64) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0).then(|| Self {
            interval: Duration::try_from_secs_f64(1.0 / per_second).unwrap_or(Duration::MAX),
            next: tokio::sync::Mutex::new(Instant::now()),
        })
    }

    /// Waits for the next request slot.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// What the API client reports back to the pipeline (made before the client is built):
/// retries are counted, and a 429 lowers the jobs-in-flight limit.
#[derive(Debug, Clone)]
pub struct Feedback {
    pub counters: Arc<Counters>,
    pub limiter: Arc<Limiter>,
}

impl Feedback {
    pub fn new(concurrency: usize) -> Self {
        Self {
            counters: Arc::new(Counters::default()),
            limiter: Arc::new(Limiter::new(concurrency)),
        }
    }

    /// The client's retry observer: counts retries and turns 429s into a lower limit (a
    /// create-job's 429 comes back to the pipeline instead, which does the same).
    pub fn retry_observer(&self) -> Arc<dyn Fn(&RetryEvent) + Send + Sync> {
        let feedback = self.clone();
        Arc::new(move |ev: &RetryEvent| {
            Counters::add(&feedback.counters.retries, 1);
            if ev.status == Some(429) {
                feedback.limiter.throttled();
            }
            tracing::debug!(
                "{} attempt {} failed (status {:?}); retrying in {:?}",
                ev.operation,
                ev.attempt,
                ev.status,
                ev.delay
            );
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_halves_and_completions_grow_back() {
        let l = Limiter::new(32);
        l.throttled();
        assert_eq!(l.current(), 16);
        l.throttled(); // within the cool-down: ignored
        assert_eq!(l.current(), 16);
        for _ in 0..20 {
            l.completed();
        }
        assert_eq!(l.current(), 17);
        assert_eq!(l.settled(), 16);
    }

    #[test]
    fn a_refused_upload_halves_but_not_below_the_jobs_the_service_took() {
        let l = Limiter::new(16);
        l.refused_upload(12);
        assert_eq!(l.current(), 12);
        let l = Limiter::new(16);
        l.refused_upload(3);
        assert_eq!(l.current(), 8);
        let l = Limiter::new(4);
        l.refused_upload(9);
        assert_eq!(l.current(), 4, "a refusal never raises the limit");
    }

    #[test]
    fn the_first_uploads_go_out_as_fast_as_the_cap_allows() {
        let w = UploadWindow::new(8);
        assert_eq!(w.size(32, &super::super::schedule::Eta::default()), 8);
    }

    #[test]
    fn uploads_in_flight_follow_what_the_jobs_need_by_littles_law() {
        let eta = super::super::schedule::Eta::starting_at(2.0);
        let mut w = UploadWindow::new(16);
        w.took(Duration::from_millis(300));
        // 32 × 0.3 / 2.3 = 4.2: five, plus one.
        assert_eq!(w.size(32, &eta), 6);
        let mut fast = UploadWindow::new(16);
        fast.took(Duration::from_millis(1));
        assert_eq!(fast.size(32, &eta), 2, "never below two");
        let mut slow = UploadWindow::new(4);
        slow.took(Duration::from_secs(5));
        assert_eq!(slow.size(32, &eta), 4, "never above the cap");
    }

    #[test]
    fn never_below_one_nor_above_max() {
        let l = Limiter::new(1);
        l.throttled();
        assert_eq!(l.current(), 1);
        for _ in 0..10 {
            l.completed();
        }
        assert_eq!(l.current(), 1);
    }
}
