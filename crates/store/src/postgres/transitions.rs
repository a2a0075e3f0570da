//! Claims, transitions and outputs on the shared ledger. Each transition is a compare-and-set
//! on the status (and, for a claim, on the run holding it); claims pick rows with
//! `for update skip locked` inside a CTE, so no two runs wait on each other's rows and a
//! claim locks exactly the rows it takes.

use std::path::Path;

use super::{Postgres, path_bytes};
use crate::liveness::process_exists;
use crate::rows::{path_from_bytes, to_i64, to_u32, to_u64};
use crate::{Claim, DoneRecord, Error, Failure, ImageStatus, Result, Retried, RunId, Sha256};

impl Postgres {
    pub(crate) async fn clear_image_output(&self, sha: &Sha256) -> Result<()> {
        let done = sqlx::query!(
            "update images set output_path = null, output_machine = null, updated_at = now()
             where sha256 = $1 and status = 'done'",
            &sha.0[..]
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_moved(done.rows_affected(), sha, ImageStatus::Done)
            .await
    }

    /// Moves up to `n` `new` images that have an input of `run` on this machine to
    /// `uploading`, held by `run`, oldest first. Rows another run is claiming are skipped.
    pub(crate) async fn claim_for_upload(&self, run: RunId, n: u32) -> Result<Vec<Claim>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        let claimed = sqlx::query!(
            r#"with picked as (
                   select i.id from images as i
                   where i.status = 'new'
                     and exists (select 1 from inputs as p
                                 where p.image_id = i.id and p.machine = $2 and p.missing is null
                                   and p.path < (select w.hi from run_roots as w
                                                 where w.run = $1 and w.lo <= p.path
                                                 order by w.lo desc limit 1))
                   order by i.id
                   limit $3
                   for update of i skip locked)
               update images as i
               set status = 'uploading', claimed_by = $1, job_id = null, updated_at = now()
               from picked where i.id = picked.id
               returning i.id, i.sha256, i.size, i.format, i.attempts"#,
            run.0,
            self.machine,
            i64::from(n)
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        let sources = sqlx::query!(
            r#"select distinct on (p.image_id) p.image_id, p.path from inputs as p
               where p.image_id = any($1) and p.machine = $2 and p.missing is null
                 and p.path < (select w.hi from run_roots as w
                               where w.run = $3 and w.lo <= p.path order by w.lo desc limit 1)
               order by p.image_id, p.path"#,
            &ids,
            self.machine,
            run.0
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        let mut claims = Vec::with_capacity(claimed.len());
        for row in claimed {
            let Some(source) = sources.iter().find(|s| s.image_id == row.id) else {
                return Err(self.invalid(format!("claimed image {} has no input", row.id)));
            };
            claims.push(Claim {
                sha256: self.rows().decode_sha(&row.sha256)?,
                size: to_u64(row.size),
                format: row.format,
                source_path: path_from_bytes(source.path.clone()),
                attempts: to_u32(i64::from(row.attempts)),
            });
        }
        Ok(claims)
    }

    /// `uploading` (held by `run`) → `processing`; committed (and so durable) before it
    /// returns.
    pub(crate) async fn mark_processing(
        &self,
        run: RunId,
        sha: &Sha256,
        job_id: &str,
    ) -> Result<()> {
        let done = sqlx::query!(
            "update images set status = 'processing', job_id = $1, job_run = $3,
                 attempts = attempts + 1, claimed_by = null, updated_at = now()
             where sha256 = $2 and status = 'uploading' and claimed_by = $3",
            job_id,
            &sha.0[..],
            run.0
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 && self.holds_job(sha, job_id).await? {
            // Recorded by an earlier try whose reply the network lost.
            return Ok(());
        }
        self.expect_claim_moved(done.rows_affected(), sha, ImageStatus::Processing)
            .await
    }

    /// Whether the image is `processing` under this job id.
    async fn holds_job(&self, sha: &Sha256, job_id: &str) -> Result<bool> {
        sqlx::query_scalar!(
            r#"select exists (select 1 from images
                              where sha256 = $1 and status = 'processing' and job_id = $2) as "held!""#,
            &sha.0[..],
            job_id
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err(e))
    }

    /// `processing` → `done`; the stored result is on this machine.
    pub(crate) async fn mark_done(&self, sha: &Sha256, done: &DoneRecord) -> Result<()> {
        let output_sha = done.output_sha256.map(|s| s.to_string());
        let moved = sqlx::query!(
            "update images set status = 'done', output_url = $1, output_path = $2,
                 output_machine = $3, output_sha256 = $4, output_size = $5, credits_states = $6,
                 need_credits = $7, p_credits = $8, s_credits = $9, raw_response = $10,
                 error_code = null, error_message = null, retryable = null, done_at = now(),
                 updated_at = now()
             where sha256 = $11 and status = 'processing'",
            done.output_url,
            path_bytes(&done.output_path),
            self.machine,
            output_sha,
            to_i64(done.output_size),
            done.credits_states,
            done.need_credits,
            done.p_credits,
            done.s_credits,
            done.raw_response,
            &sha.0[..]
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_moved(moved.rows_affected(), sha, ImageStatus::Done)
            .await
    }

    pub(crate) async fn mark_failed(
        &self,
        run: RunId,
        sha: &Sha256,
        failure: &Failure,
    ) -> Result<()> {
        let done = sqlx::query!(
            "update images set status = 'failed',
                 attempts = attempts + case when status = 'uploading' then 1 else 0 end,
                 error_code = $1, error_message = $2, retryable = $3, claimed_by = null,
                 updated_at = now()
             where sha256 = $4
               and (status = 'processing' or status = 'uploading' and claimed_by = $5)",
            failure.code,
            failure.message,
            failure.retryable,
            &sha.0[..],
            run.0
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_claim_moved(done.rows_affected(), sha, ImageStatus::Failed)
            .await
    }

    pub(crate) async fn release_claim(&self, run: RunId, sha: &Sha256) -> Result<()> {
        let done = sqlx::query!(
            "update images set status = 'new', claimed_by = null, updated_at = now()
             where sha256 = $1 and status = 'uploading' and claimed_by = $2",
            &sha.0[..],
            run.0
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_claim_moved(done.rows_affected(), sha, ImageStatus::New)
            .await
    }

    pub(crate) async fn forget_unused(&self, sha: &Sha256) -> Result<bool> {
        let done = sqlx::query!(
            "delete from images
             where sha256 = $1 and status = 'new' and job_id is null and attempts = 0
               and not exists (select 1 from inputs where inputs.image_id = images.id)",
            &sha.0[..]
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn requeue(&self, shas: Option<&[Sha256]>) -> Result<u64> {
        let keys = shas.map(keys);
        let done = sqlx::query!(
            "update images set status = 'new', updated_at = now()
             where status = 'failed' and ($1::bytea[] is null or sha256 = any($1))",
            keys.as_deref()
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(done.rows_affected())
    }

    /// Each failed image back to `new`, except a job eraser only stopped waiting for, which
    /// goes back to `processing` with its job id to be polled again.
    pub(crate) async fn retry_failed(&self, shas: Option<&[Sha256]>) -> Result<Retried> {
        let keys = shas.map(keys);
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        let to_poll = sqlx::query!(
            "update images set status = 'processing', claimed_by = null, updated_at = now()
             where status = 'failed' and job_id is not null and error_code is null
               and retryable and ($1::bytea[] is null or sha256 = any($1))",
            keys.as_deref()
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?
        .rows_affected();
        let to_upload = sqlx::query!(
            "update images set status = 'new', updated_at = now()
             where status = 'failed' and ($1::bytea[] is null or sha256 = any($1))",
            keys.as_deref()
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?
        .rows_affected();
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(Retried { to_upload, to_poll })
    }

    pub(crate) async fn reset_done(&self, sha: &Sha256) -> Result<()> {
        let done = sqlx::query!(
            "update images set status = 'new', job_id = null, job_run = null, output_url = null,
                 output_path = null, output_machine = null, output_sha256 = null,
                 output_size = null, credits_states = null, need_credits = null,
                 p_credits = null, s_credits = null, raw_response = null, done_at = null,
                 updated_at = now()
             where sha256 = $1 and status = 'done'",
            &sha.0[..]
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        self.expect_moved(done.rows_affected(), sha, ImageStatus::New)
            .await
    }

    pub(crate) async fn note_repeat_uploads(&self, sha: &Sha256, n: u32) -> Result<()> {
        sqlx::query!(
            "update images set repeat_uploads = repeat_uploads + $1, updated_at = now()
             where sha256 = $2",
            i32::try_from(n).unwrap_or(i32::MAX),
            &sha.0[..]
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// `uploading` images claimed by dead runs go back to `new`, counted in `repeat_uploads`.
    /// A run is dead when finished, when its heartbeat is older than the lease
    /// in the database's clock, or when it ran on this machine and its process is gone.
    pub(crate) async fn recover(&self) -> Result<u64> {
        // This machine's runs holding claims whose process is gone: a kill on this host is
        // known at once, without waiting for the lease.
        let local = sqlx::query!(
            "select r.id, r.pid from runs as r
             where r.machine = $1 and r.finished_at is null
               and r.id in (select claimed_by from images where claimed_by is not null)",
            self.machine
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        let gone: Vec<i64> = local
            .into_iter()
            .filter(|r| !process_exists(r.pid))
            .map(|r| r.id)
            .collect();
        let reclaimed = sqlx::query!(
            "update images as i
             set status = 'new', claimed_by = null, repeat_uploads = repeat_uploads + 1,
                 updated_at = now()
             where i.status = 'uploading'
               and (i.claimed_by is null
                    or i.claimed_by = any($1)
                    or not exists (select 1 from runs as r
                                   where r.id = i.claimed_by and r.finished_at is null
                                     and r.heartbeat_at > now() - $2 * interval '1 second'))",
            &gone,
            self.lease.as_secs_f64()
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?
        .rows_affected();
        Ok(reclaimed)
    }

    pub(crate) async fn set_input_output(
        &self,
        run: RunId,
        path: &Path,
        output: &Path,
    ) -> Result<()> {
        let done = sqlx::query!(
            "insert into placements (machine, path, out_root, planned, written)
             select $1, $2, r.out_root, $3, $3 from runs as r
             where r.id = $4 and exists (select 1 from inputs where machine = $1 and path = $2)
             on conflict (machine, path, out_root)
             do update set written = excluded.written, updated_at = now()",
            self.machine,
            path_bytes(path),
            path_bytes(output),
            run.0
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownInput {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    pub(crate) async fn clear_input_output(&self, path: &Path) -> Result<()> {
        let key = path_bytes(path);
        sqlx::query!(
            "update placements set written = null where machine = $1 and path = $2",
            self.machine,
            key
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        let known = sqlx::query_scalar!(
            r#"select exists (select 1 from inputs where machine = $1 and path = $2) as "known!""#,
            self.machine,
            key
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        if !known {
            return Err(Error::UnknownInput {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// After a compare-and-set of a claim: an image that is no longer this run's to move is
    /// [`Error::ClaimLost`].
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
        let from = sqlx::query_scalar!("select status from images where sha256 = $1", &sha.0[..])
            .fetch_optional(&self.pool)
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

/// The images' keys, for `sha256 = any($1)`.
fn keys(shas: &[Sha256]) -> Vec<Vec<u8>> {
    shas.iter().map(|s| s.0.to_vec()).collect()
}
