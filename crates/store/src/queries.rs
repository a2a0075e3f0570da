//! Read-only questions: rows by key, counts, the resume set, paged lists, streamed export,
//! and the consistency check behind `eraser ledger verify`.

use std::path::Path;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use sqlx::SqliteConnection;

use crate::ledger::{path_bytes, to_u64};
use crate::rows::{RawImage, RawInput, RawInputState};
use crate::{
    ConsistencyReport, CreditsUsed, FailureGroup, ImageRow, ImageStatus, InFlight, InputCounts,
    InputRow, InputState, Ledger, Result, RunId, RunProgress, Sha256, StatusCounts,
};

impl Ledger {
    /// The image with this content, if known.
    pub async fn image(&self, sha: &Sha256) -> Result<Option<ImageRow>> {
        let key = &sha.0[..];
        let row = sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, width, height, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts, repeat_uploads, error_code, error_message,
                      retryable as "retryable: bool", credits_states, need_credits, p_credits, s_credits,
                      created_at as "created_at: DateTime<Utc>", updated_at as "updated_at: DateTime<Utc>"
               from images where sha256 = ?1"#,
            key
        )
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.decode_image(r)).transpose()
    }

    /// The image the service knows under this job id, if any.
    pub async fn image_by_job(&self, job_id: &str) -> Result<Option<ImageRow>> {
        let row = sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, width, height, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts, repeat_uploads, error_code, error_message,
                      retryable as "retryable: bool", credits_states, need_credits, p_credits, s_credits,
                      created_at as "created_at: DateTime<Utc>", updated_at as "updated_at: DateTime<Utc>"
               from images where job_id = ?1 order by updated_at desc limit 1"#,
            job_id
        )
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.decode_image(r)).transpose()
    }

    /// The input at this path, if recorded.
    pub async fn input(&self, path: &Path) -> Result<Option<InputRow>> {
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
        row.map(|r| self.decode_input(r)).transpose()
    }

    /// Every input holding these bytes, by path.
    pub async fn inputs_of_image(&self, sha: &Sha256) -> Result<Vec<InputRow>> {
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
        rows.into_iter().map(|r| self.decode_input(r)).collect()
    }

    /// The inputs of `run` holding these bytes, by path, with their placement in the run's OUT.
    pub async fn run_inputs_of_image(&self, run: RunId, sha: &Sha256) -> Result<Vec<InputRow>> {
        let key = &sha.0[..];
        let rows = sqlx::query_as!(
            RawInput,
            r#"select p.path, p.size, p.mtime_ns, i.sha256,
                      pl.planned as "planned_output?: Vec<u8>", pl.written as "output_path?: Vec<u8>",
                      p.last_run as "last_run?: i64", p.last_seen as "last_seen!: DateTime<Utc>",
                      p.missing
               from images as i
               join inputs_seen as p on p.image_id = i.id
               left join placements as pl
                 on pl.path = p.path and pl.out_root = (select r.out_root from runs as r where r.id = ?1)
               where i.sha256 = ?2
                 and (exists (select 1 from run_inputs as ri where ri.run = ?1 and ri.path = p.path)
                      or p.missing is null
                         and exists (select 1 from run_roots as w
                                     where w.run = ?1 and p.path > w.lo and p.path < w.hi))
               order by p.path"#,
            run.0,
            key
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter().map(|r| self.decode_input(r)).collect()
    }

    /// Images by status from the counts table (constant time).
    pub async fn status_counts(&self) -> Result<StatusCounts> {
        let rows = sqlx::query!("select status, n from status_counts")
            .fetch_all(&self.read)
            .await
            .map_err(|e| self.db_err(e))?;
        self.tally(rows.into_iter().map(|r| (r.status, r.n)))
    }

    /// Inputs in total, and those whose image is done or failed (maintained tallies, no scan).
    pub async fn input_counts(&self) -> Result<InputCounts> {
        Ok(self.tallies().await?.input_counts())
    }

    async fn tallies(&self) -> Result<Tallies> {
        Tallies::read(&self.read).await.map_err(|e| self.db_err(e))
    }

    /// Failed images grouped by error code, largest group first, with one message of each.
    pub async fn failure_groups(&self) -> Result<Vec<FailureGroup>> {
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

    /// Credits summed over done images (maintained tallies, no scan).
    pub async fn credits_used(&self) -> Result<CreditsUsed> {
        let t = self.tallies().await?;
        Ok(CreditsUsed {
            p_credits: t.get("p_credits"),
            s_credits: t.get("s_credits"),
            need_credits: t.get("need_credits"),
        })
    }

    /// Jobs in `processing`, oldest first, at most `limit`.
    pub async fn in_flight(&self, limit: u32) -> Result<Vec<InFlight>> {
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
                    sha256: self.decode_sha(&r.sha256)?,
                    job_id: r.job_id,
                    size: to_u64(r.size),
                    updated_at: r.updated_at,
                })
            })
            .collect()
    }

    /// `processing` images with an input seen by `run` (the resume set to poll), oldest first.
    pub async fn run_in_flight(&self, run: RunId) -> Result<Vec<InFlight>> {
        let rows = sqlx::query!(
            r#"select i.sha256, i.job_id as "job_id!", i.size, i.updated_at as "updated_at: DateTime<Utc>"
               from images as i
               where i.status = 'processing' and i.job_id is not null
                 and exists (select 1 from inputs as p indexed by inputs_image
                             where p.image_id = i.id
                               and (exists (select 1 from run_inputs as ri where ri.run = ?1 and ri.path = p.path)
                                    or p.missing is null
                                       and exists (select 1 from run_roots as w
                                                   where w.run = ?1 and p.path > w.lo and p.path < w.hi)))
               order by i.updated_at, i.sha256"#,
            run.0
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(InFlight {
                    sha256: self.decode_sha(&r.sha256)?,
                    job_id: r.job_id,
                    size: to_u64(r.size),
                    updated_at: r.updated_at,
                })
            })
            .collect()
    }

    /// The run's images (distinct contents among its inputs) by status, and its inputs.
    pub async fn run_progress(&self, run: RunId) -> Result<RunProgress> {
        let mut conn = self.read.acquire().await.map_err(|e| self.db_err(e))?;
        count_run_progress(&mut conn, run)
            .await
            .map_err(|e| self.db_err(e))
    }

    /// How many inputs of `run` have their output recorded in the run's OUT (one placement
    /// probe per input: for reports, not for loops).
    pub async fn run_placed(&self, run: RunId) -> Result<u64> {
        let placed = sqlx::query_scalar!(
            r#"with members (path) as (
                   select ri.path from run_inputs as ri where ri.run = ?1
                   union all
                   select p.path from run_roots as w
                   join inputs as p on p.path > w.lo and p.path < w.hi
                   where w.run = ?1 and p.missing is null
                     and not exists (select 1 from run_inputs as ri
                                     where ri.run = ?1 and ri.path = p.path))
               select count(pl.written) as "placed!: i64"
               from members as m
               join placements as pl
                 on pl.path = m.path and pl.out_root = (select r.out_root from runs as r where r.id = ?1)"#,
            run.0
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(to_u64(placed))
    }

    /// Inputs seen by `run` with their image state, paged by path (for the final report).
    pub async fn run_inputs(
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
               from (select path from (select ri.path from run_inputs as ri
                                       where ri.run = ?1 and ri.path > ?2
                                       order by ri.path limit ?3)
                     union
                     -- One range of the primary key from the first walked folder to the last,
                     -- so a page reads about as many rows as it returns.
                     select path from (select p.path from inputs as p
                                       where p.path > max(?2, (select min(w.lo) from run_roots as w
                                                               where w.run = ?1))
                                         and p.path < (select max(w.hi) from run_roots as w
                                                       where w.run = ?1)
                                         and p.missing is null
                                         and exists (select 1 from run_roots as w
                                                     where w.run = ?1 and p.path > w.lo
                                                       and p.path < w.hi)
                                       order by p.path limit ?3)
                     order by path limit ?3) as m
               join inputs_seen as p on p.path = m.path
               join images as i on i.id = p.image_id
               left join placements as pl
                 on pl.path = p.path and pl.out_root = (select r.out_root from runs as r where r.id = ?1)
               order by p.path"#,
            run.0,
            after,
            limit
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|r| self.decode_input_state(r))
            .collect()
    }

    /// Images, optionally of one status, paged by sha256.
    pub async fn list_images(
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
                    r#"select sha256, size, format, width, height, status, claimed_by, job_id, output_url,
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
                    r#"select sha256, size, format, width, height, status, claimed_by, job_id, output_url,
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
                    r#"select sha256, size, format, width, height, status, claimed_by, job_id, output_url,
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
        rows.into_iter().map(|r| self.decode_image(r)).collect()
    }

    /// Every input with its image state, by path, streamed from one cursor (for export).
    pub fn export_inputs(&self) -> BoxStream<'_, Result<InputState>> {
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
                .and_then(|r| self.decode_input_state(r))
        })
        .boxed()
    }

    /// Every image, by sha256, streamed from one cursor (for export and verify).
    pub fn export_images(&self) -> BoxStream<'_, Result<ImageRow>> {
        sqlx::query_as!(
            RawImage,
            r#"select sha256, size, format, width, height, status, claimed_by, job_id, output_url, output_path,
                      output_sha256, output_size, attempts, repeat_uploads, error_code, error_message,
                      retryable as "retryable: bool", credits_states, need_credits, p_credits, s_credits,
                      created_at as "created_at: DateTime<Utc>", updated_at as "updated_at: DateTime<Utc>"
               from images order by sha256"#
        )
        .fetch(&self.read)
        .map(|row| row.map_err(|e| self.db_err(e)).and_then(|r| self.decode_image(r)))
        .boxed()
    }

    /// Checks the file and the invariants the schema cannot enforce alone: SQLite's integrity
    /// check, dangling references, and the counts and tallies against a full recount. Reads every
    /// page: slow on big ledgers, meant for tests and `eraser ledger verify`.
    pub async fn check_consistency(&self) -> Result<ConsistencyReport> {
        // One read transaction: the counts table and the recount come from the same snapshot.
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
        let table = sqlx::query!("select status, n from status_counts")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        let recounted =
            sqlx::query!(r#"select status, count(*) as "n!: i64" from images group by status"#)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.db_err(e))?;
        let tallies = Tallies::read(&mut *tx).await.map_err(|e| self.db_err(e))?;
        let inputs = sqlx::query!(
            r#"select count(*) as "total!: i64",
                      count(*) filter (where i.status = 'done') as "done!: i64",
                      count(*) filter (where i.status = 'failed') as "failed!: i64",
                      (select count(*) from rejected_inputs where kind = 'skipped') as "skipped!: i64",
                      (select count(*) from rejected_inputs where kind = 'error') as "rejected!: i64"
               from inputs as p join images as i on i.id = p.image_id"#
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        tx.rollback().await.map_err(|e| self.db_err(e))?;
        Ok(ConsistencyReport {
            integrity,
            foreign_key_violations: u64::try_from(violations).unwrap_or(u64::MAX),
            counts_table: self.tally(table.into_iter().map(|r| (r.status, r.n)))?,
            recount: self.tally(recounted.into_iter().map(|r| (r.status, r.n)))?,
            input_counts_table: tallies.input_counts(),
            input_recount: InputCounts {
                total: to_u64(inputs.total),
                done: to_u64(inputs.done),
                failed: to_u64(inputs.failed),
                skipped: to_u64(inputs.skipped),
                rejected: to_u64(inputs.rejected),
            },
        })
    }

    /// Sums (status, count) rows into [`StatusCounts`].
    fn tally(&self, rows: impl IntoIterator<Item = (String, i64)>) -> Result<StatusCounts> {
        let mut counts = StatusCounts::default();
        for (status, n) in rows {
            let n = to_u64(n);
            counts.total += n;
            match self.decode_status(&status)? {
                ImageStatus::New => counts.new += n,
                ImageStatus::Uploading => counts.uploading += n,
                ImageStatus::Processing => counts.processing += n,
                ImageStatus::Done => counts.done += n,
                ImageStatus::Failed => counts.failed += n,
            }
        }
        Ok(counts)
    }
}

/// The `tallies` table, by name.
struct Tallies(Vec<(String, i64)>);

impl Tallies {
    async fn read<'c>(conn: impl sqlx::SqliteExecutor<'c>) -> sqlx::Result<Self> {
        let rows = sqlx::query!("select name, n from tallies")
            .fetch_all(conn)
            .await?;
        Ok(Self(rows.into_iter().map(|r| (r.name, r.n)).collect()))
    }

    fn get(&self, name: &str) -> i64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn input_counts(&self) -> InputCounts {
        InputCounts {
            total: to_u64(self.get("inputs")),
            done: to_u64(self.get("inputs_done")),
            failed: to_u64(self.get("inputs_failed")),
            skipped: to_u64(self.get("rejected_skipped")),
            rejected: to_u64(self.get("rejected_error")),
        }
    }
}

