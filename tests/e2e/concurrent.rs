//! Two runs at once on one ledger, same inputs, different OUTs: no image is uploaded twice, and
//! each run completes its own OUT (polling or waiting for the jobs the other holds).

use std::time::Duration;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::util::{
    Expected, Finished, PROCESS_TIMEOUT, Running, TestDir, assert_each_uploaded_once,
    assert_outputs_exactly, emulator, write_unique,
};

const IMAGES: u64 = 30;

/// Starts two runs together over the same 30 images into `out1/` and `out2/`; waits for both.
fn two_runs_at_once() -> (Emulator, TestDir, Expected, Vec<String>, [Finished; 2]) {
    let emu = emulator(Knobs {
        processing_time: Duration::from_millis(200),
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "c", 400, IMAGES, &mut expected);

    let outs = [td.root().join("out1"), td.root().join("out2")];
    let runs = outs
        .each_ref()
        .map(|out| Running::start(&mut td.run_cmd(&emu, &[&td.inputs()], out, &["-j", "8"])));
    let finished = runs.map(|run| run.wait(PROCESS_TIMEOUT));
    (emu, td, expected, shas, finished)
}

#[test]
fn two_concurrent_runs_on_one_ledger_upload_each_image_once() {
    let (emu, _td, _expected, shas, _finished) = two_runs_at_once();

    assert_each_uploaded_once(&emu.counters(), &shas);
}

#[test]
fn two_concurrent_runs_on_one_ledger_both_exit_0_with_their_out_complete() {
    let (_emu, td, expected, _shas, [first, second]) = two_runs_at_once();

    first.expect_code(0);
    second.expect_code(0);
    assert_outputs_exactly(&td.root().join("out1"), &expected);
    assert_outputs_exactly(&td.root().join("out2"), &expected);
}

#[test]
fn two_runs_creating_one_ledger_at_once_send_one_product_serial() {
    let (emu, _td, _expected, _shas, _finished) = two_runs_at_once();

    let serials: std::collections::BTreeSet<String> = emu
        .counters()
        .api_headers
        .iter()
        .flat_map(|headers| headers.iter())
        .filter(|(name, _)| name == "product-serial")
        .map(|(_, value)| value.clone())
        .collect();
    assert_eq!(serials.len(), 1, "product serials sent: {serials:?}");
}
