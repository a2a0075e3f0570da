//! Soak (ignored by default; `just soak`): 10,000 tiny images against an emulator with every
//! fault knob on at low rates, SIGKILLed and resumed 5 times, then run to the end. Every output
//! must be valid, extra uploads at most one per kill, and memory flat: the peak RSS of each
//! child (from `wait4`) is printed, and RSS sampled along the way does not grow with progress.
//!
//! `ERASER_SOAK_N` sets the number of images (e.g. 500 for a quick run).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eraser_tests::emulator::Knobs;

use crate::util::{
    Expected, TestDir, assert_outputs_exactly, emulator, files_below, num, temp_files_below,
    write_unique,
};

/// Images when `ERASER_SOAK_N` is not set.
const DEFAULT_IMAGES: u64 = 10_000;
/// Images per input folder.
const PER_FOLDER: u64 = 500;
/// SIGKILLs before the final run.
const KILLS: u64 = 5;
/// Longest one child may run.
const CHILD_DEADLINE: Duration = Duration::from_secs(45 * 60);
/// Final runs with `--retry-failed` allowed before giving up (jobs fail at random, 1%).
const FINAL_RUNS: u32 = 4;
/// How often RSS and progress are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The `eraser run` flags: one create-job in flight, so a kill costs at most one extra upload.
const ARGS: [&str; 4] = ["-j", "32", "--upload-concurrency", "1"];

