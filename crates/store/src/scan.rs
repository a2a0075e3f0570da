//! A scan session: how a run tells the ledger what its walk found.
//!
//! A run's inputs are the present inputs under its roots (the folders and files it was given).
//! The session registers the roots, answers what the ledger holds of each found file
//! ([`Lookup`]), records what the scan hashed or needs recorded, and, once the walk has gone
//! through every root, marks the inputs it did not find as missing. It keeps the bookkeeping
//! that needs: the set of inputs found (a bit per input row) and whether every change to the
//! inputs since it began was its own, which decides whether folder listings may be kept.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{Ledger, Rejection, Result, RunId, Sha256};

/// A folder or a file a run was given: the run's inputs are the present inputs under its roots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Root {
    Folder(PathBuf),
    File(PathBuf),
}

impl Root {
    /// The byte range `[lo, hi)` holding the root's paths: a folder's paths start with
    /// `folder/` (and `0` is the byte after `/`); a file's range holds its path alone.
    pub(crate) fn range(&self) -> (Vec<u8>, Vec<u8>) {
        use std::os::unix::ffi::OsStrExt as _;
        match self {
            Root::Folder(folder) => {
                let mut lo = folder.as_os_str().as_bytes().to_vec();
                if lo.last() != Some(&b'/') {
                    lo.push(b'/');
                }
                let mut hi = lo.clone();
                if let Some(last) = hi.last_mut() {
                    *last = b'0';
                }
                (lo, hi)
            }
            Root::File(file) => {
                let lo = file.as_os_str().as_bytes().to_vec();
                let mut hi = lo.clone();
                hi.push(0);
                (lo, hi)
            }
        }
    }
}

/// A file the walk found, to record: hashed (`content` known), or known to the ledger with the
/// same size and mtime and only to be marked seen.
#[derive(Debug, Clone)]
pub struct FoundInput {
    /// Absolute, normalised path (non-UTF-8 bytes kept).
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    /// What the file holds, when the scan read it; `None` when the ledger already has it.
    pub content: Option<Content>,
    /// Where this input's result goes in the run's OUT, unless the ledger has a plan there
    /// already (an input keeps its output path).
    pub planned_output: PathBuf,
}

/// A file's bytes, as the scan read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    pub sha256: Sha256,
    pub format: &'static str,
}

/// What the ledger holds of a found file (path, size, mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Not recorded, or recorded with another size or mtime: to hash.
    Changed,
    /// Recorded with this size and mtime, but marked missing or not yet planned in the run's
    /// OUT: to record as seen ([`FoundInput`] without content).
    Unchanged,
    /// Recorded with this size and mtime, present and planned in the run's OUT: nothing to
    /// write (the session counts it as found).
    Current,
}

/// A folder's files as a walk listed them: the digest of their names, sizes and mtimes, and
/// how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub digest: [u8; 32],
    pub files: u64,
}

/// One write of the scan: roots to register, found inputs and files that are not inputs.
#[derive(Debug, Clone, Default)]
pub struct ScanBatch {
    pub roots: Vec<Root>,
    pub inputs: Vec<FoundInput>,
    pub rejected: Vec<Rejection>,
}

impl ScanBatch {
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty() && self.inputs.is_empty() && self.rejected.is_empty()
    }
}

/// A run's scan, shared by the tasks of the scan (cheap to clone).
#[derive(Debug, Clone)]
pub struct ScanSession {
    ledger: Ledger,
    run: RunId,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    found: FoundInputs,
    /// The version of the inputs as this session last made it, or `None` once an input
    /// changed that the session did not change (then no listing is kept).
    version: Option<i64>,
}

/// What a session write did to the version of the inputs: its value when the write began and
/// when it ended (both read inside the write's transaction).
#[derive(Debug, Clone, Copy)]
pub(crate) struct VersionStep {
    pub before: i64,
    pub after: i64,
}

impl ScanSession {
    pub(crate) fn new(ledger: Ledger, run: RunId, version: i64) -> Self {
        Self {
            ledger,
            run,
            state: Arc::new(Mutex::new(State {
                found: FoundInputs::default(),
                version: Some(version),
            })),
        }
    }

