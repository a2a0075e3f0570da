//! Uploads: claiming `new` images as job slots free up, one create-job task per claim, and
//! what each answer means for the image, the queue and the run.
//!
//! A job id is recorded by the upload task the moment its reply arrives, synced to disk, so a
//! kill finds it recorded however busy the coordinator is. An upload that created nothing
//! (refused with 429, could not connect, its file changed before a byte went out) goes back to
//! the queue without counting an attempt.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use eraser_api::{CreateJob, JobId};
use eraser_store::{Claim, Content, FoundInput, ScanBatch};

use super::RunEnd;
use super::coordinator::{Coordinator, Event, Job, JobTask};
use super::fingerprint;
use super::unrecorded::{Entry, Unrecorded};
use crate::progress::Counters;

/// A create-job's answer, with the recording of its job id.
pub(super) struct Uploaded {
    claim: Claim,
    result: Result<JobId, eraser_api::Error>,
    /// Recording the job id, done by the upload task the moment its reply arrived.
    recorded: Result<(), eraser_store::Error>,
    /// How long the create-job took, reply included.
    took: std::time::Duration,
}

/// Most images claimed at once.
const CLAIM_BATCH: usize = 256;

/// HTTP statuses of a create-job that refuse the account or the address rather than the image
/// (401, 402, 403, 404, 405, 410): repeated, they stop the run like a refusal code, instead of
/// failing every image of the archive.
fn refuses_everything(status: u16) -> bool {
    matches!(status, 401..=405 | 410)
}

impl Coordinator {
    /// Claims new images for the free job slots and starts their uploads; returns how many.
    pub async fn top_up(&mut self, scan_done: bool) -> anyhow::Result<usize> {
        // A job the service has finished no longer takes one of its slots while its result is
        // fetched; finished jobs beyond the downloads' own bound still count, so that they
        // cannot pile up behind a slow CDN.
        let at_service = self.at_service();
        let finished = self.jobs.len() - at_service;
        let waiting_to_fetch = finished.saturating_sub(self.opts.download_concurrency.max(1));
        let in_flight = at_service + waiting_to_fetch + self.uploading.len();
        // Claim no more than can be sent right away: a claim waiting for an upload slot would
        // still be sent after the service started refusing, and is a repeat risk at a kill.
        let window = self.uploads.size(self.limiter.current(), &self.eta);
        let sendable = window.saturating_sub(self.uploading.len());
        let mut free = self
            .limiter
            .current()
            .saturating_sub(in_flight)
            .min(sendable);
        if let Some(allowed) = self
            .health
            .uploads_allowed(at_service + self.uploading.len(), Instant::now())
        {
            free = free.min(allowed);
        }
        if free == 0 || self.exhausted {
            return Ok(0);
        }
        let asked = free.min(CLAIM_BATCH);
        let claims = self
            .ledger
            .claim_for_upload(self.run, asked as u32)
            .await
            .context("claiming images to upload")?;
        let n = claims.len();
        self.exhausted = scan_done && n < asked;
        for claim in claims {
            self.uploading.insert(claim.sha256);
            self.spawn_upload(claim);
        }
        Ok(n)
    }

    fn spawn_upload(&mut self, claim: Claim) {
        let client = self.client.clone();
        let rate = self.rate.clone();
        let anonymous = self.opts.anonymous_names;
        let counters = Arc::clone(&self.counters);
        let ledger = self.ledger.clone();
        let unrecorded = self.unrecorded.clone();
        let run = self.run;
        self.tasks.spawn(async move {
            if let Some(rate) = rate {
                rate.wait().await;
            }
            let name = anonymous.then(|| {
                let ext = eraser_api::ImageFormat::from_name(&claim.format)
                    .map_or("jpg", |f| f.extension());
                format!("{}.{ext}", claim.sha256)
            });
            let asked = Instant::now();
            let submitted = client
                .submit(&CreateJob {
                    path: &claim.source_path,
                    file_name: name.as_deref(),
                    expected_sha256: Some(claim.sha256.0),
                })
                .await;
            let took = asked.elapsed();
            if submitted.lost_replies > 0 {
                let n = submitted.lost_replies;
                Counters::add(&counters.repeat_uploads, u64::from(n));
                tracing::debug!(
                    "{n} upload(s) of {} went out whole and got no reply: the service may have \
                     made a job of each",
                    claim.source_path.display()
                );
                if let Err(e) = ledger.note_repeat_uploads(&claim.sha256, n).await {
                    tracing::warn!(
                        "cannot count a possible repeat upload of {}: {e}",
                        claim.source_path.display()
                    );
                }
            }
            let result = submitted.result;
            let mut recorded = Ok(());
            if let Ok(job_id) = &result {
                Counters::add(&counters.uploads, 1);
                Counters::add(&counters.bytes_uploaded, claim.size);
                recorded = record_job(&ledger, &unrecorded, run, &claim, job_id).await;
            }
            Event::Uploaded(Uploaded {
                claim,
                result,
                recorded,
                took,
            })
        });
    }

