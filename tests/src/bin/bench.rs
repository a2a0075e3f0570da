//! `bench`: issue 6's benchmark table, measured on this machine.
//!
//! Runs the release `eraser` binary found next to this executable (build both with
//! `cargo build --release --workspace`; `just bench` does) against the in-process emulator on
//! 127.0.0.1, on data generated into a temp folder, and prints one Markdown table: each row's
//! figure, the reference measured in the same run, their ratio, the target and the verdict.
//! Timings are figures to watch, never assertions: the exit code is 1 only when a measurement
//! could not be made at all.
//!
//! `--quick` divides every size by 10 (a smoke run; verdicts are then indicative only);
//! `--rows a,b` runs only the named rows.
//!
//! The modules live in `bench/` (a crate root resolves `mod` beside itself, hence the paths).

#[path = "bench/data.rs"]
mod data;
#[path = "bench/eraser.rs"]
mod eraser;
#[path = "bench/ledger_rows.rs"]
mod ledger_rows;
#[path = "bench/machine.rs"]
mod machine;
#[path = "bench/measure.rs"]
mod measure;
#[path = "bench/scan_rows.rs"]
mod scan_rows;
#[path = "bench/serial.rs"]
mod serial;
#[path = "bench/service_rows.rs"]
mod service_rows;
#[path = "bench/table.rs"]
mod table;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use self::data::Tree;
use self::eraser::Eraser;
use self::machine::Machine;
use self::table::{Row, Verdict};

/// Errors of a measurement, reported in its row.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Prints issue 6's benchmark table for the release eraser binary beside this one.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Every size divided by 10: a smoke run of a minute or two.
    #[arg(long)]
    quick: bool,
    /// Only these rows (comma-separated): hash, first-scan, rescan, status, export, pipeline,
    /// throughput, memory, one-at-a-time.
    #[arg(long, value_delimiter = ',', value_name = "ROW,…")]
    rows: Vec<String>,
}

/// One row of the table: its name, its target, and how to measure it.
struct Spec {
    name: &'static str,
    target: &'static str,
    measure: fn(&mut Ctx) -> BenchResult<Row>,
}

/// The rows, in the order of issue 6's table.
const SPECS: [Spec; 9] = [
    Spec {
        name: "hash",
        target: scan_rows::HASH_TARGET,
        measure: scan_rows::hash,
    },
    Spec {
        name: "first-scan",
        target: scan_rows::FIRST_SCAN_TARGET,
        measure: scan_rows::first_scan,
    },
    Spec {
        name: "rescan",
        target: scan_rows::RESCAN_TARGET,
        measure: scan_rows::rescan,
    },
    Spec {
        name: "status",
        target: ledger_rows::STATUS_TARGET,
        measure: ledger_rows::status,
    },
    Spec {
        name: "export",
        target: ledger_rows::EXPORT_TARGET,
        measure: ledger_rows::export,
    },
    Spec {
        name: "pipeline",
        target: service_rows::PIPELINE_TARGET,
        measure: service_rows::pipeline,
    },
    Spec {
        name: "throughput",
        target: service_rows::THROUGHPUT_TARGET,
        measure: service_rows::throughput,
    },
    Spec {
        name: "memory",
        target: service_rows::MEMORY_TARGET,
        measure: service_rows::memory,
    },
    Spec {
        name: "one-at-a-time",
        target: service_rows::SERIAL_TARGET,
        measure: service_rows::one_at_a_time,
    },
];

/// How much data each row works on.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// 4 MiB files hashed (512 = 2 GiB).
    pub hash_files: usize,
    /// Small files of the first scan, the rescan and the memory row's large run.
    pub scan_files: usize,
    /// Images (and inputs) in the status and export ledger; export also uses a tenth of it.
    pub ledger_rows: u64,
    pub pipeline_images: usize,
    pub throughput_images: usize,
    /// The memory row's small run (its large run is `scan_files`).
    pub memory_small: usize,
    pub serial_images: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        let d = if quick { 10 } else { 1 };
        Sizes {
            hash_files: 512 / d,
            scan_files: 200_000 / d,
            ledger_rows: 1_000_000 / d as u64,
            pipeline_images: 400 / d,
            throughput_images: 10_000 / d,
            memory_small: 20_000 / d,
            serial_images: 30 / d,
        }
    }
}

