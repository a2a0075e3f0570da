//! walk → fingerprint → record: turns INPUTs into ledger rows, in batches.
//!
//! Found files are looked up in the ledger a batch at a time: a file whose (path, size, mtime)
//! the ledger already holds keeps its recorded hash and is not read again; nothing at all is
//! written for it unless the ledger needs it (see `Lookup`), since the run's complete walk of
//! its folder makes it one of the run's inputs. The others go to the hashing [`Pool`] and are
//! taken back as they finish, their output names checked for collisions a batch at a time.
//! Everything is recorded in batched transactions; uploads start from recorded rows, so they
//! begin before the scan ends. Files in an INPUT folder the ledger holds nothing under (a
//! first scan) are not looked up at all.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eraser_store::{Content, FoundInput, Lookup, RejectKind, Rejection, ScanBatch, ScanSession};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::fingerprint::{Fingerprint, FpError, Hashed, Pool};
use super::layout;
use super::listings::{Listings, MOST_FOLDERS};
use super::walk::{self, Found, WalkEvent};
use crate::progress::Counters;

/// Inputs looked up in the ledger at once; also the most files handed to the hashing pool and
/// not yet taken back (so memory stays flat).
const LOOKUP_BATCH: usize = 1024;
/// Lookups under way at once on the read pool: while one batch is answered the next is
/// asked, so the ledger's answers keep both cores busy beside the walk.
const LOOKUPS_IN_FLIGHT: usize = 2;
/// Hashed files whose output names are checked for collisions in one query.
const RESOLVE_BATCH: usize = 256;
/// Rows written per ledger transaction.
const RECORD_BATCH: usize = 4096;
/// Longest a found input waits to be recorded (uploads start from recorded rows).
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How often a due part batch checks whether the previous batch is written.
const WRITER_POLL: Duration = Duration::from_millis(5);

/// What the scan needs.
pub struct Scan {
    /// The run's scan session: every lookup and write of the scan goes through it.
    pub session: ScanSession,
    pub out: PathBuf,
    pub source: super::InputSource,
    pub follow: bool,
    pub hash_threads: usize,
    pub max_upload_bytes: u64,
    pub counters: Arc<Counters>,
    /// Woken after each recorded batch, so uploads start before the scan ends.
    pub recorded: Arc<Notify>,
}

/// Found files with what the ledger holds of each.
type LookedUp = anyhow::Result<(Vec<Found>, Vec<Lookup>)>;

/// INPUT folders seen so far, and whether the ledger held no input under each when its first
/// file was found: every file of such a folder is new to the ledger (a wrong guess, from a run
/// recording there at the same time, only costs hashing a file again).
type FreshFolders = Arc<tokio::sync::Mutex<Vec<(Vec<u8>, bool)>>>;

/// A named input that could not be used, for the final report.
#[derive(Debug, Clone)]
pub struct InputError {
    pub path: PathBuf,
    pub reason: String,
}

/// What the scan holds between ledger writes.
#[derive(Default)]
struct Batches {
    /// Named inputs that could not be used (for the final report).
    errors: Vec<InputError>,
    /// What the next write records: roots, inputs (hashed, or seen unchanged), files not used.
    next: ScanBatch,
    /// Hashed inputs whose output name is not yet checked for collisions.
    hashed: Vec<(Found, Fingerprint)>,
    /// Output names given to `pending` (the ledger knows those of recorded rows).
    taken: HashSet<PathBuf>,
    /// Output names given to the batch being written (not yet visible in the ledger).
    taken_writing: HashSet<PathBuf>,
    /// The batch being written, on its own task so the scan goes on meanwhile (at most one:
    /// the ledger has one writer). Dropped with the scan, which aborts it (rolled back).
    writing: JoinSet<anyhow::Result<Duration>>,
    /// Time the finished batches spent in ledger writes (reported at the end of the scan).
    write_time: Duration,
    /// Files in the hashing pool.
    hashing: usize,
    /// The walk went through every root.
    walked: bool,
    /// Folders listed as the ledger's kept listings say (taken whole), and those to keep.
    listings: Listings,
}

impl Batches {
    fn to_record(&self) -> usize {
        self.next.roots.len() + self.next.inputs.len() + self.next.rejected.len()
    }
}

