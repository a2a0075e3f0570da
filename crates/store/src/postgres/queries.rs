//! Read-only questions on the shared ledger. Images are the fleet's; inputs, outputs and files
//! not used are this machine's (a path names a file on one machine), and so is a run. A done
//! image's stored result is given only when it is on this machine: elsewhere it is no copy.

use std::path::Path;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use super::{Postgres, path_bytes};
use crate::liveness::process_exists;
use crate::rows::{
    Counters, RawImage, RawInput, RawInputState, RawRejected, merge_host_counts, to_u64,
};
use crate::{
    ConsistencyReport, CreditsUsed, FailureGroup, HostActivity, ImageRow, ImageStatus, InFlight,
    InputCounts, InputRow, InputState, RejectKind, RejectedRow, Result, RunId, RunProgress, Sha256,
    StatusCounts,
};

impl Postgres {
    pub(crate) async fn image(&self, sha: &Sha256) -> Result<Option<ImageRow>> {
        let row = sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts::bigint as "attempts!",
                      repeat_uploads::bigint as "repeat_uploads!", error_code, error_message,
                      retryable, credits_states, need_credits, p_credits, s_credits, created_at,
                      updated_at
               from images where sha256 = $1"#,
            &sha.0[..]
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.rows().decode_image(r)).transpose()
    }

    pub(crate) async fn image_by_job(&self, job_id: &str) -> Result<Option<ImageRow>> {
        let row = sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts::bigint as "attempts!",
                      repeat_uploads::bigint as "repeat_uploads!", error_code, error_message,
                      retryable, credits_states, need_credits, p_credits, s_credits, created_at,
                      updated_at
               from images where job_id = $1 order by updated_at desc limit 1"#,
            job_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.rows().decode_image(r)).transpose()
    }

    pub(crate) async fn input(&self, path: &Path) -> Result<Option<InputRow>> {
        let row = sqlx::query_as!(
            RawInput,
            r#"select p.path as "path!", p.size as "size!", p.mtime_ns as "mtime_ns!",
                      i.sha256,
                      (select pl.planned from placements as pl
                       where pl.machine = p.machine and pl.path = p.path
                       order by pl.updated_at desc limit 1) as "planned_output?",
                      (select pl.written from placements as pl
                       where pl.machine = p.machine and pl.path = p.path
                       order by pl.updated_at desc limit 1) as "output_path?",
                      p.last_run as "last_run?", p.last_seen as "last_seen!", p.missing
               from inputs_seen as p join images as i on i.id = p.image_id
               where p.machine = $1 and p.path = $2"#,
            self.machine,
            path_bytes(path)
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.rows().decode_input(r)).transpose()
    }

    pub(crate) async fn inputs_of_image(&self, sha: &Sha256) -> Result<Vec<InputRow>> {
        let rows = sqlx::query_as!(
            RawInput,
            r#"select p.path as "path!", p.size as "size!", p.mtime_ns as "mtime_ns!",
                      i.sha256,
                      (select pl.planned from placements as pl
                       where pl.machine = p.machine and pl.path = p.path
                       order by pl.updated_at desc limit 1) as "planned_output?",
                      (select pl.written from placements as pl
                       where pl.machine = p.machine and pl.path = p.path
                       order by pl.updated_at desc limit 1) as "output_path?",
                      p.last_run as "last_run?", p.last_seen as "last_seen!", p.missing
               from images as i join inputs_seen as p on p.image_id = i.id
               where i.sha256 = $1 and p.machine = $2
               order by p.path"#,
            &sha.0[..],
            self.machine
        )
        .fetch_all(&self.pool)
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
        let rows = sqlx::query_as!(
            RawInput,
            r#"select p.path, p.size, p.mtime_ns, i.sha256,
                      pl.planned as "planned_output?", pl.written as "output_path?",
                      p.last_run as "last_run?", p.last_seen, p.missing
               from images as i
               join inputs as p on p.image_id = i.id
               left join placements as pl
                 on pl.machine = p.machine and pl.path = p.path
                and pl.out_root = (select r.out_root from runs as r where r.id = $1)
               where i.sha256 = $2 and p.machine = $3 and p.missing is null
                 and p.path < (select w.hi from run_roots as w
                               where w.run = $1 and w.lo <= p.path order by w.lo desc limit 1)
               order by p.path"#,
            run.0,
            &sha.0[..],
            self.machine
        )
        .fetch_all(&self.pool)
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

    /// Every counter, its shards summed.
    async fn counters(&self) -> Result<Counters> {
        let rows =
            sqlx::query!(r#"select name, sum(n)::bigint as "n!" from counters group by name"#)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err(e))?;
        Ok(Counters(rows.into_iter().map(|r| (r.name, r.n)).collect()))
    }

    pub(crate) async fn failure_groups(&self) -> Result<Vec<FailureGroup>> {
        let rows = sqlx::query!(
            r#"select error_code, coalesce(min(error_message), '') as "message!", count(*) as "n!"
               from images where status = 'failed'
               group by error_code
               order by count(*) desc, error_code"#
        )
        .fetch_all(&self.pool)
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
        // Alive in the database's clock; this machine's runs also need their process.
        let fresh = sqlx::query!(
            r#"select m.name as host, r.machine, r.pid from runs as r
               join machines as m on m.id = r.machine
               where r.finished_at is null and r.heartbeat_at > now() - $1 * interval '1 second'"#,
            self.lease.as_secs_f64()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        let alive = fresh
            .into_iter()
            .filter(|r| r.machine != self.machine || process_exists(r.pid))
            .map(|r| (r.host, 1));
        let mut hosts = Vec::new();
        merge_host_counts(&mut hosts, alive, |h| &mut h.runs_alive);
        let in_flight = sqlx::query!(
            r#"select m.name as host, count(*) as "n!" from images as i
               join runs as r on r.id = i.job_run join machines as m on m.id = r.machine
               where i.status = 'processing' group by m.name"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        merge_host_counts(
            &mut hosts,
            in_flight.into_iter().map(|r| (r.host, to_u64(r.n))),
            |h| &mut h.in_flight,
        );
        let done = sqlx::query!(
            r#"select m.name as host, count(*) as "n!" from images as i
               join runs as r on r.id = i.job_run join machines as m on m.id = r.machine
               where i.done_at >= $1 and i.status = 'done' group by m.name"#,
            since
        )
        .fetch_all(&self.pool)
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
        let rows = sqlx::query!(
            r#"select sha256, job_id as "job_id!", size, updated_at from images
               where status = 'processing' and job_id is not null
               order by updated_at, sha256 limit $1"#,
            i64::from(limit)
        )
        .fetch_all(&self.pool)
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
            r#"select i.sha256, i.job_id as "job_id!", i.size, i.updated_at from images as i
               where i.status = 'processing' and i.job_id is not null
                 and exists (select 1 from inputs as p
                             where p.image_id = i.id and p.machine = $2 and p.missing is null
                               and p.path < (select w.hi from run_roots as w
                                             where w.run = $1 and w.lo <= p.path
                                             order by w.lo desc limit 1))
               order by i.updated_at, i.sha256"#,
            run.0,
            self.machine
        )
        .fetch_all(&self.pool)
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

    pub(crate) async fn run_progress(&self, run: RunId) -> Result<RunProgress> {
        let r = sqlx::query!(
            r#"with members as (
                   select p.image_id from run_roots as w
                   join inputs as p
                     on p.machine = $2 and p.path >= w.lo and p.path < w.hi and p.missing is null
                   where w.run = $1),
               images_of_run as (select distinct image_id from members)
               select (select count(*) from members) as "inputs!",
                      count(*) filter (where i.status = 'new') as "new!",
                      count(*) filter (where i.status = 'uploading') as "uploading!",
                      count(*) filter (where i.status = 'processing') as "processing!",
                      count(*) filter (where i.status = 'done') as "done!",
                      count(*) filter (where i.status = 'failed') as "failed!"
               from images_of_run as m join images as i on i.id = m.image_id"#,
            run.0,
            self.machine
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        let counts = [r.new, r.uploading, r.processing, r.done, r.failed].map(to_u64);
        Ok(RunProgress {
            images: StatusCounts {
                new: counts[0],
                uploading: counts[1],
                processing: counts[2],
                done: counts[3],
                failed: counts[4],
                total: counts.iter().sum(),
            },
            inputs: to_u64(r.inputs),
        })
    }

    pub(crate) async fn run_inputs(
        &self,
        run: RunId,
        after: Option<&Path>,
        limit: u32,
    ) -> Result<Vec<InputState>> {
        let after = after.map(path_bytes).unwrap_or_default();
        let rows = sqlx::query_as!(
            RawInputState,
            r#"select p.path, p.size, p.mtime_ns, i.sha256,
                      pl.planned as "planned_output?", pl.written as "output_path?",
                      p.last_run as "last_run?", p.last_seen, p.missing, i.status,
                      case when i.output_machine = $4 then i.output_path end as image_output_path,
                      i.output_sha256 as image_output_sha256, i.output_size as image_output_size,
                      i.output_url, i.error_code, i.error_message
               from run_roots as w
               join inputs as p
                 on p.machine = $4 and p.path >= w.lo and p.path < w.hi and p.path > $2
               join images as i on i.id = p.image_id
               left join placements as pl
                 on pl.machine = p.machine and pl.path = p.path
                and pl.out_root = (select r.out_root from runs as r where r.id = $1)
               where w.run = $1 and w.hi > $2 and p.missing is null
               order by w.lo, p.path
               limit $3"#,
            run.0,
            after,
            i64::from(limit),
            self.machine
        )
        .fetch_all(&self.pool)
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
        let after = after.map(|s| s.0.to_vec()).unwrap_or_default();
        let status = status.map(ImageStatus::as_str);
        let rows = sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts::bigint as "attempts!",
                      repeat_uploads::bigint as "repeat_uploads!", error_code, error_message,
                      retryable, credits_states, need_credits, p_credits, s_credits, created_at,
                      updated_at
               from images
               where ($1::text is null or status = $1) and sha256 > $2
               order by sha256 limit $3"#,
            status,
            after,
            i64::from(limit)
        )
        .fetch_all(&self.pool)
        .await
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
        let after = after.map(|p| path_bytes(p).to_vec()).unwrap_or_default();
        let kind = kind.map(RejectKind::as_str);
        let rows = sqlx::query_as!(
            RawRejected,
            r#"select path, kind, reason, run, seen_at from rejected_inputs
               where machine = $1 and path > $2 and ($3::text is null or kind = $3)
               order by path limit $4"#,
            self.machine,
            after,
            kind,
            i64::from(limit)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| self.rows().decode_rejected(r))
            .collect()
    }

    pub(crate) async fn rejected(&self, path: &Path) -> Result<Option<RejectedRow>> {
        let row = sqlx::query_as!(
            RawRejected,
            "select path, kind, reason, run, seen_at from rejected_inputs
             where machine = $1 and path = $2",
            self.machine,
            path_bytes(path)
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.rows().decode_rejected(r)).transpose()
    }

    pub(crate) fn export_inputs(&self) -> BoxStream<'_, Result<InputState>> {
        sqlx::query_as!(
            RawInputState,
            r#"select p.path as "path!", p.size as "size!", p.mtime_ns as "mtime_ns!", i.sha256,
                      (select pl.planned from placements as pl
                       where pl.machine = p.machine and pl.path = p.path
                       order by pl.updated_at desc limit 1) as "planned_output?",
                      (select pl.written from placements as pl
                       where pl.machine = p.machine and pl.path = p.path
                       order by pl.updated_at desc limit 1) as "output_path?",
                      p.last_run as "last_run?", p.last_seen as "last_seen!", p.missing, i.status,
                      case when i.output_machine = $1 then i.output_path end as image_output_path,
                      i.output_sha256 as image_output_sha256, i.output_size as image_output_size,
                      i.output_url, i.error_code, i.error_message
               from inputs_seen as p join images as i on i.id = p.image_id
               where p.machine = $1
               order by p.path"#,
            self.machine
        )
        .fetch(&self.pool)
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
                      output_sha256, output_size, attempts::bigint as "attempts!",
                      repeat_uploads::bigint as "repeat_uploads!", error_code, error_message,
                      retryable, credits_states, need_credits, p_credits, s_credits, created_at,
                      updated_at
               from images order by sha256"#
        )
        .fetch(&self.pool)
        .map(|row| {
            row.map_err(|e| self.db_err(e))
                .and_then(|r| self.rows().decode_image(r))
        })
        .boxed()
    }

    /// Every counter against a recount, in one snapshot (`repeatable read`). The database
    /// keeps its own references and pages sound: there is no integrity check to run here.
    pub(crate) async fn check_consistency(&self) -> Result<ConsistencyReport> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        sqlx::query!("set transaction isolation level repeatable read, read only")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        let kept =
            sqlx::query!(r#"select name, sum(n)::bigint as "n!" from counters group by name"#)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.db_err(e))?;
        let recount = sqlx::query!(
            r#"select name as "name!", n as "n!" from (
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
                   select 'p_credits', coalesce(sum(p_credits), 0)::bigint from images where status = 'done'
                   union all
                   select 's_credits', coalesce(sum(s_credits), 0)::bigint from images where status = 'done'
                   union all
                   select 'need_credits', coalesce(sum(need_credits), 0)::bigint from images where status = 'done'
               ) as c"#
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        tx.rollback().await.map_err(|e| self.db_err(e))?;
        let kept = Counters(kept.into_iter().map(|r| (r.name, r.n)).collect());
        let recount = Counters(recount.into_iter().map(|r| (r.name, r.n)).collect());
        Ok(ConsistencyReport::new(
            vec!["ok".into()],
            0,
            kept.counted(),
            recount.counted(),
        ))
    }
}
