//! Input files: batched recording of a scan, lookup by path (to skip re-hashing unchanged
//! files), and each input's output path.
//!
//! A batch is written through the `scan_batch` scratch table: one write transaction fills it
//! with bound multi-row inserts, writes every ledger table from it in a few set-based
//! statements and empties it. Lookups run on the read pool and cannot write, so a lookup batch
//! travels as one JSON array unpacked with `json_each`; paths in JSON travel as hex of their raw
//! bytes (decoded with `unhex`), so names that are not UTF-8 survive the trip (the rescan's
//! lookup sends UTF-8 paths as plain strings and only the others as hex).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::ledger::{now_text, path_bytes, path_from_bytes, to_i64};
use crate::listings::inputs_changes;
use crate::{Error, InputId, InputRecord, Ledger, Lookup, Result, RunId, SeenInput};

/// Rows bound per statement when filling `scan_batch` (6 parameters each, far below SQLite's
/// limit of 32,766); the statement of a full chunk is prepared once and reused.
const FILL_CHUNK: usize = 1000;

/// A path in a lookup batch: a JSON string when it is UTF-8, else `["hex of its bytes"]`.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum LookupPath<'a> {
    Text(&'a str),
    Hex([String; 1]),
}

/// One row of the `scan_batch` scratch table. Content fields are `None` for an input the
/// ledger already holds unchanged.
struct BatchRow<'a> {
    path: &'a [u8],
    size: Option<i64>,
    mtime_ns: Option<i64>,
    sha256: Option<&'a [u8]>,
    format: Option<&'a str>,
    planned: &'a [u8],
}

impl Ledger {
    /// For each file (path, size, mtime in ns), what the ledger holds of it (see [`Lookup`]):
    /// the rescan's question, answered in one query that returns only the files the ledger
    /// holds with that size and mtime. `run` names the OUT whose plans count.
    pub async fn look_up_inputs(
        &self,
        run: RunId,
        files: &[(&Path, u64, i64)],
    ) -> Result<Vec<Lookup>> {
        let mut found = vec![Lookup::Changed; files.len()];
        if files.is_empty() {
            return Ok(found);
        }
        // One flat array of paths: a path travels as a JSON string when it is UTF-8 (the usual
        // case: `json_each` hands it over without parsing it again), else as `["hex"]` of its
        // bytes. Size and mtime are compared here, on the rows the ledger holds.
        let paths: Vec<LookupPath<'_>> = files
            .iter()
            .map(|(path, _, _)| match path.to_str() {
                Some(text) => LookupPath::Text(text),
                None => LookupPath::Hex([hex::encode(path_bytes(path))]),
            })
            .collect();
        let json = serde_json::to_string(&paths).map_err(|e| self.invalid(e))?;
        // One row holding every answer: sqlx hands rows over one at a time, which cost more
        // than the lookups themselves. The complete walks into the run's OUT are gathered once.
        let answers = sqlx::query_scalar!(
            r#"with walks as materialized (
                   select w.lo, w.hi, w.walked_at from run_roots as w
                   where w.out_root = (select r.out_root from runs as r where r.id = ?2))
               select json_group_array(json_array(
                   j.key,
                   p.rowid,
                   p.size,
                   p.mtime_ns,
                   p.missing is null and exists (
                       select 1 from walks as w
                       where w.lo < p.path and p.path < w.hi and w.walked_at >= p.last_seen))
               ) as "answers!: String"
               from json_each(?1) as j
               join inputs as p
                 on p.path = iif(j.type = 'text', cast(j.value as blob), unhex(j.value ->> 0))"#,
            json,
            run.0
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        let answers: Vec<(usize, i64, i64, i64, u8)> =
            serde_json::from_str(&answers).map_err(|e| self.invalid(e))?;
        for (idx, id, size, mtime_ns, current) in answers {
            let (slot, (_, want_size, want_mtime)) = found
                .get_mut(idx)
                .zip(files.get(idx))
                .ok_or_else(|| self.invalid(format!("lookup answered for position {idx}")))?;
            if size != to_i64(*want_size) || mtime_ns != *want_mtime {
                continue;
            }
            *slot = if current == 1 {
                Lookup::Current(InputId(id))
            } else {
                Lookup::Unchanged
            };
        }
        Ok(found)
    }

