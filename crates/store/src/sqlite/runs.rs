//! The run registry (host, pid, heartbeat: who is alive) and the ledger's meta facts.

use std::path::Path;

use super::{Sqlite, now_text, path_bytes};
use crate::liveness::this_host;
use crate::{Error, Result, RunId};

impl Sqlite {
    /// The product serial, generated once per ledger (UUID v4), race-safe across processes.
    pub(crate) async fn product_serial(&self) -> Result<String> {
        if let Some(serial) = self.read_serial().await? {
            return Ok(serial);
        }
        // Whoever inserts first wins; everyone then reads the winner's value.
        let candidate = uuid::Uuid::new_v4().to_string();
        sqlx::query!(
            "insert into meta (key, value) values ('product_serial', ?1) on conflict (key) do nothing",
            candidate
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        self.read_serial()
            .await?
            .ok_or_else(|| self.invalid("product serial vanished after being stored"))
    }

    async fn read_serial(&self) -> Result<Option<String>> {
        sqlx::query_scalar!("select value from meta where key = 'product_serial'")
            .fetch_optional(&self.write)
            .await
            .map_err(|e| self.db_err(e))
    }

    pub(crate) async fn processing_estimate(&self) -> Result<Option<f64>> {
        let value = sqlx::query_scalar!("select value from meta where key = 'processing_seconds'")
            .fetch_optional(&self.read)
            .await
            .map_err(|e| self.db_err(e))?;
        // A value that does not parse is only a lost hint: the run starts from its guess.
        Ok(value
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0))
    }

    pub(crate) async fn set_processing_estimate(&self, seconds: f64) -> Result<()> {
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(self.invalid(format!("processing estimate {seconds} s")));
        }
        let value = format!("{seconds:.3}");
        sqlx::query!(
            "insert into meta (key, value) values ('processing_seconds', ?1)
             on conflict (key) do update set value = excluded.value",
            value
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    pub(crate) async fn begin_run(&self, command: &str, out_root: &Path) -> Result<RunId> {
        let host = this_host();
        let pid = i64::from(std::process::id());
        let now = now_text();
        let out_root = path_bytes(out_root);
        let id = sqlx::query!(
            "insert into runs (host, pid, command, started_at, heartbeat_at, out_root)
             values (?1, ?2, ?3, ?4, ?4, ?5)",
            host,
            pid,
            command,
            now,
            out_root
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?
        .last_insert_rowid();
        Ok(RunId(id))
    }

    pub(crate) async fn heartbeat(&self, run: RunId) -> Result<()> {
        let now = now_text();
        let done = sqlx::query!(
            "update runs set heartbeat_at = ?1 where id = ?2",
            now,
            run.0
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownRun { run: run.0 });
        }
        Ok(())
    }

    /// Also drops the run's roots that its walk never finished: they say nothing once the run
    /// is over (finished walks stay, to say when their inputs were last seen).
    pub(crate) async fn finish_run(
        &self,
        run: RunId,
        outcome: &str,
        summary_json: &str,
    ) -> Result<()> {
        let now = now_text();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query!(
            "update runs set finished_at = ?1, heartbeat_at = ?1, outcome = ?2, summary = ?3
             where id = ?4",
            now,
            outcome,
            summary_json,
            run.0
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownRun { run: run.0 });
        }
        sqlx::query!(
            "delete from run_roots where run = ?1 and walked_at is null",
            run.0
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }
}
