//! The completed-archive rescans, `rescan-done-20k` and `rescan-done-200k`: the case users repeat
//! most, the same command again over an archive whose every image is done and every output in
//! place.

use std::time::Duration;

use crate::context::{Archive, ArchiveSize, Bin};
use crate::eraser::RunSummary;
use crate::service_rows::{self, emulator};
use crate::table::{Row, Verdict, secs, thousands};
use crate::{BenchResult, Ctx, progress};

pub const DONE_TARGET: &str =
    "≤ 1.5 × (find INPUT + find OUT); nothing hashed or sent; every output confirmed";

pub const DONE_20K_ABOUT: &str = "An archive of `memory_small` tiny JPEGs whose every image \
    is done and every output in place: the memory row's small full run (processing 0, `-j 64`) \
    when it ran, else one made first. Then the same command again on the same ledger, INPUT and \
    OUT (against a fresh emulator, which must see no request), best of 2. Its `--json` summary \
    must show nothing hashed, uploaded or downloaded, and every input's output confirmed \
    (`outputs_done` equal to the inputs). The reference is `find INPUT -printf '%s %T@'` plus \
    the same over OUT, each the best of 3 after a warm-up, measured in the row. Target: at most \
    1.5 × that sum; when missed, the verdict gives eraser's time per input beyond the two \
    finds and its CPU time.";
pub const DONE_200K_ABOUT: &str = "As `rescan-done-20k`, over the archive of `scan_files` files \
    (the scan tree) that the memory row's large full run completes.";

/// Jobs in flight of the full run that completes an archive built here (as the memory row's).
const JOBS: usize = 64;

/// `memory_small` files.
pub fn rescan_done_small(ctx: &mut Ctx) -> BenchResult<Row> {
    rescan_done(ctx, "rescan-done-20k", ArchiveSize::Small)
}

/// `scan_files` files.
pub fn rescan_done_large(ctx: &mut Ctx) -> BenchResult<Row> {
    rescan_done(ctx, "rescan-done-200k", ArchiveSize::Large)
}

/// What one binary's reruns showed.
#[derive(Debug, Clone)]
struct Reruns {
    /// The fastest rerun's wall time and its CPU time.
    best: Duration,
    cpu: Duration,
    /// What went wrong in any rerun, empty when nothing did.
    faults: Vec<String>,
}

fn rescan_done(ctx: &mut Ctx, name: &'static str, size: ArchiveSize) -> BenchResult<Row> {
    let both = ctx.both(|ctx, bin| rerun_archive(ctx, bin, size))?;
    let Some(archive) = ctx.built(Bin::Main).archives.get(&size).cloned() else {
        return Err("the completed archive is gone".into());
    };
    progress("find -printf over INPUT and over OUT (1 warm-up, best of 3 each)");
    let finds = ctx
        .find_now(&archive.tree.root, 3)?
        .zip(ctx.find_now(&archive.out, 3)?);
    let versus = |best: Duration| {
        finds.map(|(input, out)| best.as_secs_f64() / (input + out).as_secs_f64().max(1e-9))
    };
    let reruns = &both.main;
    let ratio = versus(reruns.best);
    let n = archive.tree.files as u64;
    let met = reruns.faults.is_empty() && ratio.is_some_and(|r| r <= 1.5);
    let note = if !reruns.faults.is_empty() {
        reruns.faults.join("; ")
    } else if met || finds.is_none() {
        format!(
            "best of 2; nothing hashed, uploaded or downloaded; all {} outputs confirmed; CPU {}",
            thousands(n),
            secs(reruns.cpu)
        )
    } else {
        let finds = finds.map_or(Duration::ZERO, |(input, out)| input + out);
        let beyond = reruns.best.saturating_sub(finds).as_secs_f64() * 1e6 / n.max(1) as f64;
        format!(
            "limit: eraser's work beyond the two walks, {beyond:.1} µs per input (CPU {} in \
             {}); nothing hashed, uploaded or downloaded; all {} outputs confirmed",
            secs(reruns.cpu),
            secs(reruns.best),
            thousands(n)
        )
    };
    Ok(Row {
        name,
        measured: format!("{} done files in {}", thousands(n), secs(reruns.best)),
        reference: finds.map_or_else(
            || "find not installed".into(),
            |(input, out)| {
                format!(
                    "find INPUT {} + find OUT {} = {}",
                    secs(input),
                    secs(out),
                    secs(input + out)
                )
            },
        ),
        ratio: ratio.map_or_else(|| "—".into(), |r| format!("{r:.2} × finds")),
        baseline: both.baseline_cell(|reruns| {
            let ratio =
                versus(reruns.best).map_or_else(String::new, |r| format!(" · {r:.2} × finds"));
            let faults = if reruns.faults.is_empty() {
                String::new()
            } else {
                format!("; {}", reruns.faults.join("; "))
            };
            format!("{}{ratio}{faults}", secs(reruns.best))
        }),
        target: DONE_TARGET,
        verdict: Verdict::check(met, note),
    })
}

