//! When to ask about a job: one schedule for every job in flight.
//!
//! The first `get-job` goes out near the job's expected completion, learned from the jobs
//! already finished (per size class); after that, short intervals growing by half each time,
//! with jitter, so completions are seen quickly without hammering the service. Some first
//! looks go out early on purpose, to find a service faster than the estimate: a ladder of them
//! while nothing is known, one at a time while every job is found done at its first look.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use eraser_store::Sha256;

/// Guess before any job has finished.
const INITIAL_ESTIMATE: Duration = Duration::from_secs(1);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(5);
/// Polled a bit after the estimate, so the first look usually finds the job done.
const MARGIN: Duration = Duration::from_millis(40);
/// How far below its first look a job found done there pulls the estimate. Early looks push it
/// back up by about 2 % each (their sample is the middle of the interval that saw the job
/// finish), so 3 % down keeps about seven first looks in ten finding the job done.
const DONE_AT_FIRST_LOOK: f64 = 0.97;
/// Jobs found done at their first look in a row over which that pull compounds once more: a
/// service much faster than the estimate (never an early look) is followed within a few waves
/// of jobs, while a steady one (an early look every few jobs) keeps the gentle pull.
const STREAK_STEP: f64 = 32.0;
/// The strongest pull, however long the streak.
const MAX_PULL: f64 = 0.5;
/// Jobs found done at their first look in a row after which first looks go out early, to
/// find out whether the service has become much faster than the estimate (the pull above only
/// creeps down, by a few per cent per wave of jobs). An early look that finds the job still in
/// progress ends the streak.
const EXPLORE_AFTER: u32 = 16;
/// How early, as a share of the estimate; before anything is known, the n-th job's first look
/// goes out at this share to the n-th power of the guess (a ladder down to `LADDER_FLOOR`).
const EXPLORE_AT: f64 = 0.6;
/// No early looks below this estimate: a `get-job` would cost more than it could save.
const EXPLORE_ABOVE: Duration = Duration::from_millis(100);
/// The earliest first look on the ladder.
const LADDER_FLOOR: Duration = Duration::from_millis(10);

/// Running estimate of processing time, overall and per size class (powers of 4 bytes).
#[derive(Debug, Default)]
pub struct Eta {
    overall: Option<f64>,
    by_class: Vec<Option<f64>>,
    /// Jobs found done at their first look since a look found one still in progress.
    streak: u32,
    /// Jobs submitted so far (the ladder's rung).
    submitted: u32,
    /// When the last early look after a streak is due: one at a time, so a streak seen just
    /// before a wave of submissions does not send the whole wave looking early.
    explore_due: Option<Instant>,
}

impl Eta {
    /// An estimate that starts from `seconds` (learned by an earlier run) instead of the guess.
    pub fn starting_at(seconds: f64) -> Self {
        Eta {
            overall: Some(seconds),
            by_class: Vec::new(),
            streak: 0,
            submitted: 0,
            explore_due: None,
        }
    }

    /// The overall estimate in seconds, once any job has been seen to finish (or one was given).
    pub fn overall(&self) -> Option<f64> {
        self.overall
    }

    fn class(size: u64) -> usize {
        ((64 - size.max(1).leading_zeros()) / 2) as usize
    }

    /// Expected processing time of a job of `size` bytes.
    pub fn expect(&self, size: u64) -> Duration {
        let secs = self
            .by_class
            .get(Self::class(size))
            .copied()
            .flatten()
            .or(self.overall)
            .unwrap_or(INITIAL_ESTIMATE.as_secs_f64());
        seconds(secs)
    }

    /// When to look first at a job just submitted with the estimate `expected`, and whether
    /// that look is early (an exploration: see [`Eta::learn_explored`]). Early while nothing
    /// is known yet (a ladder of looks over the first jobs, so one of them finds how fast the
    /// service is), and while every job is found done at its first look.
    pub fn first_look(&mut self, expected: Duration) -> (Duration, bool) {
        self.submitted = self.submitted.saturating_add(1);
        if self.overall.is_none() {
            let step = EXPLORE_AT.powi(self.submitted.min(16) as i32);
            return (scaled(expected, step).max(LADDER_FLOOR), true);
        }
        let now = Instant::now();
        if self.streak >= EXPLORE_AFTER
            && expected > EXPLORE_ABOVE
            && self.explore_due.is_none_or(|due| due <= now)
        {
            let delay = scaled(expected, EXPLORE_AT);
            self.explore_due = Some(now + delay);
            return (delay, true);
        }
        (first_delay(expected), false)
    }

