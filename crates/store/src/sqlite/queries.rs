//! Read-only questions: rows by key, counters, a run's inputs and jobs, paged lists, streamed
//! export, and the consistency check behind `eraser ledger verify`.
//!
//! A run's inputs are the present inputs under its roots. A run's roots never overlap, so the
//! root holding a path is the one starting last at or before it:
//! `p.path < (select w.hi from run_roots as w where w.run = ?1 and w.lo <= p.path order by w.lo
//! desc limit 1)`, one probe of the roots' key per input. When an input was last seen, and by
//! which run, is the `inputs_seen` view's to say.

use std::path::Path;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use super::{Sqlite, path_bytes, to_u64};
use crate::liveness::{RunLiveness, this_host};
use crate::rows::{Counters, RawImage, RawInput, RawInputState, merge_host_counts};
use crate::{
    ConsistencyReport, CreditsUsed, FailureGroup, HostActivity, ImageRow, ImageStatus, InFlight,
    InputCounts, InputRow, InputState, RejectKind, RejectedRow, Result, RunId, RunProgress, Sha256,
    StatusCounts,
};

impl Sqlite {
    pub(crate) async fn image(&self, sha: &Sha256) -> Result<Option<ImageRow>> {
        let key = &sha.0[..];
        let row = sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts, repeat_uploads, error_code, error_message,
                      retryable as "retryable: bool", credits_states, need_credits, p_credits, s_credits,
                      created_at as "created_at: DateTime<Utc>", updated_at as "updated_at: DateTime<Utc>"
               from images where sha256 = ?1"#,
            key
        )
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.rows().decode_image(r)).transpose()
    }

    pub(crate) async fn image_by_job(&self, job_id: &str) -> Result<Option<ImageRow>> {
        let row = sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts, repeat_uploads, error_code, error_message,
                      retryable as "retryable: bool", credits_states, need_credits, p_credits, s_credits,
                      created_at as "created_at: DateTime<Utc>", updated_at as "updated_at: DateTime<Utc>"
               from images where job_id = ?1 order by updated_at desc limit 1"#,
            job_id
        )
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.rows().decode_image(r)).transpose()
    }

    pub(crate) async fn input(&self, path: &Path) -> Result<Option<InputRow>> {
        let key = path_bytes(path);
        let row = sqlx::query_as!(
            RawInput,
            r#"select p.path, p.size, p.mtime_ns, i.sha256,
                      (select pl.planned from placements as pl where pl.path = p.path
                       order by pl.updated_at desc limit 1) as "planned_output?: Vec<u8>",
                      (select pl.written from placements as pl where pl.path = p.path
                       order by pl.updated_at desc limit 1) as "output_path?: Vec<u8>",
                      p.last_run as "last_run?: i64", p.last_seen as "last_seen!: DateTime<Utc>",
                      p.missing
               from inputs_seen as p join images as i on i.id = p.image_id
               where p.path = ?1"#,
            key
        )
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.rows().decode_input(r)).transpose()
    }

    pub(crate) async fn inputs_of_image(&self, sha: &Sha256) -> Result<Vec<InputRow>> {
        let key = &sha.0[..];
        let rows = sqlx::query_as!(
            RawInput,
            r#"select p.path, p.size, p.mtime_ns, i.sha256,
                      (select pl.planned from placements as pl where pl.path = p.path
                       order by pl.updated_at desc limit 1) as "planned_output?: Vec<u8>",
                      (select pl.written from placements as pl where pl.path = p.path
                       order by pl.updated_at desc limit 1) as "output_path?: Vec<u8>",
                      p.last_run as "last_run?: i64", p.last_seen as "last_seen!: DateTime<Utc>",
                      p.missing
               from images as i join inputs_seen as p on p.image_id = i.id
               where i.sha256 = ?1
               order by p.path"#,
            key
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| self.rows().decode_input(r))
            .collect()
    }

    pub(crate) async fn run_inputs_of_image(
        &self,
        run: RunId,
        sha: &Sha256,
    ) -> Result<Vec<InputRow>> {
        let key = &sha.0[..];
        let rows = sqlx::query_as!(
            RawInput,
            r#"select p.path, p.size, p.mtime_ns, i.sha256,
                      pl.planned as "planned_output?: Vec<u8>", pl.written as "output_path?: Vec<u8>",
                      p.last_run as "last_run?: i64", p.last_seen as "last_seen!: DateTime<Utc>",
                      p.missing
               from images as i
               join inputs as p on p.image_id = i.id
               left join placements as pl
                 on pl.path = p.path and pl.out_root = (select r.out_root from runs as r where r.id = ?1)
               where i.sha256 = ?2 and p.missing is null
                 and p.path < (select w.hi from run_roots as w
                               where w.run = ?1 and w.lo <= p.path order by w.lo desc limit 1)
               order by p.path"#,
            run.0,
            key
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| self.rows().decode_input(r))
            .collect()
    }

    pub(crate) async fn status_counts(&self) -> Result<StatusCounts> {
        Ok(self.counters().await?.counted().images)
    }

    pub(crate) async fn input_counts(&self) -> Result<InputCounts> {
        Ok(self.counters().await?.counted().inputs)
    }

    pub(crate) async fn credits_used(&self) -> Result<CreditsUsed> {
        Ok(self.counters().await?.counted().credits)
    }

    async fn counters(&self) -> Result<Counters> {
        let rows = sqlx::query!("select name, n from counters")
            .fetch_all(&self.read)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(Counters(rows.into_iter().map(|r| (r.name, r.n)).collect()))
    }

    pub(crate) async fn failure_groups(&self) -> Result<Vec<FailureGroup>> {
        let rows = sqlx::query!(
            r#"select error_code, coalesce(min(error_message), '') as "message!: String", count(*) as "n!: i64"
               from images where status = 'failed'
               group by error_code
               order by count(*) desc, error_code"#
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(rows
            .into_iter()
            .map(|r| FailureGroup {
                code: r.error_code,
                message: r.message,
                count: to_u64(r.n),
            })
            .collect())
    }

    pub(crate) async fn hosts(&self, since: DateTime<Utc>) -> Result<Vec<HostActivity>> {
        let unfinished = sqlx::query!(
            r#"select host, pid, heartbeat_at as "heartbeat_at: DateTime<Utc>"
               from runs where finished_at is null"#
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        let (here, now) = (this_host(), Utc::now());
        let alive = unfinished.into_iter().filter_map(|r| {
            let run = RunLiveness {
                host: r.host,
                pid: r.pid,
                heartbeat_at: r.heartbeat_at,
                finished: false,
            };
            (!run.is_dead(&here, now, self.lease)).then_some((run.host, 1))
        });
        let mut hosts = Vec::new();
        merge_host_counts(&mut hosts, alive, |h| &mut h.runs_alive);
        let in_flight = sqlx::query!(
            r#"select r.host, count(*) as "n!: i64" from images as i join runs as r on r.id = i.job_run
               where i.status = 'processing' group by r.host"#
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        merge_host_counts(
            &mut hosts,
            in_flight.into_iter().map(|r| (r.host, to_u64(r.n))),
            |h| &mut h.in_flight,
        );
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let done = sqlx::query!(
            r#"select r.host, count(*) as "n!: i64" from images as i join runs as r on r.id = i.job_run
               where i.done_at >= ?1 and i.status = 'done' group by r.host"#,
            since
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        merge_host_counts(
            &mut hosts,
            done.into_iter().map(|r| (r.host, to_u64(r.n))),
            |h| &mut h.done_since,
        );
        Ok(hosts)
    }

    pub(crate) async fn in_flight(&self, limit: u32) -> Result<Vec<InFlight>> {
        let limit = i64::from(limit);
        let rows = sqlx::query!(
            r#"select sha256, job_id as "job_id!", size, updated_at as "updated_at: DateTime<Utc>"
               from images where status = 'processing' and job_id is not null
               order by updated_at, sha256 limit ?1"#,
            limit
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(InFlight {
                    sha256: self.rows().decode_sha(&r.sha256)?,
                    job_id: r.job_id,
                    size: to_u64(r.size),
                    updated_at: r.updated_at,
                })
            })
            .collect()
    }

    pub(crate) async fn run_in_flight(&self, run: RunId) -> Result<Vec<InFlight>> {
        let rows = sqlx::query!(
            r#"select i.sha256, i.job_id as "job_id!", i.size, i.updated_at as "updated_at: DateTime<Utc>"
               from images as i
               where i.status = 'processing' and i.job_id is not null
                 and exists (select 1 from inputs as p indexed by inputs_image
                             where p.image_id = i.id and p.missing is null
                               and p.path < (select w.hi from run_roots as w
                                             where w.run = ?1 and w.lo <= p.path
                                             order by w.lo desc limit 1))
               order by i.updated_at, i.sha256"#,
            run.0
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(InFlight {
                    sha256: self.rows().decode_sha(&r.sha256)?,
                    job_id: r.job_id,
                    size: to_u64(r.size),
                    updated_at: r.updated_at,
                })
            })
            .collect()
    }

    /// One pass over the run's inputs for its images (made distinct by grouping), and its
    /// inputs counted from the path index alone (all under each root less the missing ones).
    pub(crate) async fn run_progress(&self, run: RunId) -> Result<RunProgress> {
        let mut tx = self.read.begin().await.map_err(|e| self.db_err(e))?;
        let by_status = sqlx::query!(
            r#"with members (image_id) as (
                   select p.image_id from run_roots as w
                   join inputs as p on p.path >= w.lo and p.path < w.hi
                   where w.run = ?1 and p.missing is null)
               select count(*) filter (where i.status = 'new') as "new!: i64",
                      count(*) filter (where i.status = 'uploading') as "uploading!: i64",
                      count(*) filter (where i.status = 'processing') as "processing!: i64",
                      count(*) filter (where i.status = 'done') as "done!: i64",
                      count(*) filter (where i.status = 'failed') as "failed!: i64"
               from (select image_id from members group by image_id) as m
               join images as i on i.id = m.image_id"#,
            run.0
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        let inputs = sqlx::query_scalar!(
            r#"select coalesce(sum(
                      (select count(*) from inputs as p where p.path >= w.lo and p.path < w.hi)
                    - (select count(*) from inputs as p
                       where p.path >= w.lo and p.path < w.hi and p.missing is not null)), 0)
                  as "n!: i64"
               from run_roots as w where w.run = ?1"#,
            run.0
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        tx.rollback().await.map_err(|e| self.db_err(e))?;
        let counts = [
            by_status.new,
            by_status.uploading,
            by_status.processing,
            by_status.done,
            by_status.failed,
        ]
        .map(to_u64);
        Ok(RunProgress {
            images: StatusCounts {
                new: counts[0],
                uploading: counts[1],
                processing: counts[2],
                done: counts[3],
                failed: counts[4],
                total: counts.iter().sum(),
            },
            inputs: to_u64(inputs),
        })
    }

    /// The run's inputs in path order: its roots in order, each one's inputs along the path
    /// index, so a page reads about as many rows as it returns.
    pub(crate) async fn run_inputs(
        &self,
        run: RunId,
        after: Option<&Path>,
        limit: u32,
    ) -> Result<Vec<InputState>> {
        let after = after.map(path_bytes).unwrap_or_default();
        let limit = i64::from(limit);
        let rows = sqlx::query_as!(
            RawInputState,
            r#"select p.path, p.size, p.mtime_ns, i.sha256,
                      pl.planned as "planned_output?: Vec<u8>", pl.written as "output_path?: Vec<u8>",
                      p.last_run as "last_run?: i64", p.last_seen as "last_seen!: DateTime<Utc>",
                      p.missing, i.status,
                      i.output_path as image_output_path, i.output_sha256 as image_output_sha256,
                      i.output_size as image_output_size,
                      i.output_url, i.error_code, i.error_message
               from run_roots as w
               join inputs as p on p.path >= w.lo and p.path < w.hi and p.path > ?2
               join images as i on i.id = p.image_id
               left join placements as pl
                 on pl.path = p.path and pl.out_root = (select r.out_root from runs as r where r.id = ?1)
               where w.run = ?1 and w.hi > ?2 and p.missing is null
               order by w.lo, p.path
               limit ?3"#,
            run.0,
            after,
            limit
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| self.rows().decode_input_state(r))
            .collect()
    }

    pub(crate) async fn list_images(
        &self,
        status: Option<ImageStatus>,
        after: Option<&Sha256>,
        limit: u32,
    ) -> Result<Vec<ImageRow>> {
        // The empty blob sorts before every sha256.
        let after = after.map(|s| s.0.to_vec()).unwrap_or_default();
        let limit = i64::from(limit);
        let rows = match status {
            // Few rows: the partial index holds exactly them, in sha256 order.
            Some(status @ (ImageStatus::Uploading | ImageStatus::Processing | ImageStatus::Failed)) => {
                let status = status.as_str();
                sqlx::query_as!(
                    RawImage,
                    r#"select sha256, size, format, status, claimed_by, job_id, output_url,
                              output_path, output_sha256, output_size, attempts, repeat_uploads, error_code,
                              error_message, retryable as "retryable: bool", credits_states, need_credits,
                              p_credits, s_credits, created_at as "created_at: DateTime<Utc>",
                              updated_at as "updated_at: DateTime<Utc>"
                       from images
                       where status = ?1 and status in ('uploading', 'processing', 'failed') and sha256 > ?2
                       order by sha256 limit ?3"#,
                    status,
                    after,
                    limit
                )
                .fetch_all(&self.read)
                .await
            }
            // Usually most rows: walk the sha256 index and filter (`+status` keeps the planner
            // from sorting every row of the status instead).
            Some(status @ (ImageStatus::New | ImageStatus::Done)) => {
                let status = status.as_str();
                sqlx::query_as!(
                    RawImage,
                    r#"select sha256, size, format, status, claimed_by, job_id, output_url,
                              output_path, output_sha256, output_size, attempts, repeat_uploads, error_code,
                              error_message, retryable as "retryable: bool", credits_states, need_credits,
                              p_credits, s_credits, created_at as "created_at: DateTime<Utc>",
                              updated_at as "updated_at: DateTime<Utc>"
                       from images where +status = ?1 and sha256 > ?2 order by sha256 limit ?3"#,
                    status,
                    after,
                    limit
                )
                .fetch_all(&self.read)
                .await
            }
            None => {
                sqlx::query_as!(
                    RawImage,
                    r#"select sha256, size, format, status, claimed_by, job_id, output_url,
                              output_path, output_sha256, output_size, attempts, repeat_uploads, error_code,
                              error_message, retryable as "retryable: bool", credits_states, need_credits,
                              p_credits, s_credits, created_at as "created_at: DateTime<Utc>",
                              updated_at as "updated_at: DateTime<Utc>"
                       from images where sha256 > ?1 order by sha256 limit ?2"#,
                    after,
                    limit
                )
                .fetch_all(&self.read)
                .await
            }
        }
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| self.rows().decode_image(r))
            .collect()
    }

    pub(crate) async fn list_rejected(
        &self,
        kind: Option<RejectKind>,
        after: Option<&Path>,
        limit: u32,
    ) -> Result<Vec<RejectedRow>> {
        // The empty blob sorts before every path.
        let after = after.map(|p| path_bytes(p).to_vec()).unwrap_or_default();
        let kind = kind.map(RejectKind::as_str);
        let limit = i64::from(limit);
        let rows = sqlx::query_as!(
            crate::rows::RawRejected,
            r#"select path, kind, reason, run, seen_at as "seen_at: DateTime<Utc>"
               from rejected_inputs
               where path > ?1 and (?2 is null or kind = ?2)
               order by path limit ?3"#,
            after,
            kind,
            limit
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| self.rows().decode_rejected(r))
            .collect()
    }

    pub(crate) async fn rejected(&self, path: &Path) -> Result<Option<RejectedRow>> {
        let key = path_bytes(path);
        let row = sqlx::query_as!(
            crate::rows::RawRejected,
            r#"select path, kind, reason, run, seen_at as "seen_at: DateTime<Utc>"
               from rejected_inputs where path = ?1"#,
            key
        )
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.rows().decode_rejected(r)).transpose()
    }

    pub(crate) fn export_inputs(&self) -> BoxStream<'_, Result<InputState>> {
        sqlx::query_as!(
            RawInputState,
            r#"select p.path, p.size, p.mtime_ns, i.sha256,
                      (select pl.planned from placements as pl where pl.path = p.path
                       order by pl.updated_at desc limit 1) as "planned_output?: Vec<u8>",
                      (select pl.written from placements as pl where pl.path = p.path
                       order by pl.updated_at desc limit 1) as "output_path?: Vec<u8>",
                      p.last_run as "last_run?: i64", p.last_seen as "last_seen!: DateTime<Utc>",
                      p.missing, i.status,
                      i.output_path as image_output_path, i.output_sha256 as image_output_sha256,
                      i.output_size as image_output_size,
                      i.output_url, i.error_code, i.error_message
               from inputs_seen as p join images as i on i.id = p.image_id
               order by p.path"#
        )
        .fetch(&self.read)
        .map(|row| {
            row.map_err(|e| self.db_err(e))
                .and_then(|r| self.rows().decode_input_state(r))
        })
        .boxed()
    }

    pub(crate) fn export_images(&self) -> BoxStream<'_, Result<ImageRow>> {
        sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts, repeat_uploads, error_code, error_message,
                      retryable as "retryable: bool", credits_states, need_credits, p_credits, s_credits,
                      created_at as "created_at: DateTime<Utc>", updated_at as "updated_at: DateTime<Utc>"
               from images order by sha256"#
        )
        .fetch(&self.read)
        .map(|row| {
            row.map_err(|e| self.db_err(e))
                .and_then(|r| self.rows().decode_image(r))
        })
        .boxed()
    }

    /// SQLite's integrity check, dangling references, and every counter against a recount,
    /// all in one read snapshot. Reads every page: slow on big ledgers.
    pub(crate) async fn check_consistency(&self) -> Result<ConsistencyReport> {
        let mut tx = self.read.begin().await.map_err(|e| self.db_err(e))?;
        // Pragmas are not statements the query macros can check; their shapes are fixed.
        let integrity = sqlx::query_scalar::<_, String>("pragma integrity_check")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        let violations = sqlx::query("pragma foreign_key_check")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?
            .len();
        let kept = sqlx::query!("select name, n from counters")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        let recount = sqlx::query!(
            r#"select name as "name!: String", n as "n!: i64" from (
                   select 'images_' || status as name, count(*) as n from images group by status
                   union all
                   select 'inputs', count(*) from inputs
                   union all
                   select 'inputs_' || i.status, count(*) from inputs as p
                   join images as i on i.id = p.image_id
                   where i.status in ('done', 'failed') group by i.status
                   union all
                   select 'rejected_' || kind, count(*) from rejected_inputs group by kind
                   union all
                   select 'p_credits', coalesce(sum(p_credits), 0) from images where status = 'done'
                   union all
                   select 's_credits', coalesce(sum(s_credits), 0) from images where status = 'done'
                   union all
                   select 'need_credits', coalesce(sum(need_credits), 0) from images where status = 'done')"#
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        tx.rollback().await.map_err(|e| self.db_err(e))?;
        let kept = Counters(kept.into_iter().map(|r| (r.name, r.n)).collect());
        let recount = Counters(recount.into_iter().map(|r| (r.name, r.n)).collect());
        Ok(ConsistencyReport::new(
            integrity,
            u64::try_from(violations).unwrap_or(u64::MAX),
            kept.counted(),
            recount.counted(),
        ))
    }
}
