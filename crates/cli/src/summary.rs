//! The end-of-run summary: one struct, printed as JSON (`--json`) or as an aligned block.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Counts and figures of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Input files found that are images.
    pub inputs: u64,
    /// Files skipped because they are not images (inside directories).
    pub skipped: u64,
    /// Inputs whose bytes could not be read or recognised (named on the command line, or unreadable).
    pub input_errors: u64,
    /// Distinct contents among the inputs.
    pub unique_images: u64,
    /// Inputs that shared content with another input or an earlier batch (no upload needed).
    pub duplicates_saved: u64,
    /// Files hashed this run (others reused the ledger's hash).
    pub hashed: u64,
    /// create-job requests that created a job.
    pub uploads: u64,
    /// Uploads that may have been paid for on top of the job kept: a dead run's claim taken
    /// back, or a reply lost after the whole image had gone out (the image was sent again).
    pub repeat_uploads: u64,
    /// Jobs resumed from the ledger (polled, not uploaded).
    pub resumed: u64,
    /// Results downloaded from the service.
    pub downloads: u64,
    /// Outputs placed by copying or linking a stored result.
    pub copies: u64,
    /// Inputs whose output was already in place.
    pub already_done: u64,
    /// Inputs with their output in place at the end.
    pub outputs_done: u64,
    /// Inputs without output at the end.
    pub outputs_failed: u64,
    pub bytes_uploaded: u64,
    pub bytes_downloaded: u64,
    pub get_job_calls: u64,
    pub retries: u64,
    /// Jobs in flight the run settled at (adaptive concurrency).
    pub concurrency_limit: u64,
    /// Jobs in flight asked for (`-j`).
    pub concurrency_requested: u64,
    /// The lowest limit the service's 429s pushed the run down to.
    pub concurrency_lowest: u64,
    /// Uploads the service refused with 429: put back in the queue and sent again (not paid
    /// for, not counted as attempts).
    pub uploads_refused: u64,
    pub seconds: f64,
    pub credits: Credits,
    /// Failures by code ("none" when the service gave no code).
    pub failures: BTreeMap<String, FailureCount>,
    /// Set when the run ended early.
    pub stopped: Option<String>,
    pub dry_run: bool,
    /// Where the ledger is.
    pub ledger: String,
    /// With --dry-run: unique images that a real run would upload.
    pub would_upload: Option<u64>,
    /// Inputs left unfinished (interrupted, refused, or a result to fetch again next run).
    pub pending: u64,
}

/// The failure code of results finished at the service but not written into OUT (a full disk,
/// a read-only OUT, a file size limit, a download that kept failing): the image stays
/// `processing`, and the next run downloads it again without a new upload.
pub const NOT_PLACED: &str = "download";

/// The failure code of inputs that could not be read or recognised (listed by
/// `eraser ledger list --rejected`, not among failed images).
pub const NOT_READ: &str = "input";

/// The failure code of an input whose image is done but whose output could not be put in place
/// (copied from another input's, or downloaded again); the message names the file and why.
pub const OUTPUT: &str = "output";

/// Credits reported by the service for the jobs finished this run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Credits {
    pub p_credits: i64,
    pub s_credits: i64,
    pub need_credits: i64,
}

/// How many inputs failed with one code, and the message given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailureCount {
    pub count: u64,
    pub message: String,
}

