//! A broken environment: OUT not creatable or not writable, the disk filling up while results
//! are written, a read-only, corrupt or locked ledger. Each ends with a clear message naming
//! what is wrong, the right exit code, no panic, and nothing already done lost.
//!
//! Tests run as root here, where permission bits stop no write: read-only and full file systems
//! are then made with tmpfs and bind mounts (undone when the test ends); as another user, mode
//! bits do the job. When neither works the test says so on stderr and checks nothing.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use eraser_tests::emulator::{Emulator, Knobs};

use crate::util::{
    Expected, FinishExt as _, Finished, Format, TestDir, assert_each_uploaded_once,
    assert_outputs_exactly, emulator, image, sha256_hex, temp_files_below, write_unique,
};

// --- mounts and modes -------------------------------------------------------------------------------

/// True when running as root, where mode bits do not stop writes.
fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A mount made by the test, lazily unmounted when dropped (declare it after the `TestDir`, so
/// it is dropped first).
struct Mount {
    at: PathBuf,
}

impl Mount {
    /// `mount -t tmpfs -o <options> tmpfs <at>`; `None` (with a note) when mounting is not
    /// allowed here.
    fn tmpfs(at: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).expect("create the mount point");
        Mount::run(&["-t", "tmpfs", "-o", options, "tmpfs"], at)
    }

    /// Binds `file` onto itself, then makes that bind read-only.
    fn read_only_bind(file: &Path) -> Option<Mount> {
        let mount = Mount::run(&["--bind", &file.to_string_lossy()], file)?;
        mount.remount("remount,bind,ro").then_some(mount)
    }

    /// `mount -o <options> <at>` on this mount; true when it worked.
    fn remount(&self, options: &str) -> bool {
        Command::new("mount")
            .args(["-o", options])
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn run(args: &[&str], at: &Path) -> Option<Mount> {
        let done = Command::new("mount").args(args).arg(at).output();
        match done {
            Ok(out) if out.status.success() => Some(Mount { at: at.to_owned() }),
            Ok(out) => {
                eprintln!(
                    "note: cannot mount here ({}); skipping the check",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("note: cannot run mount ({e}); skipping the check");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// How a path was made read-only; undone when dropped.
enum ReadOnly {
    Mounted(Mount),
    Mode(PathBuf, u32),
}

impl ReadOnly {
    /// Makes the existing `file` read-only: a read-only bind mount as root, mode 0444 else.
    fn file(file: &Path) -> Option<ReadOnly> {
        if is_root() {
            return Mount::read_only_bind(file).map(ReadOnly::Mounted);
        }
        ReadOnly::chmod(file, 0o444)
    }

    /// Makes the empty folder `dir` read-only: a read-only tmpfs on it as root, mode 0555 else.
    fn empty_dir(dir: &Path) -> Option<ReadOnly> {
        if is_root() {
            return Mount::tmpfs(dir, "ro,size=64k").map(ReadOnly::Mounted);
        }
        ReadOnly::chmod(dir, 0o555)
    }

    fn chmod(path: &Path, mode: u32) -> Option<ReadOnly> {
        let old = std::fs::metadata(path).ok()?.permissions().mode();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ok()?;
        Some(ReadOnly::Mode(path.to_owned(), old))
    }

    /// Makes it writable again (the tmpfs stays mounted, now read-write).
    fn undo(&self) {
        match self {
            ReadOnly::Mounted(mount) => assert!(mount.remount("remount,rw"), "remount rw"),
            ReadOnly::Mode(path, mode) => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                    .expect("restore the mode");
            }
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if let ReadOnly::Mode(path, mode) = self {
            let _ = std::fs::set_permissions(&*path, std::fs::Permissions::from_mode(*mode));
        }
    }
}

/// Fills the file system holding `dir` with a file `dir/filler` until it reports no space.
fn fill_up(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("create the filler");
    let chunk = [0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    filler
}

fn assert_no_panic(finished: &Finished) {
    assert!(
        !finished.stderr.contains("panicked"),
        "eraser panicked:\n{}",
        finished.stderr
    );
}

fn assert_stderr_contains(finished: &Finished, clue: &str) {
    assert!(
        finished.stderr.contains(clue),
        "stderr does not say {clue:?}:\n{}",
        finished.stderr
    );
}

/// A tree with `count` images right in `inputs/` (seeds from `seed`), so their results go
/// right into OUT.
fn tree(seed: u64, count: u64) -> (TestDir, Expected) {
    let td = TestDir::new();
    let mut expected = Expected::new();
    for i in 0..count {
        let format = Format::nth(seed + i);
        let bytes = image(format, seed + i);
        td.write(format!("inputs/e{i}.{}", format.ext()), &bytes);
        expected.insert(PathBuf::from(format!("e{i}.jpg")), sha256_hex(&bytes));
    }
    (td, expected)
}

// --- OUT ----------------------------------------------------------------------------------------------

#[test]
fn out_below_a_regular_file_is_refused_with_exit_2_before_any_upload() {
    let emu = emulator(Knobs::default());
    let (td, _expected) = tree(800, 2);
    let file = td.write("plain-file", b"OUT cannot live below me");
    let out = file.join("out");

    let finished = td.run(&emu, &[&td.inputs()], &out, &[]);

    assert_no_panic(&finished);
    assert_stderr_contains(&finished, &out.display().to_string());
    assert_eq!(emu.counters().create_job_requests, 0);
    finished.expect_code(2);
}

#[test]
fn out_that_is_not_writable_ends_the_run_with_a_message_naming_out() {
    let emu = emulator(Knobs::default());
    let (td, _expected) = tree(810, 2);
    let Some(_read_only) = ReadOnly::empty_dir(&td.out()) else {
        return;
    };

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    assert_no_panic(&finished);
    // 1 when each image fails on its own, 2 when OUT is refused up front: both are clear.
    assert!(
        matches!(finished.code, Some(1 | 2)),
        "exit code {:?}\n{}",
        finished.code,
        finished.stderr
    );
    assert_stderr_contains(&finished, &td.out().display().to_string());
}

/// Results the service made for an unwritable OUT are not lost: once OUT can be written, the
/// same command places them without paying for them again.
#[test]
fn once_out_is_writable_again_a_rerun_places_every_result_without_uploading_again() {
    let emu = emulator(Knobs::default());
    let (td, expected) = tree(820, 2);
    let Some(read_only) = ReadOnly::empty_dir(&td.out()) else {
        return;
    };
    td.run(&emu, &[&td.inputs()], &td.out(), &[]);
    read_only.undo();

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    finished.expect_code(0);
    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), expected.values());
}

// --- a full disk ----------------------------------------------------------------------------------

/// OUT on a 64 KiB tmpfs filled to the last byte, so writing any result fails with ENOSPC.
fn full_out(td: &TestDir) -> Option<(Mount, PathBuf)> {
    if !is_root() {
        eprintln!("note: not root, cannot mount a small tmpfs; skipping the disk-full check");
        return None;
    }
    let mount = Mount::tmpfs(&td.out(), "size=64k")?;
    let filler = fill_up(&td.out());
    Some((mount, filler))
}

#[test]
fn a_full_disk_while_writing_results_ends_with_a_clear_message_and_no_partial_file() {
    let emu = emulator(Knobs::default());
    let (td, _expected) = tree(830, 2);
    let Some((_mount, filler)) = full_out(&td) else {
        return;
    };

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    assert_no_panic(&finished);
    assert_stderr_contains(&finished, "No space left on device");
    let leftovers = temp_files_below(&td.out());
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    let in_out: Vec<_> = crate::util::files_below(&td.out())
        .into_iter()
        .filter(|p| td.out().join(p) != filler)
        .collect();
    assert!(in_out.is_empty(), "half-written outputs: {in_out:?}");
    finished.expect_code(1);
}

#[test]
fn after_a_full_disk_a_rerun_with_space_places_every_result_without_uploading_again() {
    let emu = emulator(Knobs::default());
    let (td, expected) = tree(840, 2);
    let Some((_mount, filler)) = full_out(&td) else {
        return;
    };
    td.run(&emu, &[&td.inputs()], &td.out(), &[]);
    std::fs::remove_file(&filler).expect("free the space");

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    finished.expect_code(0);
    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), expected.values());
}

// --- a file size limit (ulimit -f) ---------------------------------------------------------------

/// Results of 3 MiB, as large as real photos, where every other file eraser writes stays small.
const RESULT_PADDING: usize = 3 << 20;

/// `cmd` with its file size limit (`ulimit -f`) set to `bytes`: the kernel stops any write that
/// would make a file larger, and by default kills the writer with SIGXFSZ.
fn file_size_limit(mut cmd: Command, bytes: u64) -> Command {
    // SAFETY: between fork and exec only setrlimit(2), async-signal-safe, is called.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd
}

/// A run over `count` images (seeds from `seed`) whose 3 MiB results are past a 2 MiB file
/// size limit, with `extra` flags.
fn run_past_the_limit(
    seed: u64,
    count: u64,
    extra: &[&str],
) -> (Emulator, TestDir, Expected, Finished) {
    let emu = emulator(Knobs {
        output_padding: RESULT_PADDING,
        ..Knobs::default()
    });
    let (td, expected) = tree(seed, count);
    let cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), extra);
    let finished = file_size_limit(cmd, 2 << 20).finish();
    (emu, td, expected, finished)
}

#[test]
fn results_past_the_file_size_limit_fail_with_a_clear_message_not_a_killed_process() {
    let (_emu, td, _expected, finished) = run_past_the_limit(880, 2, &[]);

    assert_no_panic(&finished);
    assert_stderr_contains(&finished, "File too large");
    let leftovers = temp_files_below(&td.out());
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    assert!(
        crate::util::files_below(&td.out()).is_empty(),
        "half-written outputs"
    );
    finished.expect_code(1);
}

#[test]
fn a_result_that_cannot_be_written_is_reported_with_its_input_and_its_output_path() {
    let (_emu, td, expected, finished) = run_past_the_limit(885, 1, &[]);

    let output = expected.keys().next().expect("one image");
    assert_stderr_contains(&finished, &td.out().join(output).display().to_string());
    assert_stderr_contains(&finished, &td.inputs().display().to_string());
    finished.expect_code(1);
}

#[test]
fn after_results_past_the_file_size_limit_a_rerun_without_it_places_them_without_uploading_again() {
    let (emu, td, expected, finished) = run_past_the_limit(890, 2, &[]);
    finished.expect_code(1);

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    finished.expect_code(0);
    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), expected.values());
}

