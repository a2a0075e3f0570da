//! Rows of the local work, no service involved: hash, first scan, rescan (`eraser run --dry-run`).

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::context::Bin;
use crate::data::{self, Tree};
use crate::eraser::RunSummary;
use crate::measure::{self, Measured, Stdout};
use crate::table::{Row, Verdict, secs, thousands};
use crate::{BenchResult, Ctx, progress};

pub const HASH_TARGET: &str = "≥ 0.9 × cores × raw";
pub const FIRST_SCAN_TARGET: &str = "≥ 100k inputs/s";
pub const RESCAN_TARGET: &str = "≤ 2 × find; 0 re-hashed";

pub const HASH_ABOUT: &str = "eraser's `run --dry-run` over `hash_files` files of 4 MiB on a \
    fresh ledger, minus the same command over an empty folder (start-up, ledger creation), each \
    the best of 2: its SHA-256 speed. The reference is the same `sha2` crate hashing 256 MiB \
    already in memory on one core (\"raw\", best of 3), times the cores; `sha256sum` and a bare \
    loop of `read()` and sha2 on every core are measured beside it, the loop being the limit \
    when it misses the target itself (the kernel's copy out of the page cache). Target: at \
    least 0.9 × cores × raw.";
pub const FIRST_SCAN_ABOUT: &str = "eraser's `run --dry-run` over `scan_files` tiny JPEGs in \
    folders of 1,000, on a fresh ledger. The figure is the recording rate: inputs divided by \
    the time the scan spent in ledger writes, which eraser logs at info level; the whole \
    process's rate is printed beside it. References: `find -printf '%s %T@'` over the tree \
    (best of 2), and the `sqlite3` CLI alone inserting the same rows into a ledger eraser \
    created, once in one transaction (the schema's floor) and once in eraser's commits of \
    4,096 rows (the ratio's floor). Target: at least 100,000 inputs/s recorded.";
pub const RESCAN_ABOUT: &str = "The first scan's command again on its ledger, the tree \
    unchanged (best of 2): nothing may be hashed again. References: find over the tree, and \
    `sqlite3` alone doing a rescan's ledger work (the kept folder listings read, the walk's \
    end recorded, the counts checked), without any walk. Target: at most 2 × find.";

/// Rows per transaction when eraser records a first scan (`RECORD_BATCH` in the cli's scan).
const ERASER_COMMIT_ROWS: u64 = 4096;

/// Size of each file of the hash row.
const HASH_FILE: usize = 4 << 20;
const GIB: f64 = (1u64 << 30) as f64;

