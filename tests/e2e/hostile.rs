//! A hostile or broken service (`Knobs::hostile`): traversal and `file://` output URLs, redirects
//! to other schemes, jobs that never finish, huge, endless and slow-drip bodies, "done" without
//! a result, results that are not images, HTML error pages with 200. Every one must end the run
//! in bounded time with a clear message, without a panic, and without a byte written outside OUT:
//! where a result lands is derived from the input's path only, never from the server.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eraser_tests::emulator::{Emulator, Hostile, Knobs};

use crate::util::{
    Expected, Finished, Format, Running, TestDir, assert_outputs_exactly, emulator, files_below,
    image, sha256_hex, temp_files_below,
};

/// Longest a run against a hostile service may take; past it the run counts as hung.
const DEADLINE: Duration = Duration::from_secs(45);

// --- what "nothing written outside OUT" means -----------------------------------------------------

/// What a file system entry looks like: kind, size, mtime, and content hash or link target.
type Entry = (char, u64, i64, String);

/// Every entry below `root` except those for which `skip` is true, by path.
fn snapshot(root: &Path, skip: &dyn Fn(&Path) -> bool) -> BTreeMap<PathBuf, Entry> {
    fn walk(dir: &Path, skip: &dyn Fn(&Path) -> bool, found: &mut BTreeMap<PathBuf, Entry>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if skip(&path) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let (kind, content) = if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                ('l', target.to_string_lossy().into_owned())
            } else if meta.is_dir() {
                ('d', String::new())
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                ('f', sha256_hex(&bytes))
            };
            let mtime = meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec();
            found.insert(path.clone(), (kind, meta.len(), mtime, content));
            if kind == 'd' {
                walk(&path, skip, found);
            }
        }
    }
    let mut found = BTreeMap::new();
    walk(root, skip, &mut found);
    found
}

/// The places a server-chosen path could reach: the test tree outside OUT and the ledger,
/// a sibling folder of OUT, and the files the hostile URLs name.
struct Outside {
    tree: BTreeMap<PathBuf, Entry>,
    /// Candidate landing spots of a traversal, with whether each existed.
    spots: Vec<(PathBuf, bool)>,
    /// sha256 of /etc/passwd (empty when unreadable).
    passwd: String,
}

impl Outside {
    fn take(td: &TestDir) -> Outside {
        let out = td.out();
        let ledger = td.ledger();
        let skip = move |p: &Path| {
            p.starts_with(&out)
                || p.file_name()
                    .zip(ledger.file_name())
                    .is_some_and(|(n, l)| n.to_string_lossy().starts_with(&*l.to_string_lossy()))
        };
        let mut spots = Vec::new();
        for base in td.out().ancestors().skip(1) {
            for rel in ["etc/passwd.jpg", "passwd.jpg", "passwd", "x.jpg"] {
                let spot = base.join(rel);
                let existed = spot.symlink_metadata().is_ok();
                spots.push((spot, existed));
            }
        }
        Outside {
            tree: snapshot(td.root(), &skip),
            spots,
            passwd: sha256_hex(&std::fs::read("/etc/passwd").unwrap_or_default()),
        }
    }

    /// Asserts nothing changed since [`Outside::take`].
    fn assert_unchanged(&self, td: &TestDir) {
        let now = Outside::take(td);
        let changed: Vec<_> = self
            .tree
            .keys()
            .chain(now.tree.keys())
            .filter(|p| self.tree.get(*p) != now.tree.get(*p))
            .collect();
        assert!(changed.is_empty(), "written outside OUT: {changed:?}");
        let appeared: Vec<_> = self
            .spots
            .iter()
            .filter(|(spot, existed)| !existed && spot.symlink_metadata().is_ok())
            .map(|(spot, _)| spot)
            .collect();
        assert!(
            appeared.is_empty(),
            "files appeared outside OUT: {appeared:?}"
        );
        assert_eq!(self.passwd, now.passwd, "/etc/passwd changed");
    }
}

// --- one run against a hostile service ------------------------------------------------------------

/// Two images run against an emulator with one hostile behaviour.
struct HostileRun {
    emu: Emulator,
    td: TestDir,
    expected: Expected,
    finished: Finished,
}

