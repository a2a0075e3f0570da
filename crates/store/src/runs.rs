//! The run registry (host, pid, heartbeat: who is alive) and the ledger's meta facts.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::ledger::now_text;
use crate::queries::count_run_progress;
use crate::{EndProgress, Error, Ledger, Result, RunId, RunProgress};

impl Ledger {
    /// The product serial, generated once per ledger (UUID v4), race-safe across processes.
    pub async fn product_serial(&self) -> Result<String> {
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

    /// The service's processing time per image (seconds) learned by the last run that saw
    /// jobs finish, so the next run's first looks start from it instead of a guess.
    pub async fn processing_estimate(&self) -> Result<Option<f64>> {
        let value = sqlx::query_scalar!("select value from meta where key = 'processing_seconds'")
            .fetch_optional(&self.read)
            .await
            .map_err(|e| self.db_err(e))?;
        // A value that does not parse is only a lost hint: the run starts from its guess.
        Ok(value
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0))
    }

    /// Records the processing time per image learned by a run (see
    /// [`Ledger::processing_estimate`]).
    pub async fn set_processing_estimate(&self, seconds: f64) -> Result<()> {
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

    /// Registers a run of this process (host name and pid recorded by the store).
    pub async fn begin_run(&self, command: &str, out_root: &Path) -> Result<RunId> {
        let host = this_host();
        let pid = i64::from(std::process::id());
        let now = now_text();
        let out_root = crate::ledger::path_bytes(out_root);
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

    /// Refreshes the run's heartbeat. A live run must beat more often than the `stale_after`
    /// other processes pass to [`Ledger::recover`], or its claims may be taken back.
    pub async fn heartbeat(&self, run: RunId) -> Result<()> {
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

    /// Marks the run finished with how it ended and its summary (JSON text).
    pub async fn finish_run(&self, run: RunId, outcome: &str, summary_json: &str) -> Result<()> {
        let now = now_text();
        let done = sqlx::query!(
            "update runs set finished_at = ?1, heartbeat_at = ?1, outcome = ?2, summary = ?3 where id = ?4",
            now,
            outcome,
            summary_json,
            run.0
        )
        .execute(&self.write)
        .await
        .map_err(|e| self.db_err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownRun { run: run.0 });
        }
        // The membership only serves the live run; a rerun records it again. Deleted a slice
        // at a time: SQLite gathers the keys of a delete from a table with foreign keys before
        // deleting, in memory that would grow with the run (+15 MiB at a million inputs).
        loop {
            let gone = sqlx::query!(
                "delete from run_inputs where run = ?1 and path in
                     (select path from run_inputs where run = ?1 order by path limit ?2)",
                run.0,
                FORGET_SLICE
            )
            .execute(&self.write)
            .await
            .map_err(|e| self.db_err(e))?;
            if gone.rows_affected() < FORGET_SLICE as u64 {
                return Ok(());
            }
        }
    }

    /// The run's progress at its end ([`Ledger::run_progress`]), kept on the run with the
    /// ledger state it was counted in (migration 0010). When a run over the same folders ends
    /// in that same state (its walk recorded nothing, nothing else moved since), the kept
    /// count is read back instead of passing over every input again. Keeping is best effort.
    pub async fn end_progress(&self, run: RunId) -> Result<EndProgress> {
        // One read transaction: the key and the count come from the same snapshot.
        let mut tx = self.read.begin().await.map_err(|e| self.db_err(e))?;
        let key = progress_key(&mut tx, run)
            .await
            .map_err(|e| self.db_err(e))?;
        if let Some(key) = &key {
            let kept = sqlx::query_scalar!(
                r#"select progress as "progress!" from runs
                   where progress_key = ?1 and progress is not null
                   order by id desc limit 1"#,
                key
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
            if let Some(json) = kept {
                match serde_json::from_str::<RunProgress>(&json) {
                    Ok(progress) => {
                        return Ok(EndProgress {
                            progress,
                            reused: true,
                        });
                    }
                    Err(e) => tracing::debug!("a kept run count does not decode ({e}); counting"),
                }
            }
        }
        let progress = count_run_progress(&mut tx, run)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.rollback().await.map_err(|e| self.db_err(e))?;
        if let Some(key) = key {
            self.keep_progress(run, &key, &progress).await;
        }
        Ok(EndProgress {
            progress,
            reused: false,
        })
    }

    /// Stores `progress` on the run under `key`; a failure only costs the next run a count.
    async fn keep_progress(&self, run: RunId, key: &[u8], progress: &RunProgress) {
        let json = match serde_json::to_string(progress) {
            Ok(json) => json,
            Err(e) => {
                tracing::debug!("could not encode the run's count: {e}");
                return;
            }
        };
        let kept = sqlx::query!(
            "update runs set progress_key = ?2, progress = ?3 where id = ?1",
            run.0,
            key,
            json
        )
        .execute(&self.write)
        .await;
        if let Err(e) = kept {
            tracing::debug!("could not keep the run's count: {}", self.db_err(e));
        }
    }
}

/// What a run's count depends on: the `changes` tally and the folders it walked. `None` when
/// the count depends on more: no walked folder, or inputs recorded by the run that are not
/// present inputs of its folders (named one by one, under two nested folders, or marked
/// missing since), which count for this run only.
async fn progress_key(conn: &mut SqliteConnection, run: RunId) -> sqlx::Result<Option<Vec<u8>>> {
    let state = sqlx::query!(
        r#"select (select n from tallies where name = 'changes') as "changes: i64",
                  (select count(*) from run_inputs where run = ?1) as "recorded!: i64",
                  (select count(*) from run_roots as w
                   join run_inputs as ri on ri.run = w.run and ri.path > w.lo and ri.path < w.hi
                   where w.run = ?1) as "under_folders!: i64",
                  exists (select 1 from run_roots as w
                          join inputs as p indexed by inputs_missing
                            on p.path > w.lo and p.path < w.hi and p.missing is not null
                          where w.run = ?1
                            and exists (select 1 from run_inputs as ri
                                        where ri.run = ?1 and ri.path = p.path))
                      as "recorded_missing!: bool""#,
        run.0
    )
    .fetch_one(&mut *conn)
    .await?;
    let Some(changes) = state.changes else {
        return Ok(None);
    };
    if state.recorded != state.under_folders || state.recorded_missing {
        return Ok(None);
    }
    let folders = sqlx::query_scalar!("select lo from run_roots where run = ?1 order by lo", run.0)
        .fetch_all(&mut *conn)
        .await?;
    if folders.is_empty() {
        return Ok(None);
    }
    // Paths hold no NUL byte: it separates the parts.
    let mut key = changes.to_string().into_bytes();
    for lo in folders {
        key.push(0);
        key.extend_from_slice(&lo);
    }
    Ok(Some(key))
}

/// Membership rows a finished run deletes per statement.
const FORGET_SLICE: i64 = 20_000;

/// This machine's name, as recorded on runs.
pub(crate) fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// What the registry knows of a run, to judge whether it is alive.
#[derive(Debug)]
pub(crate) struct RunLiveness {
    pub host: String,
    pub pid: i64,
    pub heartbeat_at: DateTime<Utc>,
    pub finished: bool,
}

impl RunLiveness {
    /// Dead when finished, when its heartbeat is older than `stale_after` (this also covers a
    /// reused pid and runs on other hosts), or when it ran on this host and its process is gone.
    pub fn is_dead(&self, host: &str, now: DateTime<Utc>, stale_after: Duration) -> bool {
        if self.finished {
            return true;
        }
        let stale = now
            .signed_duration_since(self.heartbeat_at)
            .to_std()
            .is_ok_and(|age| age > stale_after);
        stale || (self.host == host && !process_exists(self.pid))
    }
}

/// Whether a process with this pid exists on this host (a zombie counts as gone).
fn process_exists(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative pids name process groups, never a run.
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is sent.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    alive && !is_zombie(pid)
}

/// A killed process not yet reaped by its parent still answers `kill(pid, 0)`.
fn is_zombie(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold ") ".
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state == "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(host: &str, pid: i64, age: Duration, finished: bool) -> (RunLiveness, DateTime<Utc>) {
        let now = Utc::now();
        let heartbeat_at = now - chrono::Duration::from_std(age).unwrap();
        (
            RunLiveness {
                host: host.into(),
                pid,
                heartbeat_at,
                finished,
            },
            now,
        )
    }

    const STALE: Duration = Duration::from_secs(60);

    #[test]
    fn this_process_with_a_fresh_heartbeat_is_alive() {
        let (r, now) = run(
            &this_host(),
            i64::from(std::process::id()),
            Duration::ZERO,
            false,
        );
        assert!(!r.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn a_finished_run_is_dead() {
        let (r, now) = run(
            &this_host(),
            i64::from(std::process::id()),
            Duration::ZERO,
            true,
        );
        assert!(r.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn a_stale_heartbeat_is_dead_even_when_the_pid_exists() {
        let (r, now) = run(
            &this_host(),
            i64::from(std::process::id()),
            STALE * 2,
            false,
        );
        assert!(r.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn a_reaped_process_on_this_host_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i64::from(child.id());
        child.wait().unwrap();
        let (r, now) = run(&this_host(), pid, Duration::ZERO, false);
        assert!(r.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn an_unreaped_killed_child_counts_as_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        child.kill().unwrap();
        // Wait until the kernel turned it into a zombie (no reaping).
        let pid_t = libc::pid_t::try_from(pid).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !is_zombie(pid_t) {
            assert!(
                std::time::Instant::now() < deadline,
                "child never became a zombie"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let (r, now) = run(&this_host(), pid, Duration::ZERO, false);
        assert!(r.is_dead(&this_host(), now, STALE));
        child.wait().unwrap();
    }

    #[test]
    fn another_hosts_run_is_alive_until_its_heartbeat_goes_stale() {
        let (fresh, now) = run("elsewhere.invalid", 1, Duration::ZERO, false);
        assert!(!fresh.is_dead(&this_host(), now, STALE));
        let (stale, now) = run("elsewhere.invalid", 1, STALE * 2, false);
        assert!(stale.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn pid_zero_and_negative_pids_are_never_alive() {
        assert!(!process_exists(0));
        assert!(!process_exists(-1));
    }
}
