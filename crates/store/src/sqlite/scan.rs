//! The scan's SQL: lookups, one write per batch (roots, inputs, plans, rejected files), the
//! completed walk (missing inputs, walked roots, forgotten rejections) and folder listings.
//!
//! Batches travel as one JSON array per statement, unpacked with `json_each` (sqlx cannot bind
//! arrays on SQLite); paths, hashes and plans travel as hex of their bytes, so names that are
//! not UTF-8 survive the trip. The rescan's lookup sends UTF-8 paths as plain strings and only
//! the others as hex: it is the one statement a rescan of a changed folder runs per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sqlx::SqliteConnection;

use super::{Sqlite, now_text, path_bytes, path_from_bytes, text_before, to_i64};
use crate::scan::{FoundInputs, VersionStep};
use crate::{Listing, Lookup, Result, Root, RunId, ScanBatch};

/// Inputs read per statement when looking for those a walk did not find.
const MISSING_PAGE: i64 = 4096;

/// A path in a lookup batch: a JSON string when it is UTF-8, else `["hex of its bytes"]`.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum LookupPath<'a> {
    Text(&'a str),
    Hex([String; 1]),
}

/// An input of a batch as the statements read it: path, size, mtime, sha256 and format (null
/// for an input seen unchanged), plan; byte strings in hex.
type InputJson<'a> = (String, i64, i64, Option<String>, Option<&'a str>, String);

impl Sqlite {
    /// The version of the inputs (raised by triggers at every change to them).
    pub(crate) async fn inputs_version(&self) -> Result<i64> {
        let mut conn = self.read.acquire().await.map_err(|e| self.db_err(e))?;
        inputs_version(&mut conn).await.map_err(|e| self.db_err(e))
    }

    pub(crate) async fn holds_inputs_under(&self, folder: &Path) -> Result<bool> {
        let (lo, hi) = Root::Folder(folder.to_path_buf()).range();
        sqlx::query_scalar!(
            r#"select exists (select 1 from inputs where path > ?1 and path < ?2) as "any!: bool""#,
            lo,
            hi
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| self.db_err(e))
    }

