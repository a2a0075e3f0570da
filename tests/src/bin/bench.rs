//! `bench`: eraser's benchmark table, measured on this machine.
//!
//! Runs the release `eraser` binary found next to this executable (build both with
//! `cargo build --release --workspace`; `just bench` does) against the in-process emulator on
//! 127.0.0.1, on data generated into a temp folder, and prints one Markdown table: each row's
//! figure, the reference measured in the same run, their ratio, the target and the verdict.
//! Timings are figures to watch, never assertions: the exit code is 1 only when a measurement
//! could not be made at all.
//!
//! `--quick` divides every size by 10 (a smoke run; verdicts are then indicative only);
//! `--rows a,b` runs only the named rows; `--write FILE` also writes the table, with how each
//! row is measured, into FILE (`just bench` writes `docs/performance.md`); `--baseline ERASER`
//! measures every row for a second binary too, in a "baseline" column.
//!
//! The modules live in `bench/` (a crate root resolves `mod` beside itself, hence the paths).

#[path = "bench/context.rs"]
mod context;
#[path = "bench/data.rs"]
mod data;
#[path = "bench/done_rows.rs"]
mod done_rows;
#[path = "bench/eraser.rs"]
mod eraser;
#[path = "bench/ledger_rows.rs"]
mod ledger_rows;
#[path = "bench/machine.rs"]
mod machine;
#[path = "bench/measure.rs"]
mod measure;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/scan_rows.rs"]
mod scan_rows;
#[path = "bench/serial.rs"]
mod serial;
#[path = "bench/service_rows.rs"]
mod service_rows;
#[path = "bench/table.rs"]
mod table;
#[path = "bench/wan.rs"]
mod wan;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use self::context::Ctx;
use self::eraser::Eraser;
use self::machine::Machine;
use self::report::{About, Heading};
use self::table::{Row, Verdict};

/// Errors of a measurement, reported in its row.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Prints eraser's benchmark table for the release eraser binary beside this one.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Every size divided by 10: a smoke run of a few minutes.
    #[arg(long)]
    quick: bool,
    /// Only these rows (comma-separated): hash, first-scan, rescan, status, export, pipeline,
    /// wan, throughput, memory, rescan-done-20k, rescan-done-200k, one-at-a-time.
    #[arg(long, value_delimiter = ',', value_name = "ROW,…")]
    rows: Vec<String>,
    /// Also write FILE: how each row is measured, then this run's table with its machine, date
    /// and commit (the file is rewritten; `just bench` writes docs/performance.md).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Another eraser binary (e.g. one built from an older commit), measured in every row
    /// after the binary under test: the table gets a "baseline" column of its figures.
    #[arg(long, value_name = "ERASER")]
    baseline: Option<PathBuf>,
    /// What the table and the file call the baseline, e.g. its commit [default: its path].
    #[arg(long, value_name = "TEXT", requires = "baseline")]
    baseline_label: Option<String>,
}

/// One row of the table: its name, its target, what it measures, and how.
struct Spec {
    name: &'static str,
    target: &'static str,
    about: &'static str,
    measure: fn(&mut Ctx) -> BenchResult<Row>,
}

/// The rows, in the order they run: the memory row's full runs leave the completed archives
/// that the `rescan-done` rows rescan.
const SPECS: [Spec; 12] = [
    Spec {
        name: "hash",
        target: scan_rows::HASH_TARGET,
        about: scan_rows::HASH_ABOUT,
        measure: scan_rows::hash,
    },
    Spec {
        name: "first-scan",
        target: scan_rows::FIRST_SCAN_TARGET,
        about: scan_rows::FIRST_SCAN_ABOUT,
        measure: scan_rows::first_scan,
    },
    Spec {
        name: "rescan",
        target: scan_rows::RESCAN_TARGET,
        about: scan_rows::RESCAN_ABOUT,
        measure: scan_rows::rescan,
    },
    Spec {
        name: "status",
        target: ledger_rows::STATUS_TARGET,
        about: ledger_rows::STATUS_ABOUT,
        measure: ledger_rows::status,
    },
    Spec {
        name: "export",
        target: ledger_rows::EXPORT_TARGET,
        about: ledger_rows::EXPORT_ABOUT,
        measure: ledger_rows::export,
    },
    Spec {
        name: "pipeline",
        target: service_rows::PIPELINE_TARGET,
        about: service_rows::PIPELINE_ABOUT,
        measure: service_rows::pipeline,
    },
    Spec {
        name: "wan",
        target: wan::WAN_TARGET,
        about: wan::WAN_ABOUT,
        measure: wan::wan,
    },
    Spec {
        name: "throughput",
        target: service_rows::THROUGHPUT_TARGET,
        about: service_rows::THROUGHPUT_ABOUT,
        measure: service_rows::throughput,
    },
    Spec {
        name: "memory",
        target: service_rows::MEMORY_TARGET,
        about: service_rows::MEMORY_ABOUT,
        measure: service_rows::memory,
    },
    Spec {
        name: "rescan-done-20k",
        target: done_rows::DONE_TARGET,
        about: done_rows::DONE_20K_ABOUT,
        measure: done_rows::rescan_done_small,
    },
    Spec {
        name: "rescan-done-200k",
        target: done_rows::DONE_TARGET,
        about: done_rows::DONE_200K_ABOUT,
        measure: done_rows::rescan_done_large,
    },
    Spec {
        name: "one-at-a-time",
        target: service_rows::SERIAL_TARGET,
        about: service_rows::SERIAL_ABOUT,
        measure: service_rows::one_at_a_time,
    },
];