    /// What a create-job's answer means for the image, the queue and the run.
    pub async fn uploaded(&mut self, u: Uploaded) -> anyhow::Result<()> {
        let Uploaded {
            claim,
            result,
            recorded,
            took,
        } = u;
        self.uploading.remove(&claim.sha256);
        let sha = claim.sha256;
        let path = claim.source_path.display().to_string();
        let e = match result {
            Ok(job_id) => return self.accepted(claim, job_id, recorded, took).await,
            Err(e) => e,
        };
        if e.http_status() == Some(429) {
            return self.throttled(&claim, &e).await;
        }
        // A refusal code from the service, or an HTTP status that refuses the account or the
        // address rather than the image (counted like those codes).
        let refused = e
            .api_code()
            .map(|code| (code, api_message(&e)))
            .or_else(|| {
                e.http_status()
                    .filter(|s| refuses_everything(*s))
                    .map(|status| (i64::from(status), e.to_string()))
            });
        if let Some((code, message)) = refused {
            self.answered();
            let told = format!("{message} (uploading {path})");
            self.fail(&sha, Some(code), &told, false).await?;
            if matches!(self.stopped, Some(RunEnd::Refused { .. })) {
                // Already stopped for it: not this image's fault.
                return self.follow(super::health::Verdict::requeue(sha)).await;
            }
            let verdict = self.health.upload_refused(code, &message, sha);
            return self.follow(verdict).await;
        }
        if matches!(e, eraser_api::Error::InputChanged { .. }) {
            return self.input_changed(claim, &e).await;
        }
        if matches!(e, eraser_api::Error::InvalidInput { .. }) {
            return self.fail(&sha, None, &e.to_string(), false).await;
        }
        if e.is_unreached() {
            // Could not even connect: nothing was sent, nothing paid.
            self.back_in_queue(&claim).await?;
            tracing::debug!("create-job for {path} could not connect ({e}); back in the queue");
            return self.unreached(&e).await;
        }
        if e.is_retryable() {
            self.fail(&sha, None, &format!("uploading {path}: {e}"), true)
                .await?;
            if claim.attempts + 1 < self.opts.max_attempts {
                self.ledger.requeue(Some(&[sha])).await?;
                self.exhausted = false;
            }
            if matches!(self.stopped, Some(RunEnd::Unavailable { .. })) {
                return self.follow(super::health::Verdict::requeue(sha)).await;
            }
            let verdict = self.health.unanswered(Some(sha), &e.to_string());
            return self.follow(verdict).await;
        }
        self.fail(&sha, None, &format!("uploading {path}: {e}"), false)
            .await
    }

