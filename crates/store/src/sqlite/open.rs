//! Opening a ledger: every SQLite quirk lives here (pragmas, pools, WAL, migrations, refusing a
//! file this binary must not touch).
//!
//! An existing file is first inspected through a separate read-only connection, so a corrupt
//! file, a database that is not a ledger, or a ledger from a newer eraser is refused before
//! anything could write to it (not even the switch to WAL, which rewrites the file header).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, Sqlite as Db};

use super::{MIGRATOR, Sqlite, db_error, migrate_error};
use crate::liveness::{RunLiveness, this_host};
use crate::{Error, Location, OpenOptions, Result};

/// Reader connections per ledger handle (WAL lets them read beside the one writer).
const READERS: u32 = 4;
/// Page cache of the writer connection, KiB.
const WRITER_CACHE_KIB: u32 = 16 * 1024;
/// Page cache of each reader connection, KiB (readers probe by key: a few pages per lookup).
const READER_CACHE_KIB: u32 = 2 * 1024;

impl Sqlite {
    /// Opens (and migrates) the ledger file at `path`.
    pub(crate) async fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let name = path.display().to_string();
        let existing = check_file(path, &name, opts.create)?;
        let applied = if existing {
            probe(path, &name, opts.busy_timeout).await?
        } else {
            Vec::new()
        };

        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(opts.create)
            .busy_timeout(opts.busy_timeout)
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
            .map_err(|e| db_error(&name, e))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_lazy_with(options.pragma("cache_size", format!("-{READER_CACHE_KIB}")));
        let ledger = Sqlite {
            location: Arc::new(Location::File(path.to_path_buf())),
            name: Arc::from(name),
            read,
            write,
            lease: opts.lease,
        };

        ledger.ensure_wal(opts.busy_timeout).await?;
        if !up_to_date(&applied) {
            ledger.migrate().await?;
        }
        Ok(ledger)
    }

    /// The write connection with the log synced to disk when it commits, for a write whose loss
    /// costs money: a job id the service accepted. The writer's other commits
    /// (`synchronous = normal`) survive a killed process but may roll back after a power loss
    /// or a crash of the system, and a job id rolled back is an upload the next run pays for
    /// again. One sync per accepted upload; syncing every commit would add several per image.
    /// Hand the connection back through [`Sqlite::end_durable`].
    pub(crate) async fn durable_writer(&self) -> Result<PoolConnection<Db>> {
        let mut conn = self.write.acquire().await.map_err(|e| self.db_err(e))?;
        sqlx::query("pragma synchronous = full")
            .execute(&mut *conn)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(conn)
    }

    /// Back to the writer's usual `synchronous = normal`; a connection that cannot be switched
    /// back is closed rather than left syncing every commit.
    pub(crate) async fn end_durable(&self, mut conn: PoolConnection<Db>) {
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
                        ledger: self.name.to_string(),
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
        let applied = applied_versions(conn, &self.name).await?;
        refuse_newer(&self.name, &applied)?;
        if !up_to_date(&applied) {
            if !applied.is_empty() {
                refuse_live_runs(conn, &self.name, self.lease).await?;
                // A format change can rewrite a large ledger: say why the start is slow.
                tracing::warn!(
                    "upgrading the ledger {} to its current format (once; a ledger of a \
                     million images takes about 20 s)",
                    self.name
                );
            }
            MIGRATOR
                .run_direct(conn)
                .await
                .map_err(|e| migrate_error(&self.name, e))?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))
    }
}

/// Whether the file exists with content; creates its folder when allowed.
fn check_file(path: &Path, name: &str, create: bool) -> Result<bool> {
    let cannot = |detail: String| Error::CannotOpen {
        ledger: name.to_owned(),
        detail,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(cannot("it is a folder".into())),
        Ok(meta) => Ok(meta.len() > 0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(Error::NotFound {
                    ledger: name.to_owned(),
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

/// Refuses to change the format of a ledger that a live run is using: that run (of an older
/// eraser, or the format would be current) would go on writing the old format.
async fn refuse_live_runs(conn: &mut SqliteConnection, name: &str, lease: Duration) -> Result<()> {
    let runs = sqlx::query!(
        r#"select host, pid, heartbeat_at as "heartbeat_at: DateTime<Utc>"
           from runs where finished_at is null"#
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_error(name, e))?;
    let (host, now) = (this_host(), Utc::now());
    for r in runs {
        let run = RunLiveness {
            host: r.host,
            pid: r.pid,
            heartbeat_at: r.heartbeat_at,
            finished: false,
        };
        if !run.is_dead(&host, now, lease) {
            return Err(Error::InUseByOlder {
                ledger: name.to_owned(),
                pid: run.pid,
                host: run.host,
            });
        }
    }
    Ok(())
}

/// Looks at an existing file through a read-only connection: refuses what must not be touched
/// and returns the migration versions already applied.
async fn probe(path: &Path, name: &str, busy_timeout: Duration) -> Result<Vec<i64>> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(busy_timeout)
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    let mut conn = options.connect().await.map_err(|e| db_error(name, e))?;
    let applied = applied_versions(&mut conn, name).await;
    // Closing a read-only connection writes nothing; a failure to close changes no answer.
    let _ = conn.close().await;
    let applied = applied?;
    refuse_newer(name, &applied)?;
    Ok(applied)
}

/// Applied migration versions; empty for an empty database. A database with tables but no
/// migration history is not a ledger.
async fn applied_versions(conn: &mut SqliteConnection, name: &str) -> Result<Vec<i64>> {
    let tables =
        sqlx::query_scalar!(r#"select name as "name!" from sqlite_master where type = 'table'"#)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error(name, e))?;
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    if !tables.iter().any(|t| t == "_sqlx_migrations") {
        return Err(Error::NotALedger {
            ledger: name.to_owned(),
        });
    }
    sqlx::query_scalar!(r#"select version as "version!" from _sqlx_migrations order by version"#)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(name, e))
}

/// A version this binary does not know means a newer eraser wrote the file.
fn refuse_newer(name: &str, applied: &[i64]) -> Result<()> {
    if applied.iter().all(|v| MIGRATOR.version_exists(*v)) {
        return Ok(());
    }
    Err(Error::NewerSchema {
        ledger: name.to_owned(),
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
        let ledger = Sqlite::open(&dir.path().join("ledger.db"), &OpenOptions::new())
            .await
            .unwrap();

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