#[test]
fn results_that_keep_failing_to_be_written_stop_the_uploads_instead_of_paying_for_every_image() {
    let (emu, _td, _expected, finished) = run_past_the_limit(910, 12, &["-j", "2"]);

    assert_stderr_contains(&finished, "OUT cannot take results");
    let summary = finished.expect_code(1).json();
    assert_eq!(summary["end"], "out_unwritable");
    let uploads = emu.counters().create_jobs;
    assert!(uploads < 12, "{uploads} of 12 images uploaded");
}

#[test]
fn after_a_stop_for_an_unwritable_out_a_rerun_finishes_every_image_each_paid_once() {
    let (emu, td, expected, finished) = run_past_the_limit(930, 12, &["-j", "2"]);
    finished.expect_code(1);

    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), expected.values());
}

#[test]
fn a_file_size_limit_too_small_for_the_ledger_stops_with_exit_2_naming_the_ledger_and_the_limit() {
    let emu = emulator(Knobs::default());
    let (td, _expected) = tree(900, 2);
    let cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &[]);

    let finished = file_size_limit(cmd, 16 << 10).finish();

    assert_no_panic(&finished);
    assert_stderr_contains(&finished, &td.ledger().display().to_string());
    assert_stderr_contains(&finished, "ulimit -f");
    assert_eq!(emu.counters().create_job_requests, 0);
    finished.expect_code(2);
}

