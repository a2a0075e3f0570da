//! Service and transport faults are absorbed: with moderate, seeded fault rates a single run
//! still ends with every output valid, exit 0, and each image paid for once.

use std::time::Duration;

use eraser_tests::emulator::Knobs;

use crate::util::{
    Expected, PROCESS_TIMEOUT, Running, TestDir, assert_each_uploaded_once, assert_outputs_exactly,
    emulator, num, temp_files_below, wait_for, write_unique,
};

const IMAGES: u64 = 15;

/// Runs a batch of 15 images against an emulator with `knobs`; asserts faults were injected,
/// the run completed (exit 0), OUT is exactly right and each image was uploaded once.
fn completes_despite(knobs: Knobs) {
    let emu = emulator(knobs);
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "f", 700, IMAGES, &mut expected);

    td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0);

    let counters = emu.counters();
    assert!(
        counters.faults_injected > 0,
        "no fault was injected: {counters:?}"
    );
    assert!(
        temp_files_below(&td.out()).is_empty(),
        "temp files left in OUT"
    );
    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&counters, &shas);
}

#[test]
fn http_500s_are_retried_until_every_image_is_done() {
    completes_despite(Knobs {
        p_http_500: 0.3,
        seed: 500,
        ..Knobs::default()
    });
}

#[test]
fn http_429s_are_waited_out_until_every_image_is_done() {
    completes_despite(Knobs {
        p_http_429: 0.3,
        retry_after_secs: 0,
        seed: 429,
        ..Knobs::default()
    });
}

#[test]
fn dropped_connections_are_retried_until_every_image_is_done() {
    completes_despite(Knobs {
        p_drop: 0.2,
        seed: 7,
        ..Knobs::default()
    });
}

#[test]
fn garbage_bodies_are_retried_until_every_image_is_done() {
    completes_despite(Knobs {
        p_garbage: 0.2,
        seed: 8,
        ..Knobs::default()
    });
}

#[test]
fn cdn_errors_are_retried_until_every_output_is_in_place() {
    completes_despite(Knobs {
        p_cdn_error: 0.3,
        seed: 503,
        ..Knobs::default()
    });
}

#[test]
fn truncated_downloads_are_retried_and_never_placed_as_outputs() {
    completes_despite(Knobs {
        p_truncate: 0.3,
        seed: 9,
        ..Knobs::default()
    });
}

#[test]
fn every_fault_at_once_with_retry_after_one_second_still_completes_in_one_run() {
    completes_despite(Knobs {
        processing_time: Duration::from_millis(50),
        p_http_500: 0.1,
        p_http_429: 0.05,
        retry_after_secs: 1,
        p_drop: 0.05,
        p_garbage: 0.05,
        p_cdn_error: 0.1,
        p_truncate: 0.1,
        seed: 42,
        ..Knobs::default()
    });
}

/// A service that takes only a few jobs at a time (429 above that) throttles a run asked for
/// far more: the run lowers its jobs in flight, ends complete, pays for each image once, and
/// says it was throttled.
#[test]
fn a_service_capped_at_three_jobs_throttles_a_run_of_sixteen_which_says_so_and_pays_once() {
    let emu = emulator(Knobs {
        processing_time: Duration::from_millis(200),
        max_in_flight: Some(3),
        retry_after_secs: 0,
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "cap", 710, 24, &mut expected);

    let finished = td
        .run(&emu, &[&td.inputs()], &td.out(), &["-j", "16"])
        .expect_code(0);

    let counters = emu.counters();
    assert!(
        counters.throttled > 0,
        "the cap never answered 429: {counters:?}"
    );
    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&counters, &shas);
    let summary = finished.json();
    assert!(num(&summary, "/concurrency_lowest") < 16, "{summary}");
    assert_eq!(num(&summary, "/concurrency_requested"), 16, "{summary}");
    assert_eq!(
        num(&summary, "/uploads_refused"),
        counters.throttled,
        "every refusal is counted once: {summary}"
    );
}

#[test]
fn a_finished_job_frees_its_slot_at_the_service_while_its_result_downloads() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "slow-cdn", 730, 3, &mut expected);
    emu.hold_downloads();

    let running = Running::start(&mut td.run_cmd(&emu, &[&td.inputs()], &td.out(), &["-j", "1"]));
    wait_for(
        "a second upload while the first result cannot be downloaded",
        PROCESS_TIMEOUT,
        || emu.counters().create_jobs >= 2,
    );
    assert_eq!(emu.counters().downloads, 0, "no result went through yet");
    emu.release_downloads();

    running.wait(PROCESS_TIMEOUT).expect_code(0);
    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), &shas);
}

/// A refused upload (429) holds no place while it waits: when one of the run's jobs finishes,
/// the next upload goes out at once instead of after the refusal's `Retry-After`, and the
/// refused image, put back in the queue, is paid for once and not counted as an attempt.
#[test]
fn a_refused_upload_does_not_wait_out_retry_after_when_a_job_of_the_run_finishes() {
    let emu = emulator(Knobs {
        processing_time: Duration::from_millis(500),
        max_in_flight: Some(2),
        retry_after_secs: 60,
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "refused", 740, 4, &mut expected);
    let args = ["-j", "8", "--upload-concurrency", "1"];

    let running = Running::start(&mut td.run_cmd(&emu, &[&td.inputs()], &td.out(), &args));
    wait_for("an upload refused", PROCESS_TIMEOUT, || {
        emu.counters().throttled >= 1
    });
    // Retry-After says 60 s (eraser waits 20 s at most): a third job within 15 s can only be
    // an upload sent when one of the first two finished.
    wait_for(
        "a third job, sent when a job finished",
        Duration::from_secs(15),
        || emu.counters().create_jobs >= 3,
    );
    running.wait(PROCESS_TIMEOUT).expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), &shas);
    let listed = td.ledger_cmd(&emu, &["list", "--json"]).expect_code(0);
    let attempts: Vec<u64> = listed
        .json_lines()
        .iter()
        .map(|image| num(image, "/attempts"))
        .collect();
    assert_eq!(attempts, [1, 1, 1, 1], "{listed:?}");
}

/// A reply lost after the service made the job: the image is sent again and the run still ends
/// complete, and every job the service made that eraser never heard of is reported, in the
/// summary and on its image in the ledger.
#[test]
fn replies_lost_after_the_job_was_made_are_counted_as_repeat_uploads() {
    let emu = emulator(Knobs {
        p_lose_reply: 0.4,
        seed: 41,
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "l", 700, IMAGES, &mut expected);

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0)
        .json();

    let counters = emu.counters();
    assert!(counters.replies_lost > 0, "no reply was lost: {counters:?}");
    assert_eq!(counters.create_jobs, IMAGES + counters.replies_lost);
    assert_eq!(
        num(&summary, "/repeat_uploads"),
        counters.replies_lost,
        "summary {summary}"
    );
    let listed = td.ledger_cmd(&emu, &["list", "--json"]).expect_code(0);
    let in_ledger: u64 = listed
        .stdout
        .lines()
        .map(|line| {
            let image: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            image["repeat_uploads"].as_u64().expect("repeat_uploads")
        })
        .sum();
    assert_eq!(in_ledger, counters.replies_lost, "{}", listed.stdout);
    assert_outputs_exactly(&td.out(), &expected);
}
