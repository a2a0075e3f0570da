//! The run registry (machine, pid, heartbeat in the database's clock) and the ledger's meta facts.

use std::path::Path;

use super::{Postgres, path_bytes};
use crate::{Error, Result, RunId};

impl Postgres {
    pub(crate) async fn product_serial(&self) -> Result<String> {
        // Whoever inserts first wins; everyone then reads the winner's value.
        let candidate = uuid::Uuid::new_v4().to_string();
        sqlx::query!(
            "insert into meta (key, value) values ('product_serial', $1) on conflict (key) do nothing",
            candidate
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        sqlx::query_scalar!("select value from meta where key = $1", "product_serial")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
            .ok_or_else(|| self.invalid("product serial vanished after being stored"))
    }

    pub(crate) async fn processing_estimate(&self) -> Result<Option<f64>> {
        let value = sqlx::query_scalar!(
            "select value from meta where key = $1",
            "processing_seconds"
        )
        .fetch_optional(&self.pool)
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
            "insert into meta (key, value) values ('processing_seconds', $1)
             on conflict (key) do update set value = excluded.value",
            value
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    pub(crate) async fn begin_run(&self, command: &str, out_root: &Path) -> Result<RunId> {
        let pid = i64::from(std::process::id());
        let id = sqlx::query_scalar!(
            "insert into runs (machine, pid, command, out_root) values ($1, $2, $3, $4)
             returning id",
            self.machine,
            pid,
            command,
            path_bytes(out_root)
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(RunId(id))
    }

    pub(crate) async fn heartbeat(&self, run: RunId) -> Result<()> {
        let done = sqlx::query!("update runs set heartbeat_at = now() where id = $1", run.0)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownRun { run: run.0 });
        }
        Ok(())
    }

    pub(crate) async fn finish_run(
        &self,
        run: RunId,
        outcome: &str,
        summary_json: &str,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        let done = sqlx::query!(
            "update runs set finished_at = now(), heartbeat_at = now(), outcome = $2, summary = $3
             where id = $1",
            run.0,
            outcome,
            summary_json
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownRun { run: run.0 });
        }
        sqlx::query!(
            "delete from run_roots where run = $1 and walked_at is null",
            run.0
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }
}
