//! Rows against the emulator (in this process, on 127.0.0.1): pipeline, throughput, memory and
//! one-at-a-time. Each run gets a fresh emulator and a fresh ledger.

use std::path::PathBuf;
use std::time::Duration;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::context::{Archive, ArchiveSize, Bin};
use crate::data::{self, Tree};
use crate::eraser::RunSummary;
use crate::measure::{self, Measured};
use crate::table::{Row, Verdict, mib, secs, thousands};
use crate::{BenchResult, Ctx, progress, serial};

pub const PIPELINE_TARGET: &str = "≤ 1.1 × ideal; ≤ 3 get-job/job";
pub const THROUGHPUT_TARGET: &str = "printed";
pub const MEMORY_TARGET: &str = "≤ 64 MiB; not growing with N";
pub const SERIAL_TARGET: &str = "≥ 40 ×";

pub const PIPELINE_ABOUT: &str = "A full `eraser run -j 32` over `pipeline_images` unique tiny \
    JPEGs against the emulator with a processing time of 1 s, whole process. The reference is \
    the ideal ⌈N/32⌉ × 1 s; the emulator's get-job count per job created is printed beside \
    it. Target: at most 1.1 × the ideal and 3 get-job calls per job.";
pub const THROUGHPUT_ABOUT: &str = "A full `eraser run -j 64` over `throughput_images` unique \
    tiny JPEGs, processing time 0: images per second. Beside it the CPU time of eraser (its \
    rusage) and of the emulator (the bench process's CPU during the run, less its waiting main \
    thread), which share the cores. No target: the service's time is what a user waits for.";
pub const MEMORY_ABOUT: &str = "Peak RSS (`ru_maxrss` from `wait4`, through a small helper \
    process so the bench's own memory is not carried into the child) of full runs, \
    `-j 64`, processing 0, over `memory_small` and over `scan_files` unique files. Target: at \
    most 64 MiB, and the large run at most 1.25 × the small one. These two runs leave the \
    completed archives the `rescan-done` rows rescan.";
pub const SERIAL_ABOUT: &str = "`serial_images` images at a processing time of 1 s: \
    `eraser run -j 32` against a client written in the bench like the web page (upload one \
    image, poll get-job every 3 s, download, next), each on its own emulator. Target: eraser \
    at least 40 × faster.";

/// Largest peak RSS the memory row accepts.
const MEMORY_LIMIT: u64 = 64 << 20;

pub fn emulator(processing: Duration) -> BenchResult<Emulator> {
    Ok(Emulator::spawn(Knobs {
        processing_time: processing,
        ..Knobs::default()
    })?)
}

/// A finished full run and where it left its ledger and OUT.
pub struct FullRun {
    pub measured: Measured,
    pub summary: RunSummary,
    pub ledger: PathBuf,
    pub out: PathBuf,
}

/// A full `eraser run` by `bin` of `tree` against `emu` with `-j jobs`, on a fresh ledger into
/// a fresh OUT; every input must get its output.
pub fn full_run(
    ctx: &mut Ctx,
    bin: Bin,
    emu: &Emulator,
    tree: &Tree,
    jobs: usize,
) -> BenchResult<FullRun> {
    let ledger = ctx.fresh("run-ledger.db");
    let out = ctx.fresh("run-out");
    let jobs = jobs.to_string();
    let api = emu.api_url();
    let (measured, summary) = ctx.eraser(bin).run(
        &ledger,
        &tree.root,
        &out,
        &["-j", &jobs, "--api-base", &api],
    )?;
    if summary.outputs_done != tree.files as u64 {
        return Err(format!(
            "{} of {} outputs done ({} failed)",
            summary.outputs_done, tree.files, summary.outputs_failed
        )
        .into());
    }
    Ok(FullRun {
        measured,
        summary,
        ledger,
        out,
    })
}

