//! What the bench prints and writes: the run's heading (date, commit, machine, baseline) above
//! the table, and `docs/performance.md`, which adds how each row is measured from the rows'
//! own descriptions. The file holds the latest run only; its history is in git.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Sizes;
use crate::table::thousands;

/// What a row says of itself in the file.
#[derive(Debug, Clone, Copy)]
pub struct About {
    pub name: &'static str,
    pub target: &'static str,
    /// What runs, the reference, the target: one paragraph.
    pub text: &'static str,
}

/// Where and how the run was made.
#[derive(Debug, Clone)]
pub struct Heading {
    /// `2026-12-01 10:00 UTC`.
    pub date: String,
    /// See [`commit`].
    pub commit: String,
    pub machine: String,
    pub quick: bool,
    /// The rows asked for with `--rows` (empty: all).
    pub rows: Vec<String>,
    /// The baseline's label and path, with `--baseline`.
    pub baseline: Option<(String, PathBuf)>,
}

impl Heading {
    /// The lines above the table.
    pub fn lines(&self) -> String {
        let mut out = format!("eraser benchmark, {}, commit {}", self.date, self.commit);
        if self.quick {
            out.push_str(" (--quick: every size ÷ 10, verdicts indicative only)");
        }
        if !self.rows.is_empty() {
            out.push_str(&format!(" (rows {} only)", self.rows.join(", ")));
        }
        out.push_str(&format!("\nmachine: {}", self.machine));
        if let Some((label, path)) = &self.baseline {
            out.push_str(&format!(
                "\nbaseline: {label} ({}), measured in the same run, row by row after the \
                 binary under test",
                path.display()
            ));
        }
        out.push('\n');
        out
    }
}

/// The note under the table.
pub const FOOTNOTE: &str = "Times are whole processes (start to exit) unless said otherwise; \
    \"best of k\" and \"median of k\" are over k runs; files are in the page cache.";

const INTRO: &str = "`just bench` measures eraser on this machine and writes this file \
    (`bench --write docs/performance.md`); each run rewrites it, so it holds the latest table \
    only and its history is in git. The bench drives the release `eraser` binary through its \
    command line and its `--json` summary, against the service emulator running inside the \
    bench on 127.0.0.1, on data it generates in a temp folder. Times are whole processes, \
    start to exit, with the files in the page cache; peak RSS is `ru_maxrss` from `wait4`, \
    through a small helper process. Timings are figures to watch: no test asserts them. \
    `--quick` divides every size by 10 (verdicts are then indicative only), `--rows a,b` runs \
    only the rows named, and `--baseline OTHER_ERASER` (with `--baseline-label TEXT`) measures \
    every row for a second binary as well, in a \"baseline\" column of the same run.";

/// The whole of `docs/performance.md`: the fixed part, then `heading` and `table`.
pub fn document(rows: &[About], sizes: &Sizes, heading: &Heading, table: &str) -> String {
    let mut out = String::from("# Performance\n\n");
    out.push_str(&wrap(INTRO));
    out.push_str("\n## How each row is measured\n\n");
    out.push_str(&wrap(&format!(
        "Sizes of a full run (`--quick` divides each by 10): {}.",
        size_list(sizes)
    )));
    for row in rows {
        out.push('\n');
        out.push_str(&wrap(&format!(
            "**{}** (target: {}). {}",
            row.name, row.target, row.text
        )));
    }
    out.push_str("\n## Latest run\n\n```text\n");
    out.push_str(&heading.lines());
    out.push_str("```\n\n");
    out.push_str(table);
    out.push('\n');
    out.push_str(&wrap(FOOTNOTE));
    out
}