    /// An early first look found its job still in progress: the estimate is not too high.
    pub fn explored_too_early(&mut self) {
        self.streak = 0;
    }

    /// A job of `size` was found done by an early first look sent `asked` after its
    /// submission: the service takes no longer than that now, so the estimate drops to it at
    /// once (margin taken off) instead of creeping down.
    pub fn learn_explored(&mut self, size: u64, asked: Duration) {
        self.streak = self.streak.saturating_add(1);
        let bound = asked.saturating_sub(MARGIN).as_secs_f64();
        let lower = |old: Option<f64>| Some(old.map_or(bound, |o| o.min(bound)));
        self.overall = lower(self.overall);
        let c = Self::class(size);
        if self.by_class.len() <= c {
            self.by_class.resize(c + 1, None);
        }
        self.by_class[c] = lower(self.by_class[c].or(self.overall));
    }

    /// A job of `size` finished somewhere between `lower` and `upper` after it was submitted
    /// (`lower` zero: done at the first look, asked `upper` after its submission, a look
    /// scheduled from the estimate `expected`).
    pub fn learn(&mut self, size: u64, lower: Duration, upper: Duration, expected: Duration) {
        let sample = if lower.is_zero() {
            // Done at the first look: it may have finished well before. Nudge the estimate
            // below the look, margin taken off (with it, the estimate could never fall below
            // ten margins, however fast the service), and no higher than the estimate the look
            // was scheduled from: a look sent late (a busy machine) must not hold the estimate
            // up, or a fast service is waited for at some multiple of that lateness. A look
            // that comes too early pushes back.
            let looked = upper.saturating_sub(MARGIN).min(expected);
            let pull = DONE_AT_FIRST_LOOK
                .powf(1.0 + f64::from(self.streak) / STREAK_STEP)
                .max(MAX_PULL);
            self.streak = self.streak.saturating_add(1);
            looked.as_secs_f64() * pull
        } else {
            self.streak = 0;
            (lower.as_secs_f64() + upper.as_secs_f64()) / 2.0
        };
        // "Done by then" only bounds the time from above: it never raises the estimate (a look
        // scheduled from an older, higher estimate would otherwise pull it back up).
        let upper_only = lower.is_zero();
        let blend = |old: Option<f64>| {
            Some(old.map_or(sample, |o| {
                let mixed = o * 0.7 + sample * 0.3;
                if upper_only { mixed.min(o) } else { mixed }
            }))
        };
        self.overall = blend(self.overall);
        let c = Self::class(size);
        if self.by_class.len() <= c {
            self.by_class.resize(c + 1, None);
        }
        self.by_class[c] = blend(self.by_class[c]);
    }
}

/// The delay before the next look at a job that was still in progress after `polls` looks.
pub fn next_interval(expected: Duration, polls: u32) -> Duration {
    let base = (expected / 10).clamp(MIN_INTERVAL, MAX_INTERVAL);
    let grown = scaled(base, 1.5f64.powi(polls.saturating_sub(1).min(20) as i32));
    jitter(grown.min(MAX_INTERVAL))
}

/// The delay before the first look at a job submitted just now.
pub fn first_delay(expected: Duration) -> Duration {
    expected + MARGIN
}

fn jitter(d: Duration) -> Duration {
    scaled(d, 0.8 + fastrand::f64() * 0.4)
}

/// A duration of `secs` seconds; one too large to hold is the longest there is (an estimate
/// read back from the ledger may be anything).
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// `d` times `factor`, saturating.
fn scaled(d: Duration, factor: f64) -> Duration {
    seconds(d.as_secs_f64() * factor)
}

/// Jobs ordered by when they are next due.
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(Instant, Sha256)>>,
}

