//! `eraser ledger status|list|show|retry|verify|export` on a ledger written by real runs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::util::{
    Expected, Format, TestDir, assert_outputs_exactly, emulator, image, num, sha256_hex,
    write_unique,
};

/// Five inputs of four images (`u/img0..3` and a copy of img0 at `copy/again.<ext>`), done.
struct SmallBatch {
    emu: Emulator,
    td: TestDir,
    expected: Expected,
    shas: Vec<String>,
    copy: PathBuf,
}

impl SmallBatch {
    fn done() -> SmallBatch {
        let emu = emulator(Knobs::default());
        let td = TestDir::new();
        let mut expected = Expected::new();
        let shas = write_unique(&td, "u", 40, 4, &mut expected);
        let format = Format::nth(40);
        let bytes = image(format, 40);
        let copy = td.write(format!("inputs/copy/again.{}", format.ext()), &bytes);
        expected.insert(PathBuf::from("copy/again.jpg"), sha256_hex(&bytes));
        td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);
        SmallBatch {
            emu,
            td,
            expected,
            shas,
            copy,
        }
    }

    fn ledger(&self, args: &[&str]) -> crate::util::Finished {
        self.td.ledger_cmd(&self.emu, args)
    }
}

#[test]
fn status_shows_the_service_time_learned_by_a_run_and_none_before() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "u", 60, 3, &mut expected);
    td.run(&emu, &[&td.inputs()], &td.out(), &["--dry-run"])
        .expect_code(0);
    assert!(td.status(&emu)["processing_seconds"].is_null());

    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    let learned = td.status(&emu)["processing_seconds"].as_f64();
    assert!(learned.is_some_and(|s| s >= 0.0), "{learned:?}");
    let human = td.ledger_cmd(&emu, &["status"]).expect_code(0).stdout;
    assert!(human.contains("s per image"), "{human}");
}

#[test]
fn status_json_counts_images_and_inputs() {
    let b = SmallBatch::done();

    let status = b.td.status(&b.emu);

    assert_eq!(num(&status, "/images/total"), 4);
    assert_eq!(num(&status, "/images/done"), 4);
    for other in ["new", "uploading", "processing", "failed"] {
        assert_eq!(num(&status, &format!("/images/{other}")), 0, "{other}");
    }
    assert_eq!(num(&status, "/inputs/total"), 5);
    assert_eq!(num(&status, "/inputs/done"), 5);
    assert_eq!(num(&status, "/inputs/failed"), 0);
}

