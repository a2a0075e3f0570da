//! `eraser ledger verify [--repair]`: the ledger file is sound, and every result and output it
//! records is still in place.

use std::fmt::Write as _;
use std::io::{self, Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use eraser_store::{ImageRow, ImageStatus, InputCounts, Ledger, Sha256};
use futures_util::StreamExt as _;
use sha2::Digest as _;

use super::{PAGE, STDOUT, counts_line};
use crate::commands::say;
use crate::exit::Status;

/// What is wrong with a file the ledger relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileProblem {
    NoPath,
    Missing,
    Unreadable(String),
    Mismatch { actual: Sha256 },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoPath => f.write_str("no stored result recorded"),
            Self::Missing => f.write_str("missing"),
            Self::Unreadable(e) => write!(f, "unreadable ({e})"),
            Self::Mismatch { actual } => write!(f, "content changed (sha256 {actual})"),
        }
    }
}

/// Checks that `path` exists and, when `expected` is known, holds exactly those bytes.
/// No path (or an empty one) is [`FileProblem::NoPath`].
fn check_file(path: Option<&Path>, expected: Option<Sha256>) -> Result<(), FileProblem> {
    let path = path
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or(FileProblem::NoPath)?;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FileProblem::Missing),
        Err(e) => return Err(FileProblem::Unreadable(e.to_string())),
    };
    let Some(expected) = expected else {
        return Ok(());
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FileProblem::Unreadable(e.to_string())),
        }
    }
    let actual = Sha256(hasher.finalize().into());
    if actual == expected {
        Ok(())
    } else {
        Err(FileProblem::Mismatch { actual })
    }
}

/// [`check_file`] on the blocking pool.
async fn check_file_async(
    path: Option<PathBuf>,
    expected: Option<Sha256>,
) -> Result<(), FileProblem> {
    tokio::task::spawn_blocking(move || check_file(path.as_deref(), expected))
        .await
        .unwrap_or_else(|e| Err(FileProblem::Unreadable(format!("check aborted: {e}"))))
}

/// Tally of a verify pass.
#[derive(Debug, Default)]
struct Tally {
    images: u64,
    /// Done images without a stored result (finished while every output path was taken).
    unstored: u64,
    outputs: u64,
    problems: u64,
    repaired: u64,
}

