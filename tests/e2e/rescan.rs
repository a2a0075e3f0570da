//! Rescans: a run over folders the ledger already holds writes nothing for unchanged files, yet
//! works on exactly the files its walk found — no more (deleted, moved away, no longer an
//! image), no fewer (found again).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use eraser_tests::emulator::Knobs;

use crate::util::{
    Expected, Format, TestDir, assert_outputs_exactly, emulator, image, num, sha256_hex,
    write_unique,
};

/// Three distinct images in `inputs/a`, recorded by a dry run (so their images are `new`).
fn three_recorded(td: &TestDir, emu: &eraser_tests::emulator::Emulator) -> Expected {
    let mut expected = Expected::new();
    write_unique(td, "a", 300, 3, &mut expected);
    td.run(emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0);
    expected
}

/// The input file behind an expected output `a/img<i>.jpg`.
fn input_of(td: &TestDir, rel: &Path) -> PathBuf {
    let stem = rel.file_stem().expect("a stem");
    let folder = td.inputs().join(rel.parent().expect("a folder"));
    std::fs::read_dir(&folder)
        .expect("the input folder")
        .map(|e| e.expect("an entry").path())
        .find(|p| p.file_stem() == Some(stem))
        .expect("the input of an expected output")
}

#[test]
fn a_run_after_a_dry_run_uploads_every_image_it_recorded() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = three_recorded(&td, &emu);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/hashed"), 0, "nothing is read twice");
    assert_eq!(num(&summary, "/inputs"), 3);
    assert_eq!(emu.counters().create_job_requests, 3);
    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn a_rescan_that_changed_nothing_reports_what_the_first_run_counted() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    three_recorded(&td, &emu);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/inputs"), 3);
    assert_eq!(num(&summary, "/unique_images"), 3);
    assert_eq!(num(&summary, "/would_upload"), 3);
}

#[test]
fn a_copy_added_since_the_last_run_is_counted_as_a_duplicate() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = three_recorded(&td, &emu);
    let original = input_of(&td, expected.keys().next().expect("an image"));
    std::fs::copy(&original, td.inputs().join("a").join("copy.jpg")).expect("copy an input");

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/inputs"), 4);
    assert_eq!(num(&summary, "/unique_images"), 3);
    assert_eq!(num(&summary, "/duplicates_saved"), 1);
    assert_eq!(num(&summary, "/would_upload"), 3);
}

#[test]
fn a_file_rewritten_since_the_last_run_is_hashed_again_and_paid_for_under_its_new_content() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = three_recorded(&td, &emu);
    let rewritten = input_of(&td, expected.keys().next().expect("an image"));
    std::fs::write(&rewritten, image(Format::Jpeg, 9_999)).expect("rewrite an input");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&rewritten)
        .and_then(|f| f.set_modified(later))
        .expect("a later mtime");

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(
        num(&summary, "/hashed"),
        1,
        "only the rewritten file is read"
    );
    assert_eq!(num(&summary, "/inputs"), 3);
    assert_eq!(emu.counters().create_job_requests, 3);
    let new_content = sha256_hex(&image(Format::Jpeg, 9_999));
    assert!(
        emu.uploads().iter().any(|u| u.sha256 == new_content),
        "the new content was paid for"
    );
}

#[test]
fn a_file_deleted_since_the_last_run_is_not_uploaded_counted_or_placed() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = three_recorded(&td, &emu);
    let gone = expected.keys().next().cloned().expect("an image");
    std::fs::remove_file(input_of(&td, &gone)).expect("delete an input");
    expected.remove(&gone);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/inputs"), 2);
    assert_eq!(num(&summary, "/unique_images"), 2);
    assert_eq!(emu.counters().create_job_requests, 2);
    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn ledger_show_of_a_deleted_input_says_which_run_did_not_find_it() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = three_recorded(&td, &emu);
    let gone = expected.keys().next().cloned().expect("an image");
    let input = input_of(&td, &gone);
    std::fs::remove_file(&input).expect("delete an input");
    td.run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0);
    let path = input.to_str().expect("a UTF-8 path");

    let shown = td
        .ledger_cmd(&emu, &["show", path, "--json"])
        .expect_code(0)
        .json();
    let text = td.ledger_cmd(&emu, &["show", path]).expect_code(0).stdout;

    let row = &shown["inputs"][0];
    assert_eq!(row["path"], path);
    assert!(row["missing"].is_u64(), "{row}");
    assert!(text.contains("not found by run"), "{text}");
}