#[test]
fn list_json_prints_one_line_per_image_and_filters_by_status() {
    let b = SmallBatch::done();

    let all = b.ledger(&["list", "--json"]).expect_code(0).json_lines();
    let failed = b
        .ledger(&["list", "--status", "failed", "--json"])
        .expect_code(0)
        .json_lines();

    let listed: BTreeSet<&str> = all.iter().filter_map(|v| v["sha256"].as_str()).collect();
    let wanted: BTreeSet<&str> = b.shas.iter().map(String::as_str).collect();
    assert_eq!(listed, wanted);
    assert!(all.iter().all(|v| v["status"] == "done"), "{all:?}");
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn show_finds_an_image_by_input_path() {
    let b = SmallBatch::done();

    let shown = b
        .ledger(&["show", b.copy.to_str().expect("utf-8 path"), "--json"])
        .expect_code(0)
        .json();

    assert_eq!(shown["image"]["sha256"], b.shas[0].as_str());
    let paths: Vec<&str> = shown["inputs"]
        .as_array()
        .expect("inputs is an array")
        .iter()
        .filter_map(|i| i["path"].as_str())
        .collect();
    assert_eq!(paths.len(), 2, "the image and its copy: {paths:?}");
}

#[test]
fn show_finds_an_image_by_sha256() {
    let b = SmallBatch::done();

    let shown = b
        .ledger(&["show", &b.shas[1], "--json"])
        .expect_code(0)
        .json();

    assert_eq!(shown["image"]["sha256"], b.shas[1].as_str());
    assert_eq!(shown["image"]["status"], "done");
}

#[test]
fn show_finds_an_image_by_job_id() {
    let b = SmallBatch::done();
    let by_sha = b
        .ledger(&["show", &b.shas[2], "--json"])
        .expect_code(0)
        .json();
    let job_id = by_sha["image"]["job_id"]
        .as_str()
        .expect("a done image has its job id")
        .to_string();

    let shown = b.ledger(&["show", &job_id, "--json"]).expect_code(0).json();

    assert_eq!(shown["image"]["sha256"], b.shas[2].as_str());
    assert!(
        b.emu.counters().get_jobs_by_job.contains_key(&job_id),
        "the job id is one the emulator handed out"
    );
}

#[test]
fn show_of_an_unknown_key_fails() {
    let b = SmallBatch::done();

    let finished = b.ledger(&["show", &"0".repeat(64)]);

    assert_ne!(finished.code, Some(0), "{finished:?}");
}

#[test]
fn retry_puts_every_failed_image_back_to_new() {
    let emu = emulator(Knobs {
        p_job_fail: 1.0,
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "f", 50, 3, &mut expected);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(1);
    assert_eq!(num(&td.status(&emu), "/images/failed"), 3);

    td.ledger_cmd(&emu, &["retry"]).expect_code(0);

    let status = td.status(&emu);
    assert_eq!(num(&status, "/images/failed"), 0);
    assert_eq!(num(&status, "/images/new"), 3);
}

#[test]
fn retry_of_one_sha256_puts_back_only_that_image_and_the_next_run_uploads_it() {
    let emu = emulator(Knobs {
        p_job_fail: 1.0,
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "f", 60, 3, &mut expected);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(1);

    td.ledger_cmd(&emu, &["retry", &shas[1]]).expect_code(0);
    emu.set_knobs(Knobs::default());
    emu.reset_counters();
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(1);

    let counters = emu.counters();
    assert_eq!(counters.create_jobs, 1);
    assert_eq!(counters.create_jobs_by_sha.get(&shas[1]), Some(&1));
    let status = td.status(&emu);
    assert_eq!(num(&status, "/images/done"), 1);
    assert_eq!(num(&status, "/images/failed"), 2);
}

#[test]
fn verify_of_an_intact_ledger_exits_0() {
    let b = SmallBatch::done();

    b.ledger(&["verify"]).expect_code(0);
}

#[test]
fn verify_reports_a_deleted_output_and_exits_1() {
    let b = SmallBatch::done();
    // img1 has no copy: its output is the only place its result lives.
    let gone = b.td.out().join("u/img1.jpg");
    std::fs::remove_file(&gone).expect("delete an output");

    let finished = b.ledger(&["verify"]).expect_code(1);

    assert!(
        finished.stdout.contains("img1.jpg"),
        "verify does not name the missing output:\n{}",
        finished.stdout
    );
}

#[test]
fn verify_repair_then_a_rerun_restores_a_deleted_output_without_a_new_job() {
    let b = SmallBatch::done();
    std::fs::remove_file(b.td.out().join("u/img1.jpg")).expect("delete an output");
    b.emu.reset_counters();

    b.ledger(&["verify", "--repair"]).expect_code(0);
    b.td.run(&b.emu, &[&b.td.inputs()], &b.td.out(), &[])
        .expect_code(0);

    assert_outputs_exactly(&b.td.out(), &b.expected);
    b.ledger(&["verify"]).expect_code(0);
    // The job's result is still at the service: fetching it again costs no new job.
    assert_eq!(b.emu.counters().create_job_requests, 0);
}

#[test]
fn verify_repair_restores_a_deleted_stored_result_from_an_intact_copy() {
    let b = SmallBatch::done();
    // img0 and the copy share one image: whichever output is gone, the other is intact.
    std::fs::remove_file(b.td.out().join("u/img0.jpg")).expect("delete an output");
    b.emu.reset_counters();

    b.ledger(&["verify", "--repair"]).expect_code(0);
    b.td.run(&b.emu, &[&b.td.inputs()], &b.td.out(), &[])
        .expect_code(0);

    assert_eq!(b.emu.counters().create_job_requests, 0);
    assert_outputs_exactly(&b.td.out(), &b.expected);
}

#[test]
fn export_csv_has_a_header_and_one_row_per_input() {
    let b = SmallBatch::done();

    let csv = b
        .ledger(&["export", "--format", "csv"])
        .expect_code(0)
        .stdout;

    let mut lines = csv.lines();
    let header = lines.next().expect("a header row");
    assert!(header.starts_with("path,"), "{header}");
    assert!(header.split(',').any(|c| c == "sha256"), "{header}");
    assert!(header.split(',').any(|c| c == "status"), "{header}");
    let rows: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 5, "{csv}");
    let inputs = b.td.inputs();
    let inputs = inputs.to_str().expect("utf-8 path");
    assert!(rows.iter().all(|r| r.starts_with(inputs)), "{csv}");
}

#[test]
fn export_jsonl_has_one_object_per_input_with_its_status() {
    let b = SmallBatch::done();

    let rows = b
        .ledger(&["export", "--format", "jsonl"])
        .expect_code(0)
        .json_lines();

    assert_eq!(rows.len(), 5);
    let paths: BTreeSet<&str> = rows.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(paths.len(), 5, "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "done"), "{rows:?}");
}

#[test]
fn a_lost_output_whose_url_expired_names_the_retry_that_makes_it_again() {
    let b = SmallBatch::done();
    std::fs::remove_file(b.td.out().join("u/img1.jpg")).expect("delete an output");
    b.emu.expire_jobs();

    let finished =
        b.td.run(&b.emu, &[&b.td.inputs()], &b.td.out(), &[])
            .expect_code(1);
    let hint = format!("eraser ledger retry --done {}", b.shas[1]);
    assert!(
        finished.stderr.contains(&hint),
        "stderr does not name `{hint}`:\n{}",
        finished.stderr
    );

    b.ledger(&["retry", "--done", &b.shas[1]]).expect_code(0);
    b.emu.reset_counters();
    b.td.run(&b.emu, &[&b.td.inputs()], &b.td.out(), &[])
        .expect_code(0);

    assert_outputs_exactly(&b.td.out(), &b.expected);
    let counters = b.emu.counters();
    assert_eq!(counters.create_jobs, 1, "only the lost image is made again");
    assert_eq!(counters.create_jobs_by_sha.get(&b.shas[1]), Some(&1));
}

#[test]
fn a_deleted_stored_result_is_copied_back_from_another_input_even_after_its_url_expired() {
    let b = SmallBatch::done();
    let shown = b
        .ledger(&["show", &b.shas[0], "--json"])
        .expect_code(0)
        .json();
    let stored = PathBuf::from(
        shown["image"]["output_path"]
            .as_str()
            .expect("the image's stored result"),
    );
    std::fs::remove_file(&stored).expect("delete the stored result");
    b.emu.expire_jobs();
    b.emu.reset_counters();

    b.td.run(&b.emu, &[&b.td.inputs()], &b.td.out(), &[])
        .expect_code(0);

    assert_outputs_exactly(&b.td.out(), &b.expected);
    assert_eq!(b.emu.counters().downloads, 0, "a copy needs no download");
}