/// SHA-256 throughput of eraser over `hash_files` × 4 MiB: the best `run --dry-run` of the tree
/// minus the best over an empty tree (start-up, ledger creation), each on a fresh ledger.
pub fn hash(ctx: &mut Ctx) -> BenchResult<Row> {
    let n = ctx.sizes.hash_files;
    progress(&format!("writing {n} files of 4 MiB"));
    let tree = data::big_files(&ctx.fresh("hash-tree"), n, HASH_FILE)?;
    data::sync();
    let bytes = tree.bytes as f64;

    progress("sha256sum (1 warm-up, best of 2)");
    let sha256sum = if data::have("sha256sum") {
        let runs = measure::repeat(3, "sha256sum", Stdout::Capture, || {
            let mut cmd = std::process::Command::new("sha256sum");
            cmd.args(&tree.paths);
            cmd
        })?;
        Some(measure::best_wall(&runs[1..]))
    } else {
        None
    };
    progress("raw sha2 on one core (best of 3 over 256 MiB in memory)");
    let raw = raw_sha2_bytes_per_sec();
    let cores_n = ctx.machine.cores.max(1);
    progress("read() + sha2 of the files on every core, no eraser (best of 2)");
    let floor = read_and_hash_bytes_per_sec(&tree.paths, cores_n)?;

    progress("eraser run --dry-run over the files and over an empty folder (best of 2 each)");
    let empty = ctx.fresh("empty");
    std::fs::create_dir_all(&empty)?;
    let both = ctx.both(|ctx, bin| eraser_hashing(ctx, bin, &tree, &empty))?;
    let (hashing, overhead) = both.main;
    let speed = |hashing: Duration| bytes / hashing.as_secs_f64().max(1e-9);
    let cores = ctx.machine.cores as f64;
    let ratio = speed(hashing) / (cores * raw);
    let reference = match sha256sum {
        Some(t) => format!(
            "sha256sum {:.2} GiB/s; raw sha2 {:.2} GiB/s/core",
            bytes / t.as_secs_f64() / GIB,
            raw / GIB
        ),
        None => format!(
            "sha256sum not installed; raw sha2 {:.2} GiB/s/core",
            raw / GIB
        ),
    };
    Ok(Row {
        name: "hash",
        measured: format!(
            "{:.2} GiB/s ({:.2} GiB in {}, start-up {} subtracted)",
            speed(hashing) / GIB,
            bytes / GIB,
            secs(hashing),
            secs(overhead)
        ),
        reference,
        ratio: format!("{ratio:.2} × {cores} cores × raw"),
        baseline: both.baseline_cell(|(hashing, _)| {
            format!(
                "{:.2} GiB/s · {:.2} × {cores} cores × raw",
                speed(*hashing) / GIB,
                speed(*hashing) / (cores * raw)
            )
        }),
        target: HASH_TARGET,
        verdict: Verdict::check(
            ratio >= 0.9,
            hash_note(
                cores_n,
                floor / GIB,
                floor / (cores * raw),
                speed(hashing) / floor,
            ),
        ),
    })
}

/// `bin`'s time hashing `tree` (its best dry run less its best over `empty`) and that
/// start-up time.
fn eraser_hashing(
    ctx: &mut Ctx,
    bin: Bin,
    tree: &Tree,
    empty: &Path,
) -> BenchResult<(Duration, Duration)> {
    let mut full = Vec::new();
    let mut base = Vec::new();
    let mut hashed = 0;
    for _ in 0..2 {
        let (m, s) = ctx.eraser(bin).run(
            &ctx.fresh("hash-ledger.db"),
            &tree.root,
            &ctx.fresh("hash-out"),
            &["--dry-run"],
        )?;
        hashed = s.hashed;
        full.push(m);
        let (m, _) = ctx.eraser(bin).run(
            &ctx.fresh("empty-ledger.db"),
            empty,
            &ctx.fresh("empty-out"),
            &["--dry-run"],
        )?;
        base.push(m);
    }
    if hashed != tree.files as u64 {
        return Err(format!("eraser hashed {hashed} of the {} files", tree.files).into());
    }
    let overhead = measure::best_wall(&base);
    Ok((measure::best_wall(&full).saturating_sub(overhead), overhead))
}

/// What the hash row says of the bare read()+sha2 loop measured beside eraser: the limit when
/// the loop itself stays below the target, else that what is missing is eraser's own.
fn hash_note(threads: usize, loop_gib_s: f64, loop_ratio: f64, eraser_vs_loop: f64) -> String {
    let measured = format!(
        "a bare read()+sha2 loop on {threads} threads does {loop_gib_s:.2} GiB/s = \
         {loop_ratio:.2} × cores × raw"
    );
    if loop_ratio < 0.9 {
        format!(
            "limit: {measured} (the kernel's copy out of the page cache); eraser \
             {eraser_vs_loop:.2} × that"
        )
    } else {
        format!("{measured}, so the rest is eraser's: {eraser_vs_loop:.2} × that loop")
    }
}

