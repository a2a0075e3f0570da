//! Rows on a big ledger: `ledger status` (whole process) and `ledger export` (peak memory).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::context::Bin;
use crate::data;
use crate::measure::{self, Measured, Stdout};
use crate::table::{Row, Verdict, mib, secs, thousands};
use crate::{BenchResult, Ctx, progress};

pub const STATUS_TARGET: &str = "≤ 30 ms";
pub const EXPORT_TARGET: &str = "constant memory";

pub const STATUS_ABOUT: &str = "`eraser ledger status` on a ledger of `ledger_rows` images and \
    inputs (0.1 % failed, 0.1 % processing, 0.1 % new, the rest done) that eraser created and \
    `sqlite3` then filled: median of 7 whole processes after a warm-up. The reference is \
    `sqlite3 LEDGER 'select count(*) from images'` measured the same way. Target: at most \
    30 ms.";
pub const EXPORT_ABOUT: &str = "`eraser ledger export --format jsonl` of that ledger and of one \
    a tenth its size, stdout counted and dropped: the peak RSS (`ru_maxrss` from `wait4`) of \
    each. Target: constant memory, the big export at most 1.25 × the small one's peak.";

/// Runs timed per command (after one warm-up).
const TIMED_RUNS: usize = 7;

/// `bin`'s two ledgers (`ledger_rows` and a tenth of it): created by it, filled by `sqlite3`.
fn big_ledgers(ctx: &mut Ctx, bin: Bin) -> BenchResult<(PathBuf, PathBuf)> {
    if let Some(pair) = &ctx.built(bin).big_ledgers {
        return Ok(pair.clone());
    }
    let rows = ctx.sizes.ledger_rows;
    let big = build_ledger(ctx, bin, rows)?;
    let small = build_ledger(ctx, bin, rows / 10)?;
    ctx.built(bin).big_ledgers = Some((big.clone(), small.clone()));
    Ok((big, small))
}

fn build_ledger(ctx: &mut Ctx, bin: Bin, rows: u64) -> BenchResult<PathBuf> {
    let ledger = ctx.fresh(&format!("ledger-{rows}.db"));
    let empty = ctx.fresh("empty");
    std::fs::create_dir_all(&empty)?;
    // eraser creates the ledger (its schema, its migration records); sqlite3 then fills it.
    ctx.eraser(bin)
        .run(&ledger, &empty, &ctx.fresh("empty-out"), &["--dry-run"])?;
    progress(&format!(
        "filling a ledger with {} images and inputs (sqlite3)",
        thousands(rows)
    ));
    let started = Instant::now();
    data::fill_ledger(&ledger, rows)?;
    progress(&format!("  done in {}", secs(started.elapsed())));
    Ok(ledger)
}

/// `eraser ledger status` on the big ledger: median of 7 after a warm-up, against `sqlite3 …
/// 'select count(*) from images'` measured the same way.
pub fn status(ctx: &mut Ctx) -> BenchResult<Row> {
    if !data::have("sqlite3") {
        return Ok(Row::empty(
            "status",
            STATUS_TARGET,
            Verdict::Skipped("sqlite3 not installed".into()),
        ));
    }
    let rows = ctx.sizes.ledger_rows;
    progress("eraser ledger status (1 warm-up, median of 7)");
    let both = ctx.both(|ctx, bin| {
        let (ledger, _) = big_ledgers(ctx, bin)?;
        let total = status_total(ctx, bin, &ledger)?;
        if total != rows {
            return Err(format!("ledger status counts {total} images, expected {rows}").into());
        }
        let runs = measure::repeat(
            TIMED_RUNS + 1,
            "eraser ledger status",
            Stdout::Capture,
            || {
                let mut cmd = ctx.eraser(bin).command(&ledger);
                cmd.args(["ledger", "status"]);
                cmd
            },
        )?;
        Ok(measure::median_wall(&runs[1..]))
    })?;
    progress("sqlite3 count(*) (1 warm-up, median of 7)");
    let (ledger, _) = big_ledgers(ctx, Bin::Main)?;
    let sqlite = measure::repeat(TIMED_RUNS + 1, "sqlite3", Stdout::Capture, || {
        let mut cmd = Command::new("sqlite3");
        cmd.arg(&ledger).arg("select count(*) from images");
        cmd
    })?;
    let theirs = measure::median_wall(&sqlite[1..]);
    let versus = |ours: Duration| {
        format!(
            "{:.2} × sqlite3",
            ours.as_secs_f64() / theirs.as_secs_f64().max(1e-9)
        )
    };
    let ours = both.main;
    Ok(Row {
        name: "status",
        measured: format!("{} at {} images", secs(ours), thousands(rows)),
        reference: format!("sqlite3 count(*) {}", secs(theirs)),
        ratio: versus(ours),
        baseline: both.baseline_cell(|t| format!("{} · {}", secs(*t), versus(*t))),
        target: STATUS_TARGET,
        verdict: Verdict::check(
            ours.as_secs_f64() * 1000.0 <= 30.0,
            "median of 7, whole process",
        ),
    })
}

