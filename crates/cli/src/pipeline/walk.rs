//! Finds the input files: named files, directories walked in parallel, or paths from stdin.
//!
//! Walker threads share a queue of directories; each lists one directory, notes which file
//! stems occur twice there (for the output-name rule), and sends its files on a bounded
//! channel, so memory stays flat however large the tree.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io::BufRead;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use eraser_store::{Listing, Root as LedgerRoot};
use tokio::sync::mpsc;

use super::InputSource;

/// Folder listings the ledger kept for this OUT, in the state the scan began in.
pub type KeptListings = Arc<HashMap<PathBuf, Listing>>;

/// A candidate input file, before its bytes are read.
#[derive(Debug, Clone)]
pub struct Found {
    /// Absolute path (through symlinked files, not resolved).
    pub path: PathBuf,
    /// Path relative to its INPUT folder (just the name for a named file).
    pub rel: PathBuf,
    /// Another file in the same folder has the same stem.
    pub stem_shared: bool,
    /// Named directly (on the command line or stdin) rather than found in a folder.
    pub named: bool,
    pub size: u64,
    pub mtime_ns: i64,
}

/// What the walk reports.
#[derive(Debug)]
pub enum WalkEvent {
    File(Found),
    /// Files of one folder, up to [`FILES_PER_EVENT`] at a time (one channel message, not one
    /// per file: a wake-up of the scan per file cost more than the file's own work).
    Files(Vec<Found>),
    /// Not an input (a broken link inside a folder, a special file); shown with `-v`.
    Skipped {
        path: PathBuf,
        reason: String,
    },
    /// A named input that cannot be used.
    Error {
        path: PathBuf,
        reason: String,
    },
    /// A folder's files, listed whole: the digest of their names, sizes and mtimes (see
    /// [`listing_digest`]). Sent before its files, or instead of them (`whole`) when the
    /// ledger kept the same listing for it. Not sent for a folder holding anything that is not
    /// an input (a special file, a broken link, an entry that could not be read).
    Listing {
        folder: PathBuf,
        listing: Listing,
        whole: bool,
    },
    /// A folder or file given as INPUT, sent before anything found under it: the run's inputs
    /// are the inputs under its roots.
    Root(LedgerRoot),
    /// The last event of a complete walk: every root was walked through.
    Walked,
}

/// Most files sent in one [`WalkEvent::Files`].
const FILES_PER_EVENT: usize = 256;
/// Events the walk may be ahead of the scan by (with full `Files` events, 16k files).
const EVENTS_BUFFERED: usize = 64;

