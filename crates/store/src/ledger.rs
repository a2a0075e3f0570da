//! The [`Ledger`] handle and the private plumbing every part of it shares: the two pools,
//! write transactions, error mapping, timestamps and path bytes.
//!
//! The public methods live beside the SQL they run: `open.rs` (opening, pragmas, migrations),
//! `runs.rs` (run registry, meta), `inputs.rs`, `images.rs` (transitions) and `queries.rs`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{SecondsFormat, Utc};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::{Error, Result};

/// The ledger. Cheap to clone (clones share the pools).
///
/// Holds two pools on the same file: a single-connection pool for writes, so this process never
/// contends with itself for SQLite's one write lock, and a small pool for reads (WAL lets them
/// run beside the writer). Other processes are kept out by `begin immediate` write transactions
/// and the busy timeout.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub(crate) path: Arc<Path>,
    pub(crate) read: SqlitePool,
    pub(crate) write: SqlitePool,
    /// How far this handle's own transactions raised the `inputs_changes` tally (so a scan
    /// can tell its own changes from another run's; see `listings.rs`).
    pub(crate) own_input_changes: Arc<AtomicU64>,
}

impl Ledger {
    /// The ledger file this handle works on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection of this handle and its clones (they fail afterwards). When no
    /// other process has the file open, SQLite folds the write-ahead log back into the file.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Maps a sqlx error to a typed [`Error`] naming this ledger.
    pub(crate) fn db_err(&self, e: sqlx::Error) -> Error {
        Error::from_sqlx(&self.path, e)
    }

    /// Starts a write transaction that takes SQLite's write lock up front (`begin immediate`),
    /// so a transaction that reads before it writes cannot deadlock on a lock upgrade with
    /// another process; waits up to the busy timeout for the lock.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.write
            .begin_with("begin immediate")
            .await
            .map_err(|e| self.db_err(e))
    }

    /// Error for a row whose stored value does not decode.
    pub(crate) fn invalid(&self, detail: impl std::fmt::Display) -> Error {
        Error::invalid(&self.path, detail)
    }
}

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

/// A stored path back from its raw bytes.
pub(crate) fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

/// Counts and sizes are non-negative in the schema; a negative one decodes as 0.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Sizes larger than SQLite's integer saturate (no real file comes close).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The byte range `[low, high)` holding every path strictly inside `folder`: its paths start
/// with `folder/`, and `0` is the byte after `/`.
pub(crate) fn subtree_range(folder: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut low = path_bytes(folder).to_vec();
    if low.last() != Some(&b'/') {
        low.push(b'/');
    }
    let mut high = low.clone();
    if let Some(last) = high.last_mut() {
        *last = b'0';
    }
    (low, high)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::subtree_range;

    fn inside(folder: &str, path: &str) -> bool {
        let (low, high) = subtree_range(Path::new(folder));
        let p = path.as_bytes();
        low.as_slice() <= p && p < high.as_slice()
    }

    #[test]
    fn a_subtree_range_holds_the_folder_s_paths_and_not_its_siblings() {
        assert!(inside("/in", "/in/a.txt"));
        assert!(inside("/in", "/in/sub/b.txt"));
        assert!(!inside("/in", "/in"));
        assert!(!inside("/in", "/in2/a.txt"));
        assert!(!inside("/in", "/in.d/a.txt"));
        assert!(!inside("/in", "/in-old/a.txt"));
        assert!(!inside("/in", "/im/a.txt"));
        assert!(!inside("/in/sub", "/in/a.txt"));
    }

    #[test]
    fn the_root_folder_s_range_holds_every_absolute_path() {
        let (low, high) = subtree_range(Path::new("/"));
        assert_eq!((low.as_slice(), high.as_slice()), (&b"/"[..], &b"0"[..]));
        assert!(inside("/", "/x/y/z.webp"));
    }
}
