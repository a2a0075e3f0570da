//! The service's health as the run sees it: what its answers (and silences) say about going
//! on. The caller tells it first that the service answered ([`Health::answered`]), then what
//! the answer was. [`Health`] takes each answer in and says when the run must stop submitting
//! (`Some(RunEnd)`) and which refused uploads go back to the queue; it does no I/O, keeps no
//! clock of its own (every call is given `now`) and is tested without tokio.
//!
//! Stops:
//! - the service refuses work: three create-job refusals in a row with one code (credits,
//!   quota, serial, an HTTP status that refuses the account or the address);
//! - the service cannot be reached: three requests in a row left unanswered even after the
//!   client's retries, or no request could connect for `--outage-timeout`, or every upload
//!   refused (429) for `--outage-timeout` while the service held none of the run's jobs;
//! - OUT cannot take results: three results in a row that the file system refused for want
//!   of space or writability.

use std::time::{Duration, Instant};

use eraser_store::Sha256;

use super::RunEnd;

/// Consecutive refusals, silences or unwritable results that stop a run.
const IN_A_ROW: usize = 3;

/// What an answer says beside stopping or not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Stop submitting, and how the run ends.
    pub end: Option<RunEnd>,
    /// Images whose upload the service refused or never answered: back to `new` (the refusal
    /// was the service's, not theirs).
    pub requeue: Vec<Sha256>,
    /// Why the run stops, in a sentence for the log.
    pub why: String,
}

impl Verdict {
    fn go_on() -> Self {
        Self::default()
    }

    /// Only put `sha` back in the queue (the run already stopped for its refusal).
    pub fn requeue(sha: Sha256) -> Self {
        Self {
            requeue: vec![sha],
            ..Self::default()
        }
    }

    fn stop(end: RunEnd, requeue: Vec<Sha256>, why: String) -> Self {
        Self {
            end: Some(end),
            requeue,
            why,
        }
    }
}

/// The run's view of the service's health.
#[derive(Debug)]
pub struct Health {
    outage_timeout: Duration,
    /// Consecutive create-job refusals with one code: the code, its message, the images.
    refusals: Option<(i64, String, Vec<Sha256>)>,
    /// Consecutive requests that got no answer even after retries, and the uploads among them.
    unanswered: Vec<Option<Sha256>>,
    /// Since when no request could connect (with no answer in between).
    unreached_since: Option<Instant>,
    /// Since when every upload was refused (429) while the service held none of the run's jobs.
    refused_since: Option<Instant>,
    /// Whether the service answered anything in this run: one never reached (a wrong
    /// `--api-base`, no network) counts as unanswered at once, not after the patience.
    ever_answered: bool,
    /// Consecutive results OUT could not take.
    unwritable: usize,
    /// After a 429: until when uploads only replace jobs that finish, and how many the service
    /// held then.
    hold: Option<(Instant, usize)>,
}

impl Health {
    pub fn new(outage_timeout: Duration) -> Self {
        Self {
            outage_timeout,
            refusals: None,
            unanswered: Vec::new(),
            unreached_since: None,
            refused_since: None,
            ever_answered: false,
            unwritable: 0,
            hold: None,
        }
    }

    /// The service answered (whatever it said): it can be reached. True when it had not been.
    pub fn answered(&mut self) -> bool {
        self.unanswered.clear();
        self.ever_answered = true;
        self.unreached_since.take().is_some()
    }

    /// Whether (and since when) no request could connect.
    pub fn unreachable_since(&self) -> Option<Instant> {
        self.unreached_since
    }

    /// The service accepted an upload.
    pub fn upload_accepted(&mut self) {
        self.refusals = None;
        self.refused_since = None;
    }

    /// The service refused an upload with `code` (a refusal code, or an HTTP status that
    /// refuses the account or the address).
    pub fn upload_refused(&mut self, code: i64, message: &str, sha: Sha256) -> Verdict {
        match &mut self.refusals {
            Some((c, _, shas)) if *c == code => shas.push(sha),
            _ => self.refusals = Some((code, message.to_owned(), vec![sha])),
        }
        match self.refusals.take() {
            Some((code, message, shas)) if shas.len() >= IN_A_ROW => {
                let why = format!(
                    "the service refused {} uploads in a row with code {code}: {message}; not \
                     submitting more",
                    shas.len()
                );
                Verdict::stop(RunEnd::Refused { code, message }, shas, why)
            }
            streak => {
                self.refusals = streak;
                Verdict::go_on()
            }
        }
    }

    /// The service refused an upload for now (429) while it held `at_service` of the run's
    /// jobs; `retry_after` is its hint. Until the hold ends, uploads only replace finished jobs.
    pub fn upload_throttled(
        &mut self,
        at_service: usize,
        retry_after: Option<Duration>,
        message: &str,
        now: Instant,
    ) -> Verdict {
        let wait = retry_after.unwrap_or_default().clamp(HOLD_MIN, HOLD_MAX);
        self.hold = Some((now + wait, at_service));
        if at_service > 0 {
            // Throttling, not absence: the service holds work of ours.
            self.refused_since = None;
            return Verdict::go_on();
        }
        let since = *self.refused_since.get_or_insert(now);
        let lasted = now.saturating_duration_since(since);
        if lasted >= self.outage_timeout {
            return Verdict::stop(
                RunEnd::Unavailable {
                    message: message.to_owned(),
                },
                Vec::new(),
                format!(
                    "the service refused every upload for {}s while holding none of this run's \
                     jobs (last: {message}); not submitting more",
                    lasted.as_secs()
                ),
            );
        }
        Verdict::go_on()
    }

