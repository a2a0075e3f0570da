//! Polling: `get-job` for every job that is due (on the schedule of `schedule.rs`), the jobs
//! of this run's images that it did not submit itself (resumed from an earlier run, or another
//! run's), and what each answer means for the job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eraser_api::{JobId, JobState};
use eraser_store::Sha256;

use super::coordinator::{Coordinator, Event, Job, JobTask};
use super::schedule;
use crate::progress::Counters;

/// The least time a single `get-job` look is given, whatever the job's deadline.
const MIN_LOOK: Duration = Duration::from_secs(5);

/// A `get-job`'s answer.
pub(super) struct Polled {
    sha: Sha256,
    /// When the `get-job` went out (what the processing-time estimate learns from).
    asked: Instant,
    result: Result<JobState, eraser_api::Error>,
}

impl Coordinator {
    /// Starts `get-job` for every job that is due.
    pub fn poll_due(&mut self) {
        let now = Instant::now();
        while let Some(sha) = self.schedule.pop_due(now) {
            let Some(job) = self.jobs.get_mut(&sha) else {
                continue;
            };
            if job.task != JobTask::None {
                continue;
            }
            job.task = JobTask::Poll;
            job.polls += 1;
            let client = self.client.clone();
            let id = job.job_id.clone();
            let rate = self.rate.clone();
            let counters = Arc::clone(&self.counters);
            // A look that outlives the job's deadline (a slow or stuck reply) is cut short and
            // counts as "still in progress", so the timeout below always gets its say. Every
            // look gets a few seconds, so a job resumed long after it was submitted is asked at
            // least once before its age counts against it.
            let deadline = (job.submitted + self.opts.job_timeout).max(Instant::now() + MIN_LOOK);
            self.tasks.spawn(async move {
                if let Some(rate) = rate {
                    rate.wait().await;
                }
                Counters::add(&counters.get_jobs, 1);
                let asked = Instant::now();
                let result = tokio::time::timeout_at(deadline.into(), client.get_job(&id))
                    .await
                    .unwrap_or(Ok(JobState::InProgress));
                Event::Polled(Polled { sha, asked, result })
            });
        }
    }

    /// Polls jobs of this run's images that are `processing` but not tracked: jobs of an
    /// earlier, interrupted run, or of another run working on the same images.
    pub async fn adopt_in_flight(&mut self) -> anyhow::Result<()> {
        let rows = self
            .ledger
            .run_in_flight(self.run)
            .await
            .context("reading jobs in flight")?;
        let now_utc = chrono::Utc::now();
        for row in rows {
            if self.jobs.contains_key(&row.sha256)
                || self.uploading.contains(&row.sha256)
                || self.given_up.contains(&row.sha256)
            {
                continue;
            }
            // A job submitted by an earlier run gets this run's whole --job-timeout: the time
            // eraser was not running is not the job's fault, and giving up would mean paying
            // again for an image the service may be about to finish.
            let age = (now_utc - row.updated_at).to_std().unwrap_or_default();
            let submitted = Instant::now()
                .checked_sub(age)
                .unwrap_or_else(Instant::now)
                .max(self.started);
            Counters::add(&self.counters.resumed, 1);
            Counters::add(&self.counters.in_flight, 1);
            self.jobs.insert(
                row.sha256,
                Job {
                    job_id: JobId::new(row.job_id),
                    size: row.size,
                    submitted,
                    ours: false,
                    expected: Duration::ZERO,
                    explore: false,
                    polls: 0,
                    last_in_progress: None,
                    task: JobTask::None,
                },
            );
            self.schedule.at(Instant::now(), row.sha256);
        }
        Ok(())
    }

    /// What a `get-job`'s answer means for the job.
    pub async fn polled(&mut self, p: Polled) -> anyhow::Result<()> {
        let Polled { sha, asked, result } = p;
        match &result {
            // A connection that failed even after retries (a slow or broken answer is the
            // job's business: it ends at --job-timeout).
            Err(e) if e.is_unreached() => self.unreached(e).await?,
            Err(e @ eraser_api::Error::Transport { .. }) => {
                let verdict = self.health.unanswered(None, &e.to_string());
                self.follow(verdict).await?;
            }
            Err(e) if e.api_code().is_none() => {}
            _ => self.answered(),
        }
        let timeout = self.opts.job_timeout;
        let Some(job) = self.jobs.get_mut(&sha) else {
            return Ok(());
        };
        job.task = JobTask::None;
        let elapsed = job.submitted.elapsed();
        // The service answered after this: the time to learn from, without the reply's trip.
        let asked = asked.saturating_duration_since(job.submitted);
        // An early first look says little when the job is still in progress (the estimate is
        // not in doubt), a lot when it is done.
        let explored = job.explore && job.polls == 1;
        match result {
            Ok(JobState::InProgress) => {
                if explored {
                    self.eta.explored_too_early();
                } else {
                    job.last_in_progress = Some(asked);
                }
                if elapsed > timeout {
                    let msg = format!(
                        "job {} still unfinished after {:?} (--job-timeout); a retry polls it \
                         again, no new upload",
                        job.job_id, timeout
                    );
                    self.drop_job(&sha);
                    // Not re-submitted within the run: the service may still finish it.
                    self.fail(&sha, None, &msg, true).await?;
                } else {
                    let expected = self.eta.expect(job.size);
                    let wait = if job.ours && job.polls == 1 && elapsed < expected {
                        expected - elapsed + schedule::first_delay(Duration::ZERO)
                    } else {
                        schedule::next_interval(expected, job.polls)
                    };
                    self.schedule.at(Instant::now() + wait, sha);
                }
            }
            Ok(JobState::Done(done)) => {
                if explored {
                    self.eta.learn_explored(job.size, asked);
                } else if job.ours {
                    let lower = job.last_in_progress.unwrap_or_default();
                    self.eta
                        .learn(job.size, lower, asked.max(lower), job.expected);
                }
                self.limiter.completed();
                job.task = JobTask::Completion;
                self.spawn_completion(sha, done);
            }
            Ok(JobState::Failed { code, message }) => {
                let id = job.job_id.clone();
                self.drop_job(&sha);
                self.fail(&sha, Some(code), &format!("job {id}: {message}"), false)
                    .await?;
            }
            Err(e) if e.is_retryable() && elapsed > timeout => {
                let msg = format!(
                    "job {} unfinished after {:?} (--job-timeout; a retry polls it again, no new \
                     upload); last answer: {e}",
                    job.job_id, timeout
                );
                self.drop_job(&sha);
                self.fail(&sha, None, &msg, true).await?;
            }
            Err(e) if e.is_retryable() => {
                // The client already retried; look again later.
                let expected = self.eta.expect(job.size);
                let wait = schedule::next_interval(expected, job.polls.max(4));
                self.schedule.at(Instant::now() + wait, sha);
            }
            Err(e) => {
                let id = job.job_id.clone();
                self.drop_job(&sha);
                self.fail(&sha, e.api_code(), &format!("job {id}: {e}"), false)
                    .await?;
            }
        }
        Ok(())
    }
}
