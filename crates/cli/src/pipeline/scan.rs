//! walk → fingerprint → record: turns INPUTs into ledger rows, in batches.
//!
//! A file whose (path, size, mtime) the ledger already holds keeps its recorded hash and is not
//! read again; others are hashed on a blocking pool as wide as the cores.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use eraser_api::ImageFormat;
use eraser_store::{InputRecord, Ledger, RejectKind, Rejection, RunId, Sha256};
use sha2::Digest as _;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::layout;
use super::walk::{self, Found, WalkEvent};
use crate::progress::Counters;

/// Inputs looked up in the ledger at once.
const LOOKUP_BATCH: usize = 1024;
/// Rows written per ledger transaction.
const RECORD_BATCH: usize = 4096;
/// Longest a found input waits to be recorded (uploads start from recorded rows).
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// What the scan needs.
pub struct Scan {
    pub ledger: Ledger,
    pub run: RunId,
    pub out: PathBuf,
    pub source: super::InputSource,
    pub follow: bool,
    pub hash_threads: usize,
    pub max_upload_bytes: u64,
    pub counters: Arc<Counters>,
    /// Woken after each recorded batch, so uploads start before the scan ends.
    pub recorded: Arc<Notify>,
}

/// A named input that could not be used, for the final report.
#[derive(Debug, Clone)]
pub struct InputError {
    pub path: PathBuf,
    pub reason: String,
}

/// Files found but not usable: errors for the final report, and every rejection for the ledger.
#[derive(Default)]
struct Rejected {
    errors: Vec<InputError>,
    /// Not yet recorded in the ledger.
    pending: Vec<Rejection>,
}