    /// Records a batch of inputs seen by `run` in one transaction: upserts each input
    /// (keeping an already planned output), inserts its image as `new` when unknown.
    ///
    /// An input whose content changed (another sha256) loses its recorded output path (that
    /// output belongs to the old content) but keeps its planned output. A handful of
    /// statements carry the whole batch, whatever its length.
    pub async fn record_inputs(&self, run: RunId, batch: &[InputRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<BatchRow<'_>> = batch
            .iter()
            .map(|r| BatchRow {
                path: path_bytes(&r.path),
                size: Some(to_i64(r.size)),
                mtime_ns: Some(r.mtime_ns),
                sha256: Some(&r.sha256.0),
                format: Some(&r.format),
                planned: path_bytes(&r.planned_output),
            })
            .collect();
        let now = now_text();
        let mut tx = self.begin_write().await?;
        let before = inputs_changes(&mut tx).await.map_err(|e| self.db_err(e))?;
        write_inputs(&mut tx, run, &rows, &now)
            .await
            .map_err(|e| self.db_err(e))?;
        let after = inputs_changes(&mut tx).await.map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        self.note_input_changes(before, after);
        Ok(())
    }

    /// Records that `run` saw these inputs unchanged (same path, size and mtime as the ledger
    /// holds) where [`Lookup::Current`] would not do (named inputs, inputs a walk had missed,
    /// inputs not yet planned in the run's OUT): `last_run`, run membership and a plan in the
    /// run's OUT when it has none. A few statements per batch, none touching the images or
    /// their sha256 index.
    pub async fn record_unchanged(&self, run: RunId, batch: &[SeenInput]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<BatchRow<'_>> = batch
            .iter()
            .map(|r| BatchRow {
                path: path_bytes(&r.path),
                size: None,
                mtime_ns: None,
                sha256: None,
                format: None,
                planned: path_bytes(&r.planned_output),
            })
            .collect();
        let now = now_text();
        let mut tx = self.begin_write().await?;
        let before = inputs_changes(&mut tx).await.map_err(|e| self.db_err(e))?;
        let written = async {
            fill_scan_batch(&mut tx, &rows).await?;
            sqlx::query!(
                "update inputs set last_run = ?1, last_seen = ?2, missing = null
                 from scan_batch as b where inputs.path = b.path",
                run.0,
                now
            )
            .execute(&mut *tx)
            .await?;
            record_membership(&mut tx, run, &now).await?;
            inputs_changes(&mut tx).await
        }
        .await;
        let after = written.map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        self.note_input_changes(before, after);
        Ok(())
    }

    /// For each of `outputs` that some input already plans, that input (the first by path):
    /// collision resolution for a whole batch in one query.
    pub async fn planned_output_owners(
        &self,
        outputs: &[PathBuf],
    ) -> Result<HashMap<PathBuf, PathBuf>> {
        if outputs.is_empty() {
            return Ok(HashMap::new());
        }
        let hexes: Vec<String> = outputs.iter().map(|p| hex::encode(path_bytes(p))).collect();
        let json = serde_json::to_string(&hexes).map_err(|e| self.invalid(e))?;
        let rows = sqlx::query!(
            r#"select planned as "planned!: Vec<u8>", min(path) as "owner!: Vec<u8>"
               from placements
               where planned in (select unhex(j.value) from json_each(?1) as j)
               group by planned"#,
            json
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(rows
            .into_iter()
            .map(|r| (path_from_bytes(r.planned), path_from_bytes(r.owner)))
            .collect())
    }

    /// Records that `output` was written for the input at `path`, in `run`'s OUT.
    pub async fn set_input_output(&self, run: RunId, path: &Path, output: &Path) -> Result<()> {
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
    pub async fn clear_input_output(&self, path: &Path) -> Result<()> {
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
}

/// The statements of [`Ledger::record_inputs`], inside its transaction. The images and inputs
/// it inserts are added to `status_counts` and `tallies` here, per statement (migration 0009
/// dropped the per-row insert triggers); updates keep their triggers.
async fn write_inputs(
    tx: &mut SqliteConnection,
    run: RunId,
    rows: &[BatchRow<'_>],
    now: &str,
) -> sqlx::Result<()> {
    fill_scan_batch(&mut *tx, rows).await?;
    // A first scan's batches hold only new paths: then the statements that handle paths
    // already in the ledger (each probing the sha256 index per row) are skipped.
    let any_known = sqlx::query_scalar!(
        r#"select exists (
               select 1 from scan_batch as b join inputs as p on p.path = b.path
           ) as "any!: bool""#
    )
    .fetch_one(&mut *tx)
    .await?;
    if any_known {
        // Content changed: outputs written for the old content, in any OUT, are not this
        // input's.
        sqlx::query!(
            "update placements set written = null, updated_at = ?1
             from scan_batch as b
             join inputs as p on p.path = b.path
             join images as i on i.id = p.image_id
             where placements.path = p.path and i.sha256 <> b.sha256
               and placements.written is not null",
            now
        )
        .execute(&mut *tx)
        .await?;
        // Unchanged content: touch no indexed column, so no index entry moves.
        sqlx::query!(
            "update inputs set size = b.size, mtime_ns = b.mtime_ns, last_run = ?1, last_seen = ?2,
                 missing = null
             from scan_batch as b join images as i on i.sha256 = b.sha256
             where inputs.path = b.path and inputs.image_id = i.id",
            run.0,
            now
        )
        .execute(&mut *tx)
        .await?;
    }
    // `where true` tells the parser the `on conflict` belongs to the insert, not the select.
    let new_images = sqlx::query!(
        "insert into images (sha256, size, format, status, created_at, updated_at)
         select b.sha256, b.size, b.format, 'new', ?1, ?1
         from scan_batch as b where true
         on conflict (sha256) do nothing",
        now
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let new_images = to_i64(new_images);
    sqlx::query!(
        "update status_counts set n = n + ?1 where status = 'new' and ?1 > 0",
        new_images
    )
    .execute(&mut *tx)
    .await?;
    if any_known {
        // Content changed: the input moves to the new image (its trigger moves the tallies).
        sqlx::query!(
            "update inputs set size = b.size, mtime_ns = b.mtime_ns, image_id = i.id,
                 last_run = ?1, last_seen = ?2, missing = null
             from scan_batch as b join images as i on i.sha256 = b.sha256
             where inputs.path = b.path and inputs.image_id <> i.id",
            run.0,
            now
        )
        .execute(&mut *tx)
        .await?;
    }
    // New paths whose content the ledger already had count in the tallies of its status. When
    // every content of the batch was new, every new path's image is `new`: nothing to count.
    let contents = rows
        .iter()
        .filter_map(|r| r.sha256)
        .collect::<HashSet<_>>()
        .len();
    let (to_done, to_failed) = if new_images == to_i64(contents as u64) {
        (0, 0)
    } else {
        let counted = sqlx::query!(
            r#"select count(distinct b.path) filter (where i.status = 'done') as "done!: i64",
                      count(distinct b.path) filter (where i.status = 'failed') as "failed!: i64"
               from scan_batch as b join images as i on i.sha256 = b.sha256
               where not exists (select 1 from inputs as p where p.path = b.path)"#
        )
        .fetch_one(&mut *tx)
        .await?;
        (counted.done, counted.failed)
    };
    let new_inputs = sqlx::query!(
        "insert into inputs (path, size, mtime_ns, image_id, last_run, last_seen)
         select b.path, b.size, b.mtime_ns, i.id, ?1, ?2
         from scan_batch as b join images as i on i.sha256 = b.sha256 where true
         on conflict (path) do nothing",
        run.0,
        now
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let new_inputs = to_i64(new_inputs);
    // New inputs also change the counts of the runs walking their folders (`changes`) and
    // the folders' listings (`inputs_changes`).
    sqlx::query!(
        "update tallies
         set n = n + case name when 'inputs' then ?1 when 'inputs_done' then ?2
                               when 'inputs_failed' then ?3 else 1 end
         where name in ('inputs', 'inputs_done', 'inputs_failed', 'changes', 'inputs_changes')
           and ?1 > 0",
        new_inputs,
        to_done,
        to_failed
    )
    .execute(&mut *tx)
    .await?;
    record_membership(tx, run, now).await
}

/// Fills the scratch table with `rows`, in chunks of bound multi-row inserts. sqlx has no array
/// binding for SQLite and the statement's text depends on the chunk's length, so this one is
/// built with `QueryBuilder`; the statements that read the table are checked by `query!`.
async fn fill_scan_batch(conn: &mut SqliteConnection, rows: &[BatchRow<'_>]) -> sqlx::Result<()> {
    // Empty outside a transaction; cleared anyway, so a bug elsewhere cannot leak rows in.
    sqlx::query!("delete from scan_batch")
        .execute(&mut *conn)
        .await?;
    // In path order, the statements that read the table walk the ledger's path-keyed tables
    // forward instead of dirtying pages at random.
    let mut sorted: Vec<&BatchRow<'_>> = rows.iter().collect();
    sorted.sort_unstable_by_key(|r| r.path);
    for chunk in sorted.chunks(FILL_CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "insert into scan_batch (path, size, mtime_ns, sha256, format, planned) ",
        );
        insert.push_values(chunk, |mut row, r| {
            row.push_bind(r.path)
                .push_bind(r.size)
                .push_bind(r.mtime_ns)
                .push_bind(r.sha256)
                .push_bind(r.format)
                .push_bind(r.planned);
        });
        insert
            .build()
            .persistent(chunk.len() == FILL_CHUNK)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The part of recording a batch that new, changed and unchanged inputs share, read from the
/// filled `scan_batch`: the run's membership, each input's plan in the run's OUT (an existing
/// plan wins), and leaving the rejected files (a path rejected before, unreadable or not an
/// image then, is an input now). Empties `scan_batch`.
async fn record_membership(conn: &mut SqliteConnection, run: RunId, now: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into run_inputs (run, path)
         select ?1, b.path from scan_batch as b where true
         on conflict do nothing",
        run.0
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into placements (path, out_root, planned, written, updated_at)
         select b.path, coalesce((select r.out_root from runs as r where r.id = ?1), x''),
                b.planned, null, ?2
         from scan_batch as b where true
         on conflict do nothing",
        run.0,
        now
    )
    .execute(&mut *conn)
    .await?;
    // Usually there are no rejected files at all: then the batch is not even joined with them.
    let any_rejected =
        sqlx::query_scalar!(r#"select exists (select 1 from rejected_inputs) as "any!: bool""#)
            .fetch_one(&mut *conn)
            .await?;
    if any_rejected {
        sqlx::query!(
            "delete from rejected_inputs where path in (select b.path from scan_batch as b)"
        )
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query!("delete from scan_batch")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
