//! Rows against the emulator (in this process, on 127.0.0.1): pipeline, throughput, memory and
//! one-at-a-time. Each run gets a fresh emulator and a fresh ledger.

use std::time::Duration;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::data::{self, Tree};
use crate::eraser::RunSummary;
use crate::measure::{self, Measured};
use crate::table::{Row, Verdict, mib, secs, thousands};
use crate::{BenchResult, Ctx, progress, serial};

pub const PIPELINE_TARGET: &str = "≤ 1.1 × ideal; ≤ 3 get-job/job";
pub const THROUGHPUT_TARGET: &str = "printed";
pub const MEMORY_TARGET: &str = "≤ 64 MiB; not growing with N";
pub const SERIAL_TARGET: &str = "≥ 40 ×";

/// Largest peak RSS the memory row accepts.
const MEMORY_LIMIT: u64 = 64 << 20;

fn emulator(processing: Duration) -> BenchResult<Emulator> {
    Ok(Emulator::spawn(Knobs {
        processing_time: processing,
        ..Knobs::default()
    })?)
}

/// A full `eraser run` of `tree` against `emu` with `-j jobs`; every input must get its output.
fn full_run(
    ctx: &mut Ctx,
    emu: &Emulator,
    tree: &Tree,
    jobs: usize,
) -> BenchResult<(Measured, RunSummary)> {
    let ledger = ctx.fresh("run-ledger.db");
    let out = ctx.fresh("run-out");
    let jobs = jobs.to_string();
    let api = emu.api_url();
    let (m, s) = ctx.eraser.run(
        &ledger,
        &tree.root,
        &out,
        &["-j", &jobs, "--api-base", &api],
    )?;
    if s.outputs_done != tree.files as u64 {
        return Err(format!(
            "{} of {} outputs done ({} failed)",
            s.outputs_done, tree.files, s.outputs_failed
        )
        .into());
    }
    Ok((m, s))
}

fn tree(ctx: &mut Ctx, what: &str, n: usize, salt: u64) -> BenchResult<Tree> {
    progress(&format!("writing {} tiny JPEGs", thousands(n as u64)));
    let tree = data::image_tree(&ctx.fresh(what), n, salt)?;
    data::sync();
    Ok(tree)
}

/// `pipeline_images` unique images, processing 1 s, `-j 32`: wall time against ⌈N/32⌉ × 1 s
/// and the emulator's get-job count per job created.
pub fn pipeline(ctx: &mut Ctx) -> BenchResult<Row> {
    const JOBS: usize = 32;
    let n = ctx.sizes.pipeline_images;
    let tree = tree(ctx, "pipeline-tree", n, 2)?;
    let emu = emulator(Duration::from_secs(1))?;
    progress(&format!("eraser run -j {JOBS}, processing 1 s"));
    let (m, _) = full_run(ctx, &emu, &tree, JOBS)?;
    let counters = emu.counters();
    let ideal = Duration::from_secs(n.div_ceil(JOBS) as u64);
    let ratio = m.wall.as_secs_f64() / ideal.as_secs_f64();
    let polls = counters.get_jobs as f64 / counters.create_jobs.max(1) as f64;
    Ok(Row {
        name: "pipeline",
        measured: format!("{} for {n} images; {polls:.2} get-job/job", secs(m.wall)),
        reference: format!("ideal ⌈{n}/{JOBS}⌉ × 1 s = {}", secs(ideal)),
        ratio: format!("{ratio:.2} × ideal"),
        target: PIPELINE_TARGET,
        verdict: Verdict::check(
            ratio <= 1.1 && polls <= 3.0,
            format!(
                "{} jobs created, {} get-job calls",
                counters.create_jobs, counters.get_jobs
            ),
        ),
    })
}