/// Starts the walk on its own threads; events arrive on the returned channel, which closes
/// when the walk is complete.
pub fn start(
    source: InputSource,
    out: PathBuf,
    follow: bool,
    threads: usize,
    kept: KeptListings,
) -> mpsc::Receiver<WalkEvent> {
    let (tx, rx) = mpsc::channel(EVENTS_BUFFERED);
    std::thread::Builder::new()
        .name("eraser-walk".into())
        .spawn(move || {
            let out_id = dir_id(&out);
            let walker = Walker::new(tx.clone(), out_id, follow, kept);
            let workers = walker.spawn_workers(threads.max(1));
            match source {
                InputSource::Paths(paths) => {
                    for root in covering_roots(&paths, &tx) {
                        walker.add_root(root);
                    }
                }
                InputSource::Stdin { nul } => read_stdin(nul, &walker),
            }
            walker.finish_roots();
            if workers.is_empty() {
                walker.work();
            }
            let mut complete = true;
            for w in workers {
                complete &= w.join().is_ok();
            }
            if complete {
                let _ = tx.blocking_send(WalkEvent::Walked);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the walk thread: {e}"));
    rx
}

/// An INPUT, resolved.
enum Root {
    Dir { path: PathBuf },
    File { path: PathBuf, rel: PathBuf },
}

/// Resolves INPUTs to absolute paths and drops those inside another directory INPUT, so a
/// file given twice (directly and through its folder, or a folder twice) is processed once.
fn covering_roots(paths: &[PathBuf], tx: &mpsc::Sender<WalkEvent>) -> Vec<Root> {
    let mut resolved: Vec<(PathBuf, bool)> = Vec::new();
    for p in paths {
        match resolve(p) {
            Ok(r) => resolved.push(r),
            Err(reason) => {
                let _ = tx.blocking_send(WalkEvent::Error {
                    path: p.clone(),
                    reason,
                });
            }
        }
    }
    let dirs: Vec<PathBuf> = resolved
        .iter()
        .filter(|(_, d)| *d)
        .map(|(p, _)| p.clone())
        .collect();
    let mut seen = HashSet::new();
    let mut roots = Vec::new();
    for (path, is_dir) in &resolved {
        let covered = dirs.iter().any(|d| path != d && path.starts_with(d));
        if covered || !seen.insert(path.clone()) {
            tracing::info!("{} is already covered by another INPUT", path.display());
            continue;
        }
        if *is_dir {
            roots.push(Root::Dir { path: path.clone() });
        } else {
            let rel = PathBuf::from(path.file_name().unwrap_or_default());
            roots.push(Root::File {
                path: path.clone(),
                rel,
            });
        }
    }
    roots
}

/// Absolute path of an INPUT (its folder canonicalised, its own name kept) and whether it is a
/// directory (a symlink to a directory counts as one when named directly).
fn resolve(p: &Path) -> Result<(PathBuf, bool), String> {
    let meta = std::fs::metadata(p).map_err(|e| describe_io(p, &e))?;
    if meta.is_dir() {
        let abs = std::fs::canonicalize(p).map_err(|e| e.to_string())?;
        return Ok((abs, true));
    }
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    Ok((absolute_keep_name(p)?, false))
}

fn absolute_keep_name(p: &Path) -> Result<PathBuf, String> {
    let name = p.file_name().ok_or("no file name")?;
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = std::fs::canonicalize(&parent).map_err(|e| e.to_string())?;
    Ok(parent.join(name))
}

fn describe_io(p: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound && p.symlink_metadata().is_ok() {
        "broken symbolic link".into()
    } else if e.raw_os_error() == Some(libc::ELOOP) {
        "symbolic link loop".into()
    } else {
        e.to_string()
    }
}

fn read_stdin(nul: bool, walker: &Arc<Walker>) {
    let cwd = std::env::current_dir().unwrap_or_default();
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let sep = if nul { b'\0' } else { b'\n' };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lock.read_until(sep, &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::error!("reading paths from stdin: {e}");
                break;
            }
        }
        if buf.last() == Some(&sep) {
            buf.pop();
        }
        if !nul && buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.is_empty() {
            continue;
        }
        let p = PathBuf::from(OsString::from_vec(buf.clone()));
        match resolve(&p) {
            Ok((abs, true)) => walker.add_root(Root::Dir { path: abs }),
            Ok((abs, false)) => {
                // Relative paths under the current folder keep their folders in OUT.
                let rel = abs
                    .strip_prefix(&cwd)
                    .ok()
                    .filter(|_| p.is_relative())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(abs.file_name().unwrap_or_default()));
                walker.add_root(Root::File { path: abs, rel });
            }
            Err(reason) => walker.send(WalkEvent::Error { path: p, reason }),
        }
    }
}

/// A directory to list and its path relative to its INPUT folder.
struct DirJob {
    path: PathBuf,
    rel: PathBuf,
}

struct Queue {
    jobs: VecDeque<DirJob>,
    /// Jobs queued or being listed; the walk ends when it reaches 0 and no more roots come.
    pending: usize,
    roots_done: bool,
}

struct Walker {
    tx: mpsc::Sender<WalkEvent>,
    queue: Mutex<Queue>,
    wake: Condvar,
    out_id: Option<(u64, u64)>,
    follow: bool,
    /// Directories already listed, by (device, inode), when following links (loop guard).
    visited: Mutex<HashSet<(u64, u64)>>,
    kept: KeptListings,
}