// --- the ledger -----------------------------------------------------------------------------------

/// A ledger made by a complete first run over 2 images, then a third image added.
fn ledger_with_one_new_image(seed: u64) -> (Emulator, TestDir) {
    let emu = emulator(Knobs::default());
    let (td, _expected) = tree(seed, 2);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);
    write_unique(&td, "more", seed + 10, 1, &mut Expected::new());
    emu.reset_counters();
    (emu, td)
}

#[test]
fn a_read_only_ledger_stops_the_run_with_exit_2_naming_it_and_uploads_nothing() {
    let (emu, td) = ledger_with_one_new_image(850);
    let before = std::fs::read(td.ledger()).expect("read the ledger");
    let Some(_read_only) = ReadOnly::file(&td.ledger()) else {
        return;
    };

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    assert_no_panic(&finished);
    assert_stderr_contains(&finished, &td.ledger().display().to_string());
    assert_stderr_contains(&finished, "read-only");
    assert_eq!(emu.counters().create_job_requests, 0);
    assert_eq!(std::fs::read(td.ledger()).expect("read the ledger"), before);
    finished.expect_code(2);
}

#[test]
fn ledger_status_still_reads_a_read_only_ledger() {
    let (emu, td) = ledger_with_one_new_image(860);
    let Some(_read_only) = ReadOnly::file(&td.ledger()) else {
        return;
    };

    let status = td.status(&emu);

    assert_eq!(crate::util::num(&status, "/images/done"), 2);
}

