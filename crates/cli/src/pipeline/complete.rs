//! Every input gets its output through one path, [`Coordinator::ensure_output`]: nothing to do
//! when the recorded output is in place; else a copy of an intact copy of the result (checked
//! against the result's hash); else a download from the result's URL. A finished job takes
//! that path for each of the run's inputs of its image (the first one downloads, and records
//! the image done, the others copy), and so does the final pass for every done input of the
//! run (a rerun over a done archive only confirms each output is there).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use eraser_api::JobDone;
use eraser_store::{DoneRecord, ImageStatus, InputRow, InputState, Ledger, RunId, Sha256};
use tokio::task::JoinSet;

use super::Options;
use super::coordinator::{Coordinator, Event};
use super::place::{self, Target};
use crate::progress::Counters;
use crate::summary::FailureCount;

/// Outputs of the final pass checked on one blocking task (a `stat` each).
const CHECK_BATCH: u32 = 1000;

/// What is known of an image's result when an input's output is to be made.
pub(super) struct KnownResult {
    pub sha: Sha256,
    /// The result's hash, once a download saw it (copies are checked against it).
    pub output_sha256: Option<Sha256>,
    pub output_size: Option<u64>,
    /// Where intact copies may be (checked before use), best first.
    pub copies: Vec<PathBuf>,
    pub url: Option<String>,
    /// A job just finished: the first download records the image done, with these facts.
    pub finished: Option<JobDone>,
}

/// How an output came to be in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ensured {
    /// It was there, recorded, with the result's size.
    InPlace,
    Copied,
    Downloaded,
}

/// What the final pass found over the run's inputs.
#[derive(Debug, Default)]
pub(super) struct FinalReport {
    pub in_place: u64,
    pub failed: u64,
    pub pending: u64,
    pub failures: std::collections::BTreeMap<String, FailureCount>,
}

/// What the places where outputs are made share (cheap to clone into tasks).
#[derive(Clone)]
pub(super) struct Placer {
    pub ledger: Ledger,
    pub client: eraser_api::Client,
    pub run: RunId,
    pub opts: Arc<Options>,
    pub counters: Arc<Counters>,
}

impl Placer {
    /// Makes sure `input` has its output: see the module's doc. Returns how.
    pub async fn ensure_output(
        &self,
        input: &InputRow,
        result: &mut KnownResult,
    ) -> anyhow::Result<Ensured> {
        if result.finished.is_none() && place::in_place(input, result.output_size).await {
            return Ok(Ensured::InPlace);
        }
        let Some(dest) = place::destination(input) else {
            anyhow::bail!("no output path recorded")
        };
        place::may_write(input, &dest, self.opts.overwrite)?;
        let target = Target {
            run: self.run,
            input: input.path.clone(),
            dest,
        };
        for src in result.copies.clone() {
            if place::copy_from(
                &self.ledger,
                &src,
                result.output_sha256,
                &target,
                self.opts.link,
            )
            .await?
            {
                Counters::add(&self.counters.copies, 1);
                Counters::add(&self.counters.placed, 1);
                return Ok(Ensured::Copied);
            }
        }
        let url = result
            .url
            .clone()
            .context("the result is gone and no URL is recorded")?;
        let done = result.finished.take();
        let record = done.as_ref().map(|d| (result.sha, d));
        let placed = place::download(&self.client, &self.ledger, &url, &target, record)
            .await
            .map_err(|e| self.explain_gone(e, &result.sha))?;
        if let Some(done) = &done {
            self.counters.add_credits(done);
        }
        Counters::add(&self.counters.downloads, 1);
        Counters::add(&self.counters.bytes_downloaded, placed.got.bytes);
        Counters::add(&self.counters.placed, 1);
        result.output_sha256 = Some(Sha256(placed.got.sha256));
        result.output_size = Some(placed.got.bytes);
        result.copies.insert(0, placed.path);
        Ok(Ensured::Downloaded)
    }

