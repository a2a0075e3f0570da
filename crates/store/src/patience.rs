//! Waiting out an unreachable database (a PostgreSQL server restarting, the network cut): a
//! ledger call that fails because the server cannot be reached is tried again, with growing
//! pauses, until the outage has lasted the handle's timeout. The outage is shared by every call
//! of a handle and its clones, so it is told once and its timeout counts from when it began,
//! however many calls wait meanwhile. A file ledger never reports one.

use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::{ErrorKind, Result};

/// The first pause before trying again; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(crate) struct Patience {
    /// How long an outage is waited out; zero: not at all (the error is returned at once).
    timeout: Duration,
    /// When the current outage began, while it lasts.
    since: Mutex<Option<Instant>>,
}

impl Patience {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            since: Mutex::new(None),
        }
    }

    /// Judges a call's result: `Break` to return it, `Continue` once it is time to try again.
    /// `attempt` counts the tries of this call (its pauses grow with it).
    pub(crate) async fn judge<T>(
        &self,
        result: Result<T>,
        attempt: &mut u32,
    ) -> ControlFlow<Result<T>> {
        let e = match result {
            Err(e) if e.kind() == ErrorKind::Unavailable && !self.timeout.is_zero() => e,
            other => {
                if other.is_ok() {
                    self.answered();
                }
                return ControlFlow::Break(other);
            }
        };
        let waited = self.outage_began(&e).elapsed();
        let Some(left) = self.timeout.checked_sub(waited).filter(|d| !d.is_zero()) else {
            return ControlFlow::Break(Err(e));
        };
        let pause = FIRST_PAUSE
            .saturating_mul(1 << (*attempt).min(5))
            .min(LONGEST_PAUSE)
            .min(left);
        *attempt += 1;
        tokio::time::sleep(pause).await;
        ControlFlow::Continue(())
    }

    /// Since when the database has been unreachable, while it is.
    pub(crate) fn unreachable_since(&self) -> Option<std::time::Instant> {
        self.lock().map(Instant::into_std)
    }

    fn outage_began(&self, e: &crate::Error) -> Instant {
        *self.lock().get_or_insert_with(|| {
            tracing::warn!(
                "{e}; waiting up to {}s for it to come back (--outage-timeout)",
                self.timeout.as_secs()
            );
            Instant::now()
        })
    }

    fn answered(&self) {
        let mut since = self.lock();
        if let Some(began) = since.take() {
            tracing::warn!(
                "the ledger answers again (unreachable for {}s)",
                began.elapsed().as_secs()
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A panic while holding this lock leaves an `Option<Instant>`: still usable.
        self.since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn unreachable() -> Result<u32> {
        Err(Error::Unavailable {
            ledger: "postgres://h/db".into(),
            detail: "connection refused".into(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_database_is_tried_again_until_the_timeout() {
        let patience = Patience::new(Duration::from_secs(10));
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match patience.judge(unreachable(), &mut attempt).await {
                ControlFlow::Continue(()) => continue,
                ControlFlow::Break(r) => {
                    assert!(r.is_err());
                    break;
                }
            }
        }
        assert!(attempt > 3, "tried {attempt} times");
        assert!(started.elapsed() >= Duration::from_secs(10));
        assert!(patience.unreachable_since().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_ends_the_outage() {
        let patience = Patience::new(Duration::from_secs(10));
        let mut attempt = 0;
        assert!(
            patience
                .judge(unreachable(), &mut attempt)
                .await
                .is_continue()
        );
        assert!(patience.unreachable_since().is_some());
        assert!(matches!(
            patience.judge(Ok(7), &mut attempt).await,
            ControlFlow::Break(Ok(7))
        ));
        assert!(patience.unreachable_since().is_none());
    }

    #[tokio::test]
    async fn without_a_timeout_the_error_is_returned_at_once() {
        let patience = Patience::new(Duration::ZERO);
        let mut attempt = 0;
        assert!(matches!(
            patience.judge(unreachable(), &mut attempt).await,
            ControlFlow::Break(Err(_))
        ));
        assert_eq!(attempt, 0);
    }

    #[tokio::test]
    async fn other_errors_are_returned_at_once() {
        let patience = Patience::new(Duration::from_secs(10));
        let mut attempt = 0;
        let busy: Result<u32> = Err(Error::Busy { ledger: "l".into() });
        assert!(patience.judge(busy, &mut attempt).await.is_break());
        assert!(patience.unreachable_since().is_none());
    }
}
