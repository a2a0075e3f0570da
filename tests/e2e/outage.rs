//! The service unreachable mid-run (network loss, service down): once uploads go unanswered even
//! after retries, the run stops submitting and exits 3 without marking any image failed for the
//! outage; the rerun once the service is back completes, paying once for each image.

use std::time::Duration;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::util::{
    Expected, Finished, PROCESS_TIMEOUT, Running, TestDir, assert_each_uploaded_once,
    assert_outputs_exactly, emulator, num, wait_for, write_unique,
};

const IMAGES: u64 = 12;

/// Jobs taking 2 s; once two are accepted, every API connection is dropped.
fn run_into_an_outage() -> (Emulator, TestDir, Expected, Vec<String>, Finished) {
    let knobs = Knobs {
        processing_time: Duration::from_secs(2),
        ..Knobs::default()
    };
    let emu = emulator(knobs.clone());
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "o", 800, IMAGES, &mut expected);
    let running = Running::start(&mut td.run_cmd(
        &emu,
        &[&td.inputs()],
        &td.out(),
        &["-j", "4", "--upload-concurrency", "1"],
    ));
    wait_for("two jobs accepted", PROCESS_TIMEOUT, || {
        emu.counters().create_jobs >= 2
    });
    emu.set_knobs(Knobs {
        p_drop: 1.0,
        ..knobs
    });
    let finished = running.wait(PROCESS_TIMEOUT);
    (emu, td, expected, shas, finished)
}

#[test]
fn an_unreachable_service_stops_the_run_with_exit_3_and_no_image_failed() {
    let (emu, td, _expected, _shas, finished) = run_into_an_outage();

    let summary = finished.expect_code(3).json();

    assert_eq!(summary["end"], "unavailable");
    let accepted = emu.counters().create_jobs;
    emu.set_knobs(Knobs::default());
    let status = td.status(&emu);
    assert_eq!(num(&status, "/images/failed"), 0, "status {status}");
    assert_eq!(num(&status, "/images/uploading"), 0, "status {status}");
    assert_eq!(
        num(&status, "/images/processing") + num(&status, "/images/done"),
        accepted,
        "every accepted job kept for the next run: status {status}"
    );
}

#[test]
fn a_rerun_after_an_outage_completes_and_pays_once_per_image() {
    let (emu, td, expected, shas, finished) = run_into_an_outage();
    finished.expect_code(3);
    emu.set_knobs(Knobs::default());

    td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "4"])
        .expect_code(0);

    assert_each_uploaded_once(&emu.counters(), &shas);
    assert_outputs_exactly(&td.out(), &expected);
}