impl Scan {
    /// Runs the whole scan; returns the named inputs that failed.
    pub async fn run(self) -> anyhow::Result<Vec<InputError>> {
        let threads = if self.hash_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.hash_threads
        };
        // One walker per core: with the tree in the page cache a walk is CPU work, and more
        // walkers only take the cores from the ledger lookups (a rescan of 200,000 files on 2
        // cores: 0.83 s with 4 walkers, 0.75 s with 2).
        let kept = self.listings().await;
        let mut events = walk::start(
            self.source.clone(),
            self.out.clone(),
            self.follow,
            threads.max(2),
            kept,
        );
        let mut pool =
            Pool::start(threads, 2 * LOOKUP_BATCH).context("starting the hashing threads")?;
        let mut b = Batches::default();
        let mut found: Vec<Found> = Vec::with_capacity(LOOKUP_BATCH);
        let mut lookups: JoinSet<LookedUp> = JoinSet::new();
        let fresh = FreshFolders::default();
        let mut walking = true;
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        while walking || b.hashing > 0 || !found.is_empty() || !lookups.is_empty() {
            tokio::select! {
                biased;
                done = pool.next(), if b.hashing > 0 => {
                    let done = done.context("the hashing threads stopped")?;
                    b.hashing -= 1;
                    self.hashed(done, &mut b);
                }
                Some(looked) = lookups.join_next(), if !lookups.is_empty() => {
                    let looked = looked.context("a ledger lookup task failed")??;
                    self.looked_up(looked, &pool, &mut b).await?;
                }
                event = events.recv(),
                    if walking && found.len() < LOOKUP_BATCH && b.hashing < LOOKUP_BATCH =>
                match event {
                    None => walking = false,
                    Some(event) => {
                        self.take(event, &mut found, &mut b);
                        while found.len() < LOOKUP_BATCH {
                            match events.try_recv() {
                                Ok(event) => self.take(event, &mut found, &mut b),
                                Err(_) => break,
                            }
                        }
                    }
                },
                _ = tokio::time::sleep_until(next_flush.into()) => {}
            }
            if !found.is_empty() && lookups.len() < LOOKUPS_IN_FLIGHT {
                let batch = std::mem::replace(&mut found, Vec::with_capacity(LOOKUP_BATCH));
                self.look_up(batch, &fresh, &mut lookups);
            }
            let due = Instant::now() >= next_flush;
            let ending = !walking && b.hashing == 0 && found.is_empty() && lookups.is_empty();
            if b.hashed.len() >= RESOLVE_BATCH || (due || ending) && !b.hashed.is_empty() {
                self.resolve(&mut b).await?;
            }
            // A part batch waits while the previous one is still being written.
            if b.to_record() >= RECORD_BATCH || ending || due && Self::write_idle(&mut b)? {
                self.record(&mut b).await?;
                next_flush = Instant::now() + FLUSH_EVERY;
            } else if due {
                next_flush = Instant::now() + WRITER_POLL;
            }
        }
        Self::written(&mut b).await?;
        if b.walked {
            self.complete_walk().await?;
            self.keep_listings(&mut b).await;
        }
        tracing::info!(
            "scan: {} inputs recorded ({} hashed) in {:.3} s of ledger writes",
            Counters::get(&self.counters.recorded),
            Counters::get(&self.counters.hashed),
            b.write_time.as_secs_f64()
        );
        Ok(b.errors)
    }

    /// After a complete walk, the inputs under the run's roots that the walk did not find are
    /// marked missing, and files not used that it no longer saw are forgotten.
    async fn complete_walk(&self) -> anyhow::Result<()> {
        let missing = retry_busy(|| self.session.complete())
            .await
            .context("recording the complete walk in the ledger")?;
        if missing > 0 {
            tracing::info!("{missing} recorded inputs are no longer in the INPUT folders");
        }
        Ok(())
    }

    /// The folder listings kept for this OUT at the current version of the inputs; without
    /// them every file is looked up.
    async fn listings(&self) -> walk::KeptListings {
        match self.session.kept_listings(MOST_FOLDERS).await {
            Ok(kept) => Arc::new(kept),
            Err(e) => {
                tracing::debug!("no folder listings from the ledger ({e}); looking every file up");
                walk::KeptListings::default()
            }
        }
    }

    /// After a complete walk, keeps the listings of the folders whose every file is in the
    /// ledger as listed, for the next walk into this OUT (a failure only costs it lookups).
    async fn keep_listings(&self, b: &mut Batches) {
        tracing::debug!(
            "scan: {} folders listed as the ledger's kept listings said: their files were not looked up",
            b.listings.folders_whole
        );
        let keep = std::mem::take(&mut b.listings).into_kept();
        match self.session.keep_listings(&keep).await {
            Ok(true) => tracing::debug!("scan: {} folder listings kept", keep.len()),
            Ok(false) => tracing::debug!("scan: no folder listing kept (inputs changed meanwhile)"),
            Err(e) => tracing::debug!("scan: folder listings not kept: {e}"),
        }
    }

    fn take(&self, ev: WalkEvent, found: &mut Vec<Found>, b: &mut Batches) {
        match ev {
            WalkEvent::File(f) => {
                Counters::add(&self.counters.found, 1);
                found.push(f);
            }
            WalkEvent::Files(files) => {
                Counters::add(&self.counters.found, files.len() as u64);
                found.extend(files);
            }
            WalkEvent::Listing {
                folder,
                listing,
                whole,
            } => {
                if whole {
                    self.session.found_folder(folder.clone(), listing.files);
                }
                let taken = b.listings.listed(folder, listing, whole);
                Counters::add(&self.counters.found, taken);
                Counters::add(&self.counters.recorded, taken);
            }
            WalkEvent::Skipped { path, reason } => self.skipped(b, path, reason),
            WalkEvent::Error { path, reason } => self.input_error(b, path, reason),
            WalkEvent::Root(root) => b.next.roots.push(root),
            WalkEvent::Walked => b.walked = true,
        }
    }

    /// A found file that is not an input (expected inside folders: shown with `-v`).
    fn skipped(&self, b: &mut Batches, path: PathBuf, reason: String) {
        b.listings.spoiled(&path);
        Counters::add(&self.counters.skipped, 1);
        tracing::info!("skipped {}: {reason}", path.display());
        b.next.rejected.push(Rejection {
            path,
            kind: RejectKind::Skipped,
            reason,
        });
    }

    fn input_error(&self, b: &mut Batches, path: PathBuf, reason: String) {
        b.listings.spoiled(&path);
        Counters::add(&self.counters.input_errors, 1);
        tracing::error!("{}: {reason}", path.display());
        b.next.rejected.push(Rejection {
            path: path.clone(),
            kind: RejectKind::Error,
            reason: reason.clone(),
        });
        b.errors.push(InputError { path, reason });
    }

    /// Asks the ledger what it holds of `found`, on a task of its own; files of fresh folders
    /// are new without asking.
    fn look_up(&self, found: Vec<Found>, fresh: &FreshFolders, lookups: &mut JoinSet<LookedUp>) {
        let (session, fresh) = (self.session.clone(), Arc::clone(fresh));
        lookups.spawn(async move {
            let mut asked = Vec::with_capacity(found.len());
            {
                let mut folders = fresh.lock().await;
                for (i, f) in found.iter().enumerate() {
                    if f.named || !in_fresh_folder(&session, &mut folders, f).await? {
                        asked.push(i);
                    }
                }
            }
            let stamps: Vec<(&Path, u64, i64)> = asked
                .iter()
                .map(|&i| (found[i].path.as_path(), found[i].size, found[i].mtime_ns))
                .collect();
            let answers = session
                .look_up(&stamps)
                .await
                .context("looking up inputs in the ledger")?;
            let mut known = vec![Lookup::Changed; found.len()];
            for (i, answer) in asked.into_iter().zip(answers) {
                known[i] = answer;
            }
            Ok((found, known))
        });
    }

    /// Splits looked-up files into unchanged ones (not read again; recorded only when the
    /// ledger needs it) and the ones to hash (handed to the pool).
    async fn looked_up(
        &self,
        (found, known): (Vec<Found>, Vec<Lookup>),
        pool: &Pool,
        b: &mut Batches,
    ) -> anyhow::Result<()> {
        for (f, known) in found.into_iter().zip(known) {
            // A file named one by one is recorded as seen each time (its folder's walk does not
            // say it was seen).
            if known == Lookup::Current && !f.named {
                b.listings.settled(&f.path);
                Counters::add(&self.counters.recorded, 1);
            } else if known != Lookup::Changed {
                if let Some(planned) = self.planned(&f, b) {
                    b.listings.settled(&f.path);
                    b.next.inputs.push(FoundInput {
                        path: f.path,
                        size: f.size,
                        mtime_ns: f.mtime_ns,
                        content: None,
                        planned_output: planned,
                    });
                }
            } else if f.size > self.max_upload_bytes {
                let reason = format!(
                    "{} bytes, over the upload limit of {} bytes",
                    f.size, self.max_upload_bytes
                );
                self.input_error(b, f.path, reason);
            } else {
                b.hashing += 1;
                pool.send(f).await;
            }
        }
        Ok(())
    }

    /// The output path the layout rule gives `f` in OUT, or an input error.
    fn planned(&self, f: &Found, b: &mut Batches) -> Option<PathBuf> {
        let planned = layout::output_path(&self.out, &f.rel, f.stem_shared, "jpg");
        if planned.is_none() {
            self.input_error(
                b,
                f.path.clone(),
                "its path cannot be mirrored inside OUT".into(),
            );
        }
        planned
    }

    /// Takes back one file from the pool.
    fn hashed(&self, (found, result): Hashed, b: &mut Batches) {
        match result {
            Ok(fp) => {
                Counters::add(&self.counters.hashed, 1);
                b.hashed.push((found, fp));
            }
            Err(FpError::NotImage(reason)) if !found.named => self.skipped(b, found.path, reason),
            Err(FpError::NotImage(reason) | FpError::Unreadable(reason)) => {
                self.input_error(b, found.path, reason)
            }
        }
    }

    /// Gives each hashed input its output path: the planned one, or its hash-tagged variant
    /// when another input already owns it (in the ledger or earlier in this batch).
    async fn resolve(&self, b: &mut Batches) -> anyhow::Result<()> {
        let hashed = std::mem::take(&mut b.hashed);
        let mut planned = Vec::with_capacity(hashed.len());
        for (f, _) in &hashed {
            planned.push(self.planned(f, b));
        }
        let wanted: Vec<PathBuf> = planned.iter().flatten().cloned().collect();
        let owners = self
            .session
            .planned_output_owners(&wanted)
            .await
            .context("checking output names in the ledger")?;
        for ((f, fp), planned) in hashed.into_iter().zip(planned) {
            let Some(planned) = planned else { continue };
            let taken = match owners.get(&planned) {
                Some(owner) => *owner != f.path,
                None => b.taken.contains(&planned) || b.taken_writing.contains(&planned),
            };
            let chosen = if taken {
                let tag = &fp.sha256.to_string()[..8];
                layout::disambiguated_path(&self.out, &f.rel, f.stem_shared, tag, "jpg")
                    .unwrap_or(planned)
            } else {
                planned
            };
            b.taken.insert(chosen.clone());
            b.listings.settled(&f.path);
            b.next.inputs.push(FoundInput {
                path: f.path,
                size: fp.size,
                mtime_ns: fp.mtime_ns,
                content: Some(Content {
                    sha256: fp.sha256,
                    format: fp.format.as_str(),
                }),
                planned_output: chosen,
            });
        }
        Ok(())
    }

    /// Hands everything gathered so far to a writer task (one transaction), once the previous
    /// batch is written.
    async fn record(&self, b: &mut Batches) -> anyhow::Result<()> {
        Self::written(b).await?;
        if b.to_record() == 0 {
            return Ok(());
        }
        let batch = std::mem::take(&mut b.next);
        b.taken_writing = std::mem::take(&mut b.taken);
        let session = self.session.clone();
        let (counters, recorded) = (Arc::clone(&self.counters), Arc::clone(&self.recorded));
        b.writing.spawn(async move {
            let start = Instant::now();
            retry_busy(|| session.record(&batch))
                .await
                .context("recording inputs in the ledger")?;
            if !batch.inputs.is_empty() || !batch.roots.is_empty() {
                Counters::add(&counters.recorded, batch.inputs.len() as u64);
                recorded.notify_one();
            }
            Ok(start.elapsed())
        });
        Ok(())
    }

    /// Whether no batch is being written (reaping one that has finished).
    fn write_idle(b: &mut Batches) -> anyhow::Result<bool> {
        while let Some(done) = b.writing.try_join_next() {
            b.write_time += done.context("the ledger writer task failed")??;
        }
        if b.writing.is_empty() {
            b.taken_writing.clear();
        }
        Ok(b.writing.is_empty())
    }

    /// Waits for the batch being written, if any; its output names are then in the ledger.
    async fn written(b: &mut Batches) -> anyhow::Result<()> {
        while let Some(done) = b.writing.join_next().await {
            b.write_time += done.context("the ledger writer task failed")??;
        }
        b.taken_writing.clear();
        Ok(())
    }
}

