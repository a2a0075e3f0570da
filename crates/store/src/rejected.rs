//! Files a run found but could not use: recorded so `ledger list --rejected` and
//! `ledger show PATH` tell every found file's outcome, not only the inputs that became images.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ledger::{now_text, path_bytes, path_from_bytes, subtree_range};
use crate::{Ledger, RejectKind, RejectedRow, Rejection, Result, RunId};

/// One rejection of a batch, as the SQL below reads it from the JSON array.
#[derive(Serialize)]
struct BatchRow<'a> {
    /// Path bytes, hex.
    p: String,
    k: &'static str,
    r: &'a str,
}

/// A row as stored, before its kind is checked.
struct RawRejected {
    path: Vec<u8>,
    kind: String,
    reason: String,
    run: i64,
    seen_at: DateTime<Utc>,
}

impl Ledger {
    /// Records (or refreshes) a batch of rejected files seen by `run`, in one statement.
    pub async fn record_rejected(&self, run: RunId, batch: &[Rejection]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<BatchRow<'_>> = batch
            .iter()
            .map(|r| BatchRow {
                p: hex::encode(path_bytes(&r.path)),
                k: r.kind.as_str(),
                r: &r.reason,
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| self.invalid(e))?;
        let now = now_text();
        sqlx::query!(
            "insert into rejected_inputs (path, kind, reason, run, seen_at)
             select unhex(j.value ->> 'p'), j.value ->> 'k', j.value ->> 'r', ?2, ?3
             from json_each(?1) as j where true
             on conflict (path) do update set
                 kind = excluded.kind, reason = excluded.reason,
                 run = excluded.run, seen_at = excluded.seen_at",
            json,
            run.0,
            now
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Forgets the rejected files under each of `folders` that `run` did not see again: after
    /// a complete walk of a folder, they are gone (deleted, moved) or no longer rejected.
    /// Returns how many were forgotten.
    pub async fn prune_rejected(&self, run: RunId, folders: &[&Path]) -> Result<u64> {
        let mut forgotten = 0;
        for folder in folders {
            let (low, high) = subtree_range(folder);
            let done = sqlx::query!(
                "delete from rejected_inputs where path >= ?1 and path < ?2 and run <> ?3",
                low,
                high,
                run.0
            )
            .execute(&self.write)
            .await
            .map_err(|e| self.db_err(e))?;
            forgotten += done.rows_affected();
        }
        Ok(forgotten)
    }

    /// Rejected files, optionally of one kind, paged by path.
    pub async fn list_rejected(
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
            RawRejected,
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
        rows.into_iter().map(|r| self.decode_rejected(r)).collect()
    }

    /// Why the file at `path` was rejected, if it was (by the latest run that saw it).
    pub async fn rejected(&self, path: &Path) -> Result<Option<RejectedRow>> {
        let key = path_bytes(path);
        let row = sqlx::query_as!(
            RawRejected,
            r#"select path, kind, reason, run, seen_at as "seen_at: DateTime<Utc>"
               from rejected_inputs where path = ?1"#,
            key
        )
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err(e))?;
        row.map(|r| self.decode_rejected(r)).transpose()
    }

    fn decode_rejected(&self, r: RawRejected) -> Result<RejectedRow> {
        Ok(RejectedRow {
            path: path_from_bytes(r.path),
            kind: r.kind.parse().map_err(|e: String| self.invalid(e))?,
            reason: r.reason,
            run: r.run,
            seen_at: r.seen_at,
        })
    }
}
