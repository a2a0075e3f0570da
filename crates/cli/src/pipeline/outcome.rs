//! How a run ended: the one place that turns why it stopped (if it did), what the final pass
//! found and the run's counters into the [`RunEnd`] and the [`Summary`].

use std::sync::atomic::Ordering;
use std::time::Instant;

use eraser_store::RunProgress;

use super::complete::FinalReport;
use super::scan::InputError;
use super::{Feedback, Options, RunEnd};
use crate::progress::Counters;
use crate::summary::{Credits, NOT_READ, Summary};

/// Everything the end of a run is decided from.
pub(super) struct Ending<'a> {
    pub opts: &'a Options,
    pub feedback: &'a Feedback,
    pub started: Instant,
    /// Why the run stopped submitting, if it did.
    pub stopped: Option<RunEnd>,
    /// What the final pass found (none after a dry run or a stop: see [`conclude`]).
    pub report: FinalReport,
    pub progress: RunProgress,
    pub scan_errors: Vec<InputError>,
    pub ledger: String,
}

/// The run's end and its summary.
pub(super) fn conclude(e: Ending<'_>) -> (RunEnd, Summary) {
    let Ending {
        opts,
        feedback,
        started,
        stopped,
        mut report,
        progress: p,
        scan_errors,
        ledger,
    } = e;
    let c = &feedback.counters;
    let placed = Counters::get(&c.placed);
    let cut_short = matches!(
        stopped,
        Some(RunEnd::Interrupted(_) | RunEnd::Unavailable { .. })
    );
    if cut_short && !opts.dry_run {
        // No final pass: the outputs this run placed are known; the rest is the next run's.
        report.in_place = placed;
        report.pending = p.inputs.saturating_sub(placed);
    }
    let mut summary = Summary {
        inputs: p.inputs,
        skipped: Counters::get(&c.skipped),
        input_errors: scan_errors.len() as u64,
        unique_images: p.images.total,
        duplicates_saved: p.inputs.saturating_sub(p.images.total),
        hashed: Counters::get(&c.hashed),
        uploads: Counters::get(&c.uploads),
        repeat_uploads: Counters::get(&c.repeat_uploads),
        resumed: Counters::get(&c.resumed),
        downloads: Counters::get(&c.downloads),
        copies: Counters::get(&c.copies),
        already_done: report.in_place.saturating_sub(placed),
        outputs_done: report.in_place,
        outputs_failed: report.failed + scan_errors.len() as u64,
        bytes_uploaded: Counters::get(&c.bytes_uploaded),
        bytes_downloaded: Counters::get(&c.bytes_downloaded),
        get_job_calls: Counters::get(&c.get_jobs),
        retries: Counters::get(&c.retries),
        concurrency_limit: feedback.limiter.current() as u64,
        concurrency_requested: opts.concurrency as u64,
        concurrency_lowest: feedback.limiter.settled() as u64,
        uploads_refused: Counters::get(&c.refused_uploads),
        seconds: started.elapsed().as_secs_f64(),
        credits: Credits {
            p_credits: c.p_credits.load(Ordering::Relaxed),
            s_credits: c.s_credits.load(Ordering::Relaxed),
            need_credits: c.need_credits.load(Ordering::Relaxed),
        },
        failures: report.failures,
        stopped: None,
        dry_run: opts.dry_run,
        ledger,
        would_upload: opts.dry_run.then_some(p.images.new),
        pending: report.pending,
    };
    for e in &scan_errors {
        let f = summary.failures.entry(NOT_READ.into()).or_default();
        f.count += 1;
        f.message = format!("{}: {}", e.path.display(), e.reason);
    }
    let end = match stopped {
        Some(end) => {
            summary.stopped = Some(stopped_because(&end));
            end
        }
        None if opts.dry_run && summary.input_errors > 0 => RunEnd::SomeFailed,
        None if opts.dry_run => RunEnd::Complete,
        None if summary.outputs_failed > 0 || summary.pending > 0 => RunEnd::SomeFailed,
        None => RunEnd::Complete,
    };
    (end, summary)
}

/// What the summary says of a run that stopped early.
fn stopped_because(end: &RunEnd) -> String {
    match end {
        RunEnd::Refused { code, message } => {
            format!("the service refuses work: code {code}: {message}")
        }
        RunEnd::Interrupted(signal) => format!(
            "interrupted ({}); run the same command again to resume",
            signal.name()
        ),
        RunEnd::Unavailable { message } => format!(
            "the service cannot be reached: {message}; run the same command again once it can"
        ),
        RunEnd::OutUnwritable { message } => format!(
            "OUT cannot take results: {message}; make room (or lift the limit) and run the same \
             command again"
        ),
        RunEnd::Complete | RunEnd::SomeFailed => String::new(),
    }
}
