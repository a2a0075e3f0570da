//! Ctrl-C (SIGINT), SIGTERM or SIGHUP while jobs are in flight: the requests in flight finish
//! and are recorded, the run exits 130 (143 for SIGTERM, 129 for SIGHUP), and the rerun
//! completes without uploading any image twice. A run started with SIGHUP ignored (`nohup`)
//! keeps going when its terminal closes.

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::util::{
    Expected, Finished, PROCESS_TIMEOUT, Running, TestDir, assert_each_uploaded_once,
    assert_outputs_exactly, emulator, files_below, num, wait_for, write_unique,
};

const IMAGES: u64 = 16;

/// Starts a run over 16 images with jobs taking 1.5 s, sends `signal` once some jobs are in
/// flight, and waits for the end.
fn interrupted_run(signal: libc::c_int) -> (Emulator, TestDir, Expected, Vec<String>, Finished) {
    signalled_run(signal, |_| {})
}

/// [`interrupted_run`] with `setup` applied to the command first.
fn signalled_run(
    signal: libc::c_int,
    setup: impl FnOnce(&mut Command),
) -> (Emulator, TestDir, Expected, Vec<String>, Finished) {
    let emu = emulator(Knobs {
        processing_time: Duration::from_millis(1500),
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "i", 300, IMAGES, &mut expected);

    let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &["-j", "8"]);
    setup(&mut cmd);
    let child = Running::start(&mut cmd);
    wait_for("two jobs in flight", PROCESS_TIMEOUT, || {
        emu.counters().create_jobs >= 2
    });
    child.signal(signal);
    let finished = child.wait(PROCESS_TIMEOUT);
    (emu, td, expected, shas, finished)
}

/// Starts the command with SIGHUP's disposition set to `disposition` (`SIG_DFL`, `SIG_IGN`).
fn sighup_starting_as(disposition: libc::sighandler_t) -> impl FnOnce(&mut Command) {
    move |cmd: &mut Command| {
        // SAFETY: between fork and exec only an async-signal-safe call is made: signal(2).
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(libc::SIGHUP, disposition);
                Ok(())
            });
        }
    }
}

/// Stops a run with `signal`, expects `code`, then reruns it: every output in place and no
/// image uploaded twice.
fn rerun_after(signal: libc::c_int, code: i32) {
    let (emu, td, expected, shas, finished) = interrupted_run(signal);
    finished.expect_code(code);
    assert!(
        emu.counters().create_jobs < IMAGES,
        "the signal came too late to test a resume"
    );
    emu.set_knobs(Knobs {
        processing_time: Duration::from_millis(50),
        ..Knobs::default()
    });

    td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0);

    assert_each_uploaded_once(&emu.counters(), &shas);
    assert_outputs_exactly(&td.out(), &expected);
}

/// Stops a run with `signal`: it exits `code` with an "interrupted" summary.
fn stops_with(signal: libc::c_int, code: i32) {
    let (_emu, _td, _expected, _shas, finished) = interrupted_run(signal);

    let summary = finished.expect_code(code).json();

    assert_eq!(summary["end"], "interrupted");
}

#[test]
fn an_interrupted_run_counts_the_outputs_it_placed_and_leaves_the_rest_to_the_next_run() {
    let emu = emulator(Knobs {
        processing_time: Duration::from_millis(300),
        ..Knobs::default()
    });
    let td = TestDir::new();
    write_unique(&td, "i", 320, IMAGES, &mut Expected::new());
    let child = Running::start(&mut td.run_cmd(&emu, &[&td.inputs()], &td.out(), &["-j", "2"]));
    wait_for("two results downloaded", PROCESS_TIMEOUT, || {
        emu.counters().downloads >= 2
    });
    child.signal(libc::SIGINT);

    let summary = child.wait(PROCESS_TIMEOUT).expect_code(130).json();

    let placed = files_below(&td.out()).len() as u64;
    assert!((2..IMAGES).contains(&placed), "{placed} outputs in OUT");
    assert_eq!(num(&summary, "/outputs_done"), placed);
    assert_eq!(num(&summary, "/pending"), IMAGES - placed);
}

#[test]
fn sigint_while_jobs_are_in_flight_exits_130() {
    stops_with(libc::SIGINT, 130);
}

#[test]
fn rerun_after_sigint_completes_without_uploading_any_image_twice() {
    rerun_after(libc::SIGINT, 130);
}

#[test]
fn sigterm_while_jobs_are_in_flight_stops_gracefully_and_exits_143() {
    stops_with(libc::SIGTERM, 143);
}

/// `kill PID` (SIGTERM) must not cost what `kill -9` may: the uploads it caught in flight are
/// recorded before the exit, so the rerun pays for nothing twice.
#[test]
fn rerun_after_sigterm_completes_without_uploading_any_image_twice() {
    rerun_after(libc::SIGTERM, 143);
}

#[test]
fn sighup_while_jobs_are_in_flight_stops_gracefully_and_exits_129() {
    // SIGHUP's default action, whatever the test runner was started with (under `nohup` the
    // child would inherit it ignored, and eraser rightly keeps it so).
    let (_emu, _td, _expected, _shas, finished) =
        signalled_run(libc::SIGHUP, sighup_starting_as(libc::SIG_DFL));

    let summary = finished.expect_code(129).json();

    assert_eq!(summary["end"], "interrupted");
}

#[test]
fn a_run_started_with_sighup_ignored_like_nohup_finishes_despite_a_hangup() {
    let (emu, td, expected, shas, finished) =
        signalled_run(libc::SIGHUP, sighup_starting_as(libc::SIG_IGN));

    let summary = finished.expect_code(0).json();

    assert_eq!(summary["end"], "complete");
    assert_each_uploaded_once(&emu.counters(), &shas);
    assert_outputs_exactly(&td.out(), &expected);
}