impl HostileRun {
    /// Runs `eraser run inputs -o out --json <extra…>` against `hostile`, with a sibling folder
    /// beside OUT; asserts the invariants every hostile run keeps: it ends before [`DEADLINE`]
    /// with exit 0 or 1 (no signal, no panic), leaves no temp file in OUT and writes nothing
    /// outside OUT.
    fn run(hostile: Hostile, extra: &[&str]) -> HostileRun {
        let emu = emulator(Knobs {
            hostile: Some(hostile),
            ..Knobs::default()
        });
        let td = TestDir::new();
        td.write("sibling/keep.txt", b"a folder next to OUT");
        td.write("sibling/etc/passwd.jpg", b"not to be replaced");
        let mut expected = Expected::new();
        for (i, seed) in [61u64, 62].into_iter().enumerate() {
            let format = Format::nth(seed);
            let bytes = image(format, seed);
            td.write(format!("inputs/h{i}.{}", format.ext()), &bytes);
            expected.insert(PathBuf::from(format!("h{i}.jpg")), sha256_hex(&bytes));
        }
        let outside = Outside::take(&td);

        let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), extra);
        let finished = Running::start(&mut cmd).wait(DEADLINE);

        assert!(
            !finished.stderr.contains("panicked"),
            "eraser panicked against {hostile:?}:\n{}",
            finished.stderr
        );
        assert!(
            matches!(finished.code, Some(0 | 1)),
            "exit code {:?} against {hostile:?}\n--- stderr\n{}",
            finished.code,
            finished.stderr
        );
        let leftovers = temp_files_below(&td.out());
        assert!(
            leftovers.is_empty(),
            "temp files left in OUT: {leftovers:?}"
        );
        outside.assert_unchanged(&td);
        HostileRun {
            emu,
            td,
            expected,
            finished,
        }
    }

    /// Asserts exit 1, stderr containing `clue`, and no output in OUT.
    fn assert_failed_saying(self, clue: &str) -> HostileRun {
        assert_eq!(
            self.finished.code,
            Some(1),
            "expected exit 1\n--- stderr\n{}",
            self.finished.stderr
        );
        assert!(
            self.finished.stderr.contains(clue),
            "stderr does not say {clue:?}:\n{}",
            self.finished.stderr
        );
        let outputs = files_below(&self.td.out());
        assert!(outputs.is_empty(), "outputs written: {outputs:?}");
        self
    }

    /// `ledger list --status failed --json`: (sha256, retryable) of each failed image.
    fn failed(&self) -> BTreeMap<String, Option<bool>> {
        self.td
            .ledger_cmd(&self.emu, &["list", "--status", "failed", "--json"])
            .expect_code(0)
            .json_lines()
            .iter()
            .map(|image| {
                (
                    image["sha256"].as_str().unwrap_or_default().to_owned(),
                    image["retryable"].as_bool(),
                )
            })
            .collect()
    }

    /// Asserts every image is failed and retryable in the ledger.
    fn assert_all_failed_retryable(&self) {
        let wanted: BTreeMap<String, Option<bool>> = self
            .expected
            .values()
            .map(|sha| (sha.clone(), Some(true)))
            .collect();
        assert_eq!(self.failed(), wanted, "ledger list --status failed");
    }
}

// --- output URLs that point elsewhere -------------------------------------------------------------

#[test]
fn a_traversal_output_url_lands_each_result_at_its_input_derived_path_only() {
    let run = HostileRun::run(Hostile::TraversalOutputUrl, &[]);

    assert_eq!(run.finished.code, Some(0), "{}", run.finished.stderr);
    assert_outputs_exactly(&run.td.out(), &run.expected);
}

#[test]
fn an_encoded_traversal_output_url_lands_each_result_at_its_input_derived_path_only() {
    let run = HostileRun::run(Hostile::EncodedTraversalOutputUrl, &[]);

    assert_eq!(run.finished.code, Some(0), "{}", run.finished.stderr);
    assert_outputs_exactly(&run.td.out(), &run.expected);
}

#[test]
fn a_file_output_url_is_refused_and_the_run_exits_1() {
    HostileRun::run(Hostile::FileOutputUrl, &[]).assert_failed_saying("file:///etc/passwd");
}

#[test]
fn a_redirect_to_a_file_url_is_refused_and_the_run_exits_1() {
    HostileRun::run(Hostile::RedirectToFile, &[]).assert_failed_saying("file:///etc/passwd");
}

#[test]
fn a_redirect_to_another_scheme_is_refused_and_the_run_exits_1() {
    HostileRun::run(Hostile::RedirectToOtherScheme, &[]).assert_failed_saying("ftp://");
}

// --- jobs that never finish and bodies that never end ---------------------------------------------

#[test]
fn a_job_that_never_leaves_in_progress_fails_retryable_at_the_job_timeout() {
    let run = HostileRun::run(Hostile::NeverDone, &["--job-timeout", "2s"])
        .assert_failed_saying("job-timeout");

    run.assert_all_failed_retryable();
}

#[test]
fn a_50_mib_get_job_body_is_cut_at_the_bound_and_the_run_exits_1() {
    HostileRun::run(Hostile::HugeJson, &[]).assert_failed_saying("limit");
}

#[test]
fn an_endless_get_job_body_is_cut_at_the_bound_and_the_run_exits_1() {
    HostileRun::run(Hostile::EndlessBody, &[]).assert_failed_saying("limit");
}

/// One byte per second never completes an answer in time: the job timeout is a deadline for
/// the job whatever its polls do, so the run ends soon after it.
#[test]
fn a_slow_drip_get_job_ends_the_job_failed_retryable_at_the_job_timeout() {
    let run = HostileRun::run(Hostile::SlowDrip, &["--job-timeout", "3s"]);

    assert_eq!(run.finished.code, Some(1), "{}", run.finished.stderr);
    run.assert_all_failed_retryable();
}

// --- "done" without a usable result -----------------------------------------------------------------

#[test]
fn a_done_reply_with_an_empty_output_url_list_fails_the_images_and_exits_1() {
    HostileRun::run(Hostile::EmptyOutputUrl, &[]).assert_failed_saying("output_url");
}

#[test]
fn a_done_reply_without_output_url_fails_the_images_and_exits_1() {
    HostileRun::run(Hostile::MissingOutputUrl, &[]).assert_failed_saying("output_url");
}

#[test]
fn a_result_that_is_not_an_image_is_refused_and_the_run_exits_1() {
    HostileRun::run(Hostile::NotAnImageOutput, &[]).assert_failed_saying("not a JPEG");
}

#[test]
fn html_error_pages_with_status_200_fail_the_images_and_exit_1() {
    let run = HostileRun::run(Hostile::HtmlErrorPage200, &["--max-attempts", "1"])
        .assert_failed_saying("JSON");

    assert_eq!(
        run.emu.counters().create_jobs,
        0,
        "a job was created from an HTML page"
    );
}
