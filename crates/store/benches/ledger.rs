//! Ledger throughput at scale: `cargo bench -p eraser-store --bench ledger`.
//!
//! Builds a ledger of `ERASER_BENCH_N` (default 1,000,000) inputs, each its own image, recorded
//! through a scan session in batches of 5,000, then measures what a big run leans on and prints
//! one table. Nothing is asserted: the targets are shown beside the results.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eraser_store::{
    Content, DoneRecord, FoundInput, Ledger, Location, Lookup, Root, ScanBatch, ScanSession, Sha256,
};

const BATCH: u64 = 5_000;
const CLAIM: u32 = 1_000;

fn main() {
    let n = std::env::var("ERASER_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let table = runtime.block_on(bench(n));
    table.print(n);
}

/// Result rows: what was measured, the result, the target if any.
#[derive(Default)]
struct Table(Vec<[String; 3]>);

impl Table {
    fn row(&mut self, what: impl Into<String>, result: impl Into<String>, target: &str) {
        self.0.push([what.into(), result.into(), target.into()]);
    }

    fn print(&self, n: u64) {
        println!("\neraser-store ledger benchmark, N = {}\n", group(n as f64));
        let width = |c: usize| {
            self.0
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
                .max(8)
        };
        let (w0, w1) = (width(0), width(1));
        println!("{:<w0$}  {:<w1$}  target", "measure", "result");
        println!("{:-<w0$}  {:-<w1$}  {:-<16}", "", "", "");
        for [what, result, target] in &self.0 {
            println!("{what:<w0$}  {result:<w1$}  {target}");
        }
        println!(
            "\nrecord is the first scan's ledger work without the rest of eraser. Where it falls \
             short of its target, compare it with the bench's first-scan row, which measures \
             SQLite alone in commits of a scan's size on the same machine. mark_processing \
             syncs each job id to disk (a power cut cannot lose it)."
        );
    }
}

/// splitmix64: a cheap, deterministic spread (real SHA-256 values are as random).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn sha(i: u64) -> Sha256 {
    let mut bytes = [0u8; 32];
    for (k, chunk) in (0u64..).zip(bytes.chunks_mut(8)) {
        chunk.copy_from_slice(&mix(i * 4 + k).to_be_bytes());
    }
    Sha256(bytes)
}

/// Input `i`: a photo archive of 100-file folders, walked in order.
fn path(i: u64) -> PathBuf {
    PathBuf::from(format!(
        "/srv/photos/archive/{:04}/{:03}/IMG_{i:08}.jpg",
        i / 100_000,
        (i / 1000) % 100
    ))
}

/// The folder every input lies under: the runs' root.
const ROOT: &str = "/srv/photos";

fn input(i: u64) -> FoundInput {
    let path = path(i);
    let planned_output = PathBuf::from("/srv/clean").join(path.strip_prefix(ROOT).unwrap_or(&path));
    FoundInput {
        path,
        size: 200_000 + mix(i) % 4_000_000,
        mtime_ns: 1_700_000_000_000_000_000 + i64::try_from(i).unwrap_or(0),
        content: Some(Content {
            sha256: sha(i),
            format: "jpeg",
        }),
        planned_output,
    }
}

