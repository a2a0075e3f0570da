//! Bad input from the disk: empty files, text or noise named like images, cut JPEGs, files over
//! the size limit, broken links and link loops, inputs given twice, OUT inside INPUT, odd names,
//! files that vanish or change between the scan and the upload. Whatever comes in, the run ends
//! with a clear verdict, nothing that is not an image reaches the service, and nothing is ever
//! uploaded under a hash its bytes do not have.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::util::{
    Expected, Finished, Format, PROCESS_TIMEOUT, Running, TestDir, assert_each_uploaded_once,
    assert_outputs_exactly, emulator, files_below, image, num, sha256_hex, wait_for,
};

// --- fixtures -------------------------------------------------------------------------------------

/// Bytes that are no image, each named like one.
fn zero_bytes() -> Vec<u8> {
    Vec::new()
}

fn text_bytes() -> Vec<u8> {
    b"Dear diary,\nthis is plain text in a file called .jpg.\n".to_vec()
}

/// 4 KiB of seeded noise whose first byte (0x00) starts no image format.
fn random_bytes() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(0xbad_b17e5);
    let mut bytes: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
    bytes[0] = 0;
    bytes
}

/// A real JPEG cut in the middle: its magic bytes say JPEG, its data is incomplete.
fn truncated_jpeg() -> Vec<u8> {
    let mut jpeg = image(Format::Jpeg, 4242);
    jpeg.truncate(jpeg.len() / 2);
    jpeg
}

/// Writes `inputs/<rel>` holding a distinct image and expects `<out_rel>` made from it.
fn good_image(td: &TestDir, expected: &mut Expected, rel: &str, seed: u64, out_rel: &str) {
    let bytes = image(Format::nth(seed), seed);
    td.write(Path::new("inputs").join(rel), &bytes);
    expected.insert(PathBuf::from(out_rel), sha256_hex(&bytes));
}

/// Asserts no create-job the emulator read carried `bytes`.
fn assert_never_uploaded(emu: &Emulator, bytes: &[u8], what: &str) {
    let sha = sha256_hex(bytes);
    let uploads = emu.uploads();
    assert!(
        uploads.iter().all(|u| u.sha256 != sha),
        "{what} reached the service: {} upload(s) of it",
        uploads.iter().filter(|u| u.sha256 == sha).count()
    );
}

/// Asserts stderr names `path` (by its file name, which is what any clear message carries).
fn assert_stderr_names(finished: &Finished, path: &Path) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        finished.stderr.contains(&name),
        "stderr does not name {name}:\n{}",
        finished.stderr
    );
}

/// Asserts `ledger list --rejected` holds `path` as `kind` with a reason, and `ledger show`
/// tells the same of it.
fn assert_ledger_rejects(td: &TestDir, emu: &Emulator, path: &Path, kind: &str) {
    let rows = td
        .ledger_cmd(emu, &["list", "--rejected", "--json"])
        .expect_code(0)
        .json_lines();
    let wanted = path.to_string_lossy();
    let row = rows
        .iter()
        .find(|r| r["path"].as_str() == Some(wanted.as_ref()))
        .unwrap_or_else(|| panic!("`ledger list --rejected` lacks {wanted}: {rows:?}"));
    assert_eq!(row["kind"], kind, "{row}");
    assert!(
        !row["reason"].as_str().unwrap_or_default().is_empty(),
        "no reason recorded: {row}"
    );
    let shown = td
        .ledger_cmd(emu, &["show", &wanted, "--json"])
        .expect_code(0)
        .json();
    assert_eq!(shown["kind"], kind, "`ledger show {wanted}`: {shown}");
}

// --- files that are not images ----------------------------------------------------------------------

/// Runs eraser on `bytes` named `name` given directly: exit 1, named in stderr, nothing sent.
fn named_non_image_fails_without_reaching_the_service(name: &str, bytes: &[u8]) {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let file = td.write(Path::new("inputs").join(name), bytes);

    let finished = td.run(&emu, &[&file], &td.out(), &[]).expect_code(1);

    assert_stderr_names(&finished, &file);
    assert_eq!(finished.json()["end"], "some_failed");
    assert_eq!(emu.counters().create_job_requests, 0);
    assert!(files_below(&td.out()).is_empty(), "OUT is not empty");
    assert_ledger_rejects(&td, &emu, &file, "error");
}