impl Scan {
    /// Runs the whole scan; returns the named inputs that failed.
    pub async fn run(self) -> anyhow::Result<Vec<InputError>> {
        let threads = if self.hash_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.hash_threads
        };
        let mut events = walk::start(
            self.source.clone(),
            self.out.clone(),
            self.follow,
            threads.max(4),
        );
        let hashing = Arc::new(Semaphore::new(threads));
        let mut rejected = Rejected::default();
        let mut pending: Vec<InputRecord> = Vec::with_capacity(RECORD_BATCH);
        let mut batch: Vec<Found> = Vec::with_capacity(LOOKUP_BATCH);
        let mut last_flush = std::time::Instant::now();
        loop {
            batch.clear();
            let Some(first) = events.recv().await else {
                break;
            };
            self.take(first, &mut batch, &mut rejected);
            while batch.len() < LOOKUP_BATCH {
                match events.try_recv() {
                    Ok(ev) => self.take(ev, &mut batch, &mut rejected),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            self.fingerprint(&mut batch, &hashing, &mut pending, &mut rejected)
                .await?;
            if pending.len() + rejected.pending.len() >= RECORD_BATCH
                || last_flush.elapsed() >= FLUSH_EVERY
            {
                self.record(&mut pending, &mut rejected.pending).await?;
                last_flush = std::time::Instant::now();
            }
        }
        self.record(&mut pending, &mut rejected.pending).await?;
        Ok(rejected.errors)
    }

    fn take(&self, ev: WalkEvent, batch: &mut Vec<Found>, rejected: &mut Rejected) {
        match ev {
            WalkEvent::File(f) => {
                Counters::add(&self.counters.found, 1);
                batch.push(f);
            }
            WalkEvent::Skipped { path, reason } => self.skipped(rejected, path, reason),
            WalkEvent::Error { path, reason } => self.input_error(rejected, path, reason),
        }
    }

    /// A found file that is not an input (expected inside folders: shown with `-v`).
    fn skipped(&self, rejected: &mut Rejected, path: PathBuf, reason: String) {
        Counters::add(&self.counters.skipped, 1);
        tracing::info!("skipped {}: {reason}", path.display());
        rejected.pending.push(Rejection {
            path,
            kind: RejectKind::Skipped,
            reason,
        });
    }

    fn input_error(&self, rejected: &mut Rejected, path: PathBuf, reason: String) {
        Counters::add(&self.counters.input_errors, 1);
        tracing::error!("{}: {reason}", path.display());
        rejected.pending.push(Rejection {
            path: path.clone(),
            kind: RejectKind::Error,
            reason: reason.clone(),
        });
        rejected.errors.push(InputError { path, reason });
    }

    /// Reuses the ledger's hash for unchanged files, hashes the others, queues records.
    async fn fingerprint(
        &self,
        batch: &mut Vec<Found>,
        hashing: &Arc<Semaphore>,
        pending: &mut Vec<InputRecord>,
        rejected: &mut Rejected,
    ) -> anyhow::Result<()> {
        let paths: Vec<PathBuf> = batch.iter().map(|f| f.path.clone()).collect();
        let known = self
            .ledger
            .lookup_inputs(&paths)
            .await
            .context("looking up inputs in the ledger")?;
        let mut jobs: JoinSet<(Found, Result<Fingerprint, FpError>)> = JoinSet::new();
        let mut fresh = Vec::new();
        for (found, known) in batch.drain(..).zip(known) {
            match known {
                Some(k) if k.size == found.size && k.mtime_ns == found.mtime_ns => {
                    fresh.push((
                        found,
                        Fingerprint {
                            sha256: k.sha256,
                            format: None,
                            size: k.size,
                            mtime_ns: k.mtime_ns,
                        },
                        false,
                    ));
                }
                _ => {
                    if found.size > self.max_upload_bytes {
                        let reason = format!(
                            "{} bytes, over the upload limit of {} bytes",
                            found.size, self.max_upload_bytes
                        );
                        self.input_error(rejected, found.path, reason);
                        continue;
                    }
                    let permit = Arc::clone(hashing).acquire_owned().await?;
                    jobs.spawn_blocking(move || {
                        let r = fingerprint_file(&found.path);
                        drop(permit);
                        (found, r)
                    });
                }
            }
        }
        while let Some(done) = jobs.join_next().await {
            let (found, result) = done.context("hashing task failed")?;
            match result {
                Ok(fp) => {
                    Counters::add(&self.counters.hashed, 1);
                    fresh.push((found, fp, true));
                }
                Err(FpError::NotImage(reason)) if !found.named => {
                    self.skipped(rejected, found.path, reason)
                }
                Err(FpError::NotImage(reason) | FpError::Unreadable(reason)) => {
                    self.input_error(rejected, found.path, reason)
                }
            }
        }
        let mut taken_here: HashSet<PathBuf> = HashSet::new();
        for (found, fp, is_new_hash) in fresh {
            let Some(planned) =
                layout::output_path(&self.out, &found.rel, found.stem_shared, "jpg")
            else {
                self.input_error(
                    rejected,
                    found.path,
                    "its path cannot be mirrored inside OUT".into(),
                );
                continue;
            };
            let planned = if is_new_hash {
                self.free_output(&found, planned, &fp.sha256, &mut taken_here)
                    .await?
            } else {
                planned
            };
            pending.push(InputRecord {
                path: found.path,
                size: fp.size,
                mtime_ns: fp.mtime_ns,
                sha256: fp.sha256,
                format: fp.format.map(|f| f.as_str().to_owned()).unwrap_or_default(),
                planned_output: planned,
            });
        }
        Ok(())
    }

    /// The planned output, or its hash-tagged variant when another input already owns it.
    async fn free_output(
        &self,
        found: &Found,
        planned: PathBuf,
        sha: &Sha256,
        taken_here: &mut HashSet<PathBuf>,
    ) -> anyhow::Result<PathBuf> {
        let owner = self.ledger.planned_output_owner(&planned).await?;
        let taken = match owner {
            Some(owner) => owner != found.path,
            None => taken_here.contains(&planned),
        };
        let chosen = if taken {
            let tag = &sha.to_string()[..8];
            layout::disambiguated_path(&self.out, &found.rel, found.stem_shared, tag, "jpg")
                .unwrap_or(planned)
        } else {
            planned
        };
        taken_here.insert(chosen.clone());
        Ok(chosen)
    }

    async fn record(
        &self,
        pending: &mut Vec<InputRecord>,
        rejected: &mut Vec<Rejection>,
    ) -> anyhow::Result<()> {
        if !rejected.is_empty() {
            retry_busy(|| self.ledger.record_rejected(self.run, rejected))
                .await
                .context("recording rejected files in the ledger")?;
            rejected.clear();
        }
        if pending.is_empty() {
            return Ok(());
        }
        retry_busy(|| self.ledger.record_inputs(self.run, pending))
            .await
            .context("recording inputs in the ledger")?;
        Counters::add(&self.counters.recorded, pending.len() as u64);
        pending.clear();
        self.recorded.notify_one();
        Ok(())
    }
}

/// Runs a ledger write, retrying a few times while another process holds the lock.
async fn retry_busy<F, Fut>(mut write: F) -> Result<(), eraser_store::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), eraser_store::Error>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Err(e) if e.kind() == eraser_store::ErrorKind::Retry && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// What hashing learned about a file.
pub(super) struct Fingerprint {
    pub(super) sha256: Sha256,
    /// `None` when reused from the ledger (the image row has it).
    pub(super) format: Option<ImageFormat>,
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
}

