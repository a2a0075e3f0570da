//! Per-request retries: exponential backoff with full jitter, `Retry-After` as a floor, and
//! bounds on attempts and on total time. (Per-image retries across runs live in the ledger.)

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::{Error, Result};

/// Bounds for the client's own per-request retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (>= 1; 0 counts as 1).
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, full jitter.
    pub base_delay: Duration,
    /// Cap on a single backoff (also caps a server's `Retry-After`).
    pub max_delay: Duration,
    /// Total time budget for one call including its retries: no retry is started whose wait
    /// would end past it (an attempt already running may still finish after it).
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries: one attempt, errors go straight to the caller.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Told to the observer before each retry; lets the caller adapt (e.g. fewer jobs in flight on 429).
#[derive(Debug, Clone)]
pub struct RetryEvent {
    /// Which call: "create-job", "get-job" or "download".
    pub operation: &'static str,
    /// HTTP status when the failure had one (429, 500, ...).
    pub status: Option<u16>,
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    /// How long the client will wait before the next attempt.
    pub delay: Duration,
}

/// Callback told about each retry.
pub(crate) type RetryObserver = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// The jitter window after `failed_attempt` (1-based): `min(max_delay, base_delay * 2^(n-1))`.
pub(crate) fn backoff_cap(policy: &RetryPolicy, failed_attempt: u32) -> Duration {
    let exponent = failed_attempt.saturating_sub(1).min(64);
    let factor = 1u128.checked_shl(exponent).unwrap_or(u128::MAX);
    let nanos = policy.base_delay.as_nanos().saturating_mul(factor);
    let max = policy.max_delay.as_nanos();
    duration_from_nanos(nanos.min(max))
}

/// Full jitter: a uniformly random wait in `0..=cap`; `pick(n)` returns a number in `0..=n`.
pub(crate) fn full_jitter(cap: Duration, pick: impl FnOnce(u64) -> u64) -> Duration {
    let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(pick(cap_nanos).min(cap_nanos))
}

/// The wait before the next attempt: full jitter over the backoff window, raised to the
/// server's `Retry-After` (itself capped by `max_delay`) when it gave one.
pub(crate) fn retry_delay(
    policy: &RetryPolicy,
    failed_attempt: u32,
    retry_after: Option<Duration>,
    pick: impl FnOnce(u64) -> u64,
) -> Duration {
    let jittered = full_jitter(backoff_cap(policy, failed_attempt), pick);
    match retry_after {
        Some(asked) => jittered.max(asked.min(policy.max_delay)),
        None => jittered,
    }
}

/// Reads a `Retry-After` value: delta-seconds or an HTTP date (relative to `now`; a past date
/// means no wait). Anything else is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 1e9 and always fits.
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

/// Runs `attempt` until it succeeds, fails permanently, fails with an error `hand_back` picks,
/// or the policy's bounds are reached; the last error is returned as is.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    observer: Option<&RetryObserver>,
    operation: &'static str,
    hand_back: impl Fn(&Error) -> bool,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let max_attempts = policy.max_attempts.max(1);
    let mut number = 1;
    loop {
        let err: Error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !err.is_retryable() || number >= max_attempts || hand_back(&err) {
            return Err(err);
        }
        let delay = retry_delay(policy, number, err.retry_after(), |n| fastrand::u64(0..=n));
        if started.elapsed().saturating_add(delay) > policy.max_elapsed {
            tracing::debug!(operation, attempt = number, error = %err, "retry budget spent");
            return Err(err);
        }
        let event = RetryEvent {
            operation,
            status: err.http_status(),
            attempt: number,
            delay,
        };
        tracing::debug!(
            operation,
            attempt = number,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %err,
            "retrying"
        );
        if let Some(observer) = observer {
            observer(&event);
        }
        tokio::time::sleep(delay).await;
        number += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;

    fn policy(base_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms),
            max_elapsed: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_window_doubles_from_the_base_delay() {
        let p = policy(100, 10_000);
        let windows: Vec<u128> = (1..=5).map(|n| backoff_cap(&p, n).as_millis()).collect();
        assert_eq!(windows, [100, 200, 400, 800, 1600]);
    }

    #[test]
    fn backoff_window_is_capped_by_max_delay() {
        let p = policy(100, 500);
        assert_eq!(backoff_cap(&p, 4), Duration::from_millis(500));
        assert_eq!(backoff_cap(&p, u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_window() {
        let cap = Duration::from_millis(800);
        assert_eq!(full_jitter(cap, |_| 0), Duration::ZERO);
        assert_eq!(full_jitter(cap, |n| n), cap);
    }

    #[test]
    fn retry_after_is_a_floor_on_the_delay() {
        let p = policy(100, 10_000);
        let delay = retry_delay(&p, 1, Some(Duration::from_secs(2)), |_| 0);
        assert_eq!(delay, Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_capped_by_max_delay() {
        let p = policy(100, 1_000);
        let delay = retry_delay(&p, 1, Some(Duration::from_secs(3600)), |n| n);
        assert_eq!(delay, Duration::from_secs(1));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    proptest! {
        #[test]
        fn delay_never_exceeds_max_delay(
            base_ms in 0u64..100_000,
            max_ms in 0u64..100_000,
            attempt in 1u32..200,
            pick in any::<u64>(),
            asked in proptest::option::of(0u64..1_000_000),
        ) {
            let p = policy(base_ms, max_ms);
            let delay = retry_delay(&p, attempt, asked.map(Duration::from_secs), |n| pick % n.saturating_add(1).max(1));
            prop_assert!(delay <= p.max_delay);
        }
    }

    fn http(status: u16) -> Error {
        Error::Http {
            status,
            retry_after: None,
        }
    }

    fn fast_policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_elapsed: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_until_success() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&events);
        let observer: RetryObserver =
            Arc::new(move |e: &RetryEvent| seen.lock().unwrap().push(e.clone()));
        let mut failures = vec![http(503), http(429)];
        let result = run(
            &fast_policy(5),
            Some(&observer),
            "get-job",
            |_| false,
            || {
                let next = failures.pop();
                async move { next.map_or(Ok(7), Err) }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 7);
        let events = events.lock().unwrap();
        let statuses: Vec<_> = events.iter().map(|e| (e.attempt, e.status)).collect();
        assert_eq!(statuses, [(1, Some(429)), (2, Some(503))]);
        assert!(events.iter().all(|e| e.operation == "get-job"));
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<()> = run(
            &fast_policy(5),
            None,
            "create-job",
            |_| false,
            || {
                calls += 1;
                async { Err(http(404)) }
            },
        )
        .await;
        assert_eq!(result.unwrap_err().http_status(), Some(404));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn attempts_are_bounded_and_the_last_error_returned() {
        let mut calls = 0;
        let result: Result<()> = run(
            &fast_policy(3),
            None,
            "download",
            |_| false,
            || {
                calls += 1;
                let status = 500 + calls;
                async move { Err(http(status)) }
            },
        )
        .await;
        assert_eq!(calls, 3);
        assert_eq!(result.unwrap_err().http_status(), Some(503));
    }

    #[tokio::test]
    async fn no_retry_starts_past_the_total_time_budget() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(5),
        };
        let mut calls = 0;
        let result: Result<()> = run(
            &policy,
            None,
            "get-job",
            |_| false,
            || {
                calls += 1;
                async {
                    Err(Error::Http {
                        status: 429,
                        retry_after: Some(Duration::from_secs(30)),
                    })
                }
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a 30 s Retry-After does not fit a 5 s budget");
    }
}