    async fn accepted(
        &mut self,
        claim: Claim,
        job_id: JobId,
        recorded: Result<(), eraser_store::Error>,
        took: std::time::Duration,
    ) -> anyhow::Result<()> {
        self.answered();
        self.health.upload_accepted();
        self.uploads.took(took);
        match recorded {
            Ok(()) => {}
            Err(eraser_store::Error::ClaimLost { .. }) => {
                // Another run presumed this one dead and took the claim: it uploads the image
                // itself, and this job is a repeat.
                tracing::warn!(
                    "job {job_id} for {} was created after another run took the image over; \
                     counted as a repeat upload",
                    claim.source_path.display()
                );
                Counters::add(&self.counters.repeat_uploads, 1);
                return Ok(());
            }
            Err(e) if e.kind() == eraser_store::ErrorKind::Unavailable => {
                return Err(anyhow::Error::new(e).context(format!(
                    "recording job {job_id} for {} (kept in {}: the next run records it)",
                    claim.source_path.display(),
                    self.unrecorded.shown()
                )));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "recording job {job_id} for {}",
                    claim.source_path.display()
                )));
            }
        }
        Counters::add(&self.counters.in_flight, 1);
        let expected = self.eta.expect(claim.size);
        let (first, explore) = self.eta.first_look(expected);
        self.jobs.insert(
            claim.sha256,
            Job {
                job_id,
                size: claim.size,
                submitted: Instant::now(),
                ours: true,
                expected,
                explore,
                polls: 0,
                last_in_progress: None,
                task: JobTask::None,
            },
        );
        self.schedule.at(Instant::now() + first, claim.sha256);
        Ok(())
    }

    /// The service refused an upload for now (429, "too many jobs"): nothing was created, so
    /// the image goes back to `new` without counting an attempt, and no slot is held while
    /// waiting. The limit comes down (not below the jobs the service holds for this run), and
    /// until `Retry-After` uploads only replace jobs of this run that finish.
    async fn throttled(&mut self, claim: &Claim, e: &eraser_api::Error) -> anyhow::Result<()> {
        self.answered();
        self.back_in_queue(claim).await?;
        Counters::add(&self.counters.retries, 1);
        Counters::add(&self.counters.refused_uploads, 1);
        let accepted = self.at_service();
        self.limiter.refused_upload(accepted);
        tracing::debug!(
            "create-job for {} refused ({e}); {accepted} job(s) at the service, waiting {:?} \
             before sending more",
            claim.source_path.display(),
            e.retry_after()
        );
        let verdict =
            self.health
                .upload_throttled(accepted, e.retry_after(), &e.to_string(), Instant::now());
        self.follow(verdict).await
    }

    /// The claimed input's bytes changed after hashing (nothing was uploaded under the old
    /// hash): it goes back through the scan's own path (hashed again and recorded), so this
    /// run uploads the new bytes; the old image goes back to `new` (other inputs may still hold
    /// it) or is forgotten. A file that changes again, vanishes or stops being an image fails
    /// for this run.
    async fn input_changed(&mut self, claim: Claim, e: &eraser_api::Error) -> anyhow::Result<()> {
        let sha = claim.sha256;
        let path = claim.source_path.clone();
        let known = self.ledger.input(&path).await?;
        let fresh = if self.rehashed.insert(path.clone()) {
            let p = path.clone();
            Some(
                tokio::task::spawn_blocking(move || fingerprint::fingerprint_file(&p))
                    .await
                    .context("hashing task failed")?,
            )
        } else {
            None
        };
        let (fp, known) = match (fresh, known) {
            (Some(Ok(fp)), Some(known)) => (fp, known),
            (Some(Err(again)), _) => {
                let msg = format!("{e}; hashing it again: {}", again.reason());
                return self.fail(&sha, None, &msg, true).await;
            }
            _ => {
                let msg = format!("{e}; not uploaded, the next run hashes it again");
                return self.fail(&sha, None, &msg, true).await;
            }
        };
        tracing::warn!(
            "{}: changed since it was hashed; hashed again, its new bytes are uploaded",
            path.display()
        );
        let batch = ScanBatch {
            inputs: vec![FoundInput {
                path,
                size: fp.size,
                mtime_ns: fp.mtime_ns,
                content: Some(Content {
                    sha256: fp.sha256,
                    format: fp.format.as_str(),
                }),
                // The recorded plan wins over this one (an input keeps its output path).
                planned_output: known.planned_output.unwrap_or_default(),
            }],
            ..ScanBatch::default()
        };
        self.scan.record(&batch).await.with_context(|| {
            format!("recording the new bytes of {}", claim.source_path.display())
        })?;
        self.back_in_queue(&claim).await?;
        self.ledger.forget_unused(&sha).await?;
        Counters::add(&self.counters.hashed, 1);
        Ok(())
    }

    /// A request whose last attempt could not even connect: the network or the service is down.
    pub async fn unreached(&mut self, e: &eraser_api::Error) -> anyhow::Result<()> {
        let was = self.health.unreachable_since();
        let verdict = self.health.unreached(&e.to_string(), Instant::now());
        if was.is_none() && self.health.unreachable_since().is_some() && self.stopped.is_none() {
            tracing::warn!(
                "the service cannot be reached ({e}); waiting up to {} for it to come back \
                 (--outage-timeout)",
                crate::cli::format_duration(self.opts.outage_timeout)
            );
            self.counters.set_unreachable();
        }
        self.follow(verdict).await
    }

    /// The service answered (whatever it said).
    pub fn answered(&mut self) {
        if self.health.answered() {
            tracing::warn!("the service answers again");
            self.counters.set_reachable();
        }
    }

    /// A claimed image whose upload created nothing goes back to `new`, no attempt counted,
    /// and the queue is worth looking at again.
    async fn back_in_queue(&mut self, claim: &Claim) -> anyhow::Result<()> {
        match self.ledger.release_claim(self.run, &claim.sha256).await {
            Ok(()) | Err(eraser_store::Error::ClaimLost { .. }) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "putting {} back in the queue",
                    claim.source_path.display()
                )));
            }
        }
        self.exhausted = false;
        Ok(())
    }
}

/// Records a job id the moment it arrives. When the ledger cannot be reached, the id is kept
/// on disk first (see `unrecorded.rs`), then recorded once the ledger answers.
async fn record_job(
    ledger: &eraser_store::Ledger,
    unrecorded: &Unrecorded,
    run: eraser_store::RunId,
    claim: &Claim,
    job_id: &JobId,
) -> Result<(), eraser_store::Error> {
    let unreachable = |r: &Result<(), eraser_store::Error>| matches!(r, Err(e) if e.kind() == eraser_store::ErrorKind::Unavailable);
    let sha = &claim.sha256;
    let first = ledger
        .without_waiting()
        .mark_processing(run, sha, job_id.as_str())
        .await;
    if !unreachable(&first) {
        return first;
    }
    unrecorded
        .keep(Entry {
            sha256: sha.to_string(),
            job_id: job_id.as_str().to_owned(),
            run: run.0,
            input: claim.source_path.clone(),
        })
        .await;
    let waited = ledger.mark_processing(run, sha, job_id.as_str()).await;
    if !unreachable(&waited) {
        unrecorded.recorded(sha).await;
    }
    waited
}

/// The English message of an API refusal.
fn api_message(e: &eraser_api::Error) -> String {
    match e {
        eraser_api::Error::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