/// How much data each row works on.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// 4 MiB files hashed (512 = 2 GiB).
    pub hash_files: usize,
    /// Small files of the first scan, the rescan, the memory row's large run and the large
    /// completed archive.
    pub scan_files: usize,
    /// Images (and inputs) in the status and export ledger; export also uses a tenth of it.
    pub ledger_rows: u64,
    pub pipeline_images: usize,
    /// Photo-sized images of the `wan` row.
    pub wan_images: usize,
    pub throughput_images: usize,
    /// The memory row's small run and the small completed archive (its large run is
    /// `scan_files`).
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
            wan_images: 160 / d,
            throughput_images: 10_000 / d,
            memory_small: 20_000 / d,
            serial_images: 30 / d,
        }
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
    let binaries = Eraser::locate(temp.path()).and_then(|eraser| {
        let baseline = args
            .baseline
            .as_deref()
            .map(|path| Eraser::at(path, temp.path()))
            .transpose()?;
        Ok((eraser, baseline))
    });
    let (eraser, baseline) = match binaries {
        Ok(binaries) => binaries,
        Err(why) => {
            eprintln!("bench: {why}");
            return ExitCode::from(2);
        }
    };
    let heading = Heading {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: report::commit(args.write.as_deref()),
        machine: Machine::probe().line(),
        quick: args.quick,
        rows: args.rows.clone(),
        baseline: baseline.as_ref().map(|b| {
            let label = args
                .baseline_label
                .clone()
                .unwrap_or_else(|| b.path().display().to_string());
            (label, b.path().to_path_buf())
        }),
    };
    progress(&format!(
        "data in {}, eraser at {}",
        temp.path().display(),
        eraser.path().display()
    ));
    let with_baseline = baseline.is_some();
    let sizes = Sizes::new(args.quick);
    let mut ctx = Ctx::new(eraser, baseline, sizes, Machine::probe(), temp.path());

    let mut rows = Vec::new();
    for spec in &SPECS {
        if !args.rows.is_empty() && !args.rows.iter().any(|r| r == spec.name) {
            continue;
        }
        progress(&format!("[{}]", spec.name));
        let row = (spec.measure)(&mut ctx)
            .unwrap_or_else(|e| Row::empty(spec.name, spec.target, Verdict::Error(e.to_string())));
        // Each row as soon as it is measured: the whole table comes only at the end.
        let line = table::render(std::slice::from_ref(&row), with_baseline);
        progress(line.lines().nth(2).unwrap_or_default());
        rows.push(row);
    }
    let failed = rows.iter().any(|r| matches!(r.verdict, Verdict::Error(_)));
    let table = table::render(&rows, with_baseline);

    let printed = format!("{}\n{table}\n{}\n", heading.lines(), report::FOOTNOTE);
    // A closed stdout (`bench | head`) is not worth a panic.
    let _ = std::io::stdout().lock().write_all(printed.as_bytes());
    let mut code = if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if let Some(file) = &args.write {
        let about: Vec<About> = SPECS
            .iter()
            .map(|s| About {
                name: s.name,
                target: s.target,
                text: s.about,
            })
            .collect();
        let document = report::document(&about, &Sizes::new(false), &heading, &table);
        let written = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
            _ => Ok(()),
        }
        .and_then(|()| std::fs::write(file, document));
        match written {
            Ok(()) => progress(&format!("wrote {}", file.display())),
            Err(e) => {
                eprintln!("bench: cannot write {}: {e}", file.display());
                code = ExitCode::FAILURE;
            }
        }
    }
    drop(temp);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_label_without_a_baseline_is_a_usage_error() {
        assert!(Args::try_parse_from(["bench", "--baseline-label", "dfc8f9f"]).is_err());
        let args = Args::try_parse_from([
            "bench",
            "--baseline",
            "/tmp/eraser-old",
            "--baseline-label",
            "dfc8f9f",
            "--write",
            "docs/performance.md",
        ])
        .expect("parses");
        assert_eq!(args.baseline_label.as_deref(), Some("dfc8f9f"));
        assert_eq!(args.write, Some(PathBuf::from("docs/performance.md")));
    }

    #[test]
    fn every_row_has_its_own_name_and_says_how_it_is_measured() {
        let mut names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SPECS.len());
        assert!(
            SPECS.iter().all(|s| s.about.len() > 40),
            "a row without its text"
        );
    }

    #[test]
    fn the_memory_row_runs_before_the_archives_it_completes_are_rescanned() {
        let at = |name: &str| {
            SPECS
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| panic!("no row {name}"))
        };
        assert!(at("memory") < at("rescan-done-20k"));
        assert!(at("memory") < at("rescan-done-200k"));
    }
}