/// `throughput_images` unique tiny images, processing 0, `-j 64`: images/s, and the CPU time of
/// eraser (its rusage) beside the emulator's (this process's CPU during the run, minus the
/// calling thread's, which only waits).
pub fn throughput(ctx: &mut Ctx) -> BenchResult<Row> {
    const JOBS: usize = 64;
    let n = ctx.sizes.throughput_images;
    let tree = tree(ctx, "throughput-tree", n, 3)?;
    let emu = emulator(Duration::ZERO)?;
    progress(&format!("eraser run -j {JOBS}, processing 0"));
    let process0 = measure::process_cpu();
    let thread0 = measure::thread_cpu();
    let (m, s) = full_run(ctx, &emu, &tree, JOBS)?;
    let emu_cpu = (measure::process_cpu().saturating_sub(process0))
        .saturating_sub(measure::thread_cpu().saturating_sub(thread0));
    let rate = n as f64 / m.wall.as_secs_f64().max(1e-9);
    let per_image = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    Ok(Row {
        name: "throughput",
        measured: format!(
            "{} images/s ({} in {})",
            thousands(rate as u64),
            thousands(n as u64),
            secs(m.wall)
        ),
        reference: format!(
            "CPU: eraser {} ({:.2} ms/image), emulator {} ({:.2} ms/image)",
            secs(m.cpu),
            per_image(m.cpu),
            secs(emu_cpu),
            per_image(emu_cpu)
        ),
        ratio: format!(
            "{:.2} × emulator CPU",
            m.cpu.as_secs_f64() / emu_cpu.as_secs_f64().max(1e-9)
        ),
        target: THROUGHPUT_TARGET,
        verdict: Verdict::Info(format!(
            "{} cores shared by both; {} get-job calls",
            ctx.machine.cores, s.get_job_calls
        )),
    })
}

/// Peak RSS of full runs (processing 0, `-j 64`) over `memory_small` and `scan_files` unique
/// files: at most 64 MiB, and the large run at most 1.25 × the small one.
pub fn memory(ctx: &mut Ctx) -> BenchResult<Row> {
    const JOBS: usize = 64;
    let small_n = ctx.sizes.memory_small;
    let small_tree = tree(ctx, "memory-tree", small_n, 4)?;
    let large_tree = ctx.scan_tree()?;
    let mut rss = Vec::new();
    let mut walls = Vec::new();
    for t in [&small_tree, &large_tree] {
        let emu = emulator(Duration::ZERO)?;
        progress(&format!(
            "eraser run over {} files, -j {JOBS}, processing 0",
            thousands(t.files as u64)
        ));
        let (m, _) = full_run(ctx, &emu, t, JOBS)?;
        rss.push(m.max_rss);
        walls.push(m.wall);
    }
    let growth = rss[1] as f64 / rss[0].max(1) as f64;
    Ok(Row {
        name: "memory",
        measured: format!(
            "peak RSS {} at {} files (run {})",
            mib(rss[1]),
            thousands(large_tree.files as u64),
            secs(walls[1])
        ),
        reference: format!(
            "peak RSS {} at {} files",
            mib(rss[0]),
            thousands(small_n as u64)
        ),
        ratio: format!("{growth:.2} × for 10 × files"),
        target: MEMORY_TARGET,
        verdict: Verdict::check(rss[1] <= MEMORY_LIMIT && growth <= 1.25, "full runs"),
    })
}

/// `serial_images` images at processing 1 s: eraser `-j 32` against the serial client that
/// polls every 3 s, each on its own emulator.
pub fn one_at_a_time(ctx: &mut Ctx) -> BenchResult<Row> {
    const JOBS: usize = 32;
    let n = ctx.sizes.serial_images;
    let tree = tree(ctx, "serial-tree", n, 5)?;
    let emu = emulator(Duration::from_secs(1))?;
    progress(&format!("eraser run -j {JOBS}, processing 1 s"));
    let (m, _) = full_run(ctx, &emu, &tree, JOBS)?;
    drop(emu);
    let emu = emulator(Duration::from_secs(1))?;
    progress(&format!(
        "serial client over {n} images, polling every 3 s (about {} s)",
        3 * n
    ));
    let serial = serial::run(&emu.api_url(), &tree.paths, Duration::from_secs(3))?;
    let ratio = serial.as_secs_f64() / m.wall.as_secs_f64().max(1e-9);
    Ok(Row {
        name: "one-at-a-time",
        measured: format!("eraser {} for {n} images", secs(m.wall)),
        reference: format!("serial client {}", secs(serial)),
        ratio: format!("{ratio:.1} × faster"),
        target: SERIAL_TARGET,
        verdict: Verdict::check(ratio >= 40.0, ""),
    })
}