/// The best a plain reader can do: `threads` threads, each reading its share of `paths` (from
/// the page cache, 64 KiB reads like eraser's) and hashing it with sha2, in bytes per second.
fn read_and_hash_bytes_per_sec(paths: &[std::path::PathBuf], threads: usize) -> BenchResult<f64> {
    use std::io::Read as _;
    let mut best = f64::INFINITY;
    let mut total = 0u64;
    for _ in 0..2 {
        let started = Instant::now();
        let results: Vec<std::io::Result<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || -> std::io::Result<u64> {
                        let mut buf = vec![0u8; 64 << 10];
                        let mut bytes = 0u64;
                        for path in paths.iter().skip(t).step_by(threads) {
                            let mut file = std::fs::File::open(path)?;
                            let mut hasher = sha2::Sha256::new();
                            loop {
                                let n = file.read(&mut buf)?;
                                if n == 0 {
                                    break;
                                }
                                hasher.update(&buf[..n]);
                                bytes += n as u64;
                            }
                            std::hint::black_box(hasher.finalize());
                        }
                        Ok(bytes)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("thread died")))
                })
                .collect()
        });
        total = results.into_iter().sum::<std::io::Result<u64>>()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(total as f64 / best.max(1e-9))
}

/// One core's SHA-256 speed with the same sha2 crate eraser uses, in bytes per second.
fn raw_sha2_bytes_per_sec() -> f64 {
    let mut buf = vec![0u8; 256 << 20];
    fastrand::Rng::with_seed(7).fill(&mut buf);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        let digest = sha2::Sha256::digest(&buf);
        std::hint::black_box(digest);
        best = best.min(started.elapsed().as_secs_f64());
    }
    buf.len() as f64 / best.max(1e-9)
}

/// Walk + hash + record of `scan_files` small files into a fresh ledger (`--dry-run`). The
/// target is the recording rate ("after hashing"): inputs over the time eraser's scan spent in
/// ledger writes, which it logs. The reference beside find is the schema's floor: `sqlite3`
/// alone inserting the same rows in one transaction.
pub fn first_scan(ctx: &mut Ctx) -> BenchResult<Row> {
    let tree = ctx.scan_tree()?;
    progress("find -printf (1 warm-up, best of 2)");
    let find = ctx.find_time(&tree.root, 2)?;
    progress("eraser run --dry-run on a fresh ledger");
    let both = ctx.both(|ctx, bin| recorded_scan(ctx, bin, &tree))?;
    let (m, writes, hashed) = (both.main.0.wall, both.main.1, both.main.0.hashed);
    let n = tree.files as u64;
    let floors = if data::have("sqlite3") {
        let empty_ledger = |name: &str| -> BenchResult<std::path::PathBuf> {
            let ledger = ctx.fresh(name);
            let empty = ctx.fresh("floor-empty");
            std::fs::create_dir_all(&empty)?;
            ctx.eraser(Bin::Main)
                .run(&ledger, &empty, &ctx.fresh("floor-out"), &["--dry-run"])?;
            Ok(ledger)
        };
        progress("sqlite3 alone: the same rows into an empty ledger, one transaction");
        let whole_ledger = empty_ledger("floor-ledger.db")?;
        let one = data::ledger_insert_floor(&whole_ledger, n, None)?;
        progress("sqlite3 alone: the same rows in eraser's commits");
        let batched_ledger = empty_ledger("floor-batched-ledger.db")?;
        let batched = data::ledger_insert_floor(&batched_ledger, n, Some(ERASER_COMMIT_ROWS))?;
        ctx.floor_ledger = Some(whole_ledger);
        Some((one, batched))
    } else {
        None
    };
    let per_sec = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let recording = per_sec(writes);
    let floors_text = floors.map_or_else(
        || "sqlite3 not installed".into(),
        |(one, batched)| {
            format!(
                "sqlite3 alone {} rows/s in one transaction, {}/s in commits of {}",
                thousands(per_sec(one) as u64),
                thousands(per_sec(batched) as u64),
                thousands(ERASER_COMMIT_ROWS)
            )
        },
    );
    let versus_floor = |recording: f64| {
        floors.map(|(_, batched)| {
            format!(
                "{:.2} × sqlite3 alone, same commits",
                recording / per_sec(batched)
            )
        })
    };
    Ok(Row {
        name: "first-scan",
        measured: format!(
            "{} inputs/s recorded ({} of ledger writes); whole process {} files in {} = {}/s",
            thousands(recording as u64),
            secs(writes),
            thousands(n),
            secs(m),
            thousands(per_sec(m) as u64)
        ),
        reference: format!(
            "{}; {floors_text}",
            find.map_or_else(
                || "find not installed".into(),
                |t| format!("find {}", secs(t))
            ),
        ),
        ratio: versus_floor(recording).unwrap_or_else(|| "—".into()),
        baseline: both.baseline_cell(|(_, writes)| {
            let recording = per_sec(*writes);
            let mut cell = format!("{} inputs/s recorded", thousands(recording as u64));
            if let Some(ratio) = versus_floor(recording) {
                cell.push_str(&format!(" · {ratio}"));
            }
            cell
        }),
        target: FIRST_SCAN_TARGET,
        verdict: Verdict::check(
            recording >= 100_000.0,
            format!(
                "all {} hashed; limit: {}",
                thousands(hashed),
                first_scan_limit(floors.map(|(_, batched)| per_sec(batched)), recording)
            ),
        ),
    })
}