/// `bin`'s completed archive of `size` (made first when the memory row did not), run again
/// twice with the command that completed it.
fn rerun_archive(ctx: &mut Ctx, bin: Bin, size: ArchiveSize) -> BenchResult<Reruns> {
    if !ctx.built(bin).archives.contains_key(&size) {
        progress("a full run to complete the archive (setup, not reported)");
        service_rows::complete_archive(ctx, bin, size, JOBS)?;
    }
    let Some(archive) = ctx.built(bin).archives.get(&size).cloned() else {
        return Err("the full run left no archive".into());
    };
    progress(&format!(
        "eraser run again over {} done files (best of 2)",
        thousands(archive.tree.files as u64)
    ));
    let emu = emulator(Duration::ZERO)?;
    let jobs = archive.jobs.to_string();
    let api = emu.api_url();
    let mut runs = Vec::new();
    let mut faults = Vec::new();
    for _ in 0..2 {
        let (m, s) = ctx.eraser(bin).run(
            &archive.ledger,
            &archive.tree.root,
            &archive.out,
            &["-j", &jobs, "--api-base", &api],
        )?;
        for fault in rerun_faults(&archive, &s) {
            if !faults.contains(&fault) {
                faults.push(fault);
            }
        }
        runs.push(m);
    }
    let seen = emu.counters();
    let requests = seen.create_job_requests + seen.get_jobs + seen.download_requests;
    if requests > 0 {
        faults.push(format!(
            "the service saw {} create-job, {} get-job and {} CDN requests",
            seen.create_job_requests, seen.get_jobs, seen.download_requests
        ));
    }
    let best = runs
        .iter()
        .min_by_key(|m| m.wall)
        .ok_or("no rerun measured")?;
    Ok(Reruns {
        best: best.wall,
        cpu: best.cpu,
        faults,
    })
}

/// What a rerun of a completed archive did that it should not have, from its summary.
fn rerun_faults(archive: &Archive, s: &RunSummary) -> Vec<String> {
    let n = archive.tree.files as u64;
    let mut faults = Vec::new();
    if s.hashed > 0 {
        faults.push(format!("{} hashed again", thousands(s.hashed)));
    }
    if s.uploads > 0 || s.downloads > 0 {
        faults.push(format!(
            "{} uploaded and {} downloaded again",
            thousands(s.uploads),
            thousands(s.downloads)
        ));
    }
    if s.inputs != n || s.outputs_done != n {
        faults.push(format!(
            "{} of {} inputs found, {} outputs confirmed",
            thousands(s.inputs),
            thousands(n),
            thousands(s.outputs_done)
        ));
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Tree;

    fn archive(files: usize) -> Archive {
        Archive {
            tree: Tree {
                root: "/in".into(),
                files,
                bytes: 0,
                paths: Vec::new(),
            },
            ledger: "/ledger.db".into(),
            out: "/out".into(),
            jobs: 64,
        }
    }

    #[test]
    fn a_rerun_that_only_confirms_every_output_has_no_fault() {
        let s = RunSummary {
            inputs: 20,
            outputs_done: 20,
            ..RunSummary::default()
        };
        assert!(rerun_faults(&archive(20), &s).is_empty());
    }

    #[test]
    fn hashing_sending_or_leaving_an_output_unconfirmed_is_each_a_fault() {
        let s = RunSummary {
            inputs: 20,
            hashed: 3,
            uploads: 1,
            outputs_done: 19,
            ..RunSummary::default()
        };
        let faults = rerun_faults(&archive(20), &s);
        assert_eq!(
            faults,
            [
                "3 hashed again",
                "1 uploaded and 0 downloaded again",
                "20 of 20 inputs found, 19 outputs confirmed"
            ]
        );
    }
}
