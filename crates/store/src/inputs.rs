//! Input files: batched recording of a scan, lookup by path (to skip re-hashing unchanged
//! files), and each input's output path.
//!
//! Batches travel as one JSON array bound to a single parameter and unpacked in SQL with
//! `json_each` (SQLite's counterpart of PostgreSQL's `unnest`): a whole batch is one statement,
//! not one round trip per row. Paths travel as hex of their raw bytes and are stored with
//! `unhex`, so names that are not UTF-8 survive the trip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ledger::{now_text, path_bytes, path_from_bytes, to_i64};
use crate::{Error, InputRecord, Ledger, Result, RunId, SeenInput};

/// One input of a batch, as the SQL below reads it from the JSON array.
#[derive(Serialize)]
struct BatchRow<'a> {
    /// Path bytes, hex.
    p: String,
    s: i64,
    m: i64,
    /// SHA-256, lower-case hex.
    h: String,
    f: &'a str,
    /// Planned output path bytes, hex.
    o: String,
}

/// One unchanged input of a batch (the shape [`record_membership`] reads).
#[derive(Serialize)]
struct SeenRow {
    /// Path bytes, hex.
    p: String,
    /// Planned output path bytes, hex.
    o: String,
}

impl Ledger {
    /// For each file (path, size, mtime in ns), whether the ledger holds that path with that
    /// size and mtime: the rescan's question, answered in one query that returns only the
    /// positions of the unchanged files.
    pub async fn unchanged_inputs(&self, files: &[(&Path, u64, i64)]) -> Result<Vec<bool>> {
        let mut unchanged = vec![false; files.len()];
        if files.is_empty() {
            return Ok(unchanged);
        }
        let rows: Vec<(usize, String, i64, i64)> = files
            .iter()
            .enumerate()
            .map(|(i, (path, size, mtime))| {
                (i, hex::encode(path_bytes(path)), to_i64(*size), *mtime)
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| self.invalid(e))?;
        // One row holding every position: sqlx hands rows over one at a time, which cost more
        // than the lookups themselves.
        let positions = sqlx::query_scalar!(
            r#"select json_group_array(j.value ->> 0) as "positions!: String"
               from json_each(?1) as j
               join inputs as p on p.path = unhex(j.value ->> 1)
               where p.size = j.value ->> 2 and p.mtime_ns = j.value ->> 3"#,
            json
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        let positions: Vec<usize> =
            serde_json::from_str(&positions).map_err(|e| self.invalid(e))?;
        for idx in positions {
            let slot = unchanged
                .get_mut(idx)
                .ok_or_else(|| self.invalid(format!("lookup answered for position {idx}")))?;
            *slot = true;
        }
        Ok(unchanged)
    }

    /// Records a batch of inputs seen by `run` in one transaction: upserts each input
    /// (keeping an already planned output), inserts its image as `new` when unknown.
    ///
    /// An input whose content changed (another sha256) loses its recorded output path (that
    /// output belongs to the old content) but keeps its planned output. Three statements carry
    /// the whole batch, whatever its length.
    pub async fn record_inputs(&self, run: RunId, batch: &[InputRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<BatchRow<'_>> = batch
            .iter()
            .map(|r| BatchRow {
                p: hex::encode(path_bytes(&r.path)),
                s: to_i64(r.size),
                m: r.mtime_ns,
                h: r.sha256.to_string(),
                f: &r.format,
                o: hex::encode(path_bytes(&r.planned_output)),
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| self.invalid(e))?;
        let now = now_text();

        let mut tx = self.begin_write().await?;
        // A first scan's batches hold only new paths: then the two statements that handle
        // paths already in the ledger are skipped (each would probe the sha256 index per row).
        let any_known = sqlx::query_scalar!(
            r#"select exists (
                   select 1 from json_each(?1) as j join inputs as p on p.path = unhex(j.value ->> 'p')
               ) as "any!: bool""#,
            json
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        if any_known {
            self.record_known(&mut tx, run, &json, &now).await?;
        }
        // `where true` tells the parser the `on conflict` belongs to the insert, not the select.
        sqlx::query!(
            "insert into images (sha256, size, format, status, created_at, updated_at)
             select j.value ->> 'h', j.value ->> 's', j.value ->> 'f', 'new', ?2, ?2
             from json_each(?1) as j where true
             on conflict (sha256) do nothing",
            json,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        // New paths, and paths whose content changed (their old output belongs to the old content).
        sqlx::query!(
            "insert into inputs (path, size, mtime_ns, image_id, last_run, last_seen)
             select unhex(j.value ->> 'p'), j.value ->> 's', j.value ->> 'm', i.id, ?2, ?3
             from json_each(?1) as j join images as i on i.sha256 = j.value ->> 'h' where true
             on conflict (path) do update set
                 size = excluded.size,
                 mtime_ns = excluded.mtime_ns,
                 image_id = excluded.image_id,
                 last_run = excluded.last_run,
                 last_seen = excluded.last_seen
             where inputs.image_id <> excluded.image_id",
            json,
            run.0,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        record_membership(&mut tx, run, &json, &now)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }

    /// The part of [`Ledger::record_inputs`] for paths the ledger already holds: outputs written
    /// for content they no longer hold are dropped, and unchanged content is touched without
    /// moving any index entry (the upsert that follows then skips those rows).
    async fn record_known(
        &self,
        tx: &mut sqlx::SqliteConnection,
        run: RunId,
        json: &str,
        now: &str,
    ) -> Result<()> {
        sqlx::query!(
            "update placements set written = null, updated_at = ?2
             from json_each(?1) as j
             join inputs as p on p.path = unhex(j.value ->> 'p')
             join images as i on i.id = p.image_id
             where placements.path = p.path and i.sha256 <> j.value ->> 'h' and placements.written is not null",
            json,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        sqlx::query!(
            "update inputs set size = j.value ->> 's', mtime_ns = j.value ->> 'm', last_run = ?2, last_seen = ?3
             from json_each(?1) as j join images as i on i.sha256 = j.value ->> 'h'
             where inputs.path = unhex(j.value ->> 'p') and inputs.image_id = i.id",
            json,
            run.0,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Records that `run` saw these inputs unchanged (same path, size and mtime as the ledger
    /// holds): `last_run`, run membership and a plan in the run's OUT when it has none. A few
    /// statements per batch, none touching the images or their sha256 index (the rescan path).
    pub async fn record_unchanged(&self, run: RunId, batch: &[SeenInput]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<SeenRow> = batch
            .iter()
            .map(|r| SeenRow {
                p: hex::encode(path_bytes(&r.path)),
                o: hex::encode(path_bytes(&r.planned_output)),
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| self.invalid(e))?;
        let now = now_text();
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "update inputs set last_run = ?2, last_seen = ?3
             from json_each(?1) as j where inputs.path = unhex(j.value ->> 'p')",
            json,
            run.0,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        record_membership(&mut tx, run, &json, &now)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
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

/// The part of recording a batch that new, changed and unchanged inputs share: the run's
/// membership, each input's plan in the run's OUT (an existing plan wins), and leaving the
/// rejected files (a path rejected before, unreadable or not an image then, is an input now).
/// `json` is an array of objects holding at least `p` (path bytes, hex) and `o` (planned output
/// bytes, hex).
async fn record_membership(
    conn: &mut sqlx::SqliteConnection,
    run: RunId,
    json: &str,
    now: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into run_inputs (run, path)
         select ?2, unhex(j.value ->> 'p') from json_each(?1) as j where true
         on conflict do nothing",
        json,
        run.0
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into placements (path, out_root, planned, written, updated_at)
         select unhex(j.value ->> 'p'), coalesce((select r.out_root from runs as r where r.id = ?2), x''),
                unhex(j.value ->> 'o'), null, ?3
         from json_each(?1) as j where true
         on conflict do nothing",
        json,
        run.0,
        now
    )
    .execute(&mut *conn)
    .await?;
    // Usually there are no rejected files at all: then the batch is not even unpacked for them.
    let any_rejected =
        sqlx::query_scalar!(r#"select exists (select 1 from rejected_inputs) as "any!: bool""#)
            .fetch_one(&mut *conn)
            .await?;
    if any_rejected {
        sqlx::query!(
            "delete from rejected_inputs
             where path in (select unhex(j.value ->> 'p') from json_each(?1) as j)",
            json
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
