//! The shared backend: one PostgreSQL database that several machines use at once.
//!
//! [`Postgres`] holds a pool of connections and the id of this machine (registered by host
//! name when the ledger opens); every input, output, listing and file not used it reads or
//! writes is this machine's. Times are the database's own (`now()`): a machine whose clock is
//! off neither looks dead while alive nor keeps the others waiting. Claims take rows with
//! `for update skip locked` inside a CTE and hold no lock past their transaction; a run's claim
//! is fenced by its run id. The operations live beside their SQL, as in the SQLite backend:
//! `open.rs`, `runs.rs`, `transitions.rs`, `scan.rs` and `queries.rs`.

mod open;
mod queries;
mod runs;
mod scan;
mod transitions;

use std::sync::Arc;

use sqlx::PgPool;

use crate::rows::Decoder;
use crate::{Error, Location};

/// The shared ledger's migrations, in `migrations/postgres`, applied on open.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A PostgreSQL ledger. Cheap to clone (clones share the pool).
#[derive(Clone, Debug)]
pub(crate) struct Postgres {
    location: Arc<Location>,
    /// The location as shown in errors (password masked).
    name: Arc<str>,
    pool: PgPool,
    /// This machine's row.
    machine: i64,
    /// How long a run may go without a heartbeat (in the database's clock) before it is
    /// presumed dead.
    pub(crate) lease: std::time::Duration,
}

impl Postgres {
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// Maps a sqlx error to a typed [`Error`] naming this ledger.
    pub(crate) fn db_err(&self, e: sqlx::Error) -> Error {
        db_error(&self.name, e)
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

/// Maps a sqlx error on the ledger shown as `ledger` by what went wrong: the connection (the
/// server restarting, the network cut: wait for it), a lock or serialization conflict (try
/// again), or the database's SQLSTATE.
pub(crate) fn db_error(ledger: &str, source: sqlx::Error) -> Error {
    let ledger = ledger.to_owned();
    let unavailable = |detail: String| Error::Unavailable {
        ledger: ledger.clone(),
        detail,
    };
    match &source {
        sqlx::Error::Io(e) => return unavailable(e.to_string()),
        sqlx::Error::PoolTimedOut => {
            return unavailable("no connection to the database could be had in time".into());
        }
        sqlx::Error::PoolClosed => return unavailable("the connection pool is closed".into()),
        sqlx::Error::Tls(e) => {
            return Error::CannotOpen {
                ledger,
                detail: format!("TLS: {e}"),
            };
        }
        sqlx::Error::Protocol(e) => return unavailable(e.clone()),
        _ => {}
    }
    let code = match &source {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    let Some(code) = code else {
        return Error::Database { ledger, source };
    };
    match code.as_str() {
        // serialization_failure, deadlock_detected, lock_not_available
        "40001" | "40P01" | "55P03" => Error::Busy { ledger },
        // connection exceptions; admin_shutdown, crash_shutdown, cannot_connect_now
        c if c.starts_with("08") => unavailable(Error::message(&source)),
        "57P01" | "57P02" | "57P03" => unavailable(Error::message(&source)),
        // invalid_authorization_specification, invalid_password, invalid_catalog_name
        "28000" | "28P01" | "3D000" => Error::CannotOpen {
            ledger,
            detail: Error::message(&source),
        },
        // read_only_sql_transaction
        "25006" => Error::ReadOnly { ledger },
        // disk_full
        "53100" => Error::DiskFull { ledger },
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

/// A path as stored: its raw OS bytes.
pub(crate) fn path_bytes(path: &std::path::Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt as _;
    path.as_os_str().as_bytes()
}