/// `images.total` from `eraser ledger status --json`.
fn status_total(ctx: &Ctx, bin: Bin, ledger: &Path) -> BenchResult<u64> {
    let mut cmd = ctx.eraser(bin).command(ledger);
    cmd.args(["ledger", "status", "--json"]);
    let m = measure::run(&mut cmd, Stdout::Capture)?.success("eraser ledger status --json")?;
    let value: Value = serde_json::from_slice(&m.stdout)
        .map_err(|e| format!("ledger status --json is not JSON: {e}"))?;
    value
        .pointer("/images/total")
        .and_then(Value::as_u64)
        .ok_or_else(|| "ledger status --json has no images.total".into())
}

/// `eraser ledger export --format jsonl` of the big ledger and of a tenth of it: peak RSS of
/// each; memory is constant when the big one is not more than 1.25 × the small one.
pub fn export(ctx: &mut Ctx) -> BenchResult<Row> {
    if !data::have("sqlite3") {
        return Ok(Row::empty(
            "export",
            EXPORT_TARGET,
            Verdict::Skipped("sqlite3 not installed".into()),
        ));
    }
    let rows = ctx.sizes.ledger_rows;
    progress("eraser ledger export --format jsonl, both ledgers");
    let both = ctx.both(|ctx, bin| {
        let (big, small) = big_ledgers(ctx, bin)?;
        let mut runs = Vec::new();
        for (ledger, n) in [(&big, rows), (&small, rows / 10)] {
            let mut cmd = ctx.eraser(bin).command(ledger);
            cmd.args(["ledger", "export", "--format", "jsonl"]);
            let m = measure::run(&mut cmd, Stdout::Count)?.success("eraser ledger export")?;
            if m.stdout_lines != n {
                return Err(format!("export wrote {} lines for {n} inputs", m.stdout_lines).into());
            }
            runs.push(m);
        }
        let small = runs.pop().ok_or("no export measured")?;
        let big = runs.pop().ok_or("no export measured")?;
        Ok((big, small))
    })?;
    let growth = |(b, s): &(Measured, Measured)| b.max_rss as f64 / s.max_rss.max(1) as f64;
    let (b, s) = &both.main;
    Ok(Row {
        name: "export",
        measured: format!(
            "peak RSS {} at {} rows ({} in {})",
            mib(b.max_rss),
            thousands(rows),
            mib(b.stdout_bytes),
            secs(b.wall)
        ),
        reference: format!(
            "peak RSS {} at {} rows",
            mib(s.max_rss),
            thousands(rows / 10)
        ),
        ratio: format!("{:.2} × for 10 × rows", growth(&both.main)),
        baseline: both.baseline_cell(|pair| {
            format!(
                "peak RSS {} · {:.2} × for 10 × rows",
                mib(pair.0.max_rss),
                growth(pair)
            )
        }),
        target: EXPORT_TARGET,
        verdict: Verdict::check(growth(&both.main) <= 1.25, ""),
    })
}