/// [`Ledger::run_progress`] on `conn` (inside a transaction, at its snapshot).
pub(crate) async fn count_run_progress(
    conn: &mut SqliteConnection,
    run: RunId,
) -> sqlx::Result<RunProgress> {
    // One pass over the run's inputs; their images made distinct by sorting (cheaper than
    // a distinct count per status, each of which fills its own temporary index).
    let by_status = sqlx::query!(
        r#"with members (image_id) as (
               select p.image_id from run_inputs as ri
               join inputs as p on p.path = ri.path where ri.run = ?1
               union all
               select p.image_id from run_roots as w
               join inputs as p on p.path > w.lo and p.path < w.hi
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
    .fetch_one(&mut *conn)
    .await?;
    // Counted from indexes alone: the recorded inputs, and under each walked folder the
    // present inputs (all less the missing ones) less those recorded.
    let inputs = sqlx::query_scalar!(
        r#"select (select count(*) from run_inputs where run = ?1)
                + coalesce((select sum(
                      (select count(*) from inputs as p where p.path > w.lo and p.path < w.hi)
                    - (select count(*) from inputs as p
                       where p.path > w.lo and p.path < w.hi and p.missing is not null)
                    - (select count(*) from run_inputs as ri join inputs as p on p.path = ri.path
                       where ri.run = ?1 and ri.path > w.lo and ri.path < w.hi
                         and p.missing is null))
                   from run_roots as w where w.run = ?1), 0)
                  as "all!: i64""#,
        run.0
    )
    .fetch_one(&mut *conn)
    .await?;
    let images = StatusCounts {
        new: to_u64(by_status.new),
        uploading: to_u64(by_status.uploading),
        processing: to_u64(by_status.processing),
        done: to_u64(by_status.done),
        failed: to_u64(by_status.failed),
        total: [
            by_status.new,
            by_status.uploading,
            by_status.processing,
            by_status.done,
            by_status.failed,
        ]
        .into_iter()
        .map(to_u64)
        .sum(),
    };
    Ok(RunProgress {
        images,
        inputs: to_u64(inputs),
    })
}
