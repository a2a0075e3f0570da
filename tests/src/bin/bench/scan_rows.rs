//! Rows of the local work, no service involved: hash, first scan, rescan (`eraser run --dry-run`).

use std::process::Command;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::data;
use crate::measure::{self, Stdout};
use crate::table::{Row, Verdict, secs, thousands};
use crate::{BenchResult, Ctx, progress};

pub const HASH_TARGET: &str = "≥ 0.9 × cores × raw";
pub const FIRST_SCAN_TARGET: &str = "≥ 100k inputs/s";
pub const RESCAN_TARGET: &str = "≤ 2 × find; 0 re-hashed";
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
            let mut cmd = Command::new("sha256sum");
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
    let mut full = Vec::new();
    let mut base = Vec::new();
    let mut hashed = 0;
    for _ in 0..2 {
        let (m, s) = ctx.eraser.run(
            &ctx.fresh("hash-ledger.db"),
            &tree.root,
            &ctx.fresh("hash-out"),
            &["--dry-run"],
        )?;
        hashed = s.hashed;
        full.push(m);
        let (m, _) = ctx.eraser.run(
            &ctx.fresh("empty-ledger.db"),
            &empty,
            &ctx.fresh("empty-out"),
            &["--dry-run"],
        )?;
        base.push(m);
    }
    if hashed != n as u64 {
        return Err(format!("eraser hashed {hashed} of the {n} files").into());
    }
    let overhead = measure::best_wall(&base);
    let hashing = measure::best_wall(&full).saturating_sub(overhead);
    let speed = bytes / hashing.as_secs_f64().max(1e-9);
    let cores = ctx.machine.cores as f64;
    let ratio = speed / (cores * raw);
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
            speed / GIB,
            bytes / GIB,
            secs(hashing),
            secs(overhead)
        ),
        reference,
        ratio: format!("{ratio:.2} × {cores} cores × raw"),
        target: HASH_TARGET,
        verdict: Verdict::check(
            ratio >= 0.9,
            hash_note(cores_n, floor / GIB, floor / (cores * raw), speed / floor),
        ),
    })
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

/// `find DIR -type f -printf '%s %T@\n'`: one warm-up, then the best of 2.
fn find_time(ctx: &mut Ctx) -> BenchResult<Option<Duration>> {
    if let Some(t) = ctx.find_time {
        return Ok(Some(t));
    }
    if !data::have("find") {
        return Ok(None);
    }
    let tree = ctx.scan_tree()?;
    let runs = measure::repeat(3, "find", Stdout::Count, || {
        let mut cmd = Command::new("find");
        cmd.arg(&tree.root)
            .args(["-type", "f", "-printf", "%s %T@\\n"]);
        cmd
    })?;
    let best = measure::best_wall(&runs[1..]);
    ctx.find_time = Some(best);
    Ok(Some(best))
}

/// Walk + hash + record of `scan_files` small files into a fresh ledger (`--dry-run`). The
/// target is the recording rate ("after hashing"): inputs over the time eraser's scan spent in
/// ledger writes, which it logs. The reference beside find is the schema's floor: `sqlite3`
/// alone inserting the same rows in one transaction.
pub fn first_scan(ctx: &mut Ctx) -> BenchResult<Row> {
    let tree = ctx.scan_tree()?;
    progress("find -printf (1 warm-up, best of 2)");
    let find = find_time(ctx)?;
    let ledger = ctx.fresh("scan-ledger.db");
    let out = ctx.fresh("scan-out");
    progress("eraser run --dry-run on a fresh ledger");
    let (m, s) = ctx.eraser.run_env(
        &ledger,
        &tree.root,
        &out,
        &["--dry-run"],
        &[("RUST_LOG", "eraser::pipeline::scan=info")],
    )?;
    let n = tree.files as u64;
    if s.inputs != n || s.hashed != n {
        return Err(format!(
            "eraser found {} inputs and hashed {} of the {n} files",
            s.inputs, s.hashed
        )
        .into());
    }
    let writes = ledger_write_time(&m.stderr)
        .ok_or("eraser's scan did not log its ledger write time (RUST_LOG=…scan=info)")?;
    ctx.scanned = Some((ledger, out));
    let floors = if data::have("sqlite3") {
        let empty_ledger = |name: &str| -> BenchResult<std::path::PathBuf> {
            let ledger = ctx.fresh(name);
            let empty = ctx.fresh("floor-empty");
            std::fs::create_dir_all(&empty)?;
            ctx.eraser
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
    let whole = per_sec(m.wall);
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
    Ok(Row {
        name: "first-scan",
        measured: format!(
            "{} inputs/s recorded ({} of ledger writes); whole process {} files in {} = {}/s",
            thousands(recording as u64),
            secs(writes),
            thousands(n),
            secs(m.wall),
            thousands(whole as u64)
        ),
        reference: format!(
            "{}; {floors_text}",
            find.map_or_else(
                || "find not installed".into(),
                |t| format!("find {}", secs(t))
            ),
        ),
        ratio: floors.map_or_else(
            || "—".into(),
            |(_, batched)| {
                format!(
                    "{:.2} × sqlite3 alone, same commits",
                    recording / per_sec(batched)
                )
            },
        ),
        target: FIRST_SCAN_TARGET,
        verdict: Verdict::check(
            recording >= 100_000.0,
            format!(
                "all {} hashed; limit: {}; what eraser adds: README, Performance",
                thousands(s.hashed),
                first_scan_limit(floors.map(|(_, batched)| per_sec(batched)), recording)
            ),
        ),
    })
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
    if ctx.scanned.is_none() {
        progress("first scan (setup, not reported)");
        first_scan(ctx)?;
    }
    let Some((ledger, out)) = ctx.scanned.clone() else {
        return Err("the first scan left no ledger".into());
    };
    let tree = ctx.scan_tree()?;
    let find = find_time(ctx)?;
    progress("eraser run --dry-run again (best of 2)");
    let mut walls = Vec::new();
    let mut rehashed = 0;
    for _ in 0..2 {
        let (m, s) = ctx.eraser.run(&ledger, &tree.root, &out, &["--dry-run"])?;
        rehashed = rehashed.max(s.hashed);
        walls.push(m);
    }
    let best = measure::best_wall(&walls);
    let ratio = find.map(|t| best.as_secs_f64() / t.as_secs_f64());
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
        target: RESCAN_TARGET,
        verdict: Verdict::check(
            met,
            format!(
                "best of 2; the ledger work alone (sqlite3, no walk) = {}{}",
                floor_ratio.map_or_else(|| "not measured".into(), |r| format!("{r:.1} × find")),
                if met {
                    ""
                } else {
                    "; what limits it: README, Performance"
                }
            ),
        ),
    })
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
