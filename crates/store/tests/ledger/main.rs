//! Ledger behaviour, each test on a real ledger in its own temp place, on every backend it
//! names (`#[values(Backend::…)]`); what only SQLite has is tested on SQLite alone.
//!
//! One test binary (one link) with a module per theme. Tests that need a second process run
//! this same binary again in child mode (see `child`).

/// Shared fixtures: fresh ledgers per backend, deterministic inputs, scans, edits behind the
/// ledger's back, children.
mod support;

/// The entry point a child process runs (does nothing in a normal test run).
mod child;

/// Two handles and two processes sharing one ledger.
mod concurrency;
/// The counters against a recount after every kind of write, and drifted ones caught.
mod counters;
/// A process killed in the middle of batched writes.
mod crash;
/// Recording inputs: round-trips, planned outputs, changed files, lookups.
mod inputs;
/// Folder listings kept at the version of the inputs, stale after any change to them.
mod listings;
/// Opening on any backend: reopening, the product serial, the processing estimate.
mod open;
/// Counts, lists, the resume set, export.
mod queries;
/// The run registry and `recover` within one process.
mod recover;
/// Files found but not used: recorded, listed, refreshed, and dropped when they become inputs.
mod rejected;
/// A run's roots (folders and files, never overlapping) and one transaction per batch.
mod roots;
/// The committed schema dump against the migrations.
mod schema;
/// The SQLite file: creation, migrations, refusals that leave the file untouched, busy.
mod sqlite_file;
/// Every transition, every refusal from a wrong status, and fenced claims.
mod transitions;
/// A ledger made by an older eraser, upgraded in place.
mod upgrade;
/// Complete walks: what they did not find is marked missing, guarded for other runs' records.
mod walks;