/// Whether `f` (found in a folder) lies in an INPUT folder the ledger held nothing under when
/// the folder's first file was found; asks the ledger once per folder. `folders` holds each
/// folder's path bytes with a trailing `/`, so the usual answer is one prefix comparison (a
/// file under two nested INPUT folders may get the outer one's answer: when the outer folder
/// held nothing, neither did the inner one).
async fn in_fresh_folder(
    session: &ScanSession,
    folders: &mut Vec<(Vec<u8>, bool)>,
    f: &Found,
) -> anyhow::Result<bool> {
    let path = f.path.as_os_str().as_bytes();
    if let Some((_, fresh)) = folders
        .iter()
        .rev()
        .find(|(prefix, _)| path.starts_with(prefix))
    {
        return Ok(*fresh);
    }
    let Some(folder) = f.path.ancestors().nth(f.rel.components().count()) else {
        return Ok(false);
    };
    let fresh = !session
        .holds_inputs_under(folder)
        .await
        .with_context(|| format!("looking up {} in the ledger", folder.display()))?;
    let mut prefix = folder.as_os_str().as_bytes().to_vec();
    if prefix.last() != Some(&b'/') {
        prefix.push(b'/');
    }
    folders.push((prefix, fresh));
    Ok(fresh)
}

/// Runs a ledger write, retrying a few times while another process holds the lock.
async fn retry_busy<T, F, Fut>(mut write: F) -> Result<T, eraser_store::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, eraser_store::Error>>,
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