/// Runs eraser on a folder holding `bytes` named `name` beside one image: the non-image is
/// skipped, the image done, exit 0, and the non-image never reaches the service.
fn non_image_in_a_folder_is_skipped(name: &str, bytes: &[u8]) {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    good_image(&td, &mut expected, "good.png", 1, "good.jpg");
    let file = td.write(Path::new("inputs").join(name), bytes);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/skipped"), 1);
    assert_never_uploaded(&emu, bytes, name);
    assert_each_uploaded_once(&emu.counters(), expected.values());
    assert_outputs_exactly(&td.out(), &expected);
    assert_ledger_rejects(&td, &emu, &file, "skipped");
}

#[test]
fn a_zero_byte_file_named_directly_exits_1_and_is_never_uploaded() {
    named_non_image_fails_without_reaching_the_service("empty.jpg", &zero_bytes());
}

#[test]
fn a_zero_byte_file_in_a_folder_is_skipped_and_the_run_exits_0() {
    non_image_in_a_folder_is_skipped("empty.jpg", &zero_bytes());
}

#[test]
fn a_text_file_named_jpg_given_directly_exits_1_and_is_never_uploaded() {
    named_non_image_fails_without_reaching_the_service("diary.jpg", &text_bytes());
}

#[test]
fn a_text_file_named_jpg_in_a_folder_is_skipped_and_the_run_exits_0() {
    non_image_in_a_folder_is_skipped("diary.jpg", &text_bytes());
}

#[test]
fn random_bytes_named_png_given_directly_exit_1_and_are_never_uploaded() {
    named_non_image_fails_without_reaching_the_service("noise.png", &random_bytes());
}

#[test]
fn random_bytes_named_png_in_a_folder_are_skipped_and_the_run_exits_0() {
    non_image_in_a_folder_is_skipped("noise.png", &random_bytes());
}

/// A cut JPEG is a JPEG by its magic bytes: eraser cannot know it is incomplete without
/// decoding it, so it is uploaded and the service's answer decides (the emulator, like the
/// service's front door, accepts by magic bytes and so makes an output from it).
#[test]
fn a_truncated_jpeg_is_uploaded_and_the_services_answer_decides() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let cut = truncated_jpeg();
    td.write("inputs/cut.jpg", &cut);
    let expected = Expected::from([(PathBuf::from("cut.jpg"), sha256_hex(&cut))]);

    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    assert_each_uploaded_once(&emu.counters(), expected.values());
    assert_outputs_exactly(&td.out(), &expected);
}

// --- size limit -----------------------------------------------------------------------------------

/// A JPEG padded after its end marker to `len` bytes: still a JPEG by its magic bytes.
fn padded_jpeg(seed: u64, len: usize) -> Vec<u8> {
    let mut jpeg = image(Format::Jpeg, seed);
    jpeg.resize(len.max(jpeg.len()), 0);
    jpeg
}

#[test]
fn a_file_over_the_size_limit_is_reported_and_never_uploaded() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    good_image(&td, &mut expected, "small.png", 2, "small.jpg");
    let big = padded_jpeg(3, 64 * 1024);
    let big_path = td.write("inputs/big.jpg", &big);

    let finished = td
        .run(
            &emu,
            &[&td.inputs()],
            &td.out(),
            &["--max-upload-bytes", "16KiB"],
        )
        .expect_code(1);

    assert_stderr_names(&finished, &big_path);
    assert!(
        finished.stderr.contains("limit"),
        "stderr does not say the file is over the limit:\n{}",
        finished.stderr
    );
    assert_never_uploaded(&emu, &big, "the file over the limit");
    assert_each_uploaded_once(&emu.counters(), expected.values());
    assert_outputs_exactly(&td.out(), &expected);
    assert_ledger_rejects(&td, &emu, &big_path, "error");
}

// --- links ------------------------------------------------------------------------------------------

