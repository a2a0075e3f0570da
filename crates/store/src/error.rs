//! Typed ledger errors, shared by both backends; each backend maps its database's own codes
//! into them. `ledger` fields hold the location as shown to people (a password masked).

use std::path::PathBuf;

/// What the caller can do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Busy or locked: try again.
    Retry,
    /// The database cannot be reached (a server restarting, the network cut): wait for it.
    Unavailable,
    /// Corrupt, newer schema, read-only, missing: stop and tell the user.
    Stop,
    /// A refused transition or an impossible state: a bug in the caller.
    Bug,
}

/// Ledger errors. Every message that concerns the ledger names it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `open_existing` where no ledger file exists.
    #[error("no ledger at {ledger}")]
    NotFound { ledger: String },
    /// The file or its folder cannot be created or opened, or the server refuses the login.
    #[error("cannot open the ledger {ledger}: {detail}")]
    CannotOpen { ledger: String, detail: String },
    /// Another process held the ledger locked for longer than the busy timeout.
    #[error(
        "the ledger {ledger} is locked by another process (still busy after the timeout); try again"
    )]
    Busy { ledger: String },
    /// The database server cannot be reached, or the connection to it was lost.
    #[error("the ledger {ledger} cannot be reached: {detail}")]
    Unavailable { ledger: String, detail: String },
    /// The file is not a SQLite database, or its pages are damaged.
    #[error("the ledger {ledger} is corrupt or not a database ({detail}); it was left untouched")]
    Corrupt { ledger: String, detail: String },
    /// A database, but not an eraser ledger.
    #[error("{ledger} is a database but not an eraser ledger; it was left untouched")]
    NotALedger { ledger: String },
    /// The ledger was written by a newer eraser (it holds migrations this binary does not know).
    #[error(
        "the ledger {ledger} was written by a newer eraser (schema version {found}, this eraser \
         knows up to {known}); it was left untouched: upgrade eraser"
    )]
    NewerSchema {
        ledger: String,
        found: i64,
        known: i64,
    },
    /// The ledger's format needs an upgrade, but a run (of an older eraser: a current one would
    /// have upgraded it) is using it; upgrading under it would make it misread the ledger.
    #[error(
        "the ledger {ledger} is in use by a run of an older eraser (pid {pid} on {host}); its \
         format can be upgraded once that run has ended: try again then, or use the older eraser \
         until then"
    )]
    InUseByOlder {
        ledger: String,
        pid: i64,
        host: String,
    },
    /// Writing is impossible: the file, its folder or the file system is read-only.
    #[error("the ledger {ledger} is read-only")]
    ReadOnly { ledger: String },
    /// The disk holding the ledger is full.
    #[error("the disk holding the ledger {ledger} is full")]
    DiskFull { ledger: String },
    /// The operating system refused a read or write of the ledger's files (a failing disk, a
    /// full one that reports it as an I/O error, a file size limit such as `ulimit -f`).
    #[error(
        "cannot read or write the ledger {ledger}: {detail}; check the disk and any file size \
         limit (ulimit -f)"
    )]
    Io { ledger: String, detail: String },
    /// Applying the embedded migrations failed.
    #[error("cannot migrate the ledger {ledger}: {source}")]
    Migrate {
        ledger: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// Any other database failure.
    #[error("ledger {ledger}: {source}")]
    Database {
        ledger: String,
        #[source]
        source: sqlx::Error,
    },
    /// A stored value does not decode (a hand-edited or damaged row).
    #[error("ledger {ledger}: invalid stored value: {detail}")]
    InvalidData { ledger: String, detail: String },
    /// A compare-and-set transition found the image in another status.
    #[error("image {sha256}: cannot go from {from} to {to}")]
    IllegalTransition {
        sha256: String,
        from: String,
        to: String,
    },
    /// The run's claim on the image was taken over by another run (this run was presumed
    /// dead): the other run's record stands.
    #[error("image {sha256}: this run's claim was taken over by another run")]
    ClaimLost { sha256: String },
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
    /// Whether to retry, wait, stop, or treat this as a bug.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Busy { .. } | Self::InUseByOlder { .. } => ErrorKind::Retry,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
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
            | Self::ClaimLost { .. }
            | Self::UnknownImage { .. }
            | Self::UnknownInput { .. }
            | Self::UnknownRun { .. } => ErrorKind::Bug,
        }
    }

    /// True when trying again soon may succeed (busy or locked).
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retry
    }

    /// A stored value that does not decode.
    pub(crate) fn invalid(ledger: &str, detail: impl std::fmt::Display) -> Self {
        Self::InvalidData {
            ledger: ledger.to_owned(),
            detail: detail.to_string(),
        }
    }

    /// The message of a database error, without sqlx's wrapping.
    pub(crate) fn message(source: &sqlx::Error) -> String {
        match source {
            sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        }
    }
}
