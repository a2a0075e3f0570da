//! The eraser ledger: remembers every image by content hash, every input file by path, and
//! every run, in a SQLite file (the default) or a PostgreSQL database several machines share.
//!
//! [`Ledger`] is the one handle: its methods are every operation the pipeline and the commands
//! need (runs and liveness, claims and transitions, a [`ScanSession`], questions), the same on
//! both backends; no database type appears in them. This is the only crate that writes SQL.
//!
//! An image (unique content, keyed by SHA-256) moves through [`ImageStatus`]:
//!
//! | transition           | from                      | to           |
//! |----------------------|---------------------------|--------------|
//! | `claim_for_upload`   | `new`                     | `uploading`  |
//! | `mark_processing`    | `uploading`               | `processing` |
//! | `mark_done`          | `processing`              | `done`       |
//! | `mark_failed`        | `uploading`, `processing` | `failed`     |
//! | `release_claim`      | `uploading`               | `new`        |
//! | `recover` (dead run) | `uploading`               | `new`        |
//! | `requeue`            | `failed`                  | `new`        |
//! | `retry_failed`       | `failed`                  | `new` *      |
//! | `reset_done`         | `done`                    | `new`        |
//!
//! \* or `processing`, keeping its job id, for a job eraser stopped waiting for (timed out): the
//! next run polls it instead of paying for the image again.
//!
//! Every transition is a compare-and-set on the current status (and, for a claim, on the run
//! holding it), so two processes sharing one ledger never both claim an image, and a run whose
//! claim was taken over cannot overwrite the new owner's record. Runs register host, pid and
//! heartbeat so `recover` only takes back claims of dead runs.
//!
//! The schema and its rules: `docs/ledger.md`; the migrations: `migrations/sqlite/` and
//! `migrations/postgres/`.

mod error;
mod ledger;
mod liveness;
mod location;
mod model;
mod patience;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
mod scan;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use error::{Error, ErrorKind};
pub use ledger::{Ledger, OpenOptions};
pub use location::{Location, PostgresUrl};
pub use model::*;
pub use scan::{Content, FoundInput, Listing, Lookup, Root, ScanBatch, ScanSession};

/// A run whose heartbeat is older than its lease is dead (on other hosts; on the same host its
/// pid is checked too): its claims can be taken back, and the ledger's format upgraded. This is
/// the lease unless [`OpenOptions::lease`] says otherwise.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The embedded ledger's migrations (for tests that build a ledger by hand).
#[cfg(feature = "sqlite")]
pub fn sqlite_migrator() -> &'static sqlx::migrate::Migrator {
    &sqlite::MIGRATOR
}
