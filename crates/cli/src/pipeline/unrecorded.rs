//! Job ids that arrived while the ledger could not be reached (its database restarting, the
//! network cut): each is kept in a local file the moment recording it first fails, and
//! dropped from it once recorded. Neither a kill during the outage nor a run that gives up
//! waiting loses one, which would mean uploading, and paying for, the image again: the next
//! run on the same ledger records them before anything else.
//!
//! One file per run and ledger, `<data dir>/eraser/unrecorded/<ledger key>-<run>.json`, the
//! key a hash of the ledger's location as shown (no password in it, nor in the file).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use eraser_store::{Ledger, RunId, Sha256};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A job id the ledger did not take when it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub sha256: String,
    pub job_id: String,
    /// The run whose claim the upload was made under (the ledger fences by it).
    pub run: i64,
    pub input: PathBuf,
}

/// This run's file of unrecorded job ids (cheap to clone).
#[derive(Debug, Clone)]
pub(super) struct Unrecorded {
    /// `None` when there is no data folder: job ids are then only logged.
    file: Option<PathBuf>,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Unrecorded {
    pub fn new(dir: Option<&Path>, ledger: &Ledger, run: RunId) -> Self {
        Self {
            file: dir.map(|d| d.join(format!("{}-{}.json", ledger_key(ledger), run.0))),
            entries: Arc::default(),
        }
    }

    /// Keeps `entry` on disk (synced) until [`Unrecorded::recorded`].
    pub async fn keep(&self, entry: Entry) {
        tracing::warn!(
            "job {} for {} cannot be recorded in the ledger yet; kept in {} until it can",
            entry.job_id,
            entry.input.display(),
            self.shown()
        );
        self.change(|entries| entries.push(entry)).await;
    }

    /// The job id for `sha` is in the ledger now.
    pub async fn recorded(&self, sha: &Sha256) {
        let key = sha.to_string();
        self.change(|entries| entries.retain(|e| e.sha256 != key))
            .await;
    }

    /// How many job ids wait to be recorded.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Where they are kept, for messages.
    pub fn shown(&self) -> String {
        self.file.as_ref().map_or_else(
            || "this run's log only (no data folder)".to_owned(),
            |f| f.display().to_string(),
        )
    }

    async fn change(&self, edit: impl FnOnce(&mut Vec<Entry>)) {
        let (file, entries) = {
            let mut entries = self.lock();
            edit(&mut entries);
            (self.file.clone(), entries.clone())
        };
        let Some(file) = file else { return };
        let written = tokio::task::spawn_blocking(move || save(&file, &entries)).await;
        if let Err(e) = written.map_err(anyhow::Error::new).and_then(|r| r) {
            tracing::error!("{e:#}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes the file through the atomic-file helper, or removes it once empty.
fn save(file: &Path, entries: &[Entry]) -> anyhow::Result<()> {
    if entries.is_empty() {
        return match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", file.display()))
            }
            _ => Ok(()),
        };
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(entries).context("encoding unrecorded job ids")?;
    eraser_api::atomic::write(file, &json)
        .with_context(|| format!("keeping unrecorded job ids in {}", file.display()))
}

/// Records the job ids earlier runs on this machine kept for `ledger`; returns how many were
/// taken over by other runs meanwhile (their uploads were repeats). Files that cannot be read
/// are left where they are, named in a warning.
pub(super) async fn record_kept(dir: Option<&Path>, ledger: &Ledger) -> anyhow::Result<u64> {
    let Some(dir) = dir else { return Ok(0) };
    let prefix = format!("{}-", ledger_key(ledger));
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut repeats = 0;
    for file in listing.flatten().map(|e| e.path()) {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with(&prefix) && name.ends_with(".json")) {
            continue;
        }
        // Renaming first: of two runs starting at once, one records the file.
        let taken = file.with_extension(format!("recording-{}", std::process::id()));
        if std::fs::rename(&file, &taken).is_err() {
            continue;
        }
        let entries: Vec<Entry> = match std::fs::read(&taken)
            .map_err(anyhow::Error::new)
            .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
        {
            Ok(entries) => entries,
            Err(e) => {
                let _ = std::fs::rename(&taken, &file);
                tracing::warn!("cannot read kept job ids in {}: {e}", file.display());
                continue;
            }
        };
        for entry in &entries {
            if let Err(e) = record_one(ledger, entry, &mut repeats).await {
                let _ = std::fs::rename(&taken, &file);
                return Err(e);
            }
        }
        std::fs::remove_file(&taken).with_context(|| format!("removing {}", taken.display()))?;
    }
    Ok(repeats)
}

async fn record_one(ledger: &Ledger, entry: &Entry, repeats: &mut u64) -> anyhow::Result<()> {
    let sha: Sha256 = entry
        .sha256
        .parse()
        .map_err(|e| anyhow::anyhow!("kept job {}: bad hash: {e}", entry.job_id))?;
    match ledger
        .mark_processing(RunId(entry.run), &sha, &entry.job_id)
        .await
    {
        Ok(()) => {
            tracing::info!(
                "recorded job {} for {}, kept while the ledger could not be reached",
                entry.job_id,
                entry.input.display()
            );
            Ok(())
        }
        Err(
            eraser_store::Error::ClaimLost { .. } | eraser_store::Error::IllegalTransition { .. },
        ) => {
            tracing::warn!(
                "job {} for {} was kept while the ledger could not be reached, but another \
                 run took the image over meanwhile: counted as a repeat upload",
                entry.job_id,
                entry.input.display()
            );
            *repeats += 1;
            ledger.note_repeat_uploads(&sha, 1).await.ok();
            Ok(())
        }
        Err(eraser_store::Error::UnknownImage { .. }) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "recording job {} for {}, kept while the ledger could not be reached",
            entry.job_id,
            entry.input.display()
        ))),
    }
}

