//! Files in OUT: where an input's output goes, whether eraser may write there, whether it is in
//! place, and the two ways one is made (a download, a copy or hard link of an intact copy).
//!
//! Order of a placement, crash-safe: the file is staged beside its destination and synced
//! ([`eraser_api::atomic::AtomicFile`]), recorded in the ledger, renamed onto the destination,
//! the folder synced. A kill at any point leaves either nothing at the destination, or a
//! recorded file; a recorded file that is missing is simply placed again by the next run.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use eraser_api::atomic::{AtomicFile, temp_file_pid};
use eraser_api::{Client, ImageFormat, JobDone};
use eraser_store::{DoneRecord, InputRow, InputState, Ledger, RunId, Sha256};
use sha2::Digest as _;

use super::layout;

/// A place to put a result for one input.
#[derive(Debug)]
pub struct Target {
    /// The run whose OUT this is (outputs are recorded per OUT).
    pub run: RunId,
    pub input: PathBuf,
    pub dest: PathBuf,
}

/// A file is at an input's output path that eraser did not write.
#[derive(Debug, thiserror::Error)]
#[error("{}: a file is already there that eraser did not write (use --overwrite to replace it)", .0.display())]
pub struct Occupied(pub PathBuf);

/// A result downloaded into place.
pub struct Placed {
    pub path: PathBuf,
    pub got: eraser_api::Downloaded,
}

/// The destination of an input: its recorded output, else its planned one.
pub fn destination(input: &InputRow) -> Option<PathBuf> {
    input
        .output_path
        .clone()
        .or_else(|| input.planned_output.clone())
}

/// Whether eraser may write `dest` for `input`: nothing there, or a file the ledger says is ours.
pub fn may_write(input: &InputRow, dest: &Path, overwrite: bool) -> Result<(), Occupied> {
    if overwrite || input.output_path.as_deref() == Some(dest) {
        return Ok(());
    }
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(Occupied(dest.to_path_buf())),
    }
}

/// True when the recorded output of `input` is on disk with the expected size.
pub async fn in_place(input: &InputRow, expected_size: Option<u64>) -> bool {
    let Some(out) = &input.output_path else {
        return false;
    };
    tokio::fs::metadata(out)
        .await
        .is_ok_and(|m| m.is_file() && expected_size.is_none_or(|s| s == m.len()))
}

/// [`in_place`] for each of `states`, on one blocking task (a `stat` each).
pub async fn in_place_all(states: &[&InputState]) -> Vec<bool> {
    let wanted: Vec<(Option<PathBuf>, Option<u64>)> = states
        .iter()
        .map(|s| (s.input.output_path.clone(), s.image_output_size))
        .collect();
    tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .map(|(out, size)| {
                out.is_some_and(|out| {
                    std::fs::metadata(out)
                        .is_ok_and(|m| m.is_file() && size.is_none_or(|s| s == m.len()))
                })
            })
            .collect()
    })
    .await
    .unwrap_or_else(|_| vec![false; states.len()])
}

/// Downloads `url` for `target` and puts it in place under the extension of the format received.
/// `finished` (the image and its job's reply) records the image done first: a job that just
/// finished.
pub async fn download(
    client: &Client,
    ledger: &Ledger,
    url: &str,
    target: &Target,
    finished: Option<(Sha256, &JobDone)>,
) -> anyhow::Result<Placed> {
    ensure_parent(&target.dest)?;
    let (mut staged, got) = client
        .download_staged(url, &target.dest)
        .await
        .with_context(|| {
            format!(
                "downloading the result for {} into {}",
                target.input.display(),
                target.dest.display()
            )
        })?;
    let dest = final_name(&target.dest, got.format);
    staged.retarget(dest.clone());
    if let Some((sha, done)) = finished {
        let record = super::complete::done_record(done, url, dest.clone(), &got);
        mark_done(ledger, &sha, &record).await?;
    }
    record_and_commit(ledger, target, staged).await?;
    Ok(Placed { path: dest, got })
}

/// Records a finished job whose result no input could take (every target occupied).
pub async fn record_done_unplaced(
    ledger: &Ledger,
    sha: &Sha256,
    done: &JobDone,
) -> anyhow::Result<()> {
    let record = DoneRecord {
        output_url: done.output_urls.first().cloned().unwrap_or_default(),
        output_path: PathBuf::new(),
        output_sha256: None,
        output_size: 0,
        credits_states: done.credits_states,
        need_credits: done.need_credits,
        p_credits: done.p_credits,
        s_credits: done.s_credits,
        raw_response: done.raw.clone(),
    };
    mark_done(ledger, sha, &record).await
}

