//! `--dry-run`: scans and reports how many unique images a run would upload; uploads nothing and
//! writes no output.

use std::path::PathBuf;

use eraser_tests::emulator::Knobs;

use crate::util::{Expected, Format, TestDir, emulator, files_below, image, num, write_unique};

/// Eight distinct images and two copies of them under other names.
fn ten_inputs_of_eight_images(td: &TestDir) {
    let mut expected = Expected::new();
    write_unique(td, "d", 80, 8, &mut expected);
    for (i, seed) in [80u64, 83].into_iter().enumerate() {
        let format = Format::nth(seed);
        td.write(
            PathBuf::from(format!("inputs/copies/c{i}.{}", format.ext())),
            &image(format, seed),
        );
    }
}

#[test]
fn dry_run_makes_no_create_job_and_writes_no_output() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    ten_inputs_of_eight_images(&td);

    td.run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0);

    let counters = emu.counters();
    assert_eq!(counters.create_job_requests, 0);
    assert_eq!(counters.download_requests, 0);
    let written = files_below(&td.out());
    assert!(written.is_empty(), "files in OUT: {written:?}");
}

#[test]
fn dry_run_json_says_how_many_unique_images_would_be_uploaded() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    ten_inputs_of_eight_images(&td);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0)
        .json();

    assert_eq!(summary["dry_run"], true);
    assert_eq!(num(&summary, "/would_upload"), 8);
    assert_eq!(num(&summary, "/inputs"), 10);
    assert_eq!(num(&summary, "/uploads"), 0);
}

#[test]
fn dry_run_after_a_finished_batch_would_upload_only_the_new_images() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    ten_inputs_of_eight_images(&td);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);
    let mut added = Expected::new();
    write_unique(&td, "later", 200, 3, &mut added);
    emu.reset_counters();

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0)
        .json();

    assert_eq!(num(&summary, "/would_upload"), 3);
    assert_eq!(emu.counters().create_job_requests, 0);
    assert!(
        !td.out().join("later").exists(),
        "the dry run wrote outputs"
    );
}

#[test]
fn dry_run_does_not_put_back_a_missing_output_of_a_done_image() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    ten_inputs_of_eight_images(&td);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);
    let outputs = files_below(&td.out());
    let gone = outputs.first().expect("an output").clone();
    std::fs::remove_file(td.out().join(&gone)).expect("delete an output");
    emu.reset_counters();

    td.run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0);

    assert!(
        !td.out().join(&gone).exists(),
        "the dry run put {} back",
        gone.display()
    );
    assert_eq!(emu.counters().downloads, 0, "the dry run downloaded");
}