#[test]
fn a_broken_symlink_in_a_folder_is_skipped_and_the_run_exits_0() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    good_image(&td, &mut expected, "good.webp", 5, "good.jpg");
    std::os::unix::fs::symlink(
        td.root().join("nowhere.jpg"),
        td.inputs().join("dangling.jpg"),
    )
    .expect("create a broken symlink");

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/skipped"), 1);
    assert_outputs_exactly(&td.out(), &expected);
    assert_ledger_rejects(&td, &emu, &td.inputs().join("dangling.jpg"), "skipped");
}

#[test]
fn a_rejected_file_fixed_before_the_next_run_leaves_the_rejected_list() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let file = td.write("inputs/later.jpg", &zero_bytes());
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);
    assert_ledger_rejects(&td, &emu, &file, "skipped");

    let bytes = image(Format::Jpeg, 77);
    td.write("inputs/later.jpg", &bytes);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    let rows = td
        .ledger_cmd(&emu, &["list", "--rejected", "--json"])
        .expect_code(0)
        .json_lines();
    assert!(rows.is_empty(), "still listed as rejected: {rows:?}");
    let expected = Expected::from([(PathBuf::from("later.jpg"), sha256_hex(&bytes))]);
    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn a_rejected_file_deleted_before_the_next_run_over_its_folder_leaves_the_rejected_list() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let gone = td.write("inputs/sub/gone.txt", b"notes, not an image");
    let kept = td.write("inputs/kept.txt", b"still here");
    let other = td.write("elsewhere/other.txt", b"another folder");
    td.write("inputs/a.jpg", &image(Format::Jpeg, 78));
    td.run(
        &emu,
        &[&td.inputs(), &td.root().join("elsewhere")],
        &td.out(),
        &[],
    )
    .expect_code(0);
    assert_ledger_rejects(&td, &emu, &gone, "skipped");

    std::fs::remove_file(&gone).unwrap();
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    let rows = td
        .ledger_cmd(&emu, &["list", "--rejected", "--json"])
        .expect_code(0)
        .json_lines();
    let paths: Vec<&str> = rows.iter().filter_map(|r| r["path"].as_str()).collect();
    let shown = |p: &Path| p.to_string_lossy().into_owned();
    assert_eq!(paths, [shown(&other), shown(&kept)], "{rows:?}");
}

#[test]
fn a_symlink_pointing_at_itself_in_a_folder_is_skipped_and_the_run_exits_0() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    good_image(&td, &mut expected, "good.jpg", 6, "good.jpg");
    std::os::unix::fs::symlink("self.jpg", td.inputs().join("self.jpg"))
        .expect("create a self-referencing symlink");

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/skipped"), 1);
    assert_outputs_exactly(&td.out(), &expected);
}

/// `inputs/sub/back -> ..` loops back to the INPUT folder; followed, it must neither hang
/// nor process the folder's files a second time under `sub/back/…`.
#[test]
fn a_folder_symlink_loop_back_to_the_input_with_follow_processes_each_file_once() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    good_image(&td, &mut expected, "top.png", 7, "top.jpg");
    good_image(&td, &mut expected, "sub/inner.jpg", 8, "sub/inner.jpg");
    std::os::unix::fs::symlink("..", td.inputs().join("sub/back"))
        .expect("create a folder symlink loop");

    td.run(&emu, &[&td.inputs()], &td.out(), &["--follow"])
        .expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), expected.values());
}

// --- inputs given twice -------------------------------------------------------------------------

#[test]
fn a_folder_given_twice_is_processed_once() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    good_image(&td, &mut expected, "a.png", 9, "a.jpg");
    good_image(&td, &mut expected, "d/b.webp", 10, "d/b.jpg");
    let again = td.root().join("inputs/d/../.");

    let summary = td
        .run(&emu, &[&td.inputs(), &again], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/inputs"), 2);
    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), expected.values());
}

#[test]
fn a_file_given_directly_and_through_its_folder_is_processed_once() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    good_image(&td, &mut expected, "d/x.jpg", 11, "d/x.jpg");
    good_image(&td, &mut expected, "y.png", 12, "y.jpg");
    let direct = td.inputs().join("d/x.jpg");

    let summary = td
        .run(&emu, &[&direct, &td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/inputs"), 2);
    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), expected.values());
}

