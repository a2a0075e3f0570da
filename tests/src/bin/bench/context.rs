//! What the rows share: the eraser binaries measured, the temp folder, the sizes, and data built
//! once (trees, ledgers, completed archives, `find` times) so later rows reuse it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::data::{self, Tree};
use crate::eraser::Eraser;
use crate::machine::Machine;
use crate::measure::{self, Stdout};
use crate::table::thousands;
use crate::{BenchResult, Sizes, progress};

/// Which eraser binary a measurement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    /// The binary under test, beside the bench.
    Main,
    /// The `--baseline` binary, for a before/after comparison.
    Baseline,
}

/// A figure measured for the binary under test and, with `--baseline`, for the baseline.
#[derive(Debug)]
pub struct Both<T> {
    pub main: T,
    /// `None` without `--baseline`; the error text when the baseline could not be measured.
    pub baseline: Option<Result<T, String>>,
}

impl<T> Both<T> {
    /// The baseline's cell of the table: `text` of its figure, or its error.
    pub fn baseline_cell(&self, text: impl Fn(&T) -> String) -> Option<String> {
        self.baseline.as_ref().map(|figure| match figure {
            Ok(figure) => text(figure),
            Err(why) => format!("ERROR: {why}"),
        })
    }
}

/// The two archive sizes a completed-archive rescan is measured at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveSize {
    /// `memory_small` files (20,000), the memory row's small run.
    Small,
    /// `scan_files` files (200,000), the scan tree, the memory row's large run.
    Large,
}

/// An archive a full run completed: every image done, every output in place.
#[derive(Debug, Clone)]
pub struct Archive {
    pub tree: Tree,
    pub ledger: PathBuf,
    pub out: PathBuf,
    /// The `-j` it ran with (the rescan runs the same command).
    pub jobs: usize,
}

/// What one binary built: its ledgers are its own (an older binary may not open a newer
/// schema, and a newer one would upgrade an older ledger).
#[derive(Debug, Default)]
pub struct Built {
    /// The ledger and OUT of the first scan (`--dry-run`), for the rescan.
    pub scanned: Option<(PathBuf, PathBuf)>,
    /// The ledgers of `ledger_rows` and of a tenth of it.
    pub big_ledgers: Option<(PathBuf, PathBuf)>,
    /// Completed archives, by size.
    pub archives: HashMap<ArchiveSize, Archive>,
}

/// The rows' shared state.
pub struct Ctx {
    pub sizes: Sizes,
    pub machine: Machine,
    eraser: Eraser,
    baseline: Option<Eraser>,
    built: [Built; 2],
    root: PathBuf,
    next: std::cell::Cell<u32>,
    trees: HashMap<ArchiveSize, Tree>,
    /// Best `find -printf` time per folder.
    find_times: HashMap<PathBuf, Duration>,
    /// The ledger `sqlite3` filled for the first scan's floor (the rescan's floor reads it).
    pub floor_ledger: Option<PathBuf>,
}

impl Ctx {
    pub fn new(
        eraser: Eraser,
        baseline: Option<Eraser>,
        sizes: Sizes,
        machine: Machine,
        root: &Path,
    ) -> Ctx {
        Ctx {
            sizes,
            machine,
            eraser,
            baseline,
            built: [Built::default(), Built::default()],
            root: root.to_path_buf(),
            next: std::cell::Cell::new(0),
            trees: HashMap::new(),
            find_times: HashMap::new(),
            floor_ledger: None,
        }
    }

    /// The binary `bin` names (the baseline is only asked for when one was given).
    pub fn eraser(&self, bin: Bin) -> &Eraser {
        match (bin, &self.baseline) {
            (Bin::Baseline, Some(baseline)) => baseline,
            _ => &self.eraser,
        }
    }

    /// What `bin` built so far.
    pub fn built(&mut self, bin: Bin) -> &mut Built {
        &mut self.built[bin as usize]
    }

    /// Runs `measure` for the binary under test, then for the baseline when there is one. An
    /// error of the first is the row's; an error of the baseline goes into its cell only.
    pub fn both<T>(
        &mut self,
        mut measure: impl FnMut(&mut Ctx, Bin) -> BenchResult<T>,
    ) -> BenchResult<Both<T>> {
        let main = measure(self, Bin::Main)?;
        let baseline = if self.baseline.is_some() {
            progress("  the same with the baseline binary");
            Some(measure(self, Bin::Baseline).map_err(|e| e.to_string()))
        } else {
            None
        };
        Ok(Both { main, baseline })
    }

    /// A new, unused path in the temp folder, named after `what`.
    pub fn fresh(&self, what: &str) -> PathBuf {
        let n = self.next.get() + 1;
        self.next.set(n);
        self.root.join(format!("{n:02}-{what}"))
    }

    /// The scan tree of `sizes.scan_files` files, generated on first use.
    pub fn scan_tree(&mut self) -> BenchResult<Tree> {
        self.tree(ArchiveSize::Large)
    }

    /// The tree of an archive size, generated on first use: the large one is the scan tree.
    pub fn tree(&mut self, size: ArchiveSize) -> BenchResult<Tree> {
        if let Some(tree) = self.trees.get(&size) {
            return Ok(tree.clone());
        }
        let (n, what, salt) = match size {
            ArchiveSize::Small => (self.sizes.memory_small, "memory-tree", 4),
            ArchiveSize::Large => (self.sizes.scan_files, "scan-tree", 1),
        };
        let root = self.fresh(what);
        progress(&format!("writing {} small JPEGs", thousands(n as u64)));
        let tree = data::image_tree(&root, n, salt)?;
        data::sync();
        self.trees.insert(size, tree.clone());
        Ok(tree)
    }

    /// [`Ctx::find_now`], measured once per folder and then reused.
    pub fn find_time(&mut self, dir: &Path, runs: usize) -> BenchResult<Option<Duration>> {
        if let Some(t) = self.find_times.get(dir) {
            return Ok(Some(*t));
        }
        let best = self.find_now(dir, runs)?;
        if let Some(best) = best {
            self.find_times.insert(dir.to_path_buf(), best);
        }
        Ok(best)
    }

    /// `find DIR -type f -printf '%s %T@\n'`: one warm-up, then the best of `runs`. `None`
    /// when find is not installed.
    pub fn find_now(&self, dir: &Path, runs: usize) -> BenchResult<Option<Duration>> {
        if !data::have("find") {
            return Ok(None);
        }
        let measured = measure::repeat(runs + 1, "find", Stdout::Count, || {
            let mut cmd = Command::new("find");
            cmd.arg(dir).args(["-type", "f", "-printf", "%s %T@\\n"]);
            cmd
        })?;
        Ok(Some(measure::best_wall(&measured[1..])))
    }
}