/// Like `restic check`: the ledger file is sound (integrity, references, counts); every done
/// image's stored result exists with its sha256; every recorded input output exists.
/// `--repair` clears what is broken so the next run makes it again (not the file's own damage).
pub(super) async fn verify(
    ledger: &Ledger,
    repair: bool,
    quiet: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let mut tally = Tally::default();
    // The file itself first: SQLite's integrity, references, the counts. Not repairable here.
    let consistency = ledger.check_consistency().await?;
    let mut file_problems: Vec<String> = consistency
        .integrity
        .iter()
        .filter(|l| *l != "ok")
        .map(|l| format!("integrity check: {l}"))
        .collect();
    if consistency.foreign_key_violations > 0 {
        let n = consistency.foreign_key_violations;
        file_problems.push(format!("{n} row(s) refer to rows that do not exist"));
    }
    if consistency.counts_table != consistency.recount {
        file_problems.push(format!(
            "the status counts ({}) differ from a recount ({})",
            counts_line(&consistency.counts_table),
            counts_line(&consistency.recount)
        ));
    }
    if consistency.credits_table != consistency.credits_recount {
        let (kept, recount) = (&consistency.credits_table, &consistency.credits_recount);
        file_problems.push(format!(
            "the credits kept (p {} s {} need {}) differ from a recount (p {} s {} need {})",
            kept.p_credits,
            kept.s_credits,
            kept.need_credits,
            recount.p_credits,
            recount.s_credits,
            recount.need_credits
        ));
    }
    if consistency.input_counts_table != consistency.input_recount {
        file_problems.push(format!(
            "the input tallies ({}) differ from a recount ({})",
            input_counts_line(&consistency.input_counts_table),
            input_counts_line(&consistency.input_recount)
        ));
    }
    for problem in file_problems {
        tally.problems += 1;
        writeln!(out, "ledger: {problem}").context(STDOUT)?;
    }
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());

    let mut after: Option<Sha256> = None;
    loop {
        let rows = ledger
            .list_images(Some(ImageStatus::Done), after.as_ref(), PAGE)
            .await?;
        let full = rows.len() == PAGE as usize;
        after = rows.last().map(|r| r.sha256);
        let checked: Vec<(ImageRow, Result<(), FileProblem>)> = futures_util::stream::iter(rows)
            .map(|row| async move {
                let result = check_file_async(row.output_path.clone(), row.output_sha256).await;
                (row, result)
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
        for (row, result) in checked {
            tally.images += 1;
            if matches!(result, Err(FileProblem::NoPath)) {
                // Finished but never stored (every output path was taken): nothing to verify.
                tally.unstored += 1;
                continue;
            }
            let Err(problem) = result else { continue };
            tally.problems += 1;
            let shown = row
                .output_path
                .as_deref()
                .map_or_else(|| "-".into(), |p| p.display().to_string());
            write!(
                out,
                "image {}: stored result {shown}: {problem}",
                row.sha256
            )
            .context(STDOUT)?;
            if repair {
                match repair_image(ledger, &row, &problem).await {
                    Ok(done) => {
                        tally.repaired += 1;
                        write!(out, "; repaired: {done}").context(STDOUT)?;
                    }
                    Err(e) => write!(out, "; repair failed: {}", crate::exit::one_line(&e))
                        .context(STDOUT)?,
                }
            }
            writeln!(out).context(STDOUT)?;
        }
        if !full {
            break;
        }
    }

    // Inputs: collected first, repaired after the cursor is closed (no writes under a reader).
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut inputs = ledger.export_inputs();
    while let Some(state) = inputs.next().await {
        let state = state?;
        let Some(output) = &state.input.output_path else {
            continue;
        };
        tally.outputs += 1;
        if !output.try_exists().unwrap_or(false) {
            tally.problems += 1;
            writeln!(
                out,
                "input {}: output {}: missing",
                state.input.path.display(),
                output.display()
            )
            .context(STDOUT)?;
            if repair {
                missing.push(state.input.path.clone());
            }
        }
    }
    drop(inputs);
    for path in missing {
        match ledger.clear_input_output(&path).await {
            Ok(()) => tally.repaired += 1,
            Err(e) => {
                writeln!(out, "input {}: repair failed: {e}", path.display()).context(STDOUT)?
            }
        }
    }
    out.flush().context(STDOUT)?;

    let remaining = tally.problems - tally.repaired;
    if !quiet {
        let mut line = format!(
            "verified {} done images and {} recorded outputs: {} problem(s)",
            tally.images - tally.unstored,
            tally.outputs,
            tally.problems
        );
        if tally.unstored > 0 {
            let _ = write!(
                line,
                " ({} done images have no stored result to check)",
                tally.unstored
            );
        }
        if repair && tally.repaired > 0 {
            let _ = write!(
                line,
                ", {} repaired; the next `eraser run` makes the outputs again",
                tally.repaired
            );
        }
        if !repair && remaining > 0 {
            line.push_str("; `eraser ledger verify --repair` clears them for the next run");
        }
        say(&line);
    }
    Ok(if remaining == 0 {
        Status::Done
    } else {
        Status::ProblemsFound
    })
}

/// Repairs a done image whose stored result is broken: restored from an intact copy (another
/// input's output with the same sha256) when there is one. Otherwise the broken file (eraser's
/// own) is removed and forgotten, so the next run downloads the result again from the service —
/// no new upload. Only an image whose result URL is unknown goes back to `new`.
async fn repair_image(
    ledger: &Ledger,
    row: &ImageRow,
    problem: &FileProblem,
) -> anyhow::Result<String> {
    let inputs = ledger.inputs_of_image(&row.sha256).await?;
    if let Some(stored) = &row.output_path {
        for input in &inputs {
            let Some(copy) = input.output_path.as_ref().filter(|c| *c != stored) else {
                continue;
            };
            if check_file_async(Some(copy.clone()), row.output_sha256)
                .await
                .is_ok()
            {
                restore(copy, stored).await?;
                return Ok(format!("restored from {}", copy.display()));
            }
        }
    }
    if *problem != FileProblem::Missing
        && let Some(stored) = &row.output_path
    {
        let _ = std::fs::remove_file(stored);
    }
    for input in &inputs {
        if input.output_path.is_some() && input.output_path == row.output_path {
            ledger.clear_input_output(&input.path).await?;
        }
    }
    if row.output_url.as_deref().is_some_and(|u| !u.is_empty()) {
        ledger.clear_image_output(&row.sha256).await?;
        return Ok(
            "no intact copy; the next run downloads the result again (no new upload)".into(),
        );
    }
    ledger.reset_done(&row.sha256).await?;
    Ok(
        "no intact copy and no result URL; the image is new again and the next run uploads it"
            .into(),
    )
}

/// Copies `from` to `to` through a temporary file in `to`'s folder and a rename.
async fn restore(from: &Path, to: &Path) -> anyhow::Result<()> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let dir = to.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let copied = (|| {
            let mut staged = eraser_api::atomic::AtomicFile::create(&to)?;
            let mut source = std::fs::File::open(&from)?;
            if let Some(file) = staged.file() {
                std::io::copy(&mut source, file)?;
            }
            staged.commit()
        })();
        copied.with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
    })
    .await
    .context("the copy was aborted")?
}

