//! The scan's SQL on the shared ledger: lookups, one write per batch, the completed walk and
//! folder listings, all of them this machine's. Batches travel as arrays (`unnest`).
//!
//! Every write of a scan first locks this machine's row (`for update`): the writes of this
//! machine's inputs take turns, so a session reads the version of the inputs before and after
//! its own write with nothing of another run's in between (other machines never wait).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sqlx::PgConnection;

use super::{Postgres, path_bytes};
use crate::rows::{path_from_bytes, to_i64};
use crate::scan::{FoundInputs, VersionStep};
use crate::{Listing, Lookup, Result, Root, RunId, ScanBatch};

/// Inputs read per statement when looking for those a walk did not find.
const MISSING_PAGE: i64 = 4096;

impl Postgres {
    pub(crate) async fn inputs_version(&self) -> Result<i64> {
        sqlx::query_scalar!(
            "select inputs_version from machines where id = $1",
            self.machine
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err(e))
    }

    pub(crate) async fn holds_inputs_under(&self, folder: &Path) -> Result<bool> {
        let (lo, hi) = Root::Folder(folder.to_path_buf()).range();
        sqlx::query_scalar!(
            r#"select exists (select 1 from inputs
                              where machine = $1 and path > $2 and path < $3) as "any!""#,
            self.machine,
            lo,
            hi
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err(e))
    }

    pub(crate) async fn look_up_inputs(
        &self,
        run: RunId,
        files: &[(&Path, u64, i64)],
    ) -> Result<Vec<(Lookup, Option<i64>)>> {
        let mut found = vec![(Lookup::Changed, None); files.len()];
        if files.is_empty() {
            return Ok(found);
        }
        let paths: Vec<Vec<u8>> = files
            .iter()
            .map(|(p, _, _)| path_bytes(p).to_vec())
            .collect();
        let rows = sqlx::query!(
            r#"select t.ord as "ord!", p.id, p.size, p.mtime_ns,
                      (p.missing is null and exists (
                          select 1 from placements as pl
                          where pl.machine = p.machine and pl.path = p.path
                            and pl.out_root = (select r.out_root from runs as r where r.id = $3)))
                      as "current!"
               from unnest($2::bytea[]) with ordinality as t (path, ord)
               join inputs as p on p.machine = $1 and p.path = t.path"#,
            self.machine,
            &paths,
            run.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        for r in rows {
            let idx = usize::try_from(r.ord - 1)
                .map_err(|_| self.invalid(format!("lookup answered for position {}", r.ord)))?;
            let (slot, (_, want_size, want_mtime)) = found
                .get_mut(idx)
                .zip(files.get(idx))
                .ok_or_else(|| self.invalid(format!("lookup answered for position {idx}")))?;
            if r.size != to_i64(*want_size) || r.mtime_ns != *want_mtime {
                continue;
            }
            *slot = if r.current {
                (Lookup::Current, Some(r.id))
            } else {
                (Lookup::Unchanged, None)
            };
        }
        Ok(found)
    }

    pub(crate) async fn planned_output_owners(
        &self,
        outputs: &[PathBuf],
    ) -> Result<HashMap<PathBuf, PathBuf>> {
        if outputs.is_empty() {
            return Ok(HashMap::new());
        }
        let planned: Vec<Vec<u8>> = outputs.iter().map(|p| path_bytes(p).to_vec()).collect();
        let rows = sqlx::query!(
            r#"select distinct on (planned) planned, path as owner from placements
               where machine = $1 and planned = any($2)
               order by planned, path"#,
            self.machine,
            &planned
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(rows
            .into_iter()
            .map(|r| (path_from_bytes(r.planned), path_from_bytes(r.owner)))
            .collect())
    }

    pub(crate) async fn record_scan_batch(
        &self,
        run: RunId,
        batch: &ScanBatch,
    ) -> Result<(Vec<i64>, VersionStep)> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        let before = lock_version(&mut tx, self.machine)
            .await
            .map_err(|e| self.db_err(e))?;
        let ids = async {
            if !batch.roots.is_empty() {
                write_roots(&mut tx, run, &batch.roots).await?;
            }
            let ids = if batch.inputs.is_empty() {
                Vec::new()
            } else {
                write_inputs(&mut tx, self.machine, run, batch).await?
            };
            if !batch.rejected.is_empty() {
                write_rejected(&mut tx, self.machine, run, batch).await?;
            }
            sqlx::Result::Ok(ids)
        }
        .await
        .map_err(|e| self.db_err(e))?;
        let after = version(&mut tx, self.machine)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok((ids, VersionStep { before, after }))
    }

    pub(crate) async fn complete_walk(
        &self,
        run: RunId,
        found: &FoundInputs,
    ) -> Result<(u64, VersionStep)> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        let before = lock_version(&mut tx, self.machine)
            .await
            .map_err(|e| self.db_err(e))?;
        let marked = mark_missing(&mut tx, self.machine, run, found)
            .await
            .map_err(|e| self.db_err(e))?;
        let stale = self.lease.as_secs_f64();
        let finished = async {
            sqlx::query!(
                "update run_roots set walked_at = now() where run = $1",
                run.0
            )
            .execute(&mut *tx)
            .await?;
            // Earlier walks of the same roots by this machine's runs that are over.
            sqlx::query!(
                "delete from run_roots
                 where run <> $1
                   and lo in (select w.lo from run_roots as w where w.run = $1)
                   and run in (select r.id from runs as r
                               where r.machine = $2
                                 and (r.finished_at is not null
                                      or r.heartbeat_at <= now() - $3 * interval '1 second'))",
                run.0,
                self.machine,
                stale
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "delete from rejected_inputs as j
                 where j.machine = $2 and j.run <> $1
                   and exists (select 1 from run_roots as w
                               where w.run = $1 and w.lo <= j.path and j.path < w.hi)",
                run.0,
                self.machine
            )
            .execute(&mut *tx)
            .await?;
            version(&mut tx, self.machine).await
        }
        .await;
        let after = finished.map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok((marked, VersionStep { before, after }))
    }

    pub(crate) async fn kept_listings(
        &self,
        run: RunId,
        version: i64,
        limit: usize,
    ) -> Result<HashMap<PathBuf, Listing>> {
        let asked = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let rows = sqlx::query!(
            "select l.folder, l.digest, l.files from listings as l
             where l.machine = $1
               and l.out_root = (select r.out_root from runs as r where r.id = $2)
               and l.inputs_version = $3
             limit $4",
            self.machine,
            run.0,
            version,
            asked
        )
        .fetch_all(&self.pool)
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

    pub(crate) async fn keep_listings(
        &self,
        run: RunId,
        version: i64,
        listings: &[(PathBuf, Listing)],
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        let now = lock_version(&mut tx, self.machine)
            .await
            .map_err(|e| self.db_err(e))?;
        if now != version {
            return Ok(false);
        }
        let folders: Vec<Vec<u8>> = listings
            .iter()
            .map(|(f, _)| path_bytes(f).to_vec())
            .collect();
        let digests: Vec<Vec<u8>> = listings.iter().map(|(_, l)| l.digest.to_vec()).collect();
        let files: Vec<i64> = listings.iter().map(|(_, l)| to_i64(l.files)).collect();
        sqlx::query!(
            "insert into listings (machine, out_root, folder, digest, files, inputs_version)
             select $1, r.out_root, t.folder, t.digest, t.files, $3
             from runs as r, unnest($4::bytea[], $5::bytea[], $6::bigint[]) as t (folder, digest, files)
             where r.id = $2
             on conflict (machine, out_root, folder) do update
             set digest = excluded.digest, files = excluded.files,
                 inputs_version = excluded.inputs_version",
            self.machine,
            run.0,
            version,
            &folders,
            &digests,
            &files
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(true)
    }
}

/// This machine's version of the inputs, its row locked until the transaction ends (the
/// machine's input writes take turns).
async fn lock_version(conn: &mut PgConnection, machine: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "select inputs_version from machines where id = $1 for update",
        machine
    )
    .fetch_one(conn)
    .await
}

