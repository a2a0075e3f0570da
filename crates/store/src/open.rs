//! Opening a ledger: every SQLite quirk lives here (pragmas, pools, WAL, migrations, refusing a
//! file this binary must not touch).
//!
//! An existing file is first inspected through a separate read-only connection, so a corrupt
//! file, a database that is not a ledger, or a ledger from a newer eraser is refused before
//! anything could write to it (not even the switch to WAL, which rewrites the file header).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, Sqlite};

use chrono::{DateTime, Utc};

use crate::runs::{RunLiveness, this_host};
use crate::{Error, Ledger, MIGRATOR, Result};

/// How to open a ledger; [`Ledger::open`] and [`Ledger::open_existing`] are the usual shortcuts.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    create: bool,
    busy_timeout: Duration,
}

/// Reader connections per ledger handle (WAL lets them read beside the one writer).
const READERS: u32 = 4;
/// Page cache of the writer connection, KiB.
const WRITER_CACHE_KIB: u32 = 16 * 1024;
/// Page cache of each reader connection, KiB (readers probe by key: a few pages per lookup).
const READER_CACHE_KIB: u32 = 2 * 1024;

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            create: true,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl OpenOptions {
    /// Creating when missing, a 5 s busy timeout, four reader connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a missing file (and its folders) is created; otherwise it is [`Error::NotFound`].
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// How long to wait for another process's lock before failing with [`Error::Busy`].
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Opens (and migrates) the ledger at `path`.
    pub async fn open(&self, path: &Path) -> Result<Ledger> {
        let path: Arc<Path> = Arc::from(path);
        let existing = self.check_file(&path)?;
        let applied = if existing {
            probe(&path, self.busy_timeout).await?
        } else {
            Vec::new()
        };

        let options = SqliteConnectOptions::new()
            .filename(&*path)
            .create_if_missing(self.create)
            .busy_timeout(self.busy_timeout)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        // One connection: this process's writes queue here instead of fighting over the lock.
        // A batch of new images dirties a page of the sha256 index per image, so the writer gets
        // a larger cache (yet bounded: a cache counts in the process's memory, which must not
        // grow with the ledger; pages it drops come back from the OS page cache), and
        // checkpoints every 64 MiB of log instead of SQLite's 4 MiB (a page rewritten by several
        // batches is then copied back once); the log file is cut back to 64 MiB after a
        // checkpoint.
        let writer = options
            .clone()
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            .pragma("wal_autocheckpoint", "16384")
            .pragma("journal_size_limit", "67108864");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(writer)
            .await
            .map_err(|e| Error::from_sqlx(&path, e))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_lazy_with(options.pragma("cache_size", format!("-{READER_CACHE_KIB}")));
        let ledger = Ledger {
            path,
            read,
            write,
            own_input_changes: Arc::default(),
        };

        ledger.ensure_wal(self.busy_timeout).await?;
        if !up_to_date(&applied) {
            ledger.migrate().await?;
        }
        Ok(ledger)
    }

    /// Whether the file exists with content; creates its folder when allowed.
    fn check_file(&self, path: &Path) -> Result<bool> {
        let cannot = |detail: String| Error::CannotOpen {
            path: path.to_path_buf(),
            detail,
        };
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Err(cannot("it is a folder".into())),
            Ok(meta) => Ok(meta.len() > 0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.create {
                    return Err(Error::NotFound {
                        path: path.to_path_buf(),
                    });
                }
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| cannot(format!("cannot create {}: {e}", parent.display())))?;
                }
                Ok(false)
            }
            Err(e) => Err(cannot(e.to_string())),
        }
    }
}