    pub fn run(&self) -> RunId {
        self.run
    }

    /// The listings kept for this run's OUT at the current version of the inputs; none when
    /// there are more than `limit` (a tree of that many folders is looked up file by file).
    pub async fn kept_listings(&self, limit: usize) -> Result<HashMap<PathBuf, Listing>> {
        let Some(version) = self.lock().version else {
            return Ok(HashMap::new());
        };
        self.ledger.kept_listings(self.run, version, limit).await
    }

    /// Whether the ledger holds any input under `folder` (present or missing): a first scan
    /// of a folder has nothing to look up.
    pub async fn holds_inputs_under(&self, folder: &Path) -> Result<bool> {
        self.ledger.holds_inputs_under(folder).await
    }

    /// What the ledger holds of each file (path, size, mtime in ns); the [`Lookup::Current`]
    /// ones count as found.
    pub async fn look_up(&self, files: &[(&Path, u64, i64)]) -> Result<Vec<Lookup>> {
        let answers = self.ledger.look_up_inputs(self.run, files).await?;
        let mut state = self.lock();
        Ok(answers
            .into_iter()
            .map(|(lookup, id)| {
                if let (Lookup::Current, Some(id)) = (lookup, id) {
                    state.found.insert(id);
                }
                lookup
            })
            .collect())
    }

    /// For each of `outputs` that some input already plans, that input (the first by path).
    pub async fn planned_output_owners(
        &self,
        outputs: &[PathBuf],
    ) -> Result<HashMap<PathBuf, PathBuf>> {
        self.ledger.planned_output_owners(outputs).await
    }

    /// Records a batch in one transaction; its inputs count as found.
    pub async fn record(&self, batch: &ScanBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (ids, step) = self.ledger.record_scan_batch(self.run, batch).await?;
        let mut state = self.lock();
        for id in ids {
            state.found.insert(id);
        }
        state.stepped(step);
        Ok(())
    }

    /// Every file of `folder` (`files` of them) was found as the kept listing says, without
    /// a lookup.
    pub fn found_folder(&self, folder: PathBuf, files: u64) {
        self.lock().found.insert_folder(folder, files);
    }

    /// The walk went through every root: the inputs under them that it did not find are marked
    /// missing (those recorded by another run since this walk began are left alone), the roots
    /// stamped as walked, and files found but not used that the walk no longer saw forgotten.
    /// Returns how many inputs were marked missing.
    pub async fn complete(&self) -> Result<u64> {
        let found = std::mem::take(&mut self.lock().found);
        let result = self.ledger.complete_walk(self.run, &found).await;
        let mut state = self.lock();
        // Kept for a retry: a failed completion marked nothing.
        state.found = found;
        let (missing, step) = result?;
        state.stepped(step);
        Ok(missing)
    }

    /// Keeps the listings of folders whose every file the scan found in the ledger as listed,
    /// or recorded so; nothing is kept when an input changed that this session did not change.
    /// Returns whether they were kept.
    pub async fn keep_listings(&self, listings: &[(PathBuf, Listing)]) -> Result<bool> {
        let Some(version) = self.lock().version else {
            return Ok(false);
        };
        if listings.is_empty() {
            return Ok(false);
        }
        self.ledger.keep_listings(self.run, version, listings).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Follows a write of this session: the version it began from must be the one this session
    /// left, or another writer changed inputs in between.
    fn stepped(&mut self, step: VersionStep) {
        self.version = match self.version {
            Some(v) if v == step.before => Some(step.after),
            _ => None,
        };
    }
}

/// The inputs a walk found: one bit per input row (125 KiB per million inputs), and the
/// folders found whole through their kept listings.
#[derive(Debug, Default)]
pub(crate) struct FoundInputs {
    bits: Vec<u64>,
    /// Ids too large for the bitmap (never in practice: row ids are handed out in order).
    others: HashSet<i64>,
    folders: HashSet<PathBuf>,
    len: u64,
}

impl FoundInputs {
    /// Largest id kept in the bitmap (16 MiB of bits).
    const BITMAP_IDS: i64 = 1 << 27;

