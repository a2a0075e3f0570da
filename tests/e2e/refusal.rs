//! Systemic refusal (credits, quota…): after 3 consecutive create-job refusals with one code the
//! run stops submitting and exits 3 naming the cause; the images not tried stay `new`. A service
//! that answers every upload "too many requests" (HTTP 429) while holding none of the run's jobs
//! is waited for up to `--outage-timeout`, then the run exits 3 the same way.

use eraser_tests::emulator::{Emulator, Knobs, codes};

use crate::util::{
    Expected, FinishExt as _, Finished, TestDir, assert_outputs_exactly, emulator, num,
    write_unique,
};

const IMAGES: u64 = 20;
/// `--upload-concurrency` given to the run: create-jobs that may already be on their way when
/// the third refusal arrives.
const UPLOAD_CONCURRENCY: u64 = 2;

/// A run over 20 images against a service refusing every create-job for lack of credits.
fn refused_run() -> (Emulator, TestDir, Expected, Finished) {
    let emu = emulator(Knobs {
        refuse_code: Some(codes::INSUFFICIENT_CREDITS),
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "r", 600, IMAGES, &mut expected);
    let finished = td.run(
        &emu,
        &[&td.inputs()],
        &td.out(),
        &[
            "-j",
            "8",
            "--upload-concurrency",
            &UPLOAD_CONCURRENCY.to_string(),
        ],
    );
    (emu, td, expected, finished)
}

#[test]
fn consecutive_refusals_exit_3_naming_the_code_and_its_message() {
    let (_emu, _td, _expected, finished) = refused_run();

    let finished = finished.expect_code(3);

    assert!(
        finished.stderr.contains("300002") && finished.stderr.contains("Insufficient credits"),
        "stderr does not name the cause:\n{}",
        finished.stderr
    );
    let summary = finished.json();
    assert_eq!(summary["end"], "refused");
    assert_eq!(summary["refused"]["code"], codes::INSUFFICIENT_CREDITS);
}

#[test]
fn a_refusing_service_gets_at_most_three_plus_the_uploads_in_flight() {
    let (emu, _td, _expected, finished) = refused_run();
    finished.expect_code(3);

    let requests = emu.counters().create_job_requests;

    assert!(
        (3..=3 + UPLOAD_CONCURRENCY).contains(&requests),
        "{requests} create-job requests"
    );
}

#[test]
fn images_not_tried_stay_new_after_a_refusal() {
    let (emu, td, _expected, finished) = refused_run();
    finished.expect_code(3);
    let tried = emu.counters().create_job_requests;

    let status = td.status(&emu);

    assert_eq!(num(&status, "/images/total"), IMAGES);
    assert!(
        num(&status, "/images/new") >= IMAGES - tried,
        "{tried} tried, status {status}"
    );
    assert_eq!(num(&status, "/images/done"), 0);
    assert_eq!(num(&status, "/images/processing"), 0);
}

#[test]
fn a_rerun_once_the_service_accepts_work_again_completes_every_image() {
    let (emu, td, expected, finished) = refused_run();
    finished.expect_code(3);
    emu.set_knobs(Knobs::default());

    td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
}

/// Credits running out mid-batch: the jobs already accepted are still polled to the end and
/// their outputs placed, then the run exits 3.
#[test]
fn a_refusal_while_jobs_are_processing_still_finishes_those_jobs() {
    use std::time::Duration;

    use crate::util::{PROCESS_TIMEOUT, Running, wait_for};

    let emu = emulator(Knobs {
        processing_time: Duration::from_secs(2),
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "m", 600, IMAGES, &mut expected);
    let running = Running::start(&mut td.run_cmd(
        &emu,
        &[&td.inputs()],
        &td.out(),
        &["-j", "4", "--upload-concurrency", "1"],
    ));
    wait_for("jobs processing", PROCESS_TIMEOUT, || {
        emu.counters().create_jobs >= 2
    });
    emu.set_knobs(Knobs {
        processing_time: Duration::from_secs(2),
        refuse_code: Some(codes::INSUFFICIENT_CREDITS),
        ..Knobs::default()
    });

    running.wait(PROCESS_TIMEOUT).expect_code(3);

    let accepted = emu.counters().create_jobs;
    let status = td.status(&emu);
    assert_eq!(num(&status, "/images/done"), accepted, "status {status}");
    assert_eq!(num(&status, "/images/processing"), 0, "status {status}");
}

/// A wrong address (every create-job answered HTTP 404) is the run's problem, not each image's:
/// three in a row stop it with exit 3, and no image is left failed.
#[test]
fn an_address_answering_404_stops_the_run_with_exit_3_and_no_image_failed() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "w", 600, IMAGES, &mut expected);
    let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &["-j", "4"]);
    cmd.env(
        "ERASER_API_BASE",
        format!("{}/no-such-prefix", emu.api_url()),
    );

    let finished = cmd.finish().expect_code(3);

    assert!(
        finished.stderr.contains("404"),
        "stderr does not name the status:\n{}",
        finished.stderr
    );
    assert_nothing_accepted_and_every_image_new(&emu, &td, IMAGES);
}

/// The service took no job, and the ledger holds every image as `new`, none failed.
fn assert_nothing_accepted_and_every_image_new(emu: &Emulator, td: &TestDir, images: u64) {
    assert_eq!(emu.counters().create_jobs, 0);
    let status = td.status(emu);
    assert_eq!(num(&status, "/images/failed"), 0, "status {status}");
    assert_eq!(num(&status, "/images/new"), images, "status {status}");
}

#[test]
fn uploads_refused_for_the_outage_timeout_with_no_job_held_end_the_run_with_every_image_new() {
    let emu = emulator(Knobs {
        p_http_429: 1.0,
        retry_after_secs: 1,
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "z", 600, 6, &mut expected);

    let finished = td
        .run(
            &emu,
            &[&td.inputs()],
            &td.out(),
            &["-j", "4", "--outage-timeout", "2s"],
        )
        .expect_code(3);

    assert_eq!(finished.json()["end"], "unavailable");
    assert!(
        finished.stderr.contains("refused every upload for"),
        "stderr does not say why:\n{}",
        finished.stderr
    );
    assert_nothing_accepted_and_every_image_new(&emu, &td, 6);
}