impl Ledger {
    /// Opens (creating if missing) and migrates the ledger at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        OpenOptions::new().open(path).await
    }

    /// Opens an existing ledger; a missing file is an error (for `eraser ledger …`).
    pub async fn open_existing(path: &Path) -> Result<Self> {
        OpenOptions::new().create(false).open(path).await
    }

    /// The write connection with the log synced to disk when it commits, for a write whose loss
    /// costs money: a job id the service accepted. The writer's other commits
    /// (`synchronous = normal`) survive a killed process but may roll back after a power loss
    /// or a crash of the system, and a job id rolled back is an upload the next run pays for
    /// again. One sync per accepted upload; syncing every commit would add several per image.
    /// Hand the connection back through [`Ledger::end_durable`].
    pub(crate) async fn durable_writer(&self) -> Result<PoolConnection<Sqlite>> {
        let mut conn = self.write.acquire().await.map_err(|e| self.db_err(e))?;
        sqlx::query("pragma synchronous = full")
            .execute(&mut *conn)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(conn)
    }

    /// Back to the writer's usual `synchronous = normal`; a connection that cannot be switched
    /// back is closed rather than left syncing every commit.
    pub(crate) async fn end_durable(&self, mut conn: PoolConnection<Sqlite>) {
        if let Err(e) = sqlx::query("pragma synchronous = normal")
            .execute(&mut *conn)
            .await
        {
            tracing::debug!("closing the ledger's write connection: {e}");
            conn.close_on_drop();
        }
    }

    /// Switches the file to WAL once (the mode is stored in the file). Changing the journal mode
    /// needs an exclusive lock that the busy handler does not wait for, so a concurrent open is
    /// retried here until the busy timeout.
    async fn ensure_wal(&self, busy_timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + busy_timeout;
        loop {
            let mode = sqlx::query_scalar::<_, String>("pragma journal_mode")
                .fetch_one(&self.write)
                .await;
            let attempt = match mode {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
                Ok(_) => {
                    sqlx::query_scalar::<_, String>("pragma journal_mode = wal")
                        .fetch_one(&self.write)
                        .await
                }
                Err(e) => Err(e),
            };
            match attempt.map_err(|e| self.db_err(e)) {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
                Ok(mode) => {
                    return Err(Error::CannotOpen {
                        path: self.path.to_path_buf(),
                        detail: format!("cannot switch to WAL journaling (it stays {mode})"),
                    });
                }
                Err(Error::Busy { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies missing migrations under the write lock, so two processes opening a fresh file
    /// do not both apply them; re-checks for a newer schema under that lock.
    async fn migrate(&self) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let conn: &mut SqliteConnection = &mut tx;
        let applied = applied_versions(conn, &self.path).await?;
        refuse_newer(&self.path, &applied)?;
        if !up_to_date(&applied) {
            if !applied.is_empty() {
                refuse_live_runs(conn, &self.path).await?;
                // A format change can rewrite a large ledger: say why the start is slow.
                tracing::warn!(
                    "upgrading the ledger {} to its current format (once; a ledger of a \
                     million images takes about 20 s)",
                    self.path.display()
                );
            }
            MIGRATOR
                .run_direct(conn)
                .await
                .map_err(|e| Error::from_migrate(&self.path, e))?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))
    }
}

/// Refuses to change the format of a ledger that a live run is using: that run (of an older
/// eraser, or the format would be current) would go on writing the old format.
async fn refuse_live_runs(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    let runs = sqlx::query!(
        r#"select host, pid, heartbeat_at as "heartbeat_at: DateTime<Utc>"
           from runs where finished_at is null"#
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::from_sqlx(path, e))?;
    let (host, now) = (this_host(), Utc::now());
    for r in runs {
        let run = RunLiveness {
            host: r.host,
            pid: r.pid,
            heartbeat_at: r.heartbeat_at,
            finished: false,
        };
        if !run.is_dead(&host, now, crate::RUN_STALE_AFTER) {
            return Err(Error::InUseByOlder {
                path: path.to_path_buf(),
                pid: run.pid,
                host: run.host,
            });
        }
    }
    Ok(())
}

/// Looks at an existing file through a read-only connection: refuses what must not be touched
/// and returns the migration versions already applied.
async fn probe(path: &Path, busy_timeout: Duration) -> Result<Vec<i64>> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(busy_timeout)
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    let mut conn = options
        .connect()
        .await
        .map_err(|e| Error::from_sqlx(path, e))?;
    let applied = applied_versions(&mut conn, path).await;
    // Closing a read-only connection writes nothing; a failure to close changes no answer.
    let _ = conn.close().await;
    let applied = applied?;
    refuse_newer(path, &applied)?;
    Ok(applied)
}

/// Applied migration versions; empty for an empty database. A database with tables but no
/// migration history is not a ledger.
async fn applied_versions(conn: &mut SqliteConnection, path: &Path) -> Result<Vec<i64>> {
    let tables =
        sqlx::query_scalar!(r#"select name as "name!" from sqlite_master where type = 'table'"#)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| Error::from_sqlx(path, e))?;
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    if !tables.iter().any(|t| t == "_sqlx_migrations") {
        return Err(Error::NotALedger {
            path: path.to_path_buf(),
        });
    }
    sqlx::query_scalar!(r#"select version as "version!" from _sqlx_migrations order by version"#)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| Error::from_sqlx(path, e))
}

/// A version this binary does not know means a newer eraser wrote the file.
fn refuse_newer(path: &Path, applied: &[i64]) -> Result<()> {
    if applied.iter().all(|v| MIGRATOR.version_exists(*v)) {
        return Ok(());
    }
    Err(Error::NewerSchema {
        path: PathBuf::from(path),
        found: applied.iter().copied().max().unwrap_or_default(),
        known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default(),
    })
}

fn up_to_date(applied: &[i64]) -> bool {
    MIGRATOR.iter().all(|m| applied.contains(&m.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn synchronous(conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("pragma synchronous")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_durable_write_syncs_its_commit_and_hands_the_writer_back_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.db")).await.unwrap();

        let mut conn = ledger.durable_writer().await.unwrap();
        assert_eq!(
            synchronous(&mut conn).await,
            2,
            "full: the log synced at commit"
        );
        ledger.end_durable(conn).await;

        let mut conn = ledger.write.acquire().await.unwrap();
        assert_eq!(
            synchronous(&mut conn).await,
            1,
            "normal again for the other writes"
        );
    }
}