impl Walker {
    fn new(
        tx: mpsc::Sender<WalkEvent>,
        out_id: Option<(u64, u64)>,
        follow: bool,
        kept: KeptListings,
    ) -> Arc<Self> {
        Arc::new(Self {
            tx,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                pending: 0,
                roots_done: false,
            }),
            wake: Condvar::new(),
            out_id,
            follow,
            visited: Mutex::new(HashSet::new()),
            kept,
        })
    }

    fn send(&self, ev: WalkEvent) {
        let _ = self.tx.blocking_send(ev);
    }

    fn add_root(self: &Arc<Self>, root: Root) {
        match root {
            Root::Dir { path } => {
                let id = dir_id(&path);
                if id.is_some_and(|id| Some(id) == self.out_id) {
                    return;
                }
                // A link back to a root (with --follow) must find it visited.
                if id.is_some_and(|id| !lock(&self.visited).insert(id)) {
                    return;
                }
                // Announced before its first file can be.
                self.send(WalkEvent::Root(LedgerRoot::Folder(path.clone())));
                self.push(DirJob {
                    path,
                    rel: PathBuf::new(),
                });
            }
            Root::File { path, rel } => match std::fs::metadata(&path) {
                Ok(meta) => {
                    self.send(WalkEvent::Root(LedgerRoot::File(path.clone())));
                    self.send(WalkEvent::File(Found {
                        path,
                        rel,
                        stem_shared: false,
                        named: true,
                        size: meta.len(),
                        mtime_ns: mtime_ns(&meta),
                    }));
                }
                Err(e) => self.send(WalkEvent::Error {
                    reason: describe_io(&path, &e),
                    path,
                }),
            },
        }
    }

    fn push(&self, job: DirJob) {
        let mut q = lock(&self.queue);
        q.pending += 1;
        q.jobs.push_back(job);
        self.wake.notify_one();
    }

    /// Starts `threads` threads that list directories until none are left.
    fn spawn_workers(self: &Arc<Self>, threads: usize) -> Vec<std::thread::JoinHandle<()>> {
        (0..threads)
            .filter_map(|i| {
                let w = Arc::clone(self);
                std::thread::Builder::new()
                    .name(format!("eraser-walk-{i}"))
                    .spawn(move || w.work())
                    .ok()
            })
            .collect()
    }

    /// No more roots will be added: workers stop once the queue drains.
    fn finish_roots(&self) {
        lock(&self.queue).roots_done = true;
        self.wake.notify_all();
    }

    fn work(&self) {
        loop {
            let job = {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        break Some(job);
                    }
                    if q.pending == 0 && q.roots_done {
                        break None;
                    }
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some(job) = job else {
                self.wake.notify_all();
                return;
            };
            self.list(job);
            let mut q = lock(&self.queue);
            q.pending -= 1;
            if q.pending == 0 {
                self.wake.notify_all();
            }
        }
    }

    fn list(&self, job: DirJob) {
        let entries = match std::fs::read_dir(&job.path) {
            Ok(e) => e,
            Err(e) => {
                self.send(WalkEvent::Error {
                    reason: format!("cannot list folder: {e}"),
                    path: job.path,
                });
                return;
            }
        };
        let mut files: Vec<(OsString, std::fs::Metadata)> = Vec::new();
        // Whether every entry was a folder or a file to use (a listing is kept only then).
        let mut clean = true;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    clean = false;
                    self.send(WalkEvent::Error {
                        reason: format!("cannot list folder: {e}"),
                        path: job.path.clone(),
                    });
                    continue;
                }
            };
            let path = entry.path();
            let Ok(ft) = entry.file_type() else {
                clean = false;
                continue;
            };
            let meta = if ft.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        clean = false;
                        let reason = describe_io(&path, &e);
                        self.send(WalkEvent::Skipped { path, reason });
                        continue;
                    }
                }
            } else {
                match entry.metadata() {
                    Ok(m) => m,
                    Err(e) => {
                        clean = false;
                        self.send(WalkEvent::Skipped {
                            reason: e.to_string(),
                            path,
                        });
                        continue;
                    }
                }
            };
            if meta.is_dir() {
                if ft.is_symlink() && !self.follow {
                    clean = false;
                    self.send(WalkEvent::Skipped {
                        path,
                        reason: "symbolic link to a folder (use --follow)".into(),
                    });
                    continue;
                }
                let id = (meta.dev(), meta.ino());
                if Some(id) == self.out_id {
                    continue;
                }
                if self.follow && !lock(&self.visited).insert(id) {
                    clean = false;
                    self.send(WalkEvent::Skipped {
                        path,
                        reason: "folder already visited (symbolic link loop)".into(),
                    });
                    continue;
                }
                let rel = job.rel.join(entry.file_name());
                self.push(DirJob { path, rel });
            } else if meta.is_file() {
                files.push((entry.file_name(), meta));
            } else {
                clean = false;
                self.send(WalkEvent::Skipped {
                    path,
                    reason: "not a regular file".into(),
                });
            }
        }
        if clean && !files.is_empty() {
            let listing = Listing {
                digest: listing_digest(&mut files),
                files: files.len() as u64,
            };
            let whole = self.kept.get(&job.path) == Some(&listing);
            self.send(WalkEvent::Listing {
                folder: job.path.clone(),
                listing,
                whole,
            });
            if whole {
                return;
            }
        }
        let mut stems: HashMap<&OsStr, u32> = HashMap::new();
        for (name, _) in &files {
            if let Some(stem) = Path::new(name).file_stem() {
                *stems.entry(stem).or_default() += 1;
            }
        }
        let mut batch = Vec::with_capacity(files.len().min(FILES_PER_EVENT));
        for (name, meta) in &files {
            let stem_shared = Path::new(name)
                .file_stem()
                .is_some_and(|s| stems.get(s).copied().unwrap_or(0) > 1);
            batch.push(Found {
                rel: job.rel.join(name),
                path: job.path.join(name),
                stem_shared,
                named: false,
                size: meta.len(),
                mtime_ns: mtime_ns(meta),
            });
            if batch.len() == FILES_PER_EVENT {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(FILES_PER_EVENT));
                self.send(WalkEvent::Files(full));
            }
        }
        if !batch.is_empty() {
            self.send(WalkEvent::Files(batch));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn dir_id(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// SHA-256 of a folder's files sorted by name: each name's bytes, a NUL (no name holds one),
/// its size and mtime in nanoseconds (8 bytes each, little-endian). Sorts `files` by name.
pub fn listing_digest(files: &mut [(OsString, std::fs::Metadata)]) -> [u8; 32] {
    use sha2::Digest as _;
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = sha2::Sha256::new();
    for (name, meta) in files.iter() {
        hasher.update(name.as_encoded_bytes());
        hasher.update([0]);
        hasher.update(meta.len().to_le_bytes());
        hasher.update(mtime_ns(meta).to_le_bytes());
    }
    hasher.finalize().into()
}

/// Modification time in nanoseconds since the epoch (what the ledger compares on rescans).
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::time::{Duration, SystemTime};

    use super::listing_digest;

    /// The files of `dir`, by name with their metadata, in the order given.
    fn listed(dir: &std::path::Path, names: &[&str]) -> Vec<(OsString, std::fs::Metadata)> {
        names
            .iter()
            .map(|n| (OsString::from(n), std::fs::metadata(dir.join(n)).unwrap()))
            .collect()
    }

    fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    #[test]
    fn a_listing_digest_does_not_depend_on_the_order_files_were_read_in() {
        let dir = folder(&[("a.jpg", b"1"), ("b.jpg", b"22")]);

        let one = listing_digest(&mut listed(dir.path(), &["a.jpg", "b.jpg"]));
        let other = listing_digest(&mut listed(dir.path(), &["b.jpg", "a.jpg"]));

        assert_eq!(one, other);
    }

    #[test]
    fn a_listing_digest_changes_with_a_name_a_size_or_an_mtime() {
        let dir = folder(&[("a.jpg", b"1"), ("b.jpg", b"22")]);
        let before = listing_digest(&mut listed(dir.path(), &["a.jpg", "b.jpg"]));

        std::fs::rename(dir.path().join("b.jpg"), dir.path().join("c.jpg")).unwrap();
        let renamed = listing_digest(&mut listed(dir.path(), &["a.jpg", "c.jpg"]));
        std::fs::write(dir.path().join("c.jpg"), b"333").unwrap();
        let resized = listing_digest(&mut listed(dir.path(), &["a.jpg", "c.jpg"]));
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("a.jpg"))
            .unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        let touched = listing_digest(&mut listed(dir.path(), &["a.jpg", "c.jpg"]));

        assert_ne!(before, renamed);
        assert_ne!(renamed, resized);
        assert_ne!(resized, touched);
    }
}