/// What the rows share: the binary, the temp folder, the sizes, data built once.
pub struct Ctx {
    pub eraser: Eraser,
    pub sizes: Sizes,
    pub machine: Machine,
    root: PathBuf,
    next: std::cell::Cell<u32>,
    /// The first scan's tree, also the memory row's large run.
    pub scan_tree: Option<Tree>,
    /// The ledger and OUT of the first scan, for the rescan.
    pub scanned: Option<(PathBuf, PathBuf)>,
    /// Best `find -printf` time over the scan tree.
    pub find_time: Option<std::time::Duration>,
    /// The ledger `sqlite3` filled for the first scan's floor (the rescan's floor reads it).
    pub floor_ledger: Option<PathBuf>,
    /// The ledgers of `ledger_rows` and a tenth of it.
    pub big_ledgers: Option<(PathBuf, PathBuf)>,
}

impl Ctx {
    /// A new, unused path in the temp folder, named after `what`.
    pub fn fresh(&self, what: &str) -> PathBuf {
        let n = self.next.get() + 1;
        self.next.set(n);
        self.root.join(format!("{n:02}-{what}"))
    }

    /// The scan tree of `sizes.scan_files` files, generated on first use.
    pub fn scan_tree(&mut self) -> BenchResult<Tree> {
        if let Some(tree) = &self.scan_tree {
            return Ok(tree.clone());
        }
        let n = self.sizes.scan_files;
        let root = self.fresh("scan-tree");
        progress(&format!(
            "writing {} small JPEGs",
            table::thousands(n as u64)
        ));
        let tree = data::image_tree(&root, n, 1)?;
        data::sync();
        self.scan_tree = Some(tree.clone());
        Ok(tree)
    }
}

/// A progress line on stderr (the table goes to stdout).
pub fn progress(what: &str) {
    eprintln!("bench: {what}");
}

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if raw.first().is_some_and(|a| a == measure::HELPER_ARG) {
        return measure::helper_main(&raw[1..]);
    }
    let args = Args::parse();
    let known: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
    if let Some(bad) = args.rows.iter().find(|r| !known.contains(&r.as_str())) {
        eprintln!("bench: unknown row `{bad}`; rows are {}", known.join(", "));
        return ExitCode::from(2);
    }
    let temp = match tempfile::Builder::new().prefix("eraser-bench-").tempdir() {
        Ok(temp) => temp,
        Err(e) => {
            eprintln!("bench: cannot create a temp folder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let eraser = match Eraser::locate(temp.path()) {
        Ok(eraser) => eraser,
        Err(why) => {
            eprintln!("bench: {why}");
            return ExitCode::from(2);
        }
    };
    let machine = Machine::probe();
    let mut ctx = Ctx {
        eraser,
        sizes: Sizes::new(args.quick),
        machine,
        root: temp.path().to_path_buf(),
        next: std::cell::Cell::new(0),
        scan_tree: None,
        scanned: None,
        find_time: None,
        floor_ledger: None,
        big_ledgers: None,
    };
    let started = chrono::Utc::now();
    progress(&format!(
        "data in {}, eraser at {}",
        temp.path().display(),
        ctx.eraser.path().display()
    ));

    let mut rows = Vec::new();
    for spec in &SPECS {
        if !args.rows.is_empty() && !args.rows.iter().any(|r| r == spec.name) {
            continue;
        }
        progress(&format!("[{}]", spec.name));
        let row = (spec.measure)(&mut ctx)
            .unwrap_or_else(|e| Row::empty(spec.name, spec.target, Verdict::Error(e.to_string())));
        // Each row as soon as it is measured: the whole table comes only at the end.
        let line = table::render(std::slice::from_ref(&row));
        progress(line.lines().nth(2).unwrap_or_default());
        rows.push(row);
    }
    let failed = rows.iter().any(|r| matches!(r.verdict, Verdict::Error(_)));

    let report = format!(
        "eraser benchmark, {}{}\nmachine: {}\n\n{}\n{}\n",
        started.format("%Y-%m-%d %H:%M UTC"),
        if args.quick {
            " (--quick: every size ÷ 10, verdicts indicative only)"
        } else {
            ""
        },
        ctx.machine.line(),
        table::render(&rows),
        "Times are whole processes (start to exit) unless said otherwise; \"best of k\" and \
         \"median of k\" are over k runs; files are in the page cache."
    );
    // A closed stdout (`bench | head`) is not worth a panic.
    let _ = std::io::stdout().lock().write_all(report.as_bytes());
    drop(temp);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