    /// A URL that no longer works (403, 404, 410) says what can be done about it.
    fn explain_gone(&self, e: anyhow::Error, sha: &Sha256) -> anyhow::Error {
        let gone = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<eraser_api::Error>(),
                Some(eraser_api::Error::Http {
                    status: 403 | 404 | 410,
                    ..
                })
            )
        });
        if gone {
            e.context(format!(
                "the result's URL no longer works; `eraser ledger retry --done {sha}` has the \
                 image made again (it costs a credit)"
            ))
        } else {
            e
        }
    }

    /// A finished job: its result for each of the run's inputs of the image.
    async fn complete(&self, sha: Sha256, done: JobDone) -> anyhow::Result<()> {
        let ours = self.ledger.run_inputs_of_image(self.run, &sha).await?;
        let mut result = KnownResult {
            sha,
            output_sha256: None,
            output_size: None,
            copies: Vec::new(),
            url: done.output_urls.first().cloned(),
            finished: Some(done),
        };
        let mut first_error = None;
        for input in &ours {
            match self.ensure_output(input, &mut result).await {
                Ok(_) => {}
                // One input's place is taken by a file eraser did not write: the others still
                // get theirs.
                Err(e) if e.downcast_ref::<place::Occupied>().is_some() => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(done) = result.finished {
            // No input could take the result (each target occupied): the job is kept done with
            // its URL, so a later run with --overwrite fetches it without paying again.
            place::record_done_unplaced(&self.ledger, &sha, &done).await?;
            self.counters.add_credits(&done);
            if let Some(e) = first_error {
                tracing::warn!("{}", crate::exit::one_line(&e));
            }
        }
        Ok(())
    }

    /// An input of the run whose image is done: what the ledger knows of its result.
    async fn stored_result(&self, state: &InputState) -> anyhow::Result<KnownResult> {
        let mut copies: Vec<PathBuf> = state.image_output_path.iter().cloned().collect();
        // The stored result may be gone: another input's copy of it (checked against the
        // result's hash) needs neither the network nor a URL that may have expired.
        for other in self.ledger.inputs_of_image(&state.input.sha256).await? {
            if let Some(src) = other.output_path
                && !copies.contains(&src)
            {
                copies.push(src);
            }
        }
        Ok(KnownResult {
            sha: state.input.sha256,
            output_sha256: state.image_output_sha256,
            output_size: state.image_output_size,
            copies,
            url: state.output_url.clone(),
            finished: None,
        })
    }
}

impl Coordinator {
    fn placer(&self) -> Placer {
        Placer {
            ledger: self.ledger.clone(),
            client: self.client.clone(),
            run: self.run,
            opts: Arc::clone(&self.opts),
            counters: Arc::clone(&self.counters),
        }
    }

    /// Downloads and places a finished job's result on a task of its own.
    pub fn spawn_completion(&mut self, sha: Sha256, done: JobDone) {
        let placer = self.placer();
        let permits = Arc::clone(&self.downloads);
        self.tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = placer.complete(sha, done).await;
            Event::Completed { sha, result }
        });
    }

    /// A finished job's result was placed, or could not be.
    pub async fn completed(
        &mut self,
        sha: Sha256,
        result: anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.drop_job(&sha);
        let e = match result {
            Ok(()) => {
                self.health.result_written();
                return Ok(());
            }
            Err(e) => e,
        };
        let told = crate::exit::one_line(&e);
        let verdict = self.health.result_unwritable(out_full(&e), &told);
        self.follow(verdict).await?;
        match e
            .chain()
            .find_map(|c| c.downcast_ref::<eraser_api::Error>())
        {
            // A local write failure (read-only OUT, full disk) is not the image's: the result
            // stays at the service for the next run to fetch.
            Some(a) if !a.is_retryable() && !matches!(a, eraser_api::Error::Io { .. }) => {
                self.fail(&sha, None, &told, false).await
            }
            _ => {
                // The job is done at the service: the next run downloads it again.
                tracing::error!("{told}");
                self.note_failure(crate::summary::NOT_PLACED, &told);
                self.given_up.insert(sha);
                Ok(())
            }
        }
    }

    /// Every input of this run: outputs confirmed, and made where missing; failures gathered.
    pub async fn final_pass(&self) -> anyhow::Result<FinalReport> {
        let mut report = FinalReport::default();
        for (code, f) in &self.run_failures {
            report.failures.insert(code.clone(), f.clone());
        }
        let placer = self.placer();
        let mut making: JoinSet<(InputState, anyhow::Result<Ensured>)> = JoinSet::new();
        let parallel = self.opts.download_concurrency.max(4);
        let mut after: Option<PathBuf> = None;
        loop {
            let page = self
                .ledger
                .run_inputs(self.run, after.as_deref(), CHECK_BATCH)
                .await
                .context("reading this run's inputs")?;
            let Some(last) = page.last() else { break };
            after = Some(last.input.path.clone());
            let done: Vec<&InputState> = page
                .iter()
                .filter(|s| s.status == ImageStatus::Done)
                .collect();
            let mut present = place::in_place_all(&done).await.into_iter();
            for state in &page {
                match state.status {
                    ImageStatus::Done => {
                        if present.next().unwrap_or(false) {
                            report.in_place += 1;
                            continue;
                        }
                        while making.len() >= parallel {
                            if let Some(r) = making.join_next().await {
                                account(&mut report, r.context("placement task failed")?);
                            }
                        }
                        let (placer, state) = (placer.clone(), state.clone());
                        making.spawn(async move {
                            let made = async {
                                let mut result = placer.stored_result(&state).await?;
                                placer.ensure_output(&state.input, &mut result).await
                            }
                            .await;
                            (state, made)
                        });
                    }
                    ImageStatus::Failed => {
                        report.failed += 1;
                        let code = state
                            .error_code
                            .map_or_else(|| "none".to_owned(), |c| c.to_string());
                        let f = report.failures.entry(code).or_default();
                        f.count += 1;
                        f.message = state.error_message.clone().unwrap_or_default();
                    }
                    _ => report.pending += 1,
                }
            }
        }
        while let Some(r) = making.join_next().await {
            account(&mut report, r.context("placement task failed")?);
        }
        Ok(report)
    }
}

fn account(report: &mut FinalReport, (state, result): (InputState, anyhow::Result<Ensured>)) {
    match result {
        Ok(_) => report.in_place += 1,
        Err(e) => {
            let told = crate::exit::one_line(&e);
            tracing::error!("{}: {told}", state.input.path.display());
            report.failed += 1;
            let f = report
                .failures
                .entry(crate::summary::OUTPUT.into())
                .or_default();
            f.count += 1;
            f.message = told;
        }
    }
}

/// Whether OUT refused a result for want of space or writability (no space, quota, read-only,
/// file size limit): then every further result would be paid for and not kept.
fn out_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|errno| {
                [libc::ENOSPC, libc::EDQUOT, libc::EROFS, libc::EFBIG].contains(&errno)
            })
    })
}

/// The record of a finished job whose result was downloaded as `got` into `path`.
pub(super) fn done_record(
    done: &JobDone,
    url: &str,
    path: PathBuf,
    got: &eraser_api::Downloaded,
) -> DoneRecord {
    DoneRecord {
        output_url: url.to_owned(),
        output_path: path,
        output_sha256: Some(Sha256(got.sha256)),
        output_size: got.bytes,
        credits_states: done.credits_states,
        need_credits: done.need_credits,
        p_credits: done.p_credits,
        s_credits: done.s_credits,
        raw_response: done.raw.clone(),
    }
}