#[test]
fn a_file_that_is_no_longer_an_image_is_not_uploaded_under_its_old_content() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = three_recorded(&td, &emu);
    let spoiled = expected.keys().next().cloned().expect("an image");
    std::fs::write(input_of(&td, &spoiled), b"not an image any more").expect("overwrite");
    expected.remove(&spoiled);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/inputs"), 2);
    assert_eq!(num(&summary, "/skipped"), 1);
    assert_eq!(emu.counters().create_job_requests, 2);
    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn a_file_moved_away_and_back_is_an_input_again_without_a_new_job() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = three_recorded(&td, &emu);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);
    let moved = expected.keys().next().cloned().expect("an image");
    let input = input_of(&td, &moved);
    let aside = td.root().join("aside");
    std::fs::rename(&input, &aside).expect("move an input away");
    let without = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();
    assert_eq!(num(&without, "/inputs"), 2);
    std::fs::rename(&aside, &input).expect("move it back");
    std::fs::remove_file(td.out().join(&moved)).expect("delete its output");
    emu.reset_counters();

    let back = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&back, "/inputs"), 3);
    assert_eq!(
        num(&back, "/hashed"),
        0,
        "its size and mtime did not change"
    );
    assert_eq!(emu.counters().create_job_requests, 0);
    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn a_rescan_into_another_out_places_every_output_there() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = three_recorded(&td, &emu);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);
    let other = td.root().join("other-out");
    emu.reset_counters();

    let summary = td
        .run(&emu, &[&td.inputs()], &other, &[])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/inputs"), 3);
    assert_eq!(emu.counters().create_job_requests, 0);
    assert_outputs_exactly(&other, &expected);
}

#[test]
fn ledger_show_says_an_unchanged_input_was_last_seen_by_the_latest_run() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = three_recorded(&td, &emu);
    let path = input_of(&td, expected.keys().next().expect("an image"));
    let path = path.to_str().expect("a UTF-8 path");
    let show = |td: &TestDir| {
        let shown = td
            .ledger_cmd(&emu, &["show", path, "--json"])
            .expect_code(0)
            .json();
        let input = shown["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .find(|i| i["path"] == path)
            .cloned()
            .expect("the input");
        let seen = input["last_seen"].as_str().expect("last_seen");
        let seen = chrono::DateTime::parse_from_rfc3339(seen).expect("an RFC 3339 time");
        (num(&input, "/last_run"), seen)
    };
    let (first_run, first_seen) = show(&td);

    td.run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0);

    let (run, seen) = show(&td);
    assert!(run > first_run, "last run {run}, first {first_run}");
    assert!(seen > first_seen, "last seen {seen}, first {first_seen}");
}

#[test]
fn a_first_scan_of_the_parent_of_a_recorded_folder_hashes_only_the_new_files() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "a", 300, 3, &mut expected);
    td.run(
        &emu,
        &[&td.inputs().join("a")],
        &td.root().join("elsewhere"),
        &["--dry-run"],
    )
    .expect_code(0);
    write_unique(&td, "b", 400, 2, &mut expected);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(
        num(&summary, "/hashed"),
        2,
        "the files of a are not read again"
    );
    assert_eq!(num(&summary, "/inputs"), 5);
    assert_eq!(emu.counters().create_job_requests, 5);
    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn a_rerun_over_a_name_that_is_not_utf8_hashes_and_uploads_nothing_again() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let name = OsStr::from_bytes(b"caf\xe9 \xff\xfe.png");
    td.write(Path::new("inputs").join(name), &image(Format::Png, 77));
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_eq!(
        num(&summary, "/hashed"),
        0,
        "the lookup found it by its raw bytes"
    );
    assert_eq!(num(&summary, "/inputs"), 1);
    assert_eq!(emu.counters().create_job_requests, 1);
}