#[test]
fn a_corrupt_ledger_stops_the_run_with_exit_2_and_is_left_byte_for_byte_unchanged() {
    let emu = emulator(Knobs::default());
    let (td, _expected) = tree(870, 2);
    let mut rng = fastrand::Rng::with_seed(0xc0_2277);
    let garbage: Vec<u8> = (0..8192).map(|_| rng.u8(..)).collect();
    std::fs::write(td.ledger(), &garbage).expect("write the corrupt ledger");

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    assert_no_panic(&finished);
    assert_stderr_contains(&finished, &td.ledger().display().to_string());
    assert_stderr_contains(&finished, "corrupt");
    assert_eq!(emu.counters().create_job_requests, 0);
    assert_eq!(
        std::fs::read(td.ledger()).expect("read the ledger"),
        garbage
    );
    finished.expect_code(2);
}

/// `sqlite3` holding an exclusive lock on a ledger until dropped.
struct LockHolder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl LockHolder {
    /// Starts `sqlite3 <ledger>`, takes the lock and waits until it holds; `None` (with a note)
    /// without the `sqlite3` shell.
    fn lock(ledger: &Path) -> Option<LockHolder> {
        let spawned = Command::new("sqlite3")
            .arg(ledger)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                eprintln!("note: no sqlite3 shell ({e}); skipping the locked-ledger check");
                return None;
            }
        };
        let mut stdin = child.stdin.take().expect("piped stdin");
        // Exclusive locking mode makes the lock cover readers too, even in WAL mode.
        stdin
            .write_all(
                b"PRAGMA locking_mode=EXCLUSIVE;\nBEGIN EXCLUSIVE;\n\
                  SELECT count(*) FROM sqlite_master;\nSELECT 'locked';\n",
            )
            .expect("send the lock statements");
        stdin.flush().expect("flush the lock statements");
        let stdout = child.stdout.take().expect("piped stdout");
        let holds = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.trim() == "locked");
        let holder = LockHolder {
            child,
            stdin: Some(stdin),
        };
        assert!(holds, "sqlite3 did not take the lock");
        Some(holder)
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_ledger_locked_by_another_process_stops_the_run_with_exit_2_and_a_message_naming_it() {
    let (emu, td) = ledger_with_one_new_image(880);
    let Some(_lock) = LockHolder::lock(&td.ledger()) else {
        return;
    };

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    assert_no_panic(&finished);
    assert_stderr_contains(&finished, &td.ledger().display().to_string());
    assert_stderr_contains(&finished, "locked");
    assert!(
        !finished.stderr.contains("db.statement"),
        "SQL log noise buries the message:\n{}",
        finished.stderr
    );
    assert_eq!(emu.counters().create_job_requests, 0);
    finished.expect_code(2);
}
