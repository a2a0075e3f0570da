//! The eraser ledger: one SQLite file that remembers every image by content hash.
//!
//! INTERFACE CONTRACT (kept stable for the cli crate; the implementation fills in the bodies).
//! The only crate that writes SQL.

mod error;
mod ledger;
mod model;

pub use error::{Error, ErrorKind};
pub use ledger::Ledger;
pub use model::*;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