impl Summary {
    /// The human block printed at the end of a run (stderr).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let rows: [(&str, String); 10] = [
            (
                "inputs",
                format!(
                    "{} ({} unique, {} duplicates saved)",
                    self.inputs, self.unique_images, self.duplicates_saved
                ),
            ),
            (
                "skipped",
                format!("{} not images, {} errors", self.skipped, self.input_errors),
            ),
            (
                "uploaded",
                format!(
                    "{} ({} resumed, {} repeated)",
                    self.uploads, self.resumed, self.repeat_uploads
                ),
            ),
            (
                "downloaded",
                format!("{} ({} copies)", self.downloads, self.copies),
            ),
            (
                "outputs",
                format!(
                    "{} done, {} failed, {} already in place{}",
                    self.outputs_done,
                    self.outputs_failed,
                    self.already_done,
                    if self.pending > 0 {
                        format!(", {} left for the next run", self.pending)
                    } else {
                        String::new()
                    }
                ),
            ),
            (
                "bytes",
                format!("{} up, {} down", self.bytes_uploaded, self.bytes_downloaded),
            ),
            (
                "polls",
                format!(
                    "{} get-job calls, {} retries",
                    self.get_job_calls, self.retries
                ),
            ),
            (
                "credits",
                format!(
                    "p {} s {} need {}",
                    self.credits.p_credits, self.credits.s_credits, self.credits.need_credits
                ),
            ),
            ("time", format!("{:.1}s", self.seconds)),
            ("ledger", self.ledger.clone()),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "{k:>11}  {v}");
        }
        if self.concurrency_lowest < self.concurrency_requested || self.uploads_refused > 0 {
            let refused = match self.uploads_refused {
                0 => String::new(),
                1 => ", 1 upload refused and put back in the queue".to_owned(),
                n => format!(", {n} uploads refused and put back in the queue"),
            };
            let _ = writeln!(
                s,
                "{:>11}  limit {} at the end, {} at the lowest (-j {}): the service asked for \
                 fewer (429){refused}",
                "jobs", self.concurrency_limit, self.concurrency_lowest, self.concurrency_requested
            );
        }
        for (code, f) in &self.failures {
            if code == NOT_PLACED {
                let _ = writeln!(
                    s,
                    "{:>11}  {} × a finished result not written: {}",
                    "not placed", f.count, f.message
                );
            } else {
                let _ = writeln!(
                    s,
                    "{:>11}  {} × code {code}: {}",
                    "failed", f.count, f.message
                );
            }
        }
        if self.failures.contains_key(NOT_PLACED) {
            let _ = writeln!(
                s,
                "{:>11}  run the same command again: finished results are fetched again, \
                 nothing is uploaded twice",
                "next"
            );
        }
        if self.failures.contains_key(NOT_READ) {
            let _ = writeln!(s, "{:>11}  eraser ledger list --rejected", "see");
        }
        let not_an_image_failure = [NOT_PLACED, NOT_READ, OUTPUT];
        if self
            .failures
            .keys()
            .any(|code| !not_an_image_failure.contains(&code.as_str()))
        {
            let _ = writeln!(s, "{:>11}  eraser ledger list --status failed", "see");
        }
        if let Some(why) = &self.stopped {
            let _ = writeln!(s, "{:>11}  {why}", "stopped");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_failure(code: &str) -> Summary {
        let mut summary = Summary::default();
        summary.failures.insert(
            code.to_owned(),
            FailureCount {
                count: 2,
                message: "why".to_owned(),
            },
        );
        summary
    }

    #[test]
    fn results_not_written_point_to_a_rerun_not_to_the_failed_list() {
        let text = with_failure(NOT_PLACED).render();

        assert!(
            text.contains("not placed  2 × a finished result not written: why"),
            "{text}"
        );
        assert!(text.contains("run the same command again"), "{text}");
        assert!(!text.contains("--status failed"), "{text}");
    }

    #[test]
    fn failed_images_point_to_the_failed_list() {
        let text = with_failure("300010").render();

        assert!(text.contains("failed  2 × code 300010: why"), "{text}");
        assert!(
            text.contains("eraser ledger list --status failed"),
            "{text}"
        );
        assert!(!text.contains("run the same command again"), "{text}");
    }

    #[test]
    fn unreadable_inputs_point_to_the_rejected_list() {
        let text = with_failure(NOT_READ).render();

        assert!(text.contains("eraser ledger list --rejected"), "{text}");
        assert!(!text.contains("--status failed"), "{text}");
    }

    #[test]
    fn a_throttled_run_says_what_limit_it_settled_at() {
        let summary = Summary {
            concurrency_limit: 6,
            concurrency_lowest: 4,
            concurrency_requested: 32,
            ..Summary::default()
        };

        let text = summary.render();

        assert!(
            text.contains("jobs  limit 6 at the end, 4 at the lowest (-j 32)"),
            "{text}"
        );
    }

    #[test]
    fn a_run_whose_uploads_were_refused_says_how_many_went_back_to_the_queue() {
        let summary = Summary {
            concurrency_limit: 16,
            concurrency_lowest: 16,
            concurrency_requested: 16,
            uploads_refused: 5,
            ..Summary::default()
        };

        let text = summary.render();

        assert!(
            text.contains("(429), 5 uploads refused and put back in the queue"),
            "{text}"
        );
    }

    #[test]
    fn an_unthrottled_run_says_nothing_of_its_limit() {
        let summary = Summary {
            concurrency_limit: 8,
            concurrency_lowest: 8,
            concurrency_requested: 8,
            ..Summary::default()
        };

        assert!(!summary.render().contains("at the lowest"));
    }

    #[test]
    fn inputs_left_unfinished_are_counted_in_the_outputs_row() {
        let summary = Summary {
            pending: 3,
            ..Summary::default()
        };

        assert!(summary.render().contains(", 3 left for the next run"));
        assert!(
            !Summary::default()
                .render()
                .contains("left for the next run")
        );
    }
}