impl Schedule {
    pub fn at(&mut self, when: Instant, sha: Sha256) {
        self.heap.push(Reverse((when, sha)));
    }

    /// When the earliest job is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Takes the next job due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Sha256> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse((_, s))| s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_observed_durations() {
        let mut eta = Eta::default();
        assert_eq!(eta.expect(1000), INITIAL_ESTIMATE);
        for _ in 0..20 {
            eta.learn(
                1000,
                Duration::from_millis(2900),
                Duration::from_millis(3100),
                Duration::ZERO,
            );
        }
        let e = eta.expect(1000).as_secs_f64();
        assert!((e - 3.0).abs() < 0.1, "{e}");
    }

    #[test]
    fn jobs_always_done_at_the_first_look_drive_the_estimate_toward_zero_even_when_looks_run_late()
    {
        let mut eta = Eta::default();
        for _ in 0..1000 {
            // Every look goes out 20 ms after it was due, as on a busy machine.
            let expected = eta.expect(1000);
            let looked = first_delay(expected) + Duration::from_millis(20);
            eta.learn(1000, Duration::ZERO, looked, expected);
        }
        // Far below ten margins, and not held at some multiple of the lateness.
        let e = eta.expect(1000);
        assert!(e < Duration::from_millis(5), "{e:?}");
    }

    /// `jobs` jobs of a service taking `secs` ± 5 %, each looked at as the pipeline does:
    /// first at the estimate, then at growing intervals until done. Returns the share found
    /// done at the first look.
    fn run_jobs(eta: &mut Eta, rng: &mut fastrand::Rng, jobs: usize, secs: f64) -> f64 {
        let mut done_first = 0;
        for _ in 0..jobs {
            let takes = seconds(secs * (0.95 + rng.f64() * 0.1));
            let expected = eta.expect(1000);
            let mut looked = first_delay(expected);
            if looked >= takes {
                done_first += 1;
                eta.learn(1000, Duration::ZERO, looked, expected);
                continue;
            }
            let mut polls = 1;
            loop {
                let before = looked;
                looked += next_interval(expected, polls);
                polls += 1;
                if looked >= takes {
                    eta.learn(1000, before, looked, expected);
                    break;
                }
            }
        }
        done_first as f64 / jobs as f64
    }

    #[test]
    fn a_steady_service_is_found_done_at_most_first_looks() {
        let (mut eta, mut rng) = (Eta::default(), fastrand::Rng::with_seed(7));
        run_jobs(&mut eta, &mut rng, 100, 1.0);
        let share = run_jobs(&mut eta, &mut rng, 2000, 1.0);
        assert!(
            share >= 0.65,
            "only {share:.2} of first looks found the job done"
        );
    }

    #[test]
    fn a_service_that_gets_twice_as_fast_is_followed_within_a_few_waves() {
        let (mut eta, mut rng) = (Eta::default(), fastrand::Rng::with_seed(8));
        run_jobs(&mut eta, &mut rng, 300, 1.0);
        run_jobs(&mut eta, &mut rng, 100, 0.5);
        let e = eta.expect(1000);
        assert!(e < Duration::from_millis(600), "{e:?}");
    }

    #[test]
    fn a_wave_of_jobs_done_at_their_first_look_lowers_the_estimate_once_not_once_per_job() {
        let mut eta = Eta::starting_at(1.0);
        let expected = eta.expect(1000);
        for _ in 0..32 {
            let looked = first_delay(expected) + Duration::from_millis(5);
            eta.learn(1000, Duration::ZERO, looked, expected);
        }
        // Each job pulls from the estimate its own look was scheduled from: about one pull
        // for the wave, not 32 compounded (which would leave 0.75 s).
        let e = eta.expect(1000);
        assert!(e >= Duration::from_millis(880), "{e:?}");
    }

    #[test]
    fn a_job_found_done_late_by_a_look_scheduled_from_an_older_estimate_does_not_raise_it() {
        let mut eta = Eta::starting_at(1.0);
        eta.learn_explored(1000, Duration::from_millis(360));
        let lowered = eta.expect(1000);
        eta.learn(
            1000,
            Duration::ZERO,
            Duration::from_millis(1040),
            Duration::from_secs(1),
        );
        assert_eq!(eta.expect(1000), lowered);
    }

    #[test]
    fn an_early_look_that_finds_the_job_done_drops_the_estimate_at_once() {
        let mut eta = Eta::starting_at(2.0);
        eta.learn_explored(1000, Duration::from_millis(1200));
        assert_eq!(eta.expect(1000), Duration::from_millis(1160));
        assert_eq!(eta.overall(), Some(1.16));
    }

    #[test]
    fn before_anything_is_known_the_first_looks_go_down_a_ladder() {
        let mut eta = Eta::default();
        let looks: Vec<(Duration, bool)> =
            (0..3).map(|_| eta.first_look(INITIAL_ESTIMATE)).collect();
        assert_eq!(
            looks,
            [
                (Duration::from_millis(600), true),
                (Duration::from_millis(360), true),
                (Duration::from_millis(216), true)
            ]
        );
        let (deep, _) = (0..40)
            .map(|_| eta.first_look(INITIAL_ESTIMATE))
            .last()
            .unwrap();
        assert_eq!(deep, LADDER_FLOOR);
    }

    #[test]
    fn a_known_estimate_is_looked_at_after_it_until_a_long_streak_of_jobs_done_at_once() {
        let mut eta = Eta::starting_at(1.0);
        assert_eq!(
            eta.first_look(Duration::from_secs(1)),
            (first_delay(Duration::from_secs(1)), false)
        );
        for _ in 0..EXPLORE_AFTER {
            eta.learn(
                1000,
                Duration::ZERO,
                Duration::from_millis(1040),
                Duration::from_secs(1),
            );
        }
        let expected = eta.expect(1000);
        let (delay, explore) = eta.first_look(expected);
        assert!(explore && delay < expected, "{delay:?} for {expected:?}");
        // One early look at a time.
        assert!(!eta.first_look(expected).1);
        eta.explored_too_early();
        assert!(
            !eta.first_look(expected).1,
            "an early look in progress ends the streak"
        );
    }

    #[test]
    fn a_look_that_comes_too_early_raises_the_estimate() {
        let mut eta = Eta::default();
        eta.learn(
            1000,
            Duration::ZERO,
            Duration::from_millis(300),
            Duration::from_secs(1),
        );
        let before = eta.expect(1000);
        eta.learn(
            1000,
            Duration::from_millis(300),
            Duration::from_millis(900),
            Duration::from_secs(1),
        );
        assert!(eta.expect(1000) > before);
    }

    #[test]
    fn an_estimate_carried_over_from_an_earlier_run_replaces_the_guess() {
        let eta = Eta::starting_at(7.5);
        assert_eq!(eta.expect(1000), Duration::from_millis(7500));
        assert_eq!(eta.overall(), Some(7.5));
        assert_eq!(Eta::default().overall(), None);
    }

    #[test]
    fn unknown_size_class_uses_the_overall_estimate() {
        let mut eta = Eta::default();
        eta.learn(
            1000,
            Duration::from_secs(2),
            Duration::from_secs(2),
            Duration::from_secs(2),
        );
        assert_eq!(eta.expect(10_000_000), eta.expect(1000));
    }

    #[test]
    fn intervals_grow_and_stay_bounded() {
        let e = Duration::from_secs(10);
        assert!(next_interval(e, 1) <= Duration::from_millis(1200));
        assert!(next_interval(e, 30) <= scaled(MAX_INTERVAL, 1.2));
        assert!(next_interval(Duration::ZERO, 1) >= scaled(MIN_INTERVAL, 0.8));
    }

    #[test]
    fn schedule_yields_due_jobs_in_order() {
        let mut s = Schedule::default();
        let now = Instant::now();
        s.at(now + Duration::from_secs(2), Sha256([2; 32]));
        s.at(now, Sha256([1; 32]));
        assert_eq!(s.pop_due(now), Some(Sha256([1; 32])));
        assert_eq!(s.pop_due(now), None);
        assert_eq!(s.next_due(), Some(now + Duration::from_secs(2)));
    }
}