fn images() -> u64 {
    std::env::var("ERASER_SOAK_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_IMAGES)
}

/// Every knob that a run is meant to absorb, at low rates (refusal and hostile modes end runs
/// by design, so they are off).
fn every_fault() -> Knobs {
    Knobs {
        processing_time: Duration::from_millis(100),
        p_http_500: 0.02,
        p_http_429: 0.02,
        retry_after_secs: 0,
        p_drop: 0.01,
        p_garbage: 0.01,
        p_job_fail: 0.01,
        p_cdn_error: 0.02,
        p_truncate: 0.02,
        max_in_flight: Some(24),
        seed: 0x50a_c0de,
        ..Knobs::default()
    }
}

/// One sample: files in OUT so far (progress) and the child's resident set, KiB.
type Sample = (u64, u64);

/// How a child ended and what it used.
struct ChildReport {
    label: String,
    /// Exit code; None when killed by a signal.
    code: Option<i32>,
    killed: bool,
    /// ru_maxrss from wait4, KiB.
    peak_rss_kib: u64,
    samples: Vec<Sample>,
    seconds: f64,
}

/// Runs `cmd` (stdout/stderr to files in `logs`), sampling its RSS against the files in `out`
/// (read from the disk: the emulator's counters are too large to copy this often); kills it
/// with SIGKILL once `kill_when(progress)` holds. Reaped with wait4, for its rusage.
fn run_child(
    cmd: &mut Command,
    out: &Path,
    logs: &Path,
    label: &str,
    mut kill_when: impl FnMut(u64) -> bool,
) -> ChildReport {
    let stdout = File::create(logs.join(format!("{label}.out"))).expect("create the log");
    let stderr = File::create(logs.join(format!("{label}.err"))).expect("create the log");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("eraser starts");
    let pid = libc::pid_t::try_from(child.id())
        .ok()
        .filter(|p| *p > 0)
        .expect("a positive pid");
    // Reaped below with wait4 (for its rusage), never through `child`.
    drop(child);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut killed = false;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own unreaped child, with valid out-pointers.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(reaped >= 0, "wait4 failed for {label}");
        if reaped == pid {
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return ChildReport {
                label: label.to_owned(),
                code,
                killed,
                peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                samples,
                seconds: started.elapsed().as_secs_f64(),
            };
        }
        let progress = files_below(out).len() as u64;
        if let Some(rss) = rss_kib(pid) {
            samples.push((progress, rss));
        }
        let overdue = started.elapsed() > CHILD_DEADLINE;
        if !killed && (overdue || kill_when(progress)) {
            // SAFETY: kill(2) of our own child, not reaped yet, so the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
            assert!(!overdue, "{label} still running after {CHILD_DEADLINE:?}");
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// VmRSS of `pid` in KiB, from /proc.
fn rss_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[test]
#[ignore = "long: run by `just soak` (ERASER_SOAK_N=500 for a short one)"]
fn soak_ten_thousand_images_with_every_fault_killed_and_resumed() {
    let n = images();
    let emu = emulator(every_fault());
    let td = TestDir::new();
    let logs = td.root().join("logs");
    std::fs::create_dir_all(&logs).expect("create the log folder");
    let mut expected = Expected::new();
    for (folder, first) in (0..n).step_by(PER_FOLDER as usize).enumerate() {
        let count = PER_FOLDER.min(n - first);
        write_unique(&td, &format!("f{folder:03}"), first, count, &mut expected);
    }
    let mut rng = fastrand::Rng::with_seed(0x50a_4b11);
    let mut reports = Vec::new();

    // Kill k lands once about k/(KILLS+1) of the outputs are in place, plus a random moment.
    let mut kills = 0;
    for k in 1..=KILLS {
        let mark = n * k / (KILLS + 1);
        let mut extra_wait: Option<Instant> = None;
        let jitter = Duration::from_millis(rng.u64(0..400));
        let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &ARGS);
        let report = run_child(&mut cmd, &td.out(), &logs, &format!("kill-{k}"), |done| {
            if done < mark {
                return false;
            }
            *extra_wait.get_or_insert_with(|| Instant::now() + jitter) <= Instant::now()
        });
        if report.killed {
            kills += 1;
        }
        reports.push(report);
    }

    // Then to the end; images whose job failed (1%) are retried until none is left.
    let mut retried_failed = 0;
    let mut finished = false;
    for round in 1..=FINAL_RUNS {
        let status = td.status(&emu);
        retried_failed += num(&status, "/images/failed");
        let mut cmd = td.run_cmd(
            &emu,
            &[&td.inputs()],
            &td.out(),
            &[&ARGS[..], &["--retry-failed"]].concat(),
        );
        let report = run_child(
            &mut cmd,
            &td.out(),
            &logs,
            &format!("final-{round}"),
            |_| false,
        );
        let code = report.code;
        reports.push(report);
        assert!(
            matches!(code, Some(0 | 1)),
            "final run {round} ended with {code:?}; see {}",
            logs.display()
        );
        if code == Some(0) {
            finished = true;
            break;
        }
    }

    // ru_maxrss counts the test process's own RSS at fork (before execve), which grows with the
    // emulator's retained uploads; the RSS sampled from /proc is the child's alone.
    println!("soak: {n} images, {kills} kills");
    for r in &reports {
        let sampled = r.samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0);
        println!(
            "  {:<8} exit {:>4}  {:>7.1}s  RSS sampled max {:>6.1} MiB, ru_maxrss {:>6.1} MiB{}",
            r.label,
            r.code.map_or_else(|| "kill".to_owned(), |c| c.to_string()),
            r.seconds,
            mib(sampled),
            mib(r.peak_rss_kib),
            if r.killed { "  (SIGKILL)" } else { "" }
        );
    }
    assert!(finished, "no final run completed; see {}", logs.display());
    assert!(
        kills >= KILLS / 2,
        "only {kills} kills hit a running process"
    );

    // All outputs valid, nothing left behind.
    let leftovers = temp_files_below(&td.out());
    assert!(leftovers.is_empty(), "temp files in OUT: {leftovers:?}");
    assert_outputs_exactly(&td.out(), &expected);

    // Extra uploads: beyond one per image and one per retried failed job, at most one per kill.
    let counters = emu.counters();
    assert_eq!(
        counters.create_jobs_by_sha.len() as u64,
        n,
        "every image uploaded"
    );
    let extra = counters
        .create_jobs
        .saturating_sub(n)
        .saturating_sub(retried_failed);
    println!(
        "  uploads {} for {n} images ({retried_failed} failed jobs retried): {extra} extra",
        counters.create_jobs
    );
    assert!(extra <= kills, "{extra} extra uploads after {kills} kills");

    // Memory flat: RSS sampled in the second half of the work stays near the first half's.
    let samples: Vec<Sample> = reports.iter().flat_map(|r| r.samples.clone()).collect();
    let early = samples
        .iter()
        .filter(|(progress, _)| *progress < n / 2)
        .map(|(_, rss)| *rss)
        .max()
        .unwrap_or(0);
    let late = samples
        .iter()
        .filter(|(progress, _)| *progress >= n / 2)
        .map(|(_, rss)| *rss)
        .max()
        .unwrap_or(0);
    println!(
        "  RSS max {:.1} MiB in the first half of the work, {:.1} MiB in the second",
        mib(early),
        mib(late)
    );
    assert!(
        late <= early + early / 4 + 16 * 1024,
        "RSS grows with progress: {:.1} MiB early, {:.1} MiB late",
        mib(early),
        mib(late)
    );
}