// --- OUT inside INPUT ---------------------------------------------------------------------------

/// OUT given relative to the working folder, two levels inside INPUT, next to an input: the
/// second run finds exactly the inputs of the first and uploads nothing.
#[test]
fn out_nested_inside_input_is_never_scanned_so_a_second_run_uploads_nothing() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    good_image(&td, &mut expected, "a.png", 13, "a.jpg");
    good_image(&td, &mut expected, "sub/b.jpg", 14, "sub/b.jpg");
    let out = td.inputs().join("sub/results");
    let out_relative = Path::new("inputs/sub/results");

    td.run(&emu, &[Path::new("inputs")], out_relative, &[])
        .expect_code(0);
    emu.reset_counters();
    let second = td
        .run(&emu, &[Path::new("inputs")], out_relative, &[])
        .expect_code(0)
        .json();

    assert_eq!(emu.counters().create_job_requests, 0);
    assert_eq!(num(&second, "/inputs"), 2, "outputs were taken as inputs");
    assert_outputs_exactly(&out, &expected);
}

// --- odd names ------------------------------------------------------------------------------------

/// Puts an image at `inputs/<name>/<name>.png` and expects its output at `<name>/<name>.jpg`.
fn odd_name_is_mirrored(name: &OsStr) {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let bytes = image(Format::Png, 20 + name.len() as u64);
    let mut file_name = name.to_os_string();
    file_name.push(".png");
    let rel = Path::new(name).join(&file_name);
    td.write(Path::new("inputs").join(&rel), &bytes);
    let mut out_name = name.to_os_string();
    out_name.push(".jpg");
    let expected = Expected::from([(Path::new(name).join(out_name), sha256_hex(&bytes))]);

    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn a_name_with_spaces_is_mirrored_in_out() {
    odd_name_is_mirrored(OsStr::new("holiday  photos 2024"));
}

#[test]
fn a_name_with_a_newline_is_mirrored_in_out() {
    odd_name_is_mirrored(OsStr::new("first line\nsecond line"));
}

#[test]
fn a_unicode_name_is_mirrored_in_out() {
    odd_name_is_mirrored(OsStr::new("Ünïcødé 图片 🖼"));
}

#[test]
fn a_non_utf8_name_is_mirrored_in_out() {
    odd_name_is_mirrored(OsStr::from_bytes(b"latin1 caf\xe9 \xff\xfe"));
}

// --- files that move under eraser's feet ----------------------------------------------------------

/// An input file: where it is and the bytes the scan hashed.
struct Input {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Input {
    /// Its output, relative to OUT.
    fn output(&self) -> PathBuf {
        PathBuf::from(self.path.file_stem().unwrap_or_default()).with_extension("jpg")
    }
}

/// Two images in `inputs/`, a run with one job at a time and jobs that stay in progress until
/// released: the test acts on the image not yet uploaded while the first is processing.
struct OneAtATime {
    emu: Emulator,
    td: TestDir,
    running: Option<Running>,
    /// The image uploaded first.
    first: Input,
    /// The image waiting for its turn.
    waiting: Input,
}

impl OneAtATime {
    fn start() -> OneAtATime {
        let emu = emulator(Knobs {
            processing_time: Duration::from_secs(600),
            ..Knobs::default()
        });
        let td = TestDir::new();
        let a = image(Format::Jpeg, 31);
        let b = image(Format::Png, 32);
        let a = Input {
            path: td.write("inputs/a.jpg", &a),
            bytes: a,
        };
        let b = Input {
            path: td.write("inputs/b.png", &b),
            bytes: b,
        };
        let args = [
            "-j",
            "1",
            "--upload-concurrency",
            "1",
            "--max-attempts",
            "1",
        ];
        let running = Running::start(&mut td.run_cmd(&emu, &[&td.inputs()], &td.out(), &args));
        wait_for("the first upload", PROCESS_TIMEOUT, || {
            emu.counters().create_jobs >= 1
        });
        let uploads = emu.uploads();
        assert_eq!(uploads.len(), 1, "more than one upload with -j 1");
        let (first, waiting) = if uploads[0].sha256 == sha256_hex(&a.bytes) {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(uploads[0].sha256, sha256_hex(&first.bytes));
        OneAtATime {
            emu,
            td,
            running: Some(running),
            first,
            waiting,
        }
    }

    /// Lets the jobs finish and waits for the run's end.
    fn release(&mut self) -> Finished {
        self.emu.set_knobs(Knobs::default());
        let running = self.running.take().expect("released once");
        running.wait(PROCESS_TIMEOUT)
    }
}

#[test]
fn a_file_deleted_between_scan_and_upload_fails_with_a_clear_message_and_exit_1() {
    let mut run = OneAtATime::start();
    std::fs::remove_file(&run.waiting.path).expect("delete the waiting input");

    let finished = run.release().expect_code(1);

    assert_stderr_names(&finished, &run.waiting.path);
    assert_never_uploaded(&run.emu, &run.waiting.bytes, "the deleted file");
    let only_first = Expected::from([(run.first.output(), sha256_hex(&run.first.bytes))]);
    assert_outputs_exactly(&run.td.out(), &only_first);
}

#[test]
fn a_file_deleted_between_scan_and_upload_is_listed_failed_in_the_ledger() {
    let mut run = OneAtATime::start();
    std::fs::remove_file(&run.waiting.path).expect("delete the waiting input");
    run.release();

    let failed: BTreeSet<String> = run
        .td
        .ledger_cmd(&run.emu, &["list", "--status", "failed", "--json"])
        .expect_code(0)
        .json_lines()
        .iter()
        .filter_map(|image| image["sha256"].as_str().map(str::to_owned))
        .collect();

    assert_eq!(failed, BTreeSet::from([sha256_hex(&run.waiting.bytes)]));
}

/// Every upload the emulator read carries bytes that were on disk at some point, and every job
/// the ledger records belongs to an upload of exactly the bytes the ledger says it has.
#[test]
fn a_file_changed_between_hashing_and_upload_is_never_uploaded_under_its_old_hash() {
    let mut run = OneAtATime::start();
    let changed = image(Format::Webp, 33);
    std::fs::write(&run.waiting.path, &changed).expect("rewrite the waiting input");
    run.release();

    let ever_on_disk: BTreeSet<String> = [&run.first.bytes, &run.waiting.bytes, &changed]
        .into_iter()
        .map(|b| sha256_hex(b))
        .collect();
    let uploads = run.emu.uploads();
    for upload in &uploads {
        assert!(
            ever_on_disk.contains(&upload.sha256),
            "uploaded bytes that never were on disk: {}",
            upload.sha256
        );
    }
    let images = run
        .td
        .ledger_cmd(&run.emu, &["list", "--json"])
        .expect_code(0)
        .json_lines();
    for image in images.iter().filter(|i| i["job_id"].is_string()) {
        let job = image["job_id"].as_str().unwrap_or_default();
        let sha = image["sha256"].as_str().unwrap_or_default();
        let sent = uploads.iter().find(|u| u.job_id.as_deref() == Some(job));
        assert_eq!(
            sent.map(|u| u.sha256.as_str()),
            Some(sha),
            "the ledger records job {job} under {sha}, but the service got other bytes for it"
        );
    }
}

#[test]
fn a_file_changed_between_hashing_and_upload_is_hashed_again_and_done_in_the_same_run() {
    let mut run = OneAtATime::start();
    let changed = image(Format::Webp, 34);
    std::fs::write(&run.waiting.path, &changed).expect("rewrite the waiting input");

    run.release().expect_code(0);

    assert_outputs_exactly(
        &run.td.out(),
        &Expected::from([
            (run.first.output(), sha256_hex(&run.first.bytes)),
            (run.waiting.output(), sha256_hex(&changed)),
        ]),
    );
    assert_never_uploaded(&run.emu, &run.waiting.bytes, "the old bytes");
    let stale = sha256_hex(&run.waiting.bytes);
    let images = run
        .td
        .ledger_cmd(&run.emu, &["list", "--json"])
        .expect_code(0)
        .json_lines();
    assert!(
        images.iter().all(|i| i["sha256"] != stale.as_str()),
        "the old content, held by no file any more, is still an image in the ledger: {images:?}"
    );
}