/// Names the ledger in file names without naming its password: a hash of how it is shown.
fn ledger_key(ledger: &Ledger) -> String {
    let digest = sha2::Sha256::digest(ledger.location().to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use eraser_store::Location;

    use super::*;

    async fn ledger_in(dir: &Path) -> Ledger {
        Ledger::open(&Location::file(dir.join("ledger.db")))
            .await
            .unwrap()
    }

    fn entry(n: u8) -> Entry {
        Entry {
            sha256: Sha256([n; 32]).to_string(),
            job_id: format!("job-{n}"),
            run: 1,
            input: PathBuf::from(format!("/in/{n}.jpg")),
        }
    }

    fn kept(file: &Path) -> Vec<Entry> {
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_kept_job_id_stays_on_disk_until_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(dir.path()).await;
        let unrecorded = Unrecorded::new(Some(&dir.path().join("kept")), &ledger, RunId(1));
        let file = PathBuf::from(unrecorded.shown());

        unrecorded.keep(entry(1)).await;
        unrecorded.keep(entry(2)).await;
        assert_eq!(kept(&file), vec![entry(1), entry(2)]);

        unrecorded.recorded(&Sha256([1; 32])).await;
        assert_eq!(kept(&file), vec![entry(2)]);
        unrecorded.recorded(&Sha256([2; 32])).await;
        assert!(!file.exists(), "an empty file is removed");
        assert_eq!(unrecorded.count(), 0);
    }

    #[tokio::test]
    async fn the_file_is_named_without_the_ledgers_password() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(dir.path()).await;
        let unrecorded = Unrecorded::new(Some(dir.path()), &ledger, RunId(7));
        let name = PathBuf::from(unrecorded.shown());
        let name = name.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), "0123456789abcdef-7.json".len(), "{name}");
        assert!(name.ends_with("-7.json"));
    }

    #[tokio::test]
    async fn kept_job_ids_of_another_ledger_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let kept_dir = dir.path().join("kept");
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let ledger = ledger_in(dir.path()).await;
        let elsewhere = ledger_in(&other).await;
        Unrecorded::new(Some(&kept_dir), &elsewhere, RunId(1))
            .keep(entry(3))
            .await;

        assert_eq!(record_kept(Some(&kept_dir), &ledger).await.unwrap(), 0);
        assert_eq!(std::fs::read_dir(&kept_dir).unwrap().count(), 1);
    }
}
