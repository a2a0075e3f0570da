//! Image transitions. Each one is a compare-and-set: `update … where sha256 = ? and status = ?`;
//! when no row matched, the current status is read back to name what refused the change.
//!
//! `attempts` counts uploads sent: it grows when the service accepted an upload
//! (`mark_processing`) and when an upload failed while sending (`mark_failed` from `uploading`);
//! a job that fails later (`mark_failed` from `processing`) was already counted.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{Sqlite, now_text, path_bytes, path_from_bytes, to_i64, to_u64};
use crate::liveness::{RunLiveness, this_host};
use crate::rows::to_u32;
use crate::{Claim, DoneRecord, Error, Failure, ImageStatus, Result, Retried, RunId, Sha256};

impl Sqlite {
    /// Forgets where a done image's result was stored (the file is gone), keeping the job and
    /// its URL so the next run downloads it again instead of uploading.
    pub(crate) async fn clear_image_output(&self, sha: &Sha256) -> Result<()> {
        let key = &sha.0[..];
        let now = now_text();
        let done = sqlx::query!(
            "update images set output_path = null, updated_at = ?2 where sha256 = ?1 and status = 'done'",
            key,
            now
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_moved(done.rows_affected(), sha, ImageStatus::Done)
            .await
    }

    /// Moves up to `n` `new` images that have an input of `run` (see `walks.rs`) to `uploading`,
    /// held by `run`.
    ///
    /// One `begin immediate` transaction picks and claims, so two processes claiming at once
    /// never get the same image. Images are taken oldest first (in the order they were recorded).
    pub(crate) async fn claim_for_upload(&self, run: RunId, n: u32) -> Result<Vec<Claim>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::from(n);
        let now = now_text();
        let mut tx = self.begin_write().await?;
        // The image's first input that is the run's: present, under one of the run's roots
        // (roots never overlap, so the one starting last at or before the path decides).
        let picked = sqlx::query!(
            r#"select id as "id!: i64", sha256 as "sha256!: Vec<u8>", size as "size!: i64",
                      format as "format!: String", attempts as "attempts!: i64",
                      source_path as "source_path!: Vec<u8>"
               from (select i.id, i.sha256, i.size, i.format, i.attempts,
                            (select min(p.path) from inputs as p indexed by inputs_image
                             where p.image_id = i.id and p.missing is null
                               and p.path < (select w.hi from run_roots as w
                                             where w.run = ?1 and w.lo <= p.path
                                             order by w.lo desc limit 1)) as source_path
                     from images as i
                     where i.status = 'new'
                     order by i.id)
               where source_path is not null
               limit ?2"#,
            run.0,
            limit
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;

        let mut claims = Vec::with_capacity(picked.len());
        for row in picked {
            let claimed = sqlx::query!(
                "update images set status = 'uploading', claimed_by = ?1, job_id = null, updated_at = ?2
                 where id = ?3 and status = 'new'",
                run.0,
                now,
                row.id
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
            if claimed.rows_affected() == 1 {
                claims.push(Claim {
                    sha256: self.rows().decode_sha(&row.sha256)?,
                    size: to_u64(row.size),
                    format: row.format,
                    source_path: path_from_bytes(row.source_path),
                    attempts: to_u32(row.attempts),
                });
            }
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(claims)
    }

    /// `uploading` → `processing` with the job id; counts the upload as an attempt. Synced to
    /// disk before it returns: the job id is what keeps the next run from paying again.
    pub(crate) async fn mark_processing(
        &self,
        run: RunId,
        sha: &Sha256,
        job_id: &str,
    ) -> Result<()> {
        let (key, now) = (&sha.0[..], now_text());
        let mut conn = self.durable_writer().await?;
        let done = sqlx::query!(
            "update images set status = 'processing', job_id = ?1, job_run = ?4,
                 attempts = attempts + 1, claimed_by = null, updated_at = ?2
             where sha256 = ?3 and status = 'uploading' and claimed_by = ?4",
            job_id,
            now,
            key,
            run.0
        )
        .execute(&mut *conn)
        .await;
        self.end_durable(conn).await;
        let done = done.map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 && self.holds_job(sha, job_id).await? {
            // The same job id recorded again (as the shared backend allows after a lost reply).
            return Ok(());
        }
        self.expect_claim_moved(done.rows_affected(), sha, ImageStatus::Processing)
            .await
    }

    /// Whether the image is `processing` under this job id.
    async fn holds_job(&self, sha: &Sha256, job_id: &str) -> Result<bool> {
        let key = &sha.0[..];
        sqlx::query_scalar!(
            r#"select exists (select 1 from images
                              where sha256 = ?1 and status = 'processing' and job_id = ?2) as "held!: bool""#,
            key,
            job_id
        )
        .fetch_one(&self.write)
        .await
        .map_err(|e| self.db_err(e))
    }

    /// `processing` → `done`, recording the result and clearing any earlier error.
    pub(crate) async fn mark_done(&self, sha: &Sha256, done: &DoneRecord) -> Result<()> {
        let (key, now) = (&sha.0[..], now_text());
        let output_path = path_bytes(&done.output_path);
        let output_sha = done.output_sha256.map(|s| s.to_string());
        let output_size = to_i64(done.output_size);
        let moved = sqlx::query!(
            "update images set status = 'done', output_url = ?1, output_path = ?2, output_sha256 = ?3,
                 output_size = ?4, credits_states = ?5, need_credits = ?6, p_credits = ?7, s_credits = ?8,
                 raw_response = ?9, error_code = null, error_message = null, retryable = null,
                 done_at = ?10, updated_at = ?10
             where sha256 = ?11 and status = 'processing'",
            done.output_url,
            output_path,
            output_sha,
            output_size,
            done.credits_states,
            done.need_credits,
            done.p_credits,
            done.s_credits,
            done.raw_response,
            now,
            key
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_moved(moved.rows_affected(), sha, ImageStatus::Done)
            .await
    }

    /// `uploading` or `processing` → `failed`, recording the error. Attempts + 1 when failing
    /// from `uploading` (the failed upload); a `processing` job was counted when it was accepted.
    pub(crate) async fn mark_failed(
        &self,
        run: RunId,
        sha: &Sha256,
        failure: &Failure,
    ) -> Result<()> {
        let (key, now) = (&sha.0[..], now_text());
        let done = sqlx::query!(
            "update images set status = 'failed',
                 attempts = attempts + (status = 'uploading'),
                 error_code = ?1, error_message = ?2, retryable = ?3, claimed_by = null, updated_at = ?4
             where sha256 = ?5
               and (status = 'processing' or status = 'uploading' and claimed_by = ?6)",
            failure.code,
            failure.message,
            failure.retryable,
            now,
            key,
            run.0
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_claim_moved(done.rows_affected(), sha, ImageStatus::Failed)
            .await
    }

    pub(crate) async fn release_claim(&self, run: RunId, sha: &Sha256) -> Result<()> {
        let (key, now) = (&sha.0[..], now_text());
        let done = sqlx::query!(
            "update images set status = 'new', claimed_by = null, updated_at = ?1
             where sha256 = ?2 and status = 'uploading' and claimed_by = ?3",
            now,
            key,
            run.0
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_claim_moved(done.rows_affected(), sha, ImageStatus::New)
            .await
    }

    /// Deletes a `new` image that no input holds any more (its only file changed before it
    /// was ever sent); returns whether it was deleted. Images with history are kept.
    pub(crate) async fn forget_unused(&self, sha: &Sha256) -> Result<bool> {
        let key = &sha.0[..];
        let done = sqlx::query!(
            "delete from images
             where sha256 = ?1 and status = 'new' and job_id is null and attempts = 0
               and not exists (select 1 from inputs where inputs.image_id = images.id)",
            key
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(done.rows_affected() > 0)
    }

    /// `failed` → `new` for the given images (all failed ones when `None`). Returns how many.
    /// Images that are not `failed` are left as they are (and not counted). The last error
    /// stays on the row until the next outcome replaces it.
    pub(crate) async fn requeue(&self, shas: Option<&[Sha256]>) -> Result<u64> {
        let now = now_text();
        let Some(shas) = shas else {
            let done = sqlx::query!(
                "update images set status = 'new', updated_at = ?1 where status = 'failed'",
                now
            )
            .execute(&self.write)
            .await
            .map_err(|e| self.db_err(e))?;
            return Ok(done.rows_affected());
        };
        let mut tx = self.begin_write().await?;
        let mut requeued = 0;
        for sha in shas {
            requeued += self.requeue_one(&mut tx, &sha.0[..], &now).await?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(requeued)
    }

    /// `failed` → `new` for one image (by its sha256 bytes) inside `tx`; 1 if it moved.
    async fn requeue_one(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        key: &[u8],
        now: &str,
    ) -> Result<u64> {
        let moved = sqlx::query!(
            "update images set status = 'new', updated_at = ?1 where sha256 = ?2 and status = 'failed'",
            now,
            key
        )
        .execute(&mut **tx)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(moved.rows_affected())
    }

    /// What the user asked to retry (`ledger retry`, `run --retry-failed`): each failed image
    /// goes back to `new`, except a job that failed only because eraser stopped waiting for it
    /// (its `--job-timeout`, or polls that kept failing: no verdict from the service, retryable)
    /// which goes back to `processing` with its job id, so the next run polls that job (the
    /// service may have finished it) instead of paying for the image again. `None` = every
    /// failed image.
    pub(crate) async fn retry_failed(&self, shas: Option<&[Sha256]>) -> Result<Retried> {
        let now = now_text();
        let mut tx = self.begin_write().await?;
        let mut retried = Retried::default();
        let Some(shas) = shas else {
            retried.to_poll = sqlx::query!(
                "update images set status = 'processing', claimed_by = null, updated_at = ?1
                 where status = 'failed' and job_id is not null and error_code is null
                   and retryable = 1",
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?
            .rows_affected();
            retried.to_upload = sqlx::query!(
                "update images set status = 'new', updated_at = ?1 where status = 'failed'",
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?
            .rows_affected();
            tx.commit().await.map_err(|e| self.db_err(e))?;
            return Ok(retried);
        };
        for sha in shas {
            let key = &sha.0[..];
            let polled = sqlx::query!(
                "update images set status = 'processing', claimed_by = null, updated_at = ?1
                 where sha256 = ?2 and status = 'failed' and job_id is not null
                   and error_code is null and retryable = 1",
                now,
                key
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?
            .rows_affected();
            retried.to_poll += polled;
            if polled == 0 {
                retried.to_upload += self.requeue_one(&mut tx, key, &now).await?;
            }
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(retried)
    }

    /// `done` → `new`: the stored result is unusable and cannot be fetched again. Clears the
    /// job, the result and its credits, so the image is uploaded afresh.
    pub(crate) async fn reset_done(&self, sha: &Sha256) -> Result<()> {
        let (key, now) = (&sha.0[..], now_text());
        let done = sqlx::query!(
            "update images set status = 'new', job_id = null, job_run = null, output_url = null,
                 output_path = null, output_sha256 = null, output_size = null, credits_states = null,
                 need_credits = null, p_credits = null, s_credits = null, raw_response = null,
                 done_at = null, updated_at = ?1
             where sha256 = ?2 and status = 'done'",
            now,
            key
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_moved(done.rows_affected(), sha, ImageStatus::New)
            .await
    }

    /// Counts `n` uploads of the image that may have created a job eraser never heard of (the
    /// reply lost after the whole image had gone out) in its `repeat_uploads`, whatever its status.
    pub(crate) async fn note_repeat_uploads(&self, sha: &Sha256, n: u32) -> Result<()> {
        let (key, now) = (&sha.0[..], now_text());
        sqlx::query!(
            "update images set repeat_uploads = repeat_uploads + ?1, updated_at = ?2
             where sha256 = ?3",
            n,
            now,
            key
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// `uploading` images claimed by dead runs (same host and pid gone, or heartbeat older than
    /// `stale_after`) go back to `new`, counted in `repeat_uploads`. Live runs' claims are untouched.
    /// Claims whose run is no longer registered are taken back too. Returns how many were reclaimed.
    ///
    /// Liveness is judged under the write lock, so a heartbeat cannot slip in between the
    /// judgement and the update.
    pub(crate) async fn recover(&self) -> Result<u64> {
        let (host, now) = (this_host(), now_text());
        let judged_at = Utc::now();
        let mut tx = self.begin_write().await?;
        let holders = sqlx::query!(
            r#"select r.id, r.host, r.pid, r.heartbeat_at as "heartbeat_at: DateTime<Utc>",
                      r.finished_at is not null as "finished!: bool"
               from runs as r
               where r.id in (select distinct claimed_by from images where claimed_by is not null)"#
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;

        let mut reclaimed = 0;
        for run in holders {
            let liveness = RunLiveness {
                host: run.host,
                pid: run.pid,
                heartbeat_at: run.heartbeat_at,
                finished: run.finished,
            };
            if !liveness.is_dead(&host, judged_at, self.lease) {
                continue;
            }
            reclaimed += sqlx::query!(
                "update images set status = 'new', claimed_by = null, repeat_uploads = repeat_uploads + 1,
                     updated_at = ?1
                 where claimed_by = ?2 and status = 'uploading'",
                now,
                run.id
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?
            .rows_affected();
        }
        reclaimed += sqlx::query!(
            "update images set status = 'new', claimed_by = null, repeat_uploads = repeat_uploads + 1,
                 updated_at = ?1
             where status = 'uploading'
               and (claimed_by is null or not exists (select 1 from runs where runs.id = images.claimed_by))",
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?
        .rows_affected();
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(reclaimed)
    }

    /// Records that `output` was written for the input at `path`, in `run`'s OUT.
    pub(crate) async fn set_input_output(
        &self,
        run: RunId,
        path: &Path,
        output: &Path,
    ) -> Result<()> {
        let (key, output) = (path_bytes(path), path_bytes(output));
        let now = now_text();
        let done = sqlx::query!(
            "insert into placements (path, out_root, planned, written, updated_at)
             select ?2, coalesce((select r.out_root from runs as r where r.id = ?3), x''), ?1, ?1, ?4
             where exists (select 1 from inputs where path = ?2)
             on conflict (path, out_root) do update set written = excluded.written, updated_at = excluded.updated_at",
            output,
            key,
            run.0,
            now
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownInput {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Clears the recorded outputs of an input, in every OUT (its file turned out missing or wrong).
    pub(crate) async fn clear_input_output(&self, path: &Path) -> Result<()> {
        let key = path_bytes(path);
        sqlx::query!("update placements set written = null where path = ?1", key)
            .execute(&self.write)
            .await
            .map_err(|e| self.db_err(e))?;
        let known = sqlx::query_scalar!(
            r#"select count(*) as "n!: i64" from inputs where path = ?1"#,
            key
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        if known == 0 {
            return Err(Error::UnknownInput {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// [`Sqlite::expect_moved`] for a transition of a claim: an image that is no longer this
    /// run's to move (taken back to `new`, or claimed by another run) is [`Error::ClaimLost`].
    async fn expect_claim_moved(&self, rows: u64, sha: &Sha256, to: ImageStatus) -> Result<()> {
        match self.expect_moved(rows, sha, to).await {
            Err(Error::IllegalTransition { from, .. }) if from == "new" || from == "uploading" => {
                Err(Error::ClaimLost {
                    sha256: sha.to_string(),
                })
            }
            other => other,
        }
    }

    /// After a compare-and-set: one row moved is success; none means the image is missing or
    /// in another status, which is named in the error.
    async fn expect_moved(&self, rows: u64, sha: &Sha256, to: ImageStatus) -> Result<()> {
        if rows > 0 {
            return Ok(());
        }
        let key = &sha.0[..];
        let from = sqlx::query_scalar!("select status from images where sha256 = ?1", key)
            .fetch_optional(&self.write)
            .await
            .map_err(|e| self.db_err(e))?;
        match from {
            Some(from) => Err(Error::IllegalTransition {
                sha256: sha.to_string(),
                from,
                to: to.as_str().to_owned(),
            }),
            None => Err(Error::UnknownImage {
                sha256: sha.to_string(),
            }),
        }
    }
}