/// Thousands separators.
fn group(v: f64) -> String {
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(count: u64, elapsed: Duration) -> String {
    group(count as f64 / elapsed.as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Records inputs `0..n` in `scan`'s batches under the root [`ROOT`]; only the ledger calls
/// are timed.
async fn record_all(scan: &ScanSession, n: u64) -> Duration {
    let mut spent = Duration::ZERO;
    for first in (0..n).step_by(BATCH as usize) {
        let batch = ScanBatch {
            roots: vec![Root::Folder(PathBuf::from(ROOT))],
            inputs: (first..(first + BATCH).min(n)).map(input).collect(),
            rejected: Vec::new(),
        };
        let start = Instant::now();
        scan.record(&batch).await.expect("record");
        spent += start.elapsed();
    }
    spent
}

async fn bench(n: u64) -> Table {
    let mut table = Table::default();
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(&Location::file(dir.path().join("ledger.db")))
        .await
        .expect("open");
    let batches = format!("batches of {}", group(BATCH as f64));

    let run = ledger
        .begin_run("bench", std::path::Path::new("/out"))
        .await
        .expect("run");
    let scan = ledger.begin_scan(run).await.expect("scan");
    let spent = record_all(&scan, n).await;
    let result = format!("{} rows/s ({:.1} s)", rate(n, spent), spent.as_secs_f64());
    table.row(
        format!("record, new images, {batches}"),
        result,
        "≥ 100,000 rows/s",
    );

    // A second run records the same, unchanged files (the resume case).
    let run = ledger
        .begin_run("bench rescan", std::path::Path::new("/out"))
        .await
        .expect("run");
    let scan = ledger.begin_scan(run).await.expect("scan");
    let spent = record_all(&scan, n).await;
    let result = format!("{} rows/s ({:.1} s)", rate(n, spent), spent.as_secs_f64());
    table.row(
        format!("record, rescan unchanged, {batches}"),
        result,
        "≥ 100,000 rows/s",
    );

    let mut samples = Vec::with_capacity(200);
    for _ in 0..200 {
        let start = Instant::now();
        let counts = ledger.status_counts().await.expect("counts");
        samples.push(start.elapsed());
        assert_eq!(counts.total, n);
    }
    samples.sort();
    let result = format!(
        "{:.3} ms median, {:.3} ms max",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
    table.row(
        format!("status_counts at {}", group(n as f64)),
        result,
        "≤ 20 ms",
    );

    // Unchanged-file checks of random paths: one per call, and a thousand per call (what a
    // rescan sends).
    let probes: Vec<FoundInput> = (0..2_000u64).map(|k| input(mix(k + 7) % n)).collect();
    let start = Instant::now();
    for p in &probes {
        let known = scan
            .look_up(&[(p.path.as_path(), p.size, p.mtime_ns)])
            .await
            .expect("lookup");
        assert_ne!(known[0], Lookup::Changed);
    }
    let each = start.elapsed().as_secs_f64() / probes.len() as f64;
    table.row(
        format!("lookup by path at {}, 1 per call", group(n as f64)),
        format!("{:.1} µs/lookup", each * 1e6),
        "",
    );
    let probes: Vec<FoundInput> = (0..100_000u64).map(|k| input(mix(k + 99) % n)).collect();
    let start = Instant::now();
    for chunk in probes.chunks(1000) {
        let stamps: Vec<_> = chunk
            .iter()
            .map(|p| (p.path.as_path(), p.size, p.mtime_ns))
            .collect();
        scan.look_up(&stamps).await.expect("lookup");
    }
    let each = start.elapsed().as_secs_f64() / probes.len() as f64;
    table.row(
        format!("lookup by path at {}, 1,000 per call", group(n as f64)),
        format!("{:.1} µs/path", each * 1e6),
        "",
    );

    // Transitions: claim a thousand, then move each one through processing to done.
    let start = Instant::now();
    let claims = ledger.claim_for_upload(run, CLAIM).await.expect("claim");
    let spent = start.elapsed();
    let result = format!(
        "{:.1} ms ({} claims/s)",
        ms(spent),
        rate(claims.len() as u64, spent)
    );
    table.row(
        format!("claim_for_upload({})", group(f64::from(CLAIM))),
        result,
        "",
    );
    let start = Instant::now();
    for (i, c) in claims.iter().enumerate() {
        ledger
            .mark_processing(run, &c.sha256, &format!("job-{i}"))
            .await
            .expect("processing");
    }
    table.row(
        "mark_processing, one by one",
        format!("{} /s", rate(claims.len() as u64, start.elapsed())),
        "",
    );
    let start = Instant::now();
    for c in &claims {
        let done = DoneRecord {
            output_url: "http://127.0.0.1/x.jpg".into(),
            output_path: c.source_path.clone(),
            output_size: 1,
            raw_response: "{}".into(),
            ..DoneRecord::default()
        };
        ledger.mark_done(&c.sha256, &done).await.expect("done");
    }
    table.row(
        "mark_done, one by one",
        format!("{} /s", rate(claims.len() as u64, start.elapsed())),
        "",
    );
    let start = Instant::now();
    let again = ledger.claim_for_upload(run, CLAIM).await.expect("claim");
    table.row(
        format!("claim_for_upload({}) again", group(f64::from(CLAIM))),
        format!("{:.1} ms", ms(start.elapsed())),
        "",
    );
    assert_eq!(again.len(), claims.len());

    let start = Instant::now();
    let progress = ledger.run_progress(run).await.expect("progress");
    table.row(
        format!("run_progress at {}", group(n as f64)),
        format!("{:.0} ms", ms(start.elapsed())),
        "",
    );
    assert_eq!(progress.inputs, n);

    ledger.close().await;
    let size: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let result = format!(
        "{:.0} MB ({:.0} bytes/input)",
        size as f64 / 1e6,
        size as f64 / n as f64
    );
    table.row("ledger size on disk", result, "");
    table
}
