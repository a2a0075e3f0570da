//! The eraser ledger: one SQLite file that remembers every image by content hash.
//!
//! [`Ledger`] is the only type that touches the database and this is the only crate that writes
//! SQL. An image (unique content, keyed by SHA-256) moves through [`ImageStatus`]:
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
//! Every transition is a compare-and-set on the current status, so two processes sharing one
//! ledger never both claim an image. Inputs (file paths, stored as raw OS bytes) point at their
//! image; runs register host, pid and heartbeat so `recover` only takes back claims of dead runs.
//!
//! The schema lives in the workspace's `migrations/` folder and is embedded as [`MIGRATOR`].

mod error;
mod images;
mod inputs;
mod ledger;
mod listings;
mod model;
mod open;
mod queries;
mod rejected;
mod rows;
mod runs;
mod walks;

pub use error::{Error, ErrorKind};
pub use ledger::Ledger;
pub use listings::{InputsState, Listing};
pub use model::*;
pub use open::OpenOptions;

/// A run whose heartbeat is older than this is dead (on other hosts; on the same host its pid
/// is checked too): its claims can be taken back, and the ledger's format upgraded.
pub const RUN_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The ledger schema, applied on open (embedded at build time from `migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
