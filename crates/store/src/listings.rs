//! Folder listings kept with the state of the inputs (migration 0011): a walk that lists a
//! folder into an OUT exactly as an earlier walk did, with no input changed since, takes every
//! file of it as the ledger holds it, without a lookup per file.
//!
//! A listing is kept only by a scan that made every input change since it began itself: its
//! lookups and records then hold for every file of the folders it lists, at the state it keeps
//! them in. Any other change (another run, an edit behind the ledger's back) raises the state
//! and the kept listings no longer apply.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use sqlx::SqliteConnection;

use crate::ledger::{path_bytes, path_from_bytes};
use crate::{Ledger, Result, RunId};

/// A folder's files as a walk listed them: the digest of their names, sizes and mtimes, and
/// how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub digest: [u8; 32],
    pub files: u64,
}

/// The state of the inputs a scan began in: the `inputs_changes` tally, and how far this
/// handle had raised it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputsState {
    changes: i64,
    own: u64,
}

impl Ledger {
    /// The state of the inputs now (read before a scan's first lookup).
    pub async fn inputs_state(&self) -> Result<InputsState> {
        let mut conn = self.read.acquire().await.map_err(|e| self.db_err(e))?;
        // The handle's share first: a change of its own committed in between only makes
        // the tally look moved by someone else (nothing is kept), never the reverse.
        let own = self.own_input_changes.load(Ordering::SeqCst);
        let changes = inputs_changes(&mut conn)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(InputsState { changes, own })
    }

    /// The listings kept for `run`'s OUT in `state`; none when there are more than `limit` (a
    /// tree of that many folders is looked up file by file rather than held in memory).
    pub async fn kept_listings(
        &self,
        run: RunId,
        state: &InputsState,
        limit: usize,
    ) -> Result<HashMap<PathBuf, Listing>> {
        let asked = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let rows = sqlx::query!(
            r#"select l.folder, l.digest, l.files from listings as l
               where l.out_root = (select r.out_root from runs as r where r.id = ?1)
                 and l.state = ?2
               limit ?3"#,
            run.0,
            state.changes,
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

    /// Keeps, for `run`'s OUT, the listings of a scan that began in `since`: folders whose
    /// every listed file the scan found in the ledger as listed, or recorded so. Nothing is
    /// kept when an input changed since that this handle did not change (another run may have
    /// changed a file the scan had looked up). Returns whether they were kept.
    pub async fn keep_listings(
        &self,
        run: RunId,
        since: &InputsState,
        listings: &[(PathBuf, Listing)],
    ) -> Result<bool> {
        if listings.is_empty() {
            return Ok(false);
        }
        let mut tx = self.begin_write().await?;
        let now = inputs_changes(&mut tx).await.map_err(|e| self.db_err(e))?;
        let own = self.own_input_changes.load(Ordering::SeqCst);
        let by_others =
            now.saturating_sub(since.changes) - i64::try_from(own - since.own).unwrap_or(i64::MAX);
        if by_others != 0 {
            return Ok(false);
        }
        for (folder, listing) in listings {
            let (folder, digest) = (path_bytes(folder), &listing.digest[..]);
            let files = i64::try_from(listing.files).unwrap_or(i64::MAX);
            sqlx::query!(
                "insert into listings (out_root, folder, digest, files, state)
                 select r.out_root, ?2, ?3, ?4, ?5 from runs as r where r.id = ?1
                 on conflict (out_root, folder) do update
                 set digest = excluded.digest, files = excluded.files, state = excluded.state",
                run.0,
                folder,
                digest,
                files,
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(true)
    }

    /// Adds to this handle's share of the tally what one of its transactions did.
    pub(crate) fn note_input_changes(&self, before: i64, after: i64) {
        let delta = u64::try_from(after.saturating_sub(before)).unwrap_or(0);
        self.own_input_changes.fetch_add(delta, Ordering::SeqCst);
    }
}

/// The `inputs_changes` tally as `conn` sees it.
pub(crate) async fn inputs_changes(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select coalesce((select n from tallies where name = 'inputs_changes'), 0) as "n!: i64""#
    )
    .fetch_one(conn)
    .await
}
