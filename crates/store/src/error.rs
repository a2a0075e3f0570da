//! Typed ledger errors, and the one place SQLite result codes are turned into them.

use std::fmt;
use std::path::{Path, PathBuf};

/// What the caller can do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Busy or locked: try again.
    Retry,
    /// Corrupt, newer schema, read-only, missing: stop and tell the user.
    Stop,
    /// A refused transition or an impossible state: a bug in the caller.
    Bug,
}

/// Ledger errors. Every message that concerns the file names it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `open_existing` on a path where no ledger file exists.
    #[error("no ledger at {}", path.display())]
    NotFound { path: PathBuf },
    /// The file or its folder cannot be created or opened.
    #[error("cannot open the ledger {}: {detail}", path.display())]
    CannotOpen { path: PathBuf, detail: String },
    /// Another process held the ledger locked for longer than the busy timeout.
    #[error("the ledger {} is locked by another process (still busy after the timeout); try again", path.display())]
    Busy { path: PathBuf },
    /// The file is not a SQLite database, or its pages are damaged.
    #[error("the ledger {} is corrupt or not a database ({detail}); it was left untouched", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// A SQLite database, but not an eraser ledger.
    #[error("{} is a SQLite database but not an eraser ledger; it was left untouched", path.display())]
    NotALedger { path: PathBuf },
    /// The ledger was written by a newer eraser (it holds migrations this binary does not know).
    #[error(
        "the ledger {} was written by a newer eraser (schema version {found}, this eraser knows up to {known}); \
         it was left untouched: upgrade eraser",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The ledger's format needs an upgrade, but a run (of an older eraser: a current one would
    /// have upgraded it) is using it; upgrading under it would make it misread the ledger.
    #[error(
        "the ledger {} is in use by a run of an older eraser (pid {pid} on {host}); its format \
         can be upgraded once that run has ended: try again then, or use the older eraser until then",
        path.display()
    )]
    InUseByOlder {
        path: PathBuf,
        pid: i64,
        host: String,
    },
    /// Writing is impossible: the file, its folder or the file system is read-only.
    #[error("the ledger {} is read-only", path.display())]
    ReadOnly { path: PathBuf },
    /// The disk holding the ledger is full.
    #[error("the disk holding the ledger {} is full", path.display())]
    DiskFull { path: PathBuf },
    /// The operating system refused a read or write of the ledger's files (a failing disk, a
    /// full one that reports it as an I/O error, a file size limit such as `ulimit -f`).
    #[error(
        "cannot read or write the ledger {}: {detail}; check the disk and any file size limit (ulimit -f)",
        path.display()
    )]
    Io { path: PathBuf, detail: String },
    /// Applying the embedded migrations failed.
    #[error("cannot migrate the ledger {}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// Any other database failure.
    #[error("ledger {}: {source}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    /// A stored value does not decode (a hand-edited or damaged row).
    #[error("ledger {}: invalid stored value: {detail}", path.display())]
    InvalidData { path: PathBuf, detail: String },
    /// A compare-and-set transition found the image in another status.
    #[error("image {sha256}: cannot go from {from} to {to}")]
    IllegalTransition {
        sha256: String,
        from: String,
        to: String,
    },
    /// A transition named an image the ledger does not hold.
    #[error("image {sha256} is not in the ledger")]
    UnknownImage { sha256: String },
    /// An input path the ledger does not hold.
    #[error("input {} is not in the ledger", path.display())]
    UnknownInput { path: PathBuf },
    /// A run id the ledger does not hold.
    #[error("run {run} is not in the ledger")]
    UnknownRun { run: i64 },
}

impl Error {
    /// Whether to retry, stop, or treat this as a bug.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Busy { .. } | Self::InUseByOlder { .. } => ErrorKind::Retry,
            Self::NotFound { .. }
            | Self::CannotOpen { .. }
            | Self::Corrupt { .. }
            | Self::NotALedger { .. }
            | Self::NewerSchema { .. }
            | Self::ReadOnly { .. }
            | Self::DiskFull { .. }
            | Self::Io { .. }
            | Self::Migrate { .. }
            | Self::InvalidData { .. } => ErrorKind::Stop,
            Self::Database { source, .. } => match source {
                sqlx::Error::Database(db) if db.kind() != sqlx::error::ErrorKind::Other => {
                    ErrorKind::Bug
                }
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => ErrorKind::Bug,
                _ => ErrorKind::Stop,
            },
            Self::IllegalTransition { .. }
            | Self::UnknownImage { .. }
            | Self::UnknownInput { .. }
            | Self::UnknownRun { .. } => ErrorKind::Bug,
        }
    }

    /// True when trying again later may succeed (busy or locked).
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retry
    }

    /// Maps a sqlx error on the ledger at `path` by its SQLite primary result code.
    pub(crate) fn from_sqlx(path: &Path, source: sqlx::Error) -> Self {
        let path = path.to_path_buf();
        let code = match &source {
            sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()),
            _ => None,
        };
        // Extended result codes keep the primary code in the low byte.
        match code.map(|c| c & 0xff) {
            Some(SQLITE_BUSY | SQLITE_LOCKED) => Self::Busy { path },
            Some(SQLITE_CORRUPT | SQLITE_NOTADB) => Self::Corrupt {
                path,
                detail: message(&source),
            },
            Some(SQLITE_READONLY) => Self::ReadOnly { path },
            Some(SQLITE_FULL) => Self::DiskFull { path },
            Some(SQLITE_IOERR) => Self::Io {
                path,
                detail: message(&source),
            },
            Some(SQLITE_CANTOPEN) => Self::CannotOpen {
                path,
                detail: message(&source),
            },
            _ => Self::Database { path, source },
        }
    }

    /// Maps a migration failure, keeping the database causes typed.
    pub(crate) fn from_migrate(path: &Path, source: sqlx::migrate::MigrateError) -> Self {
        match source {
            sqlx::migrate::MigrateError::Execute(e)
            | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => {
                match Self::from_sqlx(path, e) {
                    Self::Database { path, source } => Self::Migrate {
                        path,
                        source: sqlx::migrate::MigrateError::Execute(source),
                    },
                    other => other,
                }
            }
            source => Self::Migrate {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    pub(crate) fn invalid(path: &Path, detail: impl fmt::Display) -> Self {
        Self::InvalidData {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        }
    }
}

fn message(source: &sqlx::Error) -> String {
    match source {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
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

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    use super::*;

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
        let err = Error::from_sqlx(&path, err);

        assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Stop);
        assert!(err.to_string().contains(&path.display().to_string()));
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

        assert_eq!(Error::from_sqlx(&path, err).kind(), ErrorKind::Bug);
    }
}
