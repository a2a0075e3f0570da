//! What a file's bytes are: format sniffed from the magic bytes and SHA-256, read once.
//!
//! [`Pool`] hashes on a fixed set of threads (one per core), each with one large read buffer,
//! fed through a bounded queue; results come back one by one as files finish, so a slow file
//! holds up nothing but itself and memory does not grow with the number of files.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use eraser_api::ImageFormat;
use eraser_store::Sha256;
use sha2::Digest as _;
use tokio::sync::mpsc;

use super::walk::{self, Found};

/// One read: small enough to stay in the core's L2 cache between the kernel's copy and the
/// hashing (1 MiB reads were 4 % slower on 4 MiB files), large enough to make system calls rare.
const READ_BUF: usize = 64 << 10;

/// What hashing learned about a file.
pub(super) struct Fingerprint {
    pub(super) sha256: Sha256,
    pub(super) format: ImageFormat,
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
}

/// Why a file cannot be an input.
pub(super) enum FpError {
    /// Readable, but not JPEG, PNG or WEBP (skipped inside folders).
    NotImage(String),
    /// Cannot be read (an error in any case).
    Unreadable(String),
}

impl FpError {
    pub(super) fn reason(&self) -> &str {
        match self {
            Self::NotImage(r) | Self::Unreadable(r) => r,
        }
    }
}

/// A finished file and what hashing found.
pub(super) type Hashed = (Found, Result<Fingerprint, FpError>);

/// The hashing threads. Dropping the pool closes the queue: each thread finishes the file it
/// is reading and exits.
pub(super) struct Pool {
    jobs: mpsc::Sender<Found>,
    results: mpsc::UnboundedReceiver<Hashed>,
}

impl Pool {
    /// Starts `threads` hashing threads behind a queue of `queue` files.
    pub(super) fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (jobs, job_rx) = mpsc::channel::<Found>(queue.max(1));
        let job_rx = Arc::new(Mutex::new(job_rx));
        // Unbounded, yet never longer than the files handed in and not taken back, which
        // the caller bounds; a bounded one could deadlock a caller that is busy sending.
        let (done_tx, results) = mpsc::unbounded_channel();
        for i in 0..threads.max(1) {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("eraser-hash-{i}"))
                .spawn(move || {
                    let mut buf = vec![0; READ_BUF];
                    loop {
                        // One thread waits on the queue while the others wait for the lock.
                        let job = job_rx
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .blocking_recv();
                        let Some(found) = job else { break };
                        let result = fingerprint_with(&found.path, &mut buf);
                        if done_tx.send((found, result)).is_err() {
                            break;
                        }
                    }
                })?;
        }
        Ok(Self { jobs, results })
    }

    /// Queues a file (waits while the queue is full).
    pub(super) async fn send(&self, found: Found) {
        // The threads hold the receiver until the pool is dropped: sending cannot fail here.
        let _ = self.jobs.send(found).await;
    }

    /// The next finished file; waits for one. `None` only if every thread died.
    pub(super) async fn next(&mut self) -> Option<Hashed> {
        self.results.recv().await
    }
}

/// Sniffs and hashes one file with a buffer of its own (for the odd file outside the pool).
pub(super) fn fingerprint_file(path: &Path) -> Result<Fingerprint, FpError> {
    fingerprint_with(path, &mut vec![0; READ_BUF])
}

/// Sniffs and hashes one file; re-reads it if it changed while being read.
fn fingerprint_with(path: &Path, buf: &mut [u8]) -> Result<Fingerprint, FpError> {
    let unreadable = |what: &str, e: std::io::Error| FpError::Unreadable(format!("{what}: {e}"));
    for _ in 0..3 {
        let mut file = std::fs::File::open(path).map_err(|e| unreadable("cannot open", e))?;
        let before = file.metadata().map_err(|e| unreadable("cannot stat", e))?;
        let (sha256, format, size) = hash_stream(&mut file, buf)?;
        let after =
            std::fs::metadata(path).map_err(|e| unreadable("vanished while being read", e))?;
        if before.len() == after.len()
            && before.mtime_nsec() == after.mtime_nsec()
            && before.mtime() == after.mtime()
            && size == after.len()
        {
            return Ok(Fingerprint {
                sha256,
                format,
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
