//! Completed walks of INPUT folders, and with them which inputs a run works on.
//!
//! A run's inputs are its `run_inputs` rows (inputs it recorded: new or changed content, found
//! again, not yet planned in its OUT, named one by one) and, once its walk of an INPUT folder
//! is complete, every input under that folder not marked `missing`. So a rescan of an
//! unchanged tree writes nothing per file: [`Ledger::complete_walk`] compares two counts and
//! marks the few inputs the walk did not find.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ledger::{now_text, path_from_bytes, subtree_range, text_before};
use crate::listings::inputs_changes;
use crate::{FoundInputs, InputId, Ledger, Result, RunId};

/// Inputs read per statement when looking for those a walk did not find.
const MISSING_PAGE: i64 = 4096;

impl Ledger {
    /// Whether the ledger holds any input under `folder` (present or missing). A first scan
    /// of a folder it does not has nothing to look up: every file there is new.
    pub async fn holds_inputs_under(&self, folder: &Path) -> Result<bool> {
        let (lo, hi) = subtree_range(folder);
        sqlx::query_scalar!(
            r#"select exists (select 1 from inputs where path > ?1 and path < ?2) as "any!: bool""#,
            lo,
            hi
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| self.db_err(e))
    }

    /// Records that `run` walked these INPUT folders completely, having found the inputs it
    /// recorded and those in `found`. Inputs under the folders found by neither are marked
    /// missing, then the folders join the run's inputs. Returns how many were marked.
    ///
    /// Two counts settle the usual case: every input found is in the ledger, so when the
    /// ledger holds as many present inputs under the folders as were found, none is missing.
    /// An input another live run recorded after this walk passed its folder is marked too:
    /// that run holds it by its `run_inputs` row, and the next walk to find it records it
    /// again. Walks of runs whose heartbeat is older than `live_within` count as over.
    pub async fn complete_walk(
        &self,
        run: RunId,
        folders: &[PathBuf],
        found: &FoundInputs,
        live_within: Duration,
    ) -> Result<u64> {
        let bounds: Vec<(Vec<u8>, Vec<u8>)> = folders.iter().map(|f| subtree_range(f)).collect();
        let now = now_text();
        let live_since = text_before(live_within);
        let mut tx = self.begin_write().await?;
        let before = inputs_changes(&mut tx).await.map_err(|e| self.db_err(e))?;
        let mut present = 0;
        let mut recorded = 0;
        for (lo, hi) in &bounds {
            present += sqlx::query_scalar!(
                r#"select (select count(*) from inputs where path > ?1 and path < ?2)
                        - (select count(*) from inputs
                           where path > ?1 and path < ?2 and missing is not null) as "n!: i64""#,
                lo,
                hi
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
            recorded += sqlx::query_scalar!(
                r#"select count(*) as "n!: i64" from run_inputs
                   where run = ?1 and path > ?2 and path < ?3"#,
                run.0,
                lo,
                hi
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        }
        let mut marked = 0;
        if u64::try_from(present - recorded).ok() != Some(found.len()) {
            for (lo, hi) in &bounds {
                let mut after = lo.clone();
                loop {
                    let page = sqlx::query!(
                        r#"select p.rowid as "id!: i64", p.path
                           from inputs as p
                           where p.path > ?1 and p.path < ?2 and p.missing is null
                             and not exists (select 1 from run_inputs as ri
                                             where ri.run = ?3 and ri.path = p.path)
                           order by p.path
                           limit ?4"#,
                        after,
                        hi,
                        run.0,
                        MISSING_PAGE
                    )
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.db_err(e))?;
                    let Some(last) = page.last() else { break };
                    after = last.path.clone();
                    let gone: Vec<i64> = page
                        .iter()
                        .filter(|r| !found.holds(InputId(r.id), &path_from_bytes(r.path.clone())))
                        .map(|r| r.id)
                        .collect();
                    if gone.is_empty() {
                        continue;
                    }
                    let ids = serde_json::to_string(&gone).map_err(|e| self.invalid(e))?;
                    // When it was last seen (the `inputs_seen` view) is kept: once it is
                    // missing, later walks no longer count for it.
                    marked += sqlx::query!(
                        "update inputs set missing = ?1, last_run = s.last_run, last_seen = s.last_seen
                         from inputs_seen as s
                         where s.path = inputs.path
                           and inputs.rowid in (select value from json_each(?2))",
                        run.0,
                        ids
                    )
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db_err(e))?
                    .rows_affected();
                }
            }
        }
        for (lo, hi) in &bounds {
            sqlx::query!(
                "insert into run_roots (run, lo, hi, out_root, walked_at)
                 select ?1, ?2, ?3, r.out_root, ?4 from runs as r where r.id = ?1
                 on conflict (run, lo) do update set walked_at = excluded.walked_at",
                run.0,
                lo,
                hi,
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
            // Earlier walks of the same folder into the same OUT by runs that are over: this
            // one says all they said.
            sqlx::query!(
                "delete from run_roots
                 where lo = ?1 and run <> ?2
                   and out_root = (select r.out_root from runs as r where r.id = ?2)
                   and run in (select r.id from runs as r
                               where r.finished_at is not null or r.heartbeat_at <= ?3)",
                lo,
                run.0,
                live_since
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        }
        let after = inputs_changes(&mut tx).await.map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        self.note_input_changes(before, after);
        Ok(marked)
    }
}