    /// What the ledger holds of each file, with the input's row id when it holds it as found:
    /// one query returning only the files recorded with that size and mtime.
    pub(crate) async fn look_up_inputs(
        &self,
        run: RunId,
        files: &[(&Path, u64, i64)],
    ) -> Result<Vec<(Lookup, Option<i64>)>> {
        let mut found = vec![(Lookup::Changed, None); files.len()];
        if files.is_empty() {
            return Ok(found);
        }
        let paths: Vec<LookupPath<'_>> = files
            .iter()
            .map(|(path, _, _)| match path.to_str() {
                Some(text) => LookupPath::Text(text),
                None => LookupPath::Hex([hex::encode(path_bytes(path))]),
            })
            .collect();
        let json = serde_json::to_string(&paths).map_err(|e| self.invalid(e))?;
        // One row holding every answer: sqlx hands rows over one at a time, which costs more
        // than the lookups themselves.
        let answers = sqlx::query_scalar!(
            r#"select json_group_array(json_array(
                   j.key,
                   p.rowid,
                   p.size,
                   p.mtime_ns,
                   p.missing is null and exists (
                       select 1 from placements as pl
                       where pl.path = p.path
                         and pl.out_root = (select r.out_root from runs as r where r.id = ?2)))
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
                (Lookup::Current, Some(id))
            } else {
                (Lookup::Unchanged, None)
            };
        }
        Ok(found)
    }

    /// For each of `outputs` that some input already plans, that input (the first by path).
    pub(crate) async fn planned_output_owners(
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

    /// Writes a scan batch in one transaction: the roots, each input (a new image when its
    /// content is unknown; a plan in the run's OUT unless it has one), the files not used.
    /// Returns the row ids of the inputs written and the version step.
    pub(crate) async fn record_scan_batch(
        &self,
        run: RunId,
        batch: &ScanBatch,
    ) -> Result<(Vec<i64>, VersionStep)> {
        let roots: Vec<(String, String, bool)> = batch
            .roots
            .iter()
            .map(|root| {
                let (lo, hi) = root.range();
                (
                    hex::encode(lo),
                    hex::encode(hi),
                    matches!(root, Root::Folder(_)),
                )
            })
            .collect();
        let inputs: Vec<InputJson<'_>> = batch
            .inputs
            .iter()
            .map(|i| {
                (
                    hex::encode(path_bytes(&i.path)),
                    to_i64(i.size),
                    i.mtime_ns,
                    i.content.map(|c| hex::encode(c.sha256.0)),
                    i.content.map(|c| c.format),
                    hex::encode(path_bytes(&i.planned_output)),
                )
            })
            .collect();
        let rejected: Vec<(String, &str, &str)> = batch
            .rejected
            .iter()
            .map(|r| {
                (
                    hex::encode(path_bytes(&r.path)),
                    r.kind.as_str(),
                    r.reason.as_str(),
                )
            })
            .collect();
        let roots = serde_json::to_string(&roots).map_err(|e| self.invalid(e))?;
        let inputs = serde_json::to_string(&inputs).map_err(|e| self.invalid(e))?;
        let rejected = serde_json::to_string(&rejected).map_err(|e| self.invalid(e))?;
        let now = now_text();

        let mut tx = self.begin_write().await?;
        let before = inputs_version(&mut tx).await.map_err(|e| self.db_err(e))?;
        let ids = async {
            if !batch.roots.is_empty() {
                write_roots(&mut tx, run, &roots, &now).await?;
            }
            let ids = if batch.inputs.is_empty() {
                Vec::new()
            } else {
                write_inputs(&mut tx, run, &inputs, &now).await?
            };
            if !batch.rejected.is_empty() {
                write_rejected(&mut tx, run, &rejected, &now).await?;
            }
            sqlx::Result::Ok(ids)
        }
        .await
        .map_err(|e| self.db_err(e))?;
        let after = inputs_version(&mut tx).await.map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok((ids, VersionStep { before, after }))
    }

    /// Completes `run`'s walk of its roots, having found `found`: the present inputs under the
    /// roots not found (and not recorded by another run since the walk began) are marked
    /// missing, the roots stamped as walked (earlier finished walks of the same roots dropped),
    /// and the rejected files under them that this run did not see again forgotten.
    ///
    /// Two counts settle the usual case: when the ledger holds as many present inputs under
    /// the roots as were found, none is missing.
    pub(crate) async fn complete_walk(
        &self,
        run: RunId,
        found: &FoundInputs,
    ) -> Result<(u64, VersionStep)> {
        let now = now_text();
        let mut tx = self.begin_write().await?;
        let before = inputs_version(&mut tx).await.map_err(|e| self.db_err(e))?;
        let marked = mark_missing(&mut tx, run, found)
            .await
            .map_err(|e| self.db_err(e))?;
        let marked = marked.map_err(|detail| self.invalid(detail))?;
        sqlx::query!(
            "update run_roots set walked_at = ?2 where run = ?1",
            run.0,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        // Earlier walks of the same roots by runs that are over: this one says all they said.
        let stale = text_before(self.lease);
        sqlx::query!(
            "delete from run_roots
             where run <> ?1
               and lo in (select w.lo from run_roots as w where w.run = ?1)
               and run in (select r.id from runs as r
                           where r.finished_at is not null or r.heartbeat_at <= ?2)",
            run.0,
            stale
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        sqlx::query!(
            "delete from rejected_inputs
             where run <> ?1
               and exists (select 1 from run_roots as w
                           where w.run = ?1 and w.lo <= rejected_inputs.path
                             and rejected_inputs.path < w.hi)",
            run.0
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        let after = inputs_version(&mut tx).await.map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok((marked, VersionStep { before, after }))
    }

    /// The listings kept for `run`'s OUT at `version`; none when there are more than `limit`.
    pub(crate) async fn kept_listings(
        &self,
        run: RunId,
        version: i64,
        limit: usize,
    ) -> Result<HashMap<PathBuf, Listing>> {
        let asked = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let rows = sqlx::query!(
            r#"select l.folder, l.digest, l.files from listings as l
               where l.out_root = (select r.out_root from runs as r where r.id = ?1)
                 and l.inputs_version = ?2
               limit ?3"#,
            run.0,
            version,
            asked
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        if rows.len() > limit {
            return Ok(HashMap::new());
        }
        let mut kept = HashMap::with_capacity(rows.len());
        for r in rows {
            let digest = r.digest.try_into().map_err(|d: Vec<u8>| {
                self.invalid(format!("a kept listing's digest has {} bytes", d.len()))
            })?;
            let files = u64::try_from(r.files)
                .map_err(|_| self.invalid("a kept listing has a negative count"))?;
            kept.insert(path_from_bytes(r.folder), Listing { digest, files });
        }
        Ok(kept)
    }

    /// Keeps `listings` for `run`'s OUT at `version`, unless the inputs moved past it.
    pub(crate) async fn keep_listings(
        &self,
        run: RunId,
        version: i64,
        listings: &[(PathBuf, Listing)],
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = inputs_version(&mut tx).await.map_err(|e| self.db_err(e))?;
        if now != version {
            return Ok(false);
        }
        for (folder, listing) in listings {
            let (folder, digest) = (path_bytes(folder), &listing.digest[..]);
            let files = to_i64(listing.files);
            sqlx::query!(
                "insert into listings (out_root, folder, digest, files, inputs_version)
                 select r.out_root, ?2, ?3, ?4, ?5 from runs as r where r.id = ?1
                 on conflict (out_root, folder) do update
                 set digest = excluded.digest, files = excluded.files,
                     inputs_version = excluded.inputs_version",
                run.0,
                folder,
                digest,
                files,
                version
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(true)
    }
}

/// The version of the inputs as `conn` sees it.
async fn inputs_version(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select coalesce((select n from counters where name = 'inputs_version'), 0) as "n!: i64""#
    )
    .fetch_one(conn)
    .await
}

/// Registers roots of `run` (JSON `[[lo, hi, folder], …]`, byte strings in hex). Roots of one run never overlap: a
/// root inside one already registered is not added, and one holding earlier ones replaces them.
async fn write_roots(
    conn: &mut SqliteConnection,
    run: RunId,
    roots: &str,
    now: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "delete from run_roots
         where (run, lo) in (select w.run, w.lo from json_each(?2) as j
                             join run_roots as w
                               on w.run = ?1 and w.lo > unhex(j.value ->> 0)
                              and w.lo < unhex(j.value ->> 1))",
        run.0,
        roots
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into run_roots (run, lo, hi, folder, began_at)
         select ?1, unhex(j.value ->> 0), unhex(j.value ->> 1), j.value ->> 2, ?3
         from json_each(?2) as j
         where coalesce((select w.hi from run_roots as w
                         where w.run = ?1 and w.lo <= unhex(j.value ->> 0)
                         order by w.lo desc limit 1) < unhex(j.value ->> 1), true)
         on conflict do nothing",
        run.0,
        roots,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes the inputs of a batch (JSON rows of [`InputJson`]); returns their row ids.
async fn write_inputs(
    conn: &mut SqliteConnection,
    run: RunId,
    inputs: &str,
    now: &str,
) -> sqlx::Result<Vec<i64>> {
    // A first scan's batches hold only new paths: then the statement for paths whose content
    // changed (probing the ledger per row) is skipped.
    let any_known = sqlx::query_scalar!(
        r#"select exists (
               select 1 from json_each(?1) as j join inputs as p on p.path = unhex(j.value ->> 0)
           ) as "any!: bool""#,
        inputs
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into images (sha256, size, format, status, created_at, updated_at)
         select unhex(j.value ->> 3), j.value ->> 1, j.value ->> 4, 'new', ?2, ?2
         from json_each(?1) as j where j.value ->> 3 is not null
         on conflict (sha256) do nothing",
        inputs,
        now
    )
    .execute(&mut *conn)
    .await?;
    if any_known {
        // Content changed: outputs written for the old content, in any OUT, are not this
        // input's.
        sqlx::query!(
            "update placements set written = null, updated_at = ?2
             from json_each(?1) as j
             join inputs as p on p.path = unhex(j.value ->> 0)
             join images as i on i.id = p.image_id
             where placements.path = p.path and placements.written is not null
               and j.value ->> 3 is not null and i.sha256 <> unhex(j.value ->> 3)",
            inputs,
            now
        )
        .execute(&mut *conn)
        .await?;
    }
    let mut ids = sqlx::query_scalar!(
        r#"insert into inputs (path, size, mtime_ns, image_id, last_run, last_seen)
           select unhex(j.value ->> 0), j.value ->> 1, j.value ->> 2, i.id, ?2, ?3
           from json_each(?1) as j join images as i on i.sha256 = unhex(j.value ->> 3)
           where true
           on conflict (path) do update
           set size = excluded.size, mtime_ns = excluded.mtime_ns, image_id = excluded.image_id,
               last_run = excluded.last_run, last_seen = excluded.last_seen, missing = null
           returning rowid as "id!: i64""#,
        inputs,
        run.0,
        now
    )
    .fetch_all(&mut *conn)
    .await?;
    ids.extend(
        sqlx::query_scalar!(
            r#"update inputs set last_run = ?2, last_seen = ?3, missing = null
               from json_each(?1) as j
               where inputs.path = unhex(j.value ->> 0) and j.value ->> 3 is null
               returning inputs.rowid as "id!: i64""#,
            inputs,
            run.0,
            now
        )
        .fetch_all(&mut *conn)
        .await?,
    );
    sqlx::query!(
        "insert into placements (path, out_root, planned, written, updated_at)
         select unhex(j.value ->> 0), coalesce((select r.out_root from runs as r where r.id = ?2), x''),
                unhex(j.value ->> 5), null, ?3
         from json_each(?1) as j
         where exists (select 1 from inputs as p where p.path = unhex(j.value ->> 0))
         on conflict do nothing",
        inputs,
        run.0,
        now
    )
    .execute(&mut *conn)
    .await?;
    // A path rejected before (unreadable, not an image then) is an input now. Usually there
    // are no rejected files at all: then the batch is not even joined with them.
    let any_rejected =
        sqlx::query_scalar!(r#"select exists (select 1 from rejected_inputs) as "any!: bool""#)
            .fetch_one(&mut *conn)
            .await?;
    if any_rejected {
        sqlx::query!(
            "delete from rejected_inputs
             where path in (select unhex(j.value ->> 0) from json_each(?1) as j)",
            inputs
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(ids)
}

/// Records (or refreshes) files `run` found but could not use (JSON `[[path, kind, reason], …]`).
async fn write_rejected(
    conn: &mut SqliteConnection,
    run: RunId,
    rejected: &str,
    now: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into rejected_inputs (path, kind, reason, run, seen_at)
         select unhex(j.value ->> 0), j.value ->> 1, j.value ->> 2, ?2, ?3
         from json_each(?1) as j where true
         on conflict (path) do update set
             kind = excluded.kind, reason = excluded.reason,
             run = excluded.run, seen_at = excluded.seen_at",
        rejected,
        run.0,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks missing the present inputs under `run`'s roots that the walk did not find and that
/// were last recorded before the root's walk began. The inner error names a row that does not
/// decode.
async fn mark_missing(
    conn: &mut SqliteConnection,
    run: RunId,
    found: &FoundInputs,
) -> sqlx::Result<Result<u64, String>> {
    let roots = sqlx::query!(
        r#"select lo, hi, began_at from run_roots where run = ?1 order by lo"#,
        run.0
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut present = 0;
    for root in &roots {
        present += sqlx::query_scalar!(
            r#"select (select count(*) from inputs where path >= ?1 and path < ?2)
                    - (select count(*) from inputs
                       where path >= ?1 and path < ?2 and missing is not null) as "n!: i64""#,
            root.lo,
            root.hi
        )
        .fetch_one(&mut *conn)
        .await?;
    }
    if u64::try_from(present).ok() == Some(found.len()) {
        return Ok(Ok(0));
    }
    let mut marked = 0;
    for root in &roots {
        let mut from = root.lo.clone();
        loop {
            let page = sqlx::query!(
                r#"select rowid as "id!: i64", path from inputs
                   where path >= ?1 and path < ?2 and missing is null and last_seen < ?3
                   order by path
                   limit ?4"#,
                from,
                root.hi,
                root.began_at,
                MISSING_PAGE
            )
            .fetch_all(&mut *conn)
            .await?;
            let Some(last) = page.last() else { break };
            // The next page starts right after the last path (no path holds a zero byte).
            from.clone_from(&last.path);
            from.push(0);
            let gone: Vec<i64> = page
                .iter()
                .filter(|r| !found.holds(r.id, &path_from_bytes(r.path.clone())))
                .map(|r| r.id)
                .collect();
            if gone.is_empty() {
                continue;
            }
            let ids = match serde_json::to_string(&gone) {
                Ok(ids) => ids,
                Err(e) => return Ok(Err(e.to_string())),
            };
            // When it was last seen, and by which run, is kept: once it is missing, walks of
            // folders holding it no longer count for it (and this walk drops earlier ones).
            marked += sqlx::query!(
                "update inputs set missing = ?1, last_run = s.last_run, last_seen = s.last_seen
                 from inputs_seen as s
                 where s.path = inputs.path
                   and inputs.rowid in (select value from json_each(?2))",
                run.0,
                ids
            )
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
    }
    Ok(Ok(marked))
}