/// A first scan of what a scan measures: wall time and files hashed.
struct Scanned {
    wall: Duration,
    hashed: u64,
}

/// `bin`'s first scan of `tree` with its scan's info log on, checked whole; returns the scan
/// and its ledger write time, and keeps its ledger for the rescan.
fn recorded_scan(ctx: &mut Ctx, bin: Bin, tree: &Tree) -> BenchResult<(Scanned, Duration)> {
    let (m, s) = dry_scan(
        ctx,
        bin,
        tree,
        &[("RUST_LOG", "eraser::pipeline::scan=info")],
    )?;
    let writes = ledger_write_time(&m.stderr)
        .ok_or("eraser's scan did not log its ledger write time (RUST_LOG=…scan=info)")?;
    let scanned = Scanned {
        wall: m.wall,
        hashed: s.hashed,
    };
    Ok((scanned, writes))
}

/// `bin`'s `run --dry-run` of `tree` on a fresh ledger, which must find and hash every file;
/// the ledger (and OUT) are kept for the rescan.
fn dry_scan(
    ctx: &mut Ctx,
    bin: Bin,
    tree: &Tree,
    env: &[(&str, &str)],
) -> BenchResult<(Measured, RunSummary)> {
    let ledger = ctx.fresh("scan-ledger.db");
    let out = ctx.fresh("scan-out");
    let (m, s) = ctx
        .eraser(bin)
        .run_env(&ledger, &tree.root, &out, &["--dry-run"], env)?;
    let n = tree.files as u64;
    if s.inputs != n || s.hashed != n {
        return Err(format!(
            "eraser found {} inputs and hashed {} of the {n} files",
            s.inputs, s.hashed
        )
        .into());
    }
    ctx.built(bin).scanned = Some((ledger, out));
    Ok((m, s))
}

/// What stops the first scan's recording rate: SQLite itself when `sqlite3` alone, with no
/// client, records the rows slower than the target in eraser's commits; else eraser's writer.
fn first_scan_limit(batched_floor: Option<f64>, recording: f64) -> String {
    match batched_floor {
        Some(floor) if floor < 100_000.0 => format!(
            "SQLite itself: sqlite3 alone, no client, records these rows at {}/s in eraser's \
             commits of {} (below the target); eraser's writer {:.2} × that",
            thousands(floor as u64),
            thousands(ERASER_COMMIT_ROWS),
            recording / floor
        ),
        Some(floor) => format!(
            "eraser's writer: {:.2} × sqlite3 alone in the same commits ({}/s)",
            recording / floor,
            thousands(floor as u64)
        ),
        None => "sqlite3 not installed, the floor is not measured".into(),
    }
}

