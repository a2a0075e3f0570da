//! Ledger behaviour, each test on a real ledger file in its own temp folder.
//!
//! One test binary (one link) with a module per theme. Tests that need a second process run
//! this same binary again in child mode (see `child`).

/// Shared fixtures: temp ledgers, deterministic hashes and inputs, raw SQL access, children.
mod support;

/// The entry point a child process runs (does nothing in a normal test run).
mod child;

/// Two pools and two processes sharing one ledger.
mod concurrency;
/// A process killed in the middle of batched writes.
mod crash;
/// Recording inputs: round-trips, planned outputs, changed files, lookups.
mod inputs;
/// A run's end count kept with the ledger state, read back only while nothing changed.
mod kept_counts;
/// Folder listings kept with the state of the inputs, read back only while no input changed.
mod listings;
/// Opening: creation, migrations, refusals that leave the file untouched, serial, busy.
mod open;
/// Counts, lists, the resume set, export.
mod queries;
/// The run registry and `recover` within one process.
mod recover;
/// Files found but not used: recorded, listed, refreshed, and dropped when they become inputs.
mod rejected;
/// Every transition, and every refusal from a wrong status.
mod transitions;
/// Complete walks: found inputs become the run's unrecorded, the others are marked missing.
mod walks;