/// `sizes` as the rows' texts name them.
fn size_list(sizes: &Sizes) -> String {
    let named = [
        ("hash_files", sizes.hash_files as u64),
        ("scan_files", sizes.scan_files as u64),
        ("ledger_rows", sizes.ledger_rows),
        ("pipeline_images", sizes.pipeline_images as u64),
        ("wan_images", sizes.wan_images as u64),
        ("throughput_images", sizes.throughput_images as u64),
        ("memory_small", sizes.memory_small as u64),
        ("serial_images", sizes.serial_images as u64),
    ];
    named
        .iter()
        .map(|(name, n)| format!("`{name}` {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` as lines of at most 100 characters (words are not split), ending with a newline.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > 100 {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The commit of the git work tree around the current directory: `git rev-parse --short HEAD`,
/// with "+dirty" when `git status --porcelain` lists anything but `written` (the file this run
/// writes, which a previous run may have left changed); "unknown (no git work tree)" without
/// one.
pub fn commit(written: Option<&Path>) -> String {
    commit_in(Path::new("."), written)
}

/// [`commit`] of the work tree around `dir`.
fn commit_in(dir: &Path, written: Option<&Path>) -> String {
    let Some(top) = git(dir, &["rev-parse", "--show-toplevel"]) else {
        return "unknown (no git work tree)".into();
    };
    let top = PathBuf::from(top);
    let Some(short) = git(&top, &["rev-parse", "--short", "HEAD"]) else {
        return "unknown (no commit yet)".into();
    };
    let exclude = written
        .and_then(|file| relative_to(&top, file))
        .map(|rel| format!(":(exclude){}", rel.display()));
    let mut args = vec!["status", "--porcelain", "--", "."];
    if let Some(exclude) = &exclude {
        args.push(exclude);
    }
    match git(&top, &args) {
        Some(status) if status.is_empty() => short,
        Some(_) => format!("{short}+dirty"),
        None => format!("{short} (status unknown)"),
    }
}

/// `file` relative to the folder `top`, when it lies inside it (the file need not exist yet).
fn relative_to(top: &Path, file: &Path) -> Option<PathBuf> {
    let top = top.canonicalize().ok()?;
    let absolute = std::path::absolute(file).ok()?;
    let parent = absolute.parent()?.canonicalize().ok()?;
    let full = parent.join(absolute.file_name()?);
    full.strip_prefix(&top).ok().map(Path::to_path_buf)
}

/// The trimmed stdout of `git ARGS` run in `dir`, when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heading() -> Heading {
        Heading {
            date: "2026-12-01 10:00 UTC".into(),
            commit: "abc1234+dirty".into(),
            machine: "nproc 2 · a CPU".into(),
            quick: false,
            rows: Vec::new(),
            baseline: None,
        }
    }

    const ROWS: [About; 2] = [
        About {
            name: "hash",
            target: "≥ 0.9 × cores × raw",
            text: "eraser hashes big files.",
        },
        About {
            name: "wan",
            target: "≤ 1.1 × ideal",
            text: "eraser over a slow network.",
        },
    ];

    #[test]
    fn the_document_says_how_each_row_is_measured_then_the_latest_table() {
        let doc = document(&ROWS, &Sizes::new(false), &heading(), "| row |\n");
        let how = doc.find("## How each row is measured").expect("how");
        let hash = doc
            .find("**hash** (target: ≥ 0.9 × cores × raw). eraser hashes")
            .expect("hash");
        let wan = doc
            .find("**wan** (target: ≤ 1.1 × ideal). eraser over")
            .expect("wan");
        let latest = doc.find("## Latest run").expect("latest");
        let table = doc.find("| row |").expect("table");
        assert!(
            how < hash && hash < wan && wan < latest && latest < table,
            "{doc}"
        );
        assert!(doc.contains("commit abc1234+dirty"), "{doc}");
        assert!(doc.contains("`scan_files` 200,000"), "{doc}");
    }

    #[test]
    fn the_heading_names_the_baseline_only_when_there_is_one() {
        assert!(!heading().lines().contains("baseline"));
        let with = Heading {
            baseline: Some(("dfc8f9f".into(), "/tmp/eraser-old".into())),
            ..heading()
        };
        assert!(
            with.lines().contains("baseline: dfc8f9f (/tmp/eraser-old)"),
            "{}",
            with.lines()
        );
    }

    #[test]
    fn a_partial_or_quick_run_says_so_in_its_heading() {
        let partial = Heading {
            quick: true,
            rows: vec!["wan".into(), "hash".into()],
            ..heading()
        };
        let first = partial
            .lines()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            first.contains("--quick") && first.contains("rows wan, hash only"),
            "{first}"
        );
    }

    #[test]
    fn wrapped_lines_keep_every_word_within_a_hundred_characters() {
        let text = "word ".repeat(100);
        let wrapped = wrap(&text);
        assert!(wrapped.lines().all(|l| l.chars().count() <= 100));
        assert_eq!(wrapped.split_whitespace().count(), 100);
    }

    #[test]
    fn a_change_other_than_the_written_file_marks_the_commit_dirty() {
        if git(Path::new("."), &["--version"]).is_none() {
            eprintln!("git not installed: the commit line is not checked");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path();
        let git_ok = |args: &[&str]| git(repo, args).expect("git ran");
        git_ok(&["init", "-q"]);
        std::fs::write(repo.join("code.rs"), "fn main() {}\n").expect("written");
        git_ok(&["add", "code.rs"]);
        git_ok(&[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-qm",
            "one",
        ]);
        let short = git_ok(&["rev-parse", "--short", "HEAD"]);
        let written = repo.join("docs/performance.md");
        std::fs::create_dir(repo.join("docs")).expect("docs");

        std::fs::write(&written, "# Performance\n").expect("written");
        assert_eq!(commit_in(repo, Some(&written)), short);
        std::fs::write(repo.join("code.rs"), "fn main() { }\n").expect("changed");
        assert_eq!(commit_in(repo, Some(&written)), format!("{short}+dirty"));
    }

    #[test]
    fn outside_a_work_tree_the_commit_is_unknown() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(commit_in(dir.path(), None).starts_with("unknown"));
    }

    #[test]
    fn the_written_file_is_named_relative_to_the_work_tree() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("docs")).expect("docs");
        let file = dir.path().join("docs/performance.md");
        assert_eq!(
            relative_to(dir.path(), &file),
            Some(PathBuf::from("docs/performance.md"))
        );
        assert_eq!(
            relative_to(&dir.path().join("docs"), Path::new("/elsewhere/x.md")),
            None
        );
    }
}