/// The seconds of `scan: … in S s of ledger writes`, eraser's info line at the end of a scan.
fn ledger_write_time(stderr: &str) -> Option<Duration> {
    let line = stderr.lines().find(|l| l.contains(" s of ledger writes"))?;
    let before = line.split(" s of ledger writes").next()?;
    let secs: f64 = before.rsplit(" in ").next()?.trim().parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// The same unchanged tree again on the first scan's ledger: best of 2, nothing re-hashed.
pub fn rescan(ctx: &mut Ctx) -> BenchResult<Row> {
    let tree = ctx.scan_tree()?;
    let find = ctx.find_time(&tree.root, 2)?;
    let both = ctx.both(|ctx, bin| dry_rescan(ctx, bin, &tree))?;
    let (best, rehashed) = both.main;
    let versus_find = |t: Duration| find.map(|f| t.as_secs_f64() / f.as_secs_f64());
    let ratio = versus_find(best);
    let floor = match ctx.floor_ledger.clone() {
        Some(ledger) => {
            progress("sqlite3 alone: a rescan's ledger work (listings, the walk's end, counts)");
            Some(data::ledger_rescan_floor(&ledger)?)
        }
        None => None,
    };
    // The ledger work alone, without any walk, against find's walk.
    let floor_ratio = find
        .zip(floor)
        .map(|(f, s)| s.as_secs_f64() / f.as_secs_f64());
    let met = rehashed == 0 && ratio.is_some_and(|r| r <= 2.0);
    Ok(Row {
        name: "rescan",
        measured: format!(
            "{} files in {}, {} re-hashed",
            thousands(tree.files as u64),
            secs(best),
            thousands(rehashed)
        ),
        reference: format!(
            "{}; sqlite3 alone {}",
            find.map_or_else(
                || "find not installed".into(),
                |t| format!("find {}", secs(t))
            ),
            floor.map_or_else(|| "not measured".into(), secs),
        ),
        ratio: ratio.map_or_else(|| "—".into(), |r| format!("{r:.1} × find")),
        baseline: both.baseline_cell(|(best, rehashed)| {
            let ratio =
                versus_find(*best).map_or_else(String::new, |r| format!(" · {r:.1} × find"));
            format!("{}{ratio}, {} re-hashed", secs(*best), thousands(*rehashed))
        }),
        target: RESCAN_TARGET,
        verdict: Verdict::check(
            met,
            format!(
                "best of 2; the ledger work alone (sqlite3, no walk) = {}",
                floor_ratio.map_or_else(|| "not measured".into(), |r| format!("{r:.1} × find")),
            ),
        ),
    })
}

/// `bin`'s dry run of `tree` again on its first scan's ledger (made first when the first-scan
/// row did not run): the best of 2 and the most files re-hashed.
fn dry_rescan(ctx: &mut Ctx, bin: Bin, tree: &Tree) -> BenchResult<(Duration, u64)> {
    if ctx.built(bin).scanned.is_none() {
        progress("first scan (setup, not reported)");
        dry_scan(ctx, bin, tree, &[])?;
    }
    let Some((ledger, out)) = ctx.built(bin).scanned.clone() else {
        return Err("the first scan left no ledger".into());
    };
    progress("eraser run --dry-run again (best of 2)");
    let mut runs = Vec::new();
    let mut rehashed = 0;
    for _ in 0..2 {
        let (m, s) = ctx
            .eraser(bin)
            .run(&ledger, &tree.root, &out, &["--dry-run"])?;
        rehashed = rehashed.max(s.hashed);
        runs.push(m);
    }
    Ok((measure::best_wall(&runs), rehashed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_row_names_the_loop_as_the_limit_only_when_the_loop_misses_the_target() {
        let limited = hash_note(2, 2.2, 0.85, 0.97);
        let not = hash_note(2, 2.4, 0.92, 0.89);

        assert!(limited.starts_with("limit: "), "{limited}");
        assert!(!not.contains("limit"), "{not}");
        assert!(
            not.ends_with("the rest is eraser's: 0.89 × that loop"),
            "{not}"
        );
    }

    #[test]
    fn the_ledger_write_time_is_read_from_the_scan_log_line() {
        let stderr = "warning: something\n INFO scan: 200000 inputs recorded (200000 hashed) in 4.650 s of ledger writes\n";
        assert_eq!(
            ledger_write_time(stderr),
            Duration::try_from_secs_f64(4.65).ok()
        );
        assert_eq!(ledger_write_time("no such line"), None);
    }
}