    /// Uploads allowed now beside `at_service` jobs and uploads under way: `None` when no hold
    /// applies (it ended).
    pub fn uploads_allowed(&mut self, at_service: usize, now: Instant) -> Option<usize> {
        match self.hold {
            Some((until, level)) if now < until => Some(level.saturating_sub(at_service)),
            _ => {
                self.hold = None;
                None
            }
        }
    }

    /// When the current hold ends, if there is one.
    pub fn hold_until(&self) -> Option<Instant> {
        self.hold.map(|(until, _)| until)
    }

    /// A request (an upload of `sha`, or a `get-job`) that got no usable answer even after the
    /// client's retries.
    pub fn unanswered(&mut self, sha: Option<Sha256>, message: &str) -> Verdict {
        self.unanswered.push(sha);
        if self.unanswered.len() < IN_A_ROW {
            return Verdict::go_on();
        }
        let why = format!(
            "{} requests in a row got no answer from the service (last: {message}); not \
             submitting more, the jobs in flight are left for the next run",
            self.unanswered.len()
        );
        let requeue = self.unanswered.drain(..).flatten().collect();
        Verdict::stop(
            RunEnd::Unavailable {
                message: message.to_owned(),
            },
            requeue,
            why,
        )
    }

    /// A request whose last attempt could not even connect (refused, DNS, TLS, connect
    /// timeout). A blip is waited out; `--outage-timeout` of it stops the run.
    pub fn unreached(&mut self, message: &str, now: Instant) -> Verdict {
        if !self.ever_answered {
            return self.unanswered(None, message);
        }
        let since = *self.unreached_since.get_or_insert(now);
        let lasted = now.saturating_duration_since(since);
        if lasted >= self.outage_timeout {
            return Verdict::stop(
                RunEnd::Unavailable {
                    message: message.to_owned(),
                },
                Vec::new(),
                format!(
                    "the service could not be reached for {}s (last: {message}); not submitting \
                     more, the jobs in flight are left for the next run",
                    lasted.as_secs()
                ),
            );
        }
        Verdict::go_on()
    }

    /// A result was written into OUT.
    pub fn result_written(&mut self) {
        self.unwritable = 0;
    }

    /// A result could not be written: `out_full` when the file system refused it for want of
    /// space or writability (no space, quota, read-only, file size limit).
    pub fn result_unwritable(&mut self, out_full: bool, message: &str) -> Verdict {
        if !out_full {
            self.unwritable = 0;
            return Verdict::go_on();
        }
        self.unwritable += 1;
        if self.unwritable < IN_A_ROW {
            return Verdict::go_on();
        }
        Verdict::stop(
            RunEnd::OutUnwritable {
                message: message.to_owned(),
            },
            Vec::new(),
            format!(
                "{} results in a row could not be written into OUT (last: {message}); not \
                 submitting more, the jobs accepted are still polled",
                self.unwritable
            ),
        )
    }
}

