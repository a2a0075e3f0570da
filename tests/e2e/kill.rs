//! SIGKILL at random moments: whatever the moment, a final run ends with every output valid,
//! no partial or temp file left in OUT, and at most one extra upload per kill.

use std::time::Duration;

use eraser_tests::emulator::Knobs;

use crate::util::{
    Expected, PROCESS_TIMEOUT, Running, TestDir, assert_outputs_exactly, emulator, num,
    temp_files_below, wait_for, write_unique,
};

const IMAGES: u64 = 40;
const KILLS: u32 = 10;

#[test]
fn ten_sigkills_then_a_final_run_leave_valid_outputs_no_temp_files_and_few_extra_uploads() {
    let emu = emulator(Knobs {
        processing_time: Duration::from_millis(300),
        ..Knobs::default()
    });
    let td = TestDir::new();
    let mut expected = Expected::new();
    write_unique(&td, "k", 500, IMAGES, &mut expected);
    // One create-job in flight at a time: then "a kill costs at most the uploads in flight at
    // that instant" is exactly "at most one extra upload per kill".
    let args = ["-j", "4", "--upload-concurrency", "1"];
    let mut rng = fastrand::Rng::with_seed(0x5eed_4b11);

    let mut kills = 0u64;
    for round in 0..KILLS {
        let before = emu.counters().create_job_requests + emu.counters().get_jobs;
        let mut child = Running::start(&mut td.run_cmd(&emu, &[&td.inputs()], &td.out(), &args));
        // Let it get going (its ledger open, something sent), then kill it at a random moment.
        wait_for(
            &format!("round {round}: any API request or the run's end"),
            PROCESS_TIMEOUT,
            || {
                let c = emu.counters();
                c.create_job_requests + c.get_jobs > before || child.has_exited()
            },
        );
        std::thread::sleep(Duration::from_millis(rng.u64(0..1500)));
        if child.kill() {
            kills += 1;
        }
    }

    // 40 jobs, 4 at a time, each first polled ~1 s after its upload: a run needs ~10 s, so most
    // kills land while there is work left, in uploads, polls, downloads or placing.
    assert!(
        kills >= u64::from(KILLS) / 2,
        "only {kills} kills hit a running process"
    );

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &args)
        .expect_code(0)
        .json();

    let leftovers = temp_files_below(&td.out());
    assert!(
        leftovers.is_empty(),
        "partial or temp files in OUT: {leftovers:?}"
    );
    assert_outputs_exactly(&td.out(), &expected);
    let counters = emu.counters();
    let extra = counters.create_jobs.saturating_sub(IMAGES);
    assert!(
        extra <= kills,
        "{extra} extra uploads after {kills} kills ({} images uploaded more than once)",
        counters
            .create_jobs_by_sha
            .values()
            .filter(|n| **n > 1)
            .count()
    );
    assert_eq!(
        counters.create_jobs_by_sha.len() as u64,
        IMAGES,
        "every image was uploaded"
    );
    assert_eq!(num(&summary, "/outputs_done"), IMAGES);
    let status = td.status(&emu);
    assert_eq!(num(&status, "/images/done"), IMAGES);
    assert_eq!(num(&status, "/inputs/done"), IMAGES);
}
