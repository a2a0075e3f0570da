//! Dedupe: identical bytes are uploaded once per ledger, within a batch, across folders and
//! across later batches; every input still gets its own output.

use std::path::PathBuf;

use eraser_tests::emulator::Knobs;

use crate::util::{
    Expected, Format, TestDir, assert_each_uploaded_once, assert_outputs_exactly, emulator, image,
    num, sha256_hex, write_unique,
};

const UNIQUE: u64 = 120;
const COPIES: u64 = 80;

/// 200 inputs: 120 distinct images in four folders, and 80 copies of some of them under other
/// names in other folders (every third image copied twice). Returns the expected OUT and shas.
fn two_hundred_with_120_unique(td: &TestDir) -> (Expected, Vec<String>) {
    let mut expected = Expected::new();
    let mut shas = Vec::new();
    for folder in 0..4 {
        let per = UNIQUE / 4;
        shas.extend(write_unique(
            td,
            &format!("u{folder}"),
            1000 + folder * per,
            per,
            &mut expected,
        ));
    }
    for i in 0..COPIES {
        // Seeds 1000.. are the unique images: every third one gets two copies.
        let seed = 1000 + (i * 3) % UNIQUE;
        let format = Format::nth(seed);
        let bytes = image(format, seed);
        let rel = format!("copies/d{}/dup{i}.{}", i % 5, format.ext());
        td.write(format!("inputs/{rel}"), &bytes);
        expected.insert(
            PathBuf::from(format!("copies/d{}/dup{i}.jpg", i % 5)),
            sha256_hex(&bytes),
        );
    }
    assert_eq!(expected.len() as u64, UNIQUE + COPIES);
    (expected, shas)
}

#[test]
fn two_hundred_inputs_of_120_unique_images_make_120_create_jobs_and_200_outputs() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let (expected, shas) = two_hundred_with_120_unique(&td);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["-j", "16"])
        .expect_code(0)
        .json();

    let counters = emu.counters();
    assert_eq!(counters.create_jobs, UNIQUE);
    assert_each_uploaded_once(&counters, &shas);
    assert_outputs_exactly(&td.out(), &expected);
    assert_eq!(num(&summary, "/inputs"), UNIQUE + COPIES);
    assert_eq!(num(&summary, "/unique_images"), UNIQUE);
    assert_eq!(num(&summary, "/duplicates_saved"), COPIES);
}

#[test]
fn ledger_status_agrees_with_a_deduplicated_batch() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    two_hundred_with_120_unique(&td);
    td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "16"])
        .expect_code(0);

    let status = td.status(&emu);

    assert_eq!(num(&status, "/images/total"), UNIQUE);
    assert_eq!(num(&status, "/images/done"), UNIQUE);
    assert_eq!(num(&status, "/inputs/total"), UNIQUE + COPIES);
    assert_eq!(num(&status, "/inputs/done"), UNIQUE + COPIES);
    assert_eq!(num(&status, "/inputs/failed"), 0);
}

#[test]
fn a_later_batch_of_copies_in_another_folder_uploads_nothing_and_gets_every_output() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut first = Expected::new();
    write_unique(&td, "first", 1, 30, &mut first);
    td.run(&emu, &[&td.inputs().join("first")], &td.out(), &["-j", "8"])
        .expect_code(0);
    assert_eq!(emu.counters().create_jobs, 30);

    // The same bytes (seeds 1..=30) under new names, in a new folder, into a new OUT.
    let mut second = Expected::new();
    for i in 0..30u64 {
        let seed = 1 + i;
        let format = Format::nth(seed);
        let bytes = image(format, seed);
        td.write(format!("inputs/second/again{i}.{}", format.ext()), &bytes);
        second.insert(PathBuf::from(format!("again{i}.jpg")), sha256_hex(&bytes));
    }
    assert_eq!(
        second.values().collect::<std::collections::BTreeSet<_>>(),
        first.values().collect(),
        "the second batch holds exactly the first batch's images"
    );
    let out2 = td.root().join("out2");
    emu.reset_counters();

    td.run(&emu, &[&td.inputs().join("second")], &out2, &["-j", "8"])
        .expect_code(0);

    assert_eq!(emu.counters().create_job_requests, 0);
    assert_outputs_exactly(&out2, &second);
}

#[test]
fn the_same_inputs_run_again_into_another_out_get_every_output_without_a_create_job() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "s", 3000, 10, &mut expected);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);
    emu.reset_counters();
    let out2 = td.root().join("out2");

    td.run(&emu, &[&td.inputs()], &out2, &[]).expect_code(0);

    assert_eq!(emu.counters().create_job_requests, 0);
    assert_outputs_exactly(&out2, &expected);
    assert_outputs_exactly(&td.out(), &expected);
}