/// A full run of an archive size's tree at processing 0 by `bin`, kept as its completed
/// archive for the `rescan-done` rows.
pub fn complete_archive(
    ctx: &mut Ctx,
    bin: Bin,
    size: ArchiveSize,
    jobs: usize,
) -> BenchResult<FullRun> {
    let tree = ctx.tree(size)?;
    let emu = emulator(Duration::ZERO)?;
    progress(&format!(
        "eraser run over {} files, -j {jobs}, processing 0",
        thousands(tree.files as u64)
    ));
    let run = full_run(ctx, bin, &emu, &tree, jobs)?;
    ctx.built(bin).archives.insert(
        size,
        Archive {
            tree,
            ledger: run.ledger.clone(),
            out: run.out.clone(),
            jobs,
        },
    );
    Ok(run)
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
    progress(&format!("eraser run -j {JOBS}, processing 1 s"));
    let both = ctx.both(|ctx, bin| {
        let emu = emulator(Duration::from_secs(1))?;
        let run = full_run(ctx, bin, &emu, &tree, JOBS)?;
        Ok((run.measured.wall, emu.counters()))
    })?;
    let ideal = Duration::from_secs(n.div_ceil(JOBS) as u64);
    let ratio = |wall: Duration| wall.as_secs_f64() / ideal.as_secs_f64();
    let polls =
        |c: &eraser_tests::emulator::Counters| c.get_jobs as f64 / c.create_jobs.max(1) as f64;
    let (wall, counters) = &both.main;
    Ok(Row {
        name: "pipeline",
        measured: format!(
            "{} for {n} images; {:.2} get-job/job",
            secs(*wall),
            polls(counters)
        ),
        reference: format!("ideal ⌈{n}/{JOBS}⌉ × 1 s = {}", secs(ideal)),
        ratio: format!("{:.2} × ideal", ratio(*wall)),
        baseline: both.baseline_cell(|(wall, counters)| {
            format!(
                "{} · {:.2} × ideal; {:.2} get-job/job",
                secs(*wall),
                ratio(*wall),
                polls(counters)
            )
        }),
        target: PIPELINE_TARGET,
        verdict: Verdict::check(
            ratio(*wall) <= 1.1 && polls(counters) <= 3.0,
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
    progress(&format!("eraser run -j {JOBS}, processing 0"));
    let both = ctx.both(|ctx, bin| {
        let emu = emulator(Duration::ZERO)?;
        let process0 = measure::process_cpu();
        let thread0 = measure::thread_cpu();
        let run = full_run(ctx, bin, &emu, &tree, JOBS)?;
        let emu_cpu = (measure::process_cpu().saturating_sub(process0))
            .saturating_sub(measure::thread_cpu().saturating_sub(thread0));
        Ok((run, emu_cpu))
    })?;
    let rate = |run: &FullRun| n as f64 / run.measured.wall.as_secs_f64().max(1e-9);
    let versus_emulator = |(run, emu_cpu): &(FullRun, Duration)| {
        run.measured.cpu.as_secs_f64() / emu_cpu.as_secs_f64().max(1e-9)
    };
    let per_image = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    let (run, emu_cpu) = &both.main;
    Ok(Row {
        name: "throughput",
        measured: format!(
            "{} images/s ({} in {})",
            thousands(rate(run) as u64),
            thousands(n as u64),
            secs(run.measured.wall)
        ),
        reference: format!(
            "CPU: eraser {} ({:.2} ms/image), emulator {} ({:.2} ms/image)",
            secs(run.measured.cpu),
            per_image(run.measured.cpu),
            secs(*emu_cpu),
            per_image(*emu_cpu)
        ),
        ratio: format!("{:.2} × emulator CPU", versus_emulator(&both.main)),
        baseline: both.baseline_cell(|pair| {
            format!(
                "{} images/s · {:.2} × emulator CPU",
                thousands(rate(&pair.0) as u64),
                versus_emulator(pair)
            )
        }),
        target: THROUGHPUT_TARGET,
        verdict: Verdict::Info(format!(
            "{} cores shared by both; {} get-job calls",
            ctx.machine.cores, run.summary.get_job_calls
        )),
    })
}

/// Peak RSS of full runs (processing 0, `-j 64`) over `memory_small` and `scan_files` unique
/// files: at most 64 MiB, and the large run at most 1.25 × the small one. Both runs are kept as
/// completed archives.
pub fn memory(ctx: &mut Ctx) -> BenchResult<Row> {
    const JOBS: usize = 64;
    let both = ctx.both(|ctx, bin| {
        let small = complete_archive(ctx, bin, ArchiveSize::Small, JOBS)?;
        let large = complete_archive(ctx, bin, ArchiveSize::Large, JOBS)?;
        Ok((small.measured, large.measured))
    })?;
    let growth =
        |(small, large): &(Measured, Measured)| large.max_rss as f64 / small.max_rss.max(1) as f64;
    let (small, large) = &both.main;
    let (small_n, large_n) = (ctx.sizes.memory_small, ctx.sizes.scan_files);
    Ok(Row {
        name: "memory",
        measured: format!(
            "peak RSS {} at {} files (run {})",
            mib(large.max_rss),
            thousands(large_n as u64),
            secs(large.wall)
        ),
        reference: format!(
            "peak RSS {} at {} files",
            mib(small.max_rss),
            thousands(small_n as u64)
        ),
        ratio: format!("{:.2} × for 10 × files", growth(&both.main)),
        baseline: both.baseline_cell(|pair| {
            format!(
                "peak RSS {} · {:.2} × for 10 × files",
                mib(pair.1.max_rss),
                growth(pair)
            )
        }),
        target: MEMORY_TARGET,
        verdict: Verdict::check(
            large.max_rss <= MEMORY_LIMIT && growth(&both.main) <= 1.25,
            "full runs",
        ),
    })
}

/// `serial_images` images at processing 1 s: eraser `-j 32` against the serial client that
/// polls every 3 s, each on its own emulator.
pub fn one_at_a_time(ctx: &mut Ctx) -> BenchResult<Row> {
    const JOBS: usize = 32;
    let n = ctx.sizes.serial_images;
    let tree = tree(ctx, "serial-tree", n, 5)?;
    progress(&format!("eraser run -j {JOBS}, processing 1 s"));
    let both = ctx.both(|ctx, bin| {
        let emu = emulator(Duration::from_secs(1))?;
        Ok(full_run(ctx, bin, &emu, &tree, JOBS)?.measured.wall)
    })?;
    let emu = emulator(Duration::from_secs(1))?;
    progress(&format!(
        "serial client over {n} images, polling every 3 s (about {} s)",
        3 * n
    ));
    let serial = serial::run(&emu.api_url(), &tree.paths, Duration::from_secs(3))?;
    let faster = |wall: Duration| serial.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    Ok(Row {
        name: "one-at-a-time",
        measured: format!("eraser {} for {n} images", secs(both.main)),
        reference: format!("serial client {}", secs(serial)),
        ratio: format!("{:.1} × faster", faster(both.main)),
        baseline: both
            .baseline_cell(|wall| format!("{} · {:.1} × faster", secs(*wall), faster(*wall))),
        target: SERIAL_TARGET,
        verdict: Verdict::check(faster(both.main) >= 40.0, ""),
    })
}
