//! Jobs that fail at the service: the run exits 1, only the good inputs get outputs, the ledger
//! lists the failed with their code, a rerun leaves them alone and `--retry-failed` retries them.

use std::collections::BTreeSet;

use eraser_tests::emulator::{Emulator, Knobs, codes};

use crate::util::{
    Expected, Finished, TestDir, assert_each_uploaded_once, assert_outputs_exactly, emulator, num,
    write_unique,
};

const IMAGES: u64 = 30;

/// A batch of 30 images run against an emulator failing ~30% of jobs (seeded).
struct FailedBatch {
    emu: Emulator,
    td: TestDir,
    expected: Expected,
    first_run: Finished,
}

impl FailedBatch {
    fn run() -> FailedBatch {
        let emu = emulator(Knobs {
            p_job_fail: 0.3,
            seed: 3,
            ..Knobs::default()
        });
        let td = TestDir::new();
        let mut expected = Expected::new();
        write_unique(&td, "j", 900, IMAGES, &mut expected);
        let first_run = td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"]);
        FailedBatch {
            emu,
            td,
            expected,
            first_run,
        }
    }

    /// `ledger list --status failed --json`, one object per failed image.
    fn failed_list(&self) -> Vec<serde_json::Value> {
        self.td
            .ledger_cmd(&self.emu, &["list", "--status", "failed", "--json"])
            .expect_code(0)
            .json_lines()
    }

    /// The sha256 of every failed image, from the ledger; never empty, never all.
    fn failed_shas(&self) -> BTreeSet<String> {
        let shas: BTreeSet<String> = self
            .failed_list()
            .iter()
            .map(|v| {
                v["sha256"]
                    .as_str()
                    .expect("sha256 is a string")
                    .to_string()
            })
            .collect();
        assert!(
            !shas.is_empty() && (shas.len() as u64) < IMAGES,
            "the seed must fail some jobs, not all: {} failed",
            shas.len()
        );
        shas
    }

    /// The faults off and the counters zeroed, for a rerun.
    fn heal(&self) {
        self.emu.set_knobs(Knobs::default());
        self.emu.reset_counters();
    }
}

#[test]
fn failed_jobs_make_the_run_exit_1() {
    let batch = FailedBatch::run();
    let summary = batch.first_run.expect_code(1).json();

    assert_eq!(summary["end"], "some_failed");
    assert!(num(&summary, "/outputs_failed") > 0);
}

#[test]
fn only_inputs_of_good_images_get_outputs() {
    let batch = FailedBatch::run();
    let failed = batch.failed_shas();

    let good: Expected = batch
        .expected
        .iter()
        .filter(|(_, sha)| !failed.contains(*sha))
        .map(|(rel, sha)| (rel.clone(), sha.clone()))
        .collect();
    assert_outputs_exactly(&batch.td.out(), &good);
}

#[test]
fn ledger_list_failed_names_each_failed_image_with_its_code() {
    let batch = FailedBatch::run();
    let summary = batch.first_run.json();

    let listed = batch.failed_list();

    // Every failed job is one the emulator failed on purpose (counted as an injected fault).
    assert_eq!(listed.len() as u64, batch.emu.counters().faults_injected);
    assert_eq!(listed.len() as u64, num(&summary, "/outputs_failed"));
    for image in &listed {
        assert_eq!(image["status"], "failed", "{image}");
        assert_eq!(image["error_code"], codes::JOB_FAILED, "{image}");
    }
}

#[test]
fn rerun_does_not_upload_failed_images_again() {
    let batch = FailedBatch::run();
    batch.heal();

    let rerun = batch.td.run(
        &batch.emu,
        &[&batch.td.inputs()],
        &batch.td.out(),
        &["-j", "8"],
    );

    rerun.expect_code(1);
    assert_eq!(batch.emu.counters().create_job_requests, 0);
}

#[test]
fn retry_failed_uploads_the_failed_images_once_more_and_completes() {
    let batch = FailedBatch::run();
    let failed = batch.failed_shas();
    batch.heal();

    batch
        .td
        .run(
            &batch.emu,
            &[&batch.td.inputs()],
            &batch.td.out(),
            &["-j", "8", "--retry-failed"],
        )
        .expect_code(0);

    assert_each_uploaded_once(&batch.emu.counters(), &failed);
    assert_outputs_exactly(&batch.td.out(), &batch.expected);
}