    pub(crate) fn insert(&mut self, id: i64) {
        let added = match Self::slot(id) {
            Some((word, bit)) => {
                if self.bits.len() <= word {
                    self.bits.resize(word + 1, 0);
                }
                let fresh = self.bits[word] & bit == 0;
                self.bits[word] |= bit;
                fresh
            }
            None => self.others.insert(id),
        };
        self.len += u64::from(added);
    }

    fn insert_folder(&mut self, folder: PathBuf, files: u64) {
        if self.folders.insert(folder) {
            self.len += files;
        }
    }

    /// Whether the input with this row id at `path` was found, by its id or in a folder found
    /// whole.
    pub(crate) fn holds(&self, id: i64, path: &Path) -> bool {
        let by_id = match Self::slot(id) {
            Some((word, bit)) => self.bits.get(word).is_some_and(|w| w & bit != 0),
            None => self.others.contains(&id),
        };
        by_id || path.parent().is_some_and(|f| self.folders.contains(f))
    }

    /// How many distinct inputs were found.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn slot(id: i64) -> Option<(usize, u64)> {
        if !(0..Self::BITMAP_IDS).contains(&id) {
            return None;
        }
        let id = usize::try_from(id).ok()?;
        Some((id / 64, 1 << (id % 64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(root: &Root, path: &str) -> bool {
        let (lo, hi) = root.range();
        let p = path.as_bytes();
        lo.as_slice() <= p && p < hi.as_slice()
    }

    #[test]
    fn a_folder_root_holds_the_folder_s_paths_and_not_its_siblings() {
        let root = Root::Folder(PathBuf::from("/in"));
        assert!(inside(&root, "/in/a.txt"));
        assert!(inside(&root, "/in/sub/b.txt"));
        assert!(!inside(&root, "/in"));
        assert!(!inside(&root, "/in2/a.txt"));
        assert!(!inside(&root, "/in.d/a.txt"));
        assert!(!inside(&root, "/in-old/a.txt"));
        assert!(!inside(&root, "/im/a.txt"));
    }

    #[test]
    fn the_root_folder_holds_every_absolute_path() {
        let (lo, hi) = Root::Folder(PathBuf::from("/")).range();
        assert_eq!((lo.as_slice(), hi.as_slice()), (&b"/"[..], &b"0"[..]));
    }

    #[test]
    fn a_file_root_holds_its_path_alone() {
        let root = Root::File(PathBuf::from("/in/a.jpg"));
        assert!(inside(&root, "/in/a.jpg"));
        assert!(!inside(&root, "/in/a.jpg2"));
        assert!(!inside(&root, "/in/a.jpe"));
        assert!(!inside(&root, "/in/a.jpg/x"));
    }

    #[test]
    fn found_inputs_count_each_input_once_and_folders_by_their_files() {
        let mut found = FoundInputs::default();
        found.insert(3);
        found.insert(3);
        found.insert(FoundInputs::BITMAP_IDS + 5);
        found.insert_folder(PathBuf::from("/in/a"), 10);
        found.insert_folder(PathBuf::from("/in/a"), 10);
        assert_eq!(found.len(), 12);
        assert!(found.holds(3, Path::new("/in/b/x.jpg")));
        assert!(found.holds(FoundInputs::BITMAP_IDS + 5, Path::new("/in/b/y.jpg")));
        assert!(found.holds(99, Path::new("/in/a/z.jpg")));
        assert!(!found.holds(99, Path::new("/in/b/z.jpg")));
    }

    #[test]
    fn a_foreign_change_between_session_writes_stops_listings_from_being_kept() {
        let mut state = State {
            found: FoundInputs::default(),
            version: Some(10),
        };
        state.stepped(VersionStep {
            before: 10,
            after: 14,
        });
        assert_eq!(state.version, Some(14));
        state.stepped(VersionStep {
            before: 15,
            after: 16,
        });
        assert_eq!(state.version, None);
    }
}