/// `processing` → `done`; another run that finished it first leaves its record standing.
async fn mark_done(ledger: &Ledger, sha: &Sha256, record: &DoneRecord) -> anyhow::Result<()> {
    match ledger.mark_done(sha, record).await {
        Ok(()) => Ok(()),
        Err(eraser_store::Error::IllegalTransition { from, .. }) if from == "done" => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("recording the finished job")),
    }
}

/// Places a copy (or hard link) of an existing result, checked against its recorded hash, for
/// `target`. Returns false when the source is missing or does not match (the caller downloads
/// instead).
pub async fn copy_from(
    ledger: &Ledger,
    source: &Path,
    expected: Option<Sha256>,
    target: &Target,
    link: bool,
) -> anyhow::Result<bool> {
    if source == target.dest {
        return Ok(false);
    }
    let dest = target.dest.clone();
    let src = source.to_path_buf();
    let staged = tokio::task::spawn_blocking(move || stage_copy(&src, &dest, expected, link))
        .await
        .context("copy task failed")?
        .with_context(|| {
            format!(
                "copying the result for {} into {}",
                target.input.display(),
                target.dest.display()
            )
        })?;
    let Some(staged) = staged else {
        return Ok(false);
    };
    record_and_commit(ledger, target, staged).await?;
    Ok(true)
}

/// Stages a copy (or hard link) of `src` beside `dest`, hashing it on the way; `None` when the
/// source is gone or does not match `expected`.
fn stage_copy(
    src: &Path,
    dest: &Path,
    expected: Option<Sha256>,
    link: bool,
) -> anyhow::Result<Option<AtomicFile>> {
    ensure_parent(dest)?;
    let mut input = match std::fs::File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", src.display())),
    };
    let mut staged = if link {
        AtomicFile::link(src, dest)
    } else {
        AtomicFile::create(dest)
    }
    .with_context(|| format!("staging a file beside {}", dest.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("reading {}", src.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(out) = staged.file() {
            std::io::Write::write_all(out, &buf[..n])
                .with_context(|| format!("writing {}", staged.temp_path().display()))?;
        }
    }
    if expected.is_some_and(|e| e.0 != <[u8; 32]>::from(hasher.finalize())) {
        tracing::warn!(
            "{} no longer matches its recorded hash; fetching the result again",
            src.display()
        );
        return Ok(None);
    }
    staged
        .sync()
        .with_context(|| format!("syncing {}", staged.temp_path().display()))?;
    Ok(Some(staged))
}

/// Records the staged file's destination as the input's output, then commits the file; on
/// failure nothing is left staged (a recorded output that is missing is placed again later).
async fn record_and_commit(
    ledger: &Ledger,
    target: &Target,
    staged: AtomicFile,
) -> anyhow::Result<()> {
    ledger
        .set_input_output(target.run, &target.input, staged.dest())
        .await
        .context("recording the output")?;
    let dest = staged.dest().to_path_buf();
    // A rename and a folder fsync: blocking calls, kept off the async threads.
    tokio::task::spawn_blocking(move || staged.commit())
        .await
        .context("placing task failed")?
        .with_context(|| format!("moving the result into place at {}", dest.display()))
}

fn ensure_parent(dest: &Path) -> anyhow::Result<()> {
    let Some(dir) = dest.parent() else {
        bail!("{} has no folder", dest.display())
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating the folder {}", dir.display()))
}

/// The destination with the extension of the format actually received.
fn final_name(dest: &Path, format: ImageFormat) -> PathBuf {
    let ext = dest.extension().and_then(|e| e.to_str()).unwrap_or("");
    let matches = ImageFormat::from_name(&ext.to_ascii_lowercase()) == Some(format);
    if matches {
        dest.to_path_buf()
    } else {
        layout::with_format_extension(dest, format.extension())
    }
}

/// Removes staged files left by dead runs under `out` (a kill can leave one per placement in
/// flight). Files of live processes are left alone.
pub fn sweep_staging(out: &Path) -> u64 {
    let mut removed = 0;
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                dirs.push(entry.path());
            } else if let Some(pid) = temp_file_pid(&entry.file_name())
                && !process_alive(pid)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
