//! Reruns: a finished batch costs nothing again; outputs deleted from OUT come back from the
//! stored results without a new job.

use eraser_tests::emulator::Knobs;

use crate::util::{Expected, TestDir, assert_outputs_exactly, emulator, num, write_unique};

/// A finished batch of 20 images in `inputs/`, done into `out/`; returns the expected OUT.
fn finished_batch(td: &TestDir, emu: &eraser_tests::emulator::Emulator) -> Expected {
    let mut expected = Expected::new();
    write_unique(td, "batch", 100, 20, &mut expected);
    td.run(emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0);
    assert_outputs_exactly(&td.out(), &expected);
    expected
}

#[test]
fn rerun_of_a_finished_batch_makes_no_create_job_and_no_download() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = finished_batch(&td, &emu);
    emu.reset_counters();

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0)
        .json();

    let counters = emu.counters();
    assert_eq!(counters.create_job_requests, 0, "create-job requests");
    assert_eq!(counters.download_requests, 0, "CDN requests");
    assert_eq!(num(&summary, "/uploads"), 0);
    assert_eq!(num(&summary, "/downloads"), 0);
    assert_eq!(num(&summary, "/already_done"), 20);
    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn outputs_deleted_from_out_are_made_again_without_a_create_job() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = finished_batch(&td, &emu);
    // Every other output goes, including the ones a later copy could have been taken from.
    for rel in expected.keys().step_by(2) {
        std::fs::remove_file(td.out().join(rel)).expect("delete an output");
    }
    emu.reset_counters();

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0)
        .json();

    assert_eq!(emu.counters().create_job_requests, 0, "create-job requests");
    assert_eq!(num(&summary, "/outputs_done"), 20);
    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn all_outputs_deleted_are_made_again_without_a_create_job() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let expected = finished_batch(&td, &emu);
    std::fs::remove_dir_all(td.out()).expect("delete OUT");
    emu.reset_counters();

    td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0);

    assert_eq!(emu.counters().create_job_requests, 0, "create-job requests");
    assert_outputs_exactly(&td.out(), &expected);
}

/// A job submitted before a kill, still processing when the next run starts, gets that run's
/// whole `--job-timeout`: the time eraser was down does not count against it.
#[test]
fn a_job_resumed_after_a_pause_longer_than_the_job_timeout_is_waited_for_not_failed() {
    use std::time::Duration;

    use crate::util::{PROCESS_TIMEOUT, Running, wait_for};

    let emu = emulator(Knobs {
        processing_time: Duration::from_secs(5),
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "slow", 700, 1, &mut expected);
    let running = Running::start(&mut td.run_cmd(&emu, &[&td.inputs()], &td.out(), &[]));
    // Killed only once the job id is committed: a kill between the service's answer and that
    // commit is the one window where an upload is sent again, which is not what this tests.
    wait_for("the job id in the ledger", PROCESS_TIMEOUT, || {
        emu.counters().create_jobs >= 1 && num(&td.status(&emu), "/images/processing") >= 1
    });
    running.kill();
    // The job needs 5 s in all: it is about 3 s old when the next run starts, so counted from
    // its submission a 4 s --job-timeout ends it about 1 s into that run, before it is done.
    std::thread::sleep(Duration::from_secs(3));

    td.run(&emu, &[&td.inputs()], &td.out(), &["--job-timeout", "4s"])
        .expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
    assert_eq!(
        emu.counters().create_jobs,
        1,
        "the job was not paid for twice"
    );
}

/// One image whose 4 s job outlives a 1 s `--job-timeout`: the run fails it, retryable.
fn timed_out_job() -> (eraser_tests::emulator::Emulator, TestDir, Expected) {
    let emu = emulator(Knobs {
        processing_time: std::time::Duration::from_secs(4),
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "slow", 710, 1, &mut expected);
    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["--job-timeout", "1s"])
        .expect_code(1)
        .json();
    assert_eq!(num(&summary, "/outputs_failed"), 1);
    (emu, td, expected)
}

#[test]
fn ledger_retry_of_a_timed_out_job_polls_it_again_instead_of_paying_twice() {
    let (emu, td, expected) = timed_out_job();

    let said = td.ledger_cmd(&emu, &["retry"]).expect_code(0);
    assert!(
        said.stdout
            .contains("1 timed-out job(s) put back to processing"),
        "{}",
        said.stdout
    );
    assert_eq!(num(&td.status(&emu), "/images/processing"), 1);
    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
    assert_eq!(
        emu.counters().create_jobs,
        1,
        "the image was paid for twice"
    );
}

#[test]
fn run_retry_failed_polls_a_timed_out_job_again_instead_of_paying_twice() {
    let (emu, td, expected) = timed_out_job();

    td.run(&emu, &[&td.inputs()], &td.out(), &["--retry-failed"])
        .expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
    assert_eq!(
        emu.counters().create_jobs,
        1,
        "the image was paid for twice"
    );
}