/// Shortest hold after a 429, so a refusal without `Retry-After` cannot turn into a stream of
/// uploads.
const HOLD_MIN: Duration = Duration::from_millis(200);
/// Longest hold, whatever `Retry-After` says.
const HOLD_MAX: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;

    /// An outage timeout of the tests' own (not the default, so nothing depends on it).
    const PATIENCE: Duration = Duration::from_secs(45);

    fn sha(n: u8) -> Sha256 {
        Sha256([n; 32])
    }

    fn health() -> Health {
        let mut h = Health::new(PATIENCE);
        h.answered();
        h
    }

    #[test]
    fn three_refusals_in_a_row_with_one_code_stop_and_requeue_the_refused_images() {
        let mut h = health();
        assert_eq!(h.upload_refused(300010, "no credits", sha(1)).end, None);
        assert_eq!(h.upload_refused(300010, "no credits", sha(2)).end, None);
        let verdict = h.upload_refused(300010, "no credits", sha(3));
        assert_eq!(
            verdict.end,
            Some(RunEnd::Refused {
                code: 300010,
                message: "no credits".into()
            })
        );
        assert_eq!(verdict.requeue, vec![sha(1), sha(2), sha(3)]);
    }

    #[test]
    fn a_refusal_with_another_code_or_an_accepted_upload_starts_the_count_again() {
        let mut h = health();
        h.upload_refused(1, "a", sha(1));
        h.upload_refused(1, "a", sha(2));
        assert_eq!(h.upload_refused(2, "b", sha(3)).end, None);
        h.upload_accepted();
        h.upload_refused(2, "b", sha(4));
        assert_eq!(h.upload_refused(2, "b", sha(5)).end, None);
    }

    #[test]
    fn three_unanswered_requests_in_a_row_stop_the_run_and_requeue_their_uploads() {
        let mut h = health();
        assert_eq!(h.unanswered(Some(sha(1)), "timeout").end, None);
        assert_eq!(h.unanswered(None, "timeout").end, None);
        let verdict = h.unanswered(Some(sha(2)), "timeout");
        assert_eq!(
            verdict.end,
            Some(RunEnd::Unavailable {
                message: "timeout".into()
            })
        );
        assert_eq!(verdict.requeue, vec![sha(1), sha(2)]);
    }

    #[test]
    fn an_answer_between_silences_starts_the_count_again() {
        let mut h = health();
        h.unanswered(None, "t");
        h.unanswered(None, "t");
        h.answered();
        assert_eq!(h.unanswered(None, "t").end, None);
    }

    #[test]
    fn a_service_not_reached_is_waited_for_until_the_outage_timeout() {
        let start = Instant::now();
        let mut h = health();
        assert_eq!(h.unreached("refused", start).end, None);
        assert_eq!(h.unreachable_since(), Some(start));
        let almost = start + PATIENCE - Duration::from_millis(1);
        assert_eq!(h.unreached("refused", almost).end, None);
        assert!(h.unreached("refused", start + PATIENCE).end.is_some());
    }

    #[test]
    fn an_answer_ends_the_outage_and_says_so() {
        let start = Instant::now();
        let mut h = health();
        h.unreached("refused", start);
        assert!(h.answered(), "it had been unreachable");
        assert!(!h.answered());
        assert_eq!(h.unreached("refused", start + PATIENCE).end, None);
    }

    #[test]
    fn a_service_never_reached_counts_as_unanswered_at_once() {
        let mut h = Health::new(PATIENCE);
        let now = Instant::now();
        h.unreached("no route", now);
        h.unreached("no route", now);
        assert!(h.unreached("no route", now).end.is_some());
    }

    #[test]
    fn refusals_with_no_job_at_the_service_stop_the_run_at_the_outage_timeout() {
        let start = Instant::now();
        let mut h = health();
        assert_eq!(h.upload_throttled(0, None, "429", start).end, None);
        let late = start + PATIENCE + Duration::from_secs(1);
        assert!(matches!(
            h.upload_throttled(0, None, "429", late).end,
            Some(RunEnd::Unavailable { .. })
        ));
    }

    #[test]
    fn a_refusal_while_the_service_holds_jobs_of_the_run_is_throttling_not_absence() {
        let start = Instant::now();
        let mut h = health();
        h.upload_throttled(0, None, "429", start);
        h.upload_throttled(2, None, "429", start + PATIENCE);
        assert_eq!(
            h.upload_throttled(0, None, "429", start + PATIENCE).end,
            None
        );
    }

    #[test]
    fn an_accepted_upload_ends_the_refusal_clock() {
        let start = Instant::now();
        let mut h = health();
        h.upload_throttled(0, None, "429", start);
        h.upload_accepted();
        assert_eq!(
            h.upload_throttled(0, None, "429", start + PATIENCE).end,
            None
        );
    }

    #[test]
    fn a_hold_lets_uploads_replace_jobs_up_to_its_level_until_it_ends() {
        let now = Instant::now();
        let mut h = health();
        h.upload_throttled(4, Some(Duration::from_secs(5)), "429", now);
        assert_eq!(h.uploads_allowed(1, now), Some(3));
        assert_eq!(h.uploads_allowed(6, now), Some(0));
        assert_eq!(h.uploads_allowed(1, now + Duration::from_secs(5)), None);
        assert_eq!(h.hold_until(), None);
    }

    #[test]
    fn a_hold_is_never_shorter_than_its_floor_nor_longer_than_its_cap() {
        let now = Instant::now();
        let mut h = health();
        h.upload_throttled(1, Some(Duration::ZERO), "429", now);
        assert_eq!(h.hold_until(), Some(now + HOLD_MIN));
        h.upload_throttled(1, Some(Duration::from_secs(3600)), "429", now);
        assert_eq!(h.hold_until(), Some(now + HOLD_MAX));
    }

    #[test]
    fn three_results_out_could_not_take_stop_submitting() {
        let mut h = health();
        assert_eq!(h.result_unwritable(true, "no space").end, None);
        assert_eq!(h.result_unwritable(true, "no space").end, None);
        assert_eq!(
            h.result_unwritable(true, "no space").end,
            Some(RunEnd::OutUnwritable {
                message: "no space".into()
            })
        );
    }

    #[test]
    fn a_result_written_or_another_kind_of_failure_starts_the_count_again() {
        let mut h = health();
        h.result_unwritable(true, "full");
        h.result_unwritable(true, "full");
        h.result_written();
        assert_eq!(h.result_unwritable(true, "full").end, None);
        h.result_unwritable(false, "404");
        h.result_unwritable(true, "full");
        assert_eq!(h.result_unwritable(true, "full").end, None);
    }
}
