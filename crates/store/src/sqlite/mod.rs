//! The embedded backend: one SQLite file on this machine.
//!
//! [`Sqlite`] holds two pools on the file: a single-connection pool for writes, so this process
//! never contends with itself for SQLite's one write lock, and a small pool for reads (WAL lets
//! them run beside the writer). Other processes are kept out by `begin immediate` write
//! transactions and the busy timeout. The operations live beside the SQL they run: `open.rs`
//! (opening, pragmas, migrations), `runs.rs` (run registry, meta), `transitions.rs` (claims, transitions, outputs),
//! `scan.rs` (lookups, recording, walks, listings) and `queries.rs` (reading).

mod open;
mod queries;
mod runs;
mod scan;
mod transitions;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use sqlx::{Sqlite as Db, SqlitePool, Transaction};

use crate::rows::Decoder;
pub(crate) use crate::rows::{path_from_bytes, to_i64, to_u64};
use crate::{Error, Location, Result};

/// The embedded ledger: migrations of `migrations/sqlite`, applied on open.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// A SQLite ledger. Cheap to clone (clones share the pools).
#[derive(Clone, Debug)]
pub(crate) struct Sqlite {
    location: Arc<Location>,
    /// The location as shown in errors.
    name: Arc<str>,
    read: SqlitePool,
    write: SqlitePool,
    /// How long a run may go without a heartbeat before it is presumed dead.
    pub(crate) lease: std::time::Duration,
}

impl Sqlite {
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    /// Closes every connection of this handle and its clones. When no other process has the
    /// file open, SQLite folds the write-ahead log back into the file.
    pub(crate) async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Maps a sqlx error to a typed [`Error`] naming this ledger.
    pub(crate) fn db_err(&self, e: sqlx::Error) -> Error {
        db_error(&self.name, e)
    }

    /// Starts a write transaction that takes SQLite's write lock up front (`begin immediate`),
    /// so a transaction that reads before it writes cannot deadlock on a lock upgrade with
    /// another process; waits up to the busy timeout for the lock.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Db>> {
        self.write
            .begin_with("begin immediate")
            .await
            .map_err(|e| self.db_err(e))
    }

    /// Error for a row whose stored value does not decode.
    pub(crate) fn invalid(&self, detail: impl std::fmt::Display) -> Error {
        Error::invalid(&self.name, detail)
    }

    /// Decodes this ledger's rows (errors name it).
    pub(crate) fn rows(&self) -> Decoder<'_> {
        Decoder(&self.name)
    }
}

/// Maps a sqlx error on the ledger shown as `ledger` by its SQLite primary result code.
pub(crate) fn db_error(ledger: &str, source: sqlx::Error) -> Error {
    let ledger = ledger.to_owned();
    let code = match &source {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()),
        _ => None,
    };
    // Extended result codes keep the primary code in the low byte.
    match code.map(|c| c & 0xff) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => Error::Busy { ledger },
        Some(SQLITE_CORRUPT | SQLITE_NOTADB) => Error::Corrupt {
            ledger,
            detail: Error::message(&source),
        },
        Some(SQLITE_READONLY) => Error::ReadOnly { ledger },
        Some(SQLITE_FULL) => Error::DiskFull { ledger },
        Some(SQLITE_IOERR) => Error::Io {
            ledger,
            detail: Error::message(&source),
        },
        Some(SQLITE_CANTOPEN) => Error::CannotOpen {
            ledger,
            detail: Error::message(&source),
        },
        _ => Error::Database { ledger, source },
    }
}

/// Maps a migration failure, keeping the database causes typed.
pub(crate) fn migrate_error(ledger: &str, source: sqlx::migrate::MigrateError) -> Error {
    match source {
        sqlx::migrate::MigrateError::Execute(e)
        | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => match db_error(ledger, e) {
            Error::Database { ledger, source } => Error::Migrate {
                ledger,
                source: sqlx::migrate::MigrateError::Execute(source),
            },
            other => other,
        },
        source => Error::Migrate {
            ledger: ledger.to_owned(),
            source,
        },
    }
}

// SQLite primary result codes (https://www.sqlite.org/rescode.html).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// Now, as stored: fixed-width UTC text with microseconds, so timestamps compare as text.
pub(crate) fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The moment `ago` before now, as stored (for comparisons with stored timestamps).
pub(crate) fn text_before(ago: std::time::Duration) -> String {
    let ago = chrono::Duration::from_std(ago).unwrap_or(chrono::Duration::MAX);
    Utc::now()
        .checked_sub_signed(ago)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A path as stored: its raw OS bytes (lossless for names that are not UTF-8).
pub(crate) fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    use super::*;
    use crate::ErrorKind;

    #[tokio::test]
    async fn a_write_through_a_read_only_connection_is_a_read_only_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.db");
        let mut rw = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("create table t (x)")
            .execute(&mut rw)
            .await
            .unwrap();
        rw.close().await.unwrap();

        let mut ro = SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true)
            .connect()
            .await
            .unwrap();
        let err = sqlx::query("insert into t values (1)")
            .execute(&mut ro)
            .await
            .unwrap_err();
        let name = path.display().to_string();
        let err = db_error(&name, err);

        assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Stop);
        assert!(err.to_string().contains(&name));
    }

    #[tokio::test]
    async fn a_constraint_violation_is_a_bug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut c = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("create table t (x primary key)")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("insert into t values (1)")
            .execute(&mut c)
            .await
            .unwrap();
        let err = sqlx::query("insert into t values (1)")
            .execute(&mut c)
            .await
            .unwrap_err();

        assert_eq!(db_error("c.db", err).kind(), ErrorKind::Bug);
    }
}