async fn version(conn: &mut PgConnection, machine: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar!("select inputs_version from machines where id = $1", machine)
        .fetch_one(conn)
        .await
}

/// Registers roots of `run`; a root inside one already registered is not added, one holding
/// earlier ones replaces them (a run's roots never overlap).
async fn write_roots(conn: &mut PgConnection, run: RunId, roots: &[Root]) -> sqlx::Result<()> {
    let (mut los, mut his, mut folders) = (Vec::new(), Vec::new(), Vec::new());
    for root in roots {
        let (lo, hi) = root.range();
        los.push(lo);
        his.push(hi);
        folders.push(matches!(root, Root::Folder(_)));
    }
    sqlx::query!(
        "delete from run_roots as w
         using unnest($2::bytea[], $3::bytea[]) as t (lo, hi)
         where w.run = $1 and w.lo > t.lo and w.lo < t.hi",
        run.0,
        &los,
        &his
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into run_roots (run, lo, hi, folder)
         select $1, t.lo, t.hi, t.folder
         from unnest($2::bytea[], $3::bytea[], $4::bool[]) as t (lo, hi, folder)
         where coalesce((select w.hi from run_roots as w
                         where w.run = $1 and w.lo <= t.lo
                         order by w.lo desc limit 1) < t.hi, true)
         on conflict do nothing",
        run.0,
        &los,
        &his,
        &folders
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes the inputs of a batch: unknown contents as `new` images, each hashed input upserted,
/// each seen one marked seen, a plan in the run's OUT for each. Returns their row ids.
async fn write_inputs(
    conn: &mut PgConnection,
    machine: i64,
    run: RunId,
    batch: &ScanBatch,
) -> sqlx::Result<Vec<i64>> {
    let (mut paths, mut sizes, mut mtimes, mut shas, mut formats) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seen = Vec::new();
    let (mut all_paths, mut plans) = (Vec::new(), Vec::new());
    // A path given twice in one batch: the last one says what it holds (one statement may
    // not upsert a row twice).
    let mut last = HashMap::new();
    for (n, i) in batch.inputs.iter().enumerate() {
        last.insert(path_bytes(&i.path), n);
    }
    for (n, i) in batch.inputs.iter().enumerate() {
        if last.get(path_bytes(&i.path)) != Some(&n) {
            continue;
        }
        let path = path_bytes(&i.path).to_vec();
        all_paths.push(path.clone());
        plans.push(path_bytes(&i.planned_output).to_vec());
        match i.content {
            Some(c) => {
                paths.push(path);
                sizes.push(to_i64(i.size));
                mtimes.push(i.mtime_ns);
                shas.push(c.sha256.0.to_vec());
                formats.push(c.format.to_owned());
            }
            None => seen.push(path),
        }
    }
    let mut ids = Vec::with_capacity(batch.inputs.len());
    if !paths.is_empty() {
        sqlx::query!(
            "insert into images (sha256, size, format)
             select t.sha256, t.size, t.format
             from unnest($1::bytea[], $2::bigint[], $3::text[]) as t (sha256, size, format)
             order by t.sha256
             on conflict (sha256) do nothing",
            &shas,
            &sizes,
            &formats
        )
        .execute(&mut *conn)
        .await?;
        // Content changed: outputs written for the old content, in any OUT, are not this
        // input's.
        sqlx::query!(
            "update placements as pl set written = null, updated_at = now()
             from unnest($2::bytea[], $3::bytea[]) as t (path, sha256)
             join inputs as p on p.machine = $1 and p.path = t.path
             join images as i on i.id = p.image_id
             where pl.machine = $1 and pl.path = p.path and pl.written is not null
               and i.sha256 <> t.sha256",
            machine,
            &paths,
            &shas
        )
        .execute(&mut *conn)
        .await?;
        ids.extend(
            sqlx::query_scalar!(
                "insert into inputs (machine, path, size, mtime_ns, image_id, last_run)
                 select $1, t.path, t.size, t.mtime_ns, i.id, $2
                 from unnest($3::bytea[], $4::bigint[], $5::bigint[], $6::bytea[])
                      as t (path, size, mtime_ns, sha256)
                 join images as i on i.sha256 = t.sha256
                 order by t.path
                 on conflict (machine, path) do update
                 set size = excluded.size, mtime_ns = excluded.mtime_ns,
                     image_id = excluded.image_id, last_run = excluded.last_run,
                     last_seen = now(), missing = null
                 returning id",
                machine,
                run.0,
                &paths,
                &sizes,
                &mtimes,
                &shas
            )
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    if !seen.is_empty() {
        ids.extend(
            sqlx::query_scalar!(
                "update inputs as p set last_run = $2, last_seen = now(), missing = null
                 from unnest($3::bytea[]) as t (path)
                 where p.machine = $1 and p.path = t.path
                 returning p.id",
                machine,
                run.0,
                &seen
            )
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    sqlx::query!(
        "insert into placements (machine, path, out_root, planned)
         select $1, t.path, r.out_root, t.planned
         from runs as r, unnest($3::bytea[], $4::bytea[]) as t (path, planned)
         where r.id = $2 and exists (select 1 from inputs as p where p.machine = $1 and p.path = t.path)
         on conflict do nothing",
        machine,
        run.0,
        &all_paths,
        &plans
    )
    .execute(&mut *conn)
    .await?;
    // A path rejected before (unreadable, not an image then) is an input now.
    sqlx::query!(
        "delete from rejected_inputs where machine = $1 and path = any($2)",
        machine,
        &all_paths
    )
    .execute(&mut *conn)
    .await?;
    Ok(ids)
}

/// Records (or refreshes) files `run` found but could not use.
async fn write_rejected(
    conn: &mut PgConnection,
    machine: i64,
    run: RunId,
    batch: &ScanBatch,
) -> sqlx::Result<()> {
    let paths: Vec<Vec<u8>> = batch
        .rejected
        .iter()
        .map(|r| path_bytes(&r.path).to_vec())
        .collect();
    let kinds: Vec<String> = batch
        .rejected
        .iter()
        .map(|r| r.kind.as_str().to_owned())
        .collect();
    let reasons: Vec<String> = batch.rejected.iter().map(|r| r.reason.clone()).collect();
    sqlx::query!(
        "insert into rejected_inputs (machine, path, kind, reason, run)
         select $1, t.path, t.kind, t.reason, $2
         from unnest($3::bytea[], $4::text[], $5::text[]) as t (path, kind, reason)
         on conflict (machine, path) do update set
             kind = excluded.kind, reason = excluded.reason, run = excluded.run, seen_at = now()",
        machine,
        run.0,
        &paths,
        &kinds,
        &reasons
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks missing the present inputs under `run`'s roots that the walk did not find and that
/// were last recorded before the root's walk began, keeping when they were last seen.
async fn mark_missing(
    conn: &mut PgConnection,
    machine: i64,
    run: RunId,
    found: &FoundInputs,
) -> sqlx::Result<u64> {
    let roots = sqlx::query!(
        "select lo, hi, began_at from run_roots where run = $1 order by lo",
        run.0
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut present = 0;
    for root in &roots {
        present += sqlx::query_scalar!(
            r#"select count(*) filter (where missing is null) as "n!"
               from inputs where machine = $1 and path >= $2 and path < $3"#,
            machine,
            root.lo,
            root.hi
        )
        .fetch_one(&mut *conn)
        .await?;
    }
    if u64::try_from(present).ok() == Some(found.len()) {
        return Ok(0);
    }
    let mut marked = 0;
    for root in &roots {
        let mut from = root.lo.clone();
        loop {
            let page = sqlx::query!(
                "select id, path from inputs
                 where machine = $1 and path >= $2 and path < $3 and missing is null
                   and last_seen < $4
                 order by path
                 limit $5",
                machine,
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
            // When it was last seen (the `inputs_seen` view) is kept: once it is missing,
            // later walks no longer count for it.
            marked += sqlx::query!(
                "update inputs as p set missing = $1, last_run = s.last_run, last_seen = s.last_seen
                 from inputs_seen as s
                 where s.id = p.id and p.id = any($2)",
                run.0,
                &gone
            )
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
    }
    Ok(marked)
}