fn input_counts_line(i: &InputCounts) -> String {
    format!(
        "{} inputs: {} done, {} failed; {} skipped, {} rejected",
        i.total, i.done, i.failed, i.skipped, i.rejected
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::ledger::fixture::{Fixture, sha_of};

    impl Fixture {
        async fn verify(&self, repair: bool) -> (Status, String) {
            let mut out = Vec::new();
            let status = verify(&self.ledger, repair, true, &mut out)
                .await
                .expect("verify runs");
            (status, String::from_utf8(out).expect("utf-8"))
        }
    }

    #[test]
    fn intact_file_passes_the_check() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jpg");
        std::fs::write(&path, b"result bytes").expect("write");
        assert_eq!(
            check_file(Some(&path), Some(sha_of(b"result bytes"))),
            Ok(())
        );
    }

    #[test]
    fn changed_file_is_a_mismatch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jpg");
        std::fs::write(&path, b"other bytes").expect("write");
        assert_eq!(
            check_file(Some(&path), Some(sha_of(b"result bytes"))),
            Err(FileProblem::Mismatch {
                actual: sha_of(b"other bytes")
            })
        );
    }

    #[test]
    fn missing_file_and_missing_path_are_problems() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            check_file(Some(&dir.path().join("gone")), None),
            Err(FileProblem::Missing)
        );
        assert_eq!(check_file(None, None), Err(FileProblem::NoPath));
        assert_eq!(
            check_file(Some(Path::new("")), None),
            Err(FileProblem::NoPath)
        );
    }

    #[tokio::test]
    async fn restore_copies_through_a_temp_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let from = dir.path().join("copy.jpg");
        let to = dir.path().join("store/sub/result.jpg");
        std::fs::write(&from, b"intact").expect("write");
        restore(&from, &to).await.expect("restore");
        assert_eq!(std::fs::read(&to).expect("read"), b"intact");
        let left: Vec<_> = std::fs::read_dir(to.parent().expect("parent"))
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["result.jpg"], "nothing but the result is left");
    }

    #[tokio::test]
    async fn verify_passes_when_every_output_is_in_place() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a", "b"], b"image a").await;
        fx.finish_all(&[(sha, &["a", "b"])], b"result a").await;
        assert_eq!(fx.verify(false).await, (Status::Done, String::new()));
    }

    #[tokio::test]
    async fn verify_reports_a_missing_result_and_changes_nothing() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.finish_all(&[(sha, &["a"])], b"result a").await;
        std::fs::remove_file(fx.path("out/a.jpg")).expect("rm");
        let (status, text) = fx.verify(false).await;
        assert_eq!(status, Status::ProblemsFound);
        assert!(text.contains("missing"), "{text}");
        assert_eq!(fx.ledger.status_counts().await.expect("counts").done, 1);
    }

    #[tokio::test]
    async fn verify_reports_a_changed_result() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.finish_all(&[(sha, &["a"])], b"result a").await;
        std::fs::write(fx.path("out/a.jpg"), b"edited").expect("edit");
        let (status, text) = fx.verify(false).await;
        assert_eq!(status, Status::ProblemsFound);
        assert!(text.contains("content changed"), "{text}");
    }

    #[tokio::test]
    async fn repair_without_a_copy_keeps_the_image_done_for_a_download_and_clears_its_output() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.finish_all(&[(sha, &["a"])], b"result a").await;
        std::fs::remove_file(fx.path("out/a.jpg")).expect("rm");
        let (status, text) = fx.verify(true).await;
        assert_eq!(status, Status::Done, "{text}");
        let counts = fx.ledger.status_counts().await.expect("counts");
        assert_eq!((counts.new, counts.done), (0, 1), "no new upload is needed");
        let image = fx.ledger.image(&sha).await.expect("query").expect("image");
        assert_eq!(image.output_path, None);
        assert!(image.output_url.is_some());
        let input = fx.ledger.input(&fx.path("in/a.png")).await.expect("query");
        assert_eq!(input.and_then(|i| i.output_path), None);
        assert_eq!(fx.verify(false).await.0, Status::Done);
    }

    #[tokio::test]
    async fn repair_restores_the_stored_result_from_an_intact_copy() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a", "b"], b"image a").await;
        fx.finish_all(&[(sha, &["a", "b"])], b"result a").await;
        std::fs::remove_file(fx.path("out/a.jpg")).expect("rm");
        let (status, text) = fx.verify(true).await;
        assert_eq!(status, Status::Done, "{text}");
        assert!(text.contains("restored from"), "{text}");
        assert_eq!(
            std::fs::read(fx.path("out/a.jpg")).expect("restored"),
            b"result a"
        );
        assert_eq!(fx.ledger.status_counts().await.expect("counts").done, 1);
    }

    #[tokio::test]
    async fn repair_clears_a_missing_duplicate_output_only() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a", "b"], b"image a").await;
        fx.finish_all(&[(sha, &["a", "b"])], b"result a").await;
        std::fs::remove_file(fx.path("out/b.jpg")).expect("rm");
        let (status, text) = fx.verify(true).await;
        assert_eq!(status, Status::Done, "{text}");
        let b = fx.ledger.input(&fx.path("in/b.png")).await.expect("query");
        assert_eq!(b.and_then(|i| i.output_path), None);
        let a = fx.ledger.input(&fx.path("in/a.png")).await.expect("query");
        assert_eq!(a.and_then(|i| i.output_path), Some(fx.path("out/a.jpg")));
        assert_eq!(fx.ledger.status_counts().await.expect("counts").done, 1);
    }
}
