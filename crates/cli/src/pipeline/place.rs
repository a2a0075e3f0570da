//! Putting results where they belong: the first input of an image gets the downloaded file,
//! every other input with the same bytes gets a copy (or a hard link with `--link`).
//!
//! Order of a placement, crash-safe: write the staging file beside the destination, fsync it,
//! record the output in the ledger, rename onto the destination, fsync the folder. A kill at any
//! point leaves either nothing at the destination, or a recorded file; a recorded file that is
//! missing is simply placed again by the next run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
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

/// Why an input did not get its output.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("{}: a file is already there that eraser did not write (use --overwrite to replace it)", .0.display())]
    Occupied(PathBuf),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The destination of an input: its recorded output, else its planned one.
pub fn destination(input: &InputRow) -> Option<PathBuf> {
    input
        .output_path
        .clone()
        .or_else(|| input.planned_output.clone())
}

/// Whether eraser may write `dest` for `input`: nothing there, or a file the ledger says is ours.
pub fn may_write(input: &InputRow, dest: &Path, overwrite: bool) -> Result<(), PlaceError> {
    if overwrite || input.output_path.as_deref() == Some(dest) {
        return Ok(());
    }
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(PlaceError::Occupied(dest.to_path_buf())),
    }
}

/// Downloads a finished job's result for `target`, records the image as done, then renames
/// it into place. Returns the final path and what was downloaded.
pub async fn download_first(
    client: &Client,
    ledger: &Ledger,
    sha: &Sha256,
    done: &JobDone,
    target: &Target,
) -> anyhow::Result<(PathBuf, eraser_api::Downloaded)> {
    let url = done
        .output_urls
        .first()
        .context("the service gave no output URL")?;
    let dest = &target.dest;
    ensure_parent(dest)?;
    let staging = layout::staging_path(dest);
    let got = client
        .download_staged(url, &staging)
        .await
        .with_context(|| {
            format!(
                "downloading the result for {} into {}",
                target.input.display(),
                target.dest.display()
            )
        })?;
    let dest = final_name(dest, got.format);
    let record = DoneRecord {
        output_url: url.clone(),
        output_path: dest.clone(),
        output_sha256: Some(Sha256(got.sha256)),
        output_size: got.bytes,
        credits_states: done.credits_states,
        need_credits: done.need_credits,
        p_credits: done.p_credits,
        s_credits: done.s_credits,
        raw_response: done.raw.clone(),
    };
    let result = async {
        match ledger.mark_done(sha, &record).await {
            Ok(()) => {}
            // Another run finished it first; our copy is still this input's output.
            Err(eraser_store::Error::IllegalTransition { from, .. }) if from == "done" => {}
            Err(e) => return Err(anyhow::Error::new(e).context("recording the finished job")),
        }
        record_and_commit(ledger, target, &staging, &dest).await
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result.map(|()| (dest, got))
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
    match ledger.mark_done(sha, &record).await {
        Ok(()) => Ok(()),
        Err(eraser_store::Error::IllegalTransition { from, .. }) if from == "done" => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("recording the finished job")),
    }
}

/// Places a copy of an existing result (checked against its recorded hash) for `target`.
/// Returns false when the source is missing or does not match (the caller downloads instead).
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
    let Some(staging) = staged else {
        return Ok(false);
    };
    record_and_commit(ledger, target, &staging, &target.dest)
        .await
        .map(|()| true)
}

/// Downloads `url` again for one input whose image is done (its stored copy is gone).
pub async fn download_again(
    client: &Client,
    ledger: &Ledger,
    url: &str,
    target: &Target,
) -> anyhow::Result<eraser_api::Downloaded> {
    ensure_parent(&target.dest)?;
    let staging = layout::staging_path(&target.dest);
    let got = client
        .download_staged(url, &staging)
        .await
        .with_context(|| {
            format!(
                "downloading the result again for {} into {}",
                target.input.display(),
                target.dest.display()
            )
        })?;
    record_and_commit(ledger, target, &staging, &target.dest)
        .await
        .map(|()| got)
}

/// True when the recorded output of `state` is on disk with the expected size.
pub fn in_place(state: &InputState, expected_size: Option<u64>) -> bool {
    let Some(out) = &state.input.output_path else {
        return false;
    };
    match std::fs::metadata(out) {
        Ok(m) => m.is_file() && expected_size.is_none_or(|s| s == m.len()),
        Err(_) => false,
    }
}

/// Copies (or links) `src` into a staging file beside `dest`, hashing on the way.
fn stage_copy(
    src: &Path,
    dest: &Path,
    expected: Option<Sha256>,
    link: bool,
) -> anyhow::Result<Option<PathBuf>> {
    ensure_parent(dest)?;
    let staging = layout::staging_path(dest);
    let _ = std::fs::remove_file(&staging);
    let mut input = match std::fs::File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", src.display())),
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = if link {
        None
    } else {
        Some(
            std::fs::File::create(&staging)
                .with_context(|| format!("creating {}", staging.display()))?,
        )
    };
    let copied = (|| -> anyhow::Result<()> {
        loop {
            let n = input
                .read(&mut buf)
                .with_context(|| format!("reading {}", src.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if let Some(out) = out.as_mut() {
                out.write_all(&buf[..n])
                    .with_context(|| format!("writing {}", staging.display()))?;
            }
        }
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    if expected.is_some_and(|e| e.0 != <[u8; 32]>::from(hasher.finalize())) {
        let _ = std::fs::remove_file(&staging);
        tracing::warn!(
            "{} no longer matches its recorded hash; fetching the result again",
            src.display()
        );
        return Ok(None);
    }
    match out {
        Some(out) => {
            out.sync_all()
                .with_context(|| format!("syncing {}", staging.display()))?;
        }
        None => {
            std::fs::hard_link(src, &staging)
                .with_context(|| format!("linking {} to {}", src.display(), staging.display()))?;
        }
    }
    Ok(Some(staging))
}

/// Records `dest` as the input's output, then renames the staged file onto it; on failure the
/// staged file is removed (a recorded output that is missing is simply placed again later).
async fn record_and_commit(
    ledger: &Ledger,
    target: &Target,
    staging: &Path,
    dest: &Path,
) -> anyhow::Result<()> {
    let result = async {
        ledger
            .set_input_output(target.run, &target.input, dest)
            .await
            .context("recording the output")?;
        // A rename and a folder fsync: blocking calls, kept off the async threads.
        let (staging, dest) = (staging.to_path_buf(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || commit(&staging, &dest))
            .await
            .context("placing task failed")?
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(staging);
    }
    result
}

/// Renames a staged file onto its destination and makes the rename durable.
fn commit(staging: &Path, dest: &Path) -> anyhow::Result<()> {
    std::fs::rename(staging, dest)
        .with_context(|| format!("moving the result into place at {}", dest.display()))?;
    if let Some(dir) = dest.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
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

/// Removes staging files left by dead runs under `out` (a kill can leave one per download in
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
            } else if let Some(pid) = layout::is_staging_name(&entry.file_name())
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
