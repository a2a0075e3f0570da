//! How hard eraser pushes the service: adaptive jobs-in-flight (AIMD) and an optional
//! request-rate cap.

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

/// After the service refused an upload: until `until`, uploads only replace jobs of ours
/// that finish (at most `level` at the service); more waits for the refusal's `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct UploadHold {
    pub until: Instant,
    pub level: usize,
}

impl UploadHold {
    /// Shortest hold, so a refusal without `Retry-After` cannot turn into a stream of uploads.
    const MIN: Duration = Duration::from_millis(200);
    /// Longest hold, whatever `Retry-After` says.
    const MAX: Duration = Duration::from_secs(20);

    pub fn new(retry_after: Option<Duration>, level: usize) -> Self {
        let wait = retry_after.unwrap_or_default().clamp(Self::MIN, Self::MAX);
        Self {
            until: Instant::now() + wait,
            level,
        }
    }

    /// Uploads allowed now beside `at_service` jobs and uploads under way (`None`: no hold).
    pub fn allows(&self, at_service: usize) -> Option<usize> {
        (Instant::now() < self.until).then(|| self.level.saturating_sub(at_service))
    }
}

/// How long something has gone on without a break (the service refusing every upload, or not
/// reached at all); past the limit (`--outage-timeout`) the service counts as unavailable.
#[derive(Debug)]
pub struct Patience {
    limit: Duration,
    since: Option<Instant>,
}

impl Patience {
    pub fn new(limit: Duration) -> Self {
        Self { limit, since: None }
    }

    /// It happened again at `now`: how long it has lasted, once that reaches the limit.
    pub fn lapsed(&mut self, now: Instant) -> Option<Duration> {
        let lasted = now.saturating_duration_since(*self.since.get_or_insert(now));
        (lasted >= self.limit).then_some(lasted)
    }

    /// Whether it is going on (happened, not reset since).
    pub fn running(&self) -> bool {
        self.since.is_some()
    }

    /// It stopped: the next time starts the count again.
    pub fn reset(&mut self) {
        self.since = None;
    }
}

/// How long the service has refused every upload (429) while holding none of this run's jobs.
/// A refusal while it holds some of the run's jobs is throttling, not absence, and starts the
/// clock again.
#[derive(Debug)]
pub struct RefusalClock(Patience);

impl RefusalClock {
    pub fn new(limit: Duration) -> Self {
        Self(Patience::new(limit))
    }

    /// An upload refused at `now` while the service held `accepted` of the run's jobs: how long
    /// every upload has been refused with none held, once that reaches the patience.
    pub fn refused(&mut self, accepted: usize, now: Instant) -> Option<Duration> {
        if accepted > 0 {
            self.0.reset();
            return None;
        }
        self.0.lapsed(now)
    }

    /// The service accepted an upload.
    pub fn accepted(&mut self) {
        self.0.reset();
    }
}

/// A cap on API requests per second (`--rate`), shared by every request.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimit {
    // TODO(pipeline owner): `per_second` is bounded by the config's RATE_RANGE (0.001 to
    // 10000); below about 1e-292 this would panic. Duration::try_from_secs_f64 would not.
    #[allow(clippy::disallowed_methods)]
    pub fn new(per_second: f64) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0).then(|| Self {
            interval: Duration::from_secs_f64(1.0 / per_second),
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

/// What the pipeline shares with the API client before the client is built.
#[derive(Debug, Clone)]
pub struct Hooks {
    pub counters: Arc<Counters>,
    pub limiter: Arc<Limiter>,
}

impl Hooks {
    pub fn new(concurrency: usize) -> Self {
        Self {
            counters: Arc::new(Counters::default()),
            limiter: Arc::new(Limiter::new(concurrency)),
        }
    }

    /// The client's retry observer: counts retries and turns 429s into a lower limit (a
    /// create-job's 429 comes back to the pipeline instead, which does the same).
    pub fn retry_observer(&self) -> Arc<dyn Fn(&RetryEvent) + Send + Sync> {
        let hooks = self.clone();
        Arc::new(move |ev: &RetryEvent| {
            Counters::add(&hooks.counters.retries, 1);
            if ev.status == Some(429) {
                hooks.limiter.throttled();
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

    /// An outage timeout of the tests' own (not the default, so nothing depends on it).
    const LIMIT: Duration = Duration::from_secs(45);

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
    fn a_hold_lets_uploads_replace_jobs_up_to_its_level_until_it_ends() {
        let hold = UploadHold::new(Some(Duration::from_secs(5)), 4);
        assert_eq!(hold.allows(1), Some(3));
        assert_eq!(hold.allows(6), Some(0));
        let past = UploadHold {
            until: Instant::now(),
            level: 4,
        };
        assert_eq!(past.allows(6), None);
    }

    #[test]
    fn a_hold_is_never_shorter_than_its_floor_nor_longer_than_its_cap() {
        let at = Instant::now();
        let zero = UploadHold::new(Some(Duration::ZERO), 1);
        assert!(zero.until >= at + UploadHold::MIN);
        let long = UploadHold::new(Some(Duration::from_secs(3600)), 1);
        assert!(long.until <= Instant::now() + UploadHold::MAX);
    }

    #[test]
    fn patience_runs_from_the_first_time_until_a_reset() {
        let start = Instant::now();
        let mut patience = Patience::new(LIMIT);
        assert!(!patience.running());
        assert_eq!(patience.lapsed(start), None);
        assert!(patience.running());
        assert_eq!(patience.lapsed(start + LIMIT), Some(LIMIT));
        patience.reset();
        assert!(!patience.running());
        assert_eq!(patience.lapsed(start + LIMIT * 2), None);
    }

    #[test]
    fn refusals_with_no_job_at_the_service_end_the_patience_at_its_limit() {
        let start = Instant::now();
        let mut clock = RefusalClock::new(LIMIT);
        assert_eq!(clock.refused(0, start), None);
        let almost = start + LIMIT - Duration::from_millis(1);
        assert_eq!(clock.refused(0, almost), None);
        let past = start + LIMIT + Duration::from_secs(1);
        assert_eq!(clock.refused(0, past), Some(LIMIT + Duration::from_secs(1)));
    }

    #[test]
    fn an_accepted_upload_starts_the_patience_again() {
        let start = Instant::now();
        let mut clock = RefusalClock::new(LIMIT);
        clock.refused(0, start);
        clock.accepted();
        let later = start + LIMIT;
        assert_eq!(
            clock.refused(0, later),
            None,
            "the clock starts at this refusal"
        );
        assert!(clock.refused(0, later + LIMIT).is_some());
    }

    #[test]
    fn a_refusal_while_the_service_holds_jobs_of_the_run_is_throttling_not_absence() {
        let start = Instant::now();
        let mut clock = RefusalClock::new(LIMIT);
        clock.refused(0, start);
        let later = start + LIMIT;
        assert_eq!(clock.refused(2, later), None);
        assert_eq!(clock.refused(0, later), None, "held jobs reset the clock");
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