impl FpError {
    pub(super) fn reason(&self) -> &str {
        match self {
            Self::NotImage(r) | Self::Unreadable(r) => r,
        }
    }
}

/// Why a file cannot be an input.
pub(super) enum FpError {
    /// Readable, but not JPEG, PNG or WEBP (skipped inside folders).
    NotImage(String),
    /// Cannot be read (an error in any case).
    Unreadable(String),
}
const READ_BUF: usize = 1 << 20;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

/// Sniffs and hashes one file; re-reads it if it changed while being read.
pub(super) fn fingerprint_file(path: &Path) -> Result<Fingerprint, FpError> {
    let unreadable = |what: &str, e: std::io::Error| FpError::Unreadable(format!("{what}: {e}"));
    for _ in 0..3 {
        let mut file = std::fs::File::open(path).map_err(|e| unreadable("cannot open", e))?;
        let before = file.metadata().map_err(|e| unreadable("cannot stat", e))?;
        let (sha256, format, size) = BUF.with_borrow_mut(|buf| hash_stream(&mut file, buf))?;
        let after =
            std::fs::metadata(path).map_err(|e| unreadable("vanished while being read", e))?;
        if before.len() == after.len()
            && before.mtime_nsec() == after.mtime_nsec()
            && before.mtime() == after.mtime()
            && size == after.len()
        {
            return Ok(Fingerprint {
                sha256,
                format: Some(format),
                size,
                mtime_ns: walk::mtime_ns(&after),
            });
        }
    }
    Err(FpError::Unreadable(
        "keeps changing while being read".into(),
    ))
}

fn hash_stream(
    file: &mut std::fs::File,
    buf: &mut [u8],
) -> Result<(Sha256, ImageFormat, u64), FpError> {
    let unreadable = |e: std::io::Error| FpError::Unreadable(format!("cannot read: {e}"));
    let mut hasher = sha2::Sha256::new();
    let mut total = 0u64;
    let mut head_len = 0;
    // Fill at least the first 12 bytes before sniffing (short reads are allowed).
    while head_len < 12 {
        let n = file.read(&mut buf[head_len..]).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        head_len += n;
    }
    let format = ImageFormat::detect(&buf[..head_len]).ok_or_else(|| {
        FpError::NotImage(if head_len == 0 {
            "empty file (0 bytes), not an image".to_owned()
        } else {
            "not an image (JPEG, PNG or WEBP expected)".to_owned()
        })
    })?;
    hasher.update(&buf[..head_len]);
    total += head_len as u64;
    loop {
        let n = file.read(buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Sha256(hasher.finalize().into()), format, total))
}
