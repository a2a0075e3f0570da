//! Shared fixtures of the end-to-end tests: a temp tree per test, the `eraser` command with a
//! sealed environment, real image files, output checks and waiting for conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use eraser_tests::emulator::{self, Counters, Emulator, Knobs};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest any single `eraser` process may take before the test gives up on it.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(90);

/// Starts an emulator on its own thread (for plain `#[test]` fns).
pub fn emulator(knobs: Knobs) -> Emulator {
    Emulator::spawn(knobs).expect("the emulator starts on 127.0.0.1")
}

// --- the binary -----------------------------------------------------------------------------------

/// The `eraser` binary of this build: `<target>/<profile>/eraser`, next to `deps/` holding this
/// test executable. `cargo test --workspace` builds it; when it is missing or older than its
/// sources (as under `cargo test -p eraser-tests --test e2e`), it is built once per test process
/// with `cargo build -p eraser --bin eraser`. An unconditional nested build would not be a no-op:
/// `-p eraser` unifies dependency features differently from `--workspace` and recompiles.
/// A failed build is remembered too, so the other tests fail at once instead of rebuilding.
pub fn eraser_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build_eraser) {
        Ok(bin) => bin,
        Err(why) => panic!("{why}"),
    }
}

fn build_eraser() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let target_dir = profile_dir
        .parent()
        .expect("the profile folder lives in the target folder");
    let bin = profile_dir.join(format!("eraser{}", std::env::consts::EXE_SUFFIX));
    if is_newer_than_sources(&bin) {
        return Ok(bin);
    }
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .unwrap_or("debug");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "eraser", "--bin", "eraser"])
        .env("CARGO_TARGET_DIR", target_dir);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let output = build
        .output()
        .map_err(|e| format!("cannot run cargo to build eraser: {e}"))?;
    if output.status.success() && bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "building the eraser binary failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// True when `bin` exists and no source it is built from (workspace manifests, lock file,
/// migrations, offline query data, the cli, api and store crates) was modified after it.
fn is_newer_than_sources(bin: &Path) -> bool {
    fn newest(path: &Path, newest_seen: &mut SystemTime) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if let Ok(modified) = meta.modified() {
            *newest_seen = (*newest_seen).max(modified);
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(path)
        {
            for entry in entries.flatten() {
                newest(&entry.path(), newest_seen);
            }
        }
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let Some(root) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() else {
        return false;
    };
    let mut newest_source = SystemTime::UNIX_EPOCH;
    for source in [
        "Cargo.toml",
        "Cargo.lock",
        "migrations",
        ".sqlx",
        "crates/cli",
        "crates/api",
        "crates/store",
    ] {
        newest(&root.join(source), &mut newest_source);
    }
    newest_source <= built
}

// --- the temp tree --------------------------------------------------------------------------------

/// One test's private tree: `inputs/`, `out/`, `home/`, an empty config file and the ledger path.
pub struct TestDir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl TestDir {
    /// A fresh tree in the system temp folder, removed when dropped.
    pub fn new() -> TestDir {
        let tmp = tempfile::Builder::new()
            .prefix("eraser-e2e-")
            .tempdir()
            .expect("a temp dir");
        // Canonical, so paths compare equal to what the binary records (macOS /private/var…).
        let root = tmp.path().canonicalize().expect("the temp dir resolves");
        for dir in ["inputs", "out", "home"] {
            std::fs::create_dir_all(root.join(dir)).expect("create a test folder");
        }
        std::fs::write(root.join("none.toml"), "").expect("write the empty config");
        TestDir { _tmp: tmp, root }
    }

    /// The tree's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/inputs`, the usual INPUT folder.
    pub fn inputs(&self) -> PathBuf {
        self.root.join("inputs")
    }

    /// `<root>/out`, the usual OUT folder.
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    /// `<root>/ledger.db`, passed as `--ledger` to every command.
    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger.db")
    }

    /// Writes `bytes` at `rel` (relative to the root), creating folders; returns the full path.
    pub fn write(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> PathBuf {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the file's folder");
        }
        std::fs::write(&path, bytes).expect("write a test file");
        path
    }

    /// `eraser --ledger <root>/ledger.db` with a sealed environment: only `PATH` (and
    /// `RUST_BACKTRACE`) pass through; `HOME` and the XDG folders point into the tree, the API
    /// is the emulator's, the config file is empty, no proxy for loopback, no `RUST_LOG`.
    pub fn eraser(&self, emu: &Emulator) -> Command {
        let mut cmd = Command::new(eraser_bin());
        cmd.env_clear();
        for keep in ["PATH", "RUST_BACKTRACE"] {
            if let Some(value) = std::env::var_os(keep) {
                cmd.env(keep, value);
            }
        }
        let home = self.root.join("home");
        cmd.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("ERASER_API_BASE", emu.api_url())
            .env("ERASER_CONFIG", self.root.join("none.toml"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .current_dir(&self.root)
            .arg("--ledger")
            .arg(self.ledger());
        cmd
    }

    /// `eraser run <inputs> -o <out> --json <extra…>`, run to its end.
    pub fn run(&self, emu: &Emulator, inputs: &[&Path], out: &Path, extra: &[&str]) -> Finished {
        self.run_cmd(emu, inputs, out, extra).finish()
    }

    /// The command of [`TestDir::run`], not started.
    pub fn run_cmd(&self, emu: &Emulator, inputs: &[&Path], out: &Path, extra: &[&str]) -> Command {
        let mut cmd = self.eraser(emu);
        cmd.arg("run").args(inputs).arg("-o").arg(out).arg("--json");
        cmd.args(extra);
        cmd
    }

    /// `eraser ledger <args…>`, run to its end.
    pub fn ledger_cmd(&self, emu: &Emulator, args: &[&str]) -> Finished {
        let mut cmd = self.eraser(emu);
        cmd.arg("ledger").args(args);
        cmd.finish()
    }

    /// `eraser ledger status --json`, which must succeed.
    pub fn status(&self, emu: &Emulator) -> Value {
        self.ledger_cmd(emu, &["status", "--json"])
            .expect_code(0)
            .json()
    }
}

// --- running the binary ---------------------------------------------------------------------------

/// Runs a command to its end (stdin closed), killing it after [`PROCESS_TIMEOUT`].
pub trait FinishExt {
    fn finish(&mut self) -> Finished;
}

impl FinishExt for Command {
    fn finish(&mut self) -> Finished {
        Running::start(self).wait(PROCESS_TIMEOUT)
    }
}

/// A process that ended: its exit code and what it printed.
#[derive(Debug)]
pub struct Finished {
    /// None when it died of a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Panics, showing stdout and stderr, unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Finished {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Stdout as one JSON value (the `--json` summary or report).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON value ({e})\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Stdout as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{}", self.stderr))
            })
            .collect()
    }
}

/// A started `eraser` whose output is collected by two threads. Dropping it kills the process
/// if it still runs, so a failing test leaves no stray process behind.
pub struct Running {
    child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Spawns `cmd` with stdin closed and stdout/stderr collected.
    pub fn start(cmd: &mut Command) -> Running {
        Running::spawn(cmd.stdin(Stdio::null()))
    }

    /// Spawns `cmd` with `input` written to its stdin (then closed), stdout/stderr collected.
    pub fn start_with_stdin(cmd: &mut Command, input: &[u8]) -> Running {
        let mut running = Running::spawn(cmd.stdin(Stdio::piped()));
        if let Some(mut stdin) = running.child.as_mut().and_then(|c| c.stdin.take()) {
            let input = input.to_vec();
            // A thread, so a child that reads slowly cannot block the test before it waits.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        running
    }

    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("eraser starts");
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Running {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the process is not waited for yet")
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // Never 0 or negative: kill(2) would then signal a whole process group.
        let pid = libc::pid_t::try_from(self.pid())
            .ok()
            .filter(|pid| *pid > 0)
            .expect("a positive pid");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet, so it is still ours.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// True once the process has ended (it is reaped then).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().expect("try_wait works").is_some())
    }

    /// SIGKILLs the process unless it already ended, and reaps it (a zombie would look alive
    /// to the next run's liveness check). Returns whether it was still running when killed.
    pub fn kill(mut self) -> bool {
        let killed = !self.has_exited();
        if killed {
            self.signal(libc::SIGKILL);
        }
        if let Some(child) = self.child.as_mut() {
            child.wait().expect("the killed process is reaped");
        }
        killed
    }

    /// Waits for the end; past `timeout` kills the process and panics with its stderr.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            let child = self.child.as_mut().expect("not waited yet");
            if let Some(status) = child.try_wait().expect("try_wait works") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.child = None;
        let stdout = collect(self.stdout.take());
        let stderr = collect(self.stderr.take());
        let Some(status) = status else {
            panic!("eraser did not end within {timeout:?}; it was killed\n--- stderr\n{stderr}");
        };
        Finished {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn collect(handle: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = handle.and_then(|h| h.join().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

// --- waiting --------------------------------------------------------------------------------------

/// Polls `condition` every 10 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// --- images ---------------------------------------------------------------------------------------

/// The three upload formats the service takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
}

impl Format {
    /// The usual file extension.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }

    /// JPEG, PNG, WEBP in turn by `n`.
    pub fn nth(n: u64) -> Format {
        match n % 3 {
            0 => Format::Jpeg,
            1 => Format::Png,
            _ => Format::Webp,
        }
    }
}

/// Real image bytes of `format`, distinct for every seed.
pub fn image(format: Format, seed: u64) -> Vec<u8> {
    match format {
        Format::Jpeg => emulator::sample_jpeg(seed),
        Format::Png => emulator::sample_png(seed),
        Format::Webp => emulator::sample_webp(seed),
    }
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What OUT must hold: output path relative to OUT → sha256 of the input it comes from.
pub type Expected = BTreeMap<PathBuf, String>;

/// Writes `count` distinct images of mixed formats as `<folder>/img<i>.<ext>` (seeds from
/// `first_seed`), records them in `expected` as `<folder>/img<i>.jpg`; returns their shas.
pub fn write_unique(
    td: &TestDir,
    folder: &str,
    first_seed: u64,
    count: u64,
    expected: &mut Expected,
) -> Vec<String> {
    (0..count)
        .map(|i| {
            let seed = first_seed + i;
            let format = Format::nth(seed);
            let bytes = image(format, seed);
            let sha = sha256_hex(&bytes);
            td.write(format!("inputs/{folder}/img{i}.{}", format.ext()), &bytes);
            expected.insert(PathBuf::from(format!("{folder}/img{i}.jpg")), sha.clone());
            sha
        })
        .collect()
}

// --- checking outputs -----------------------------------------------------------------------------

/// Every file below `dir` (recursive), relative to it, sorted.
pub fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(base: &Path, dir: &Path, found: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, found);
            } else if let Ok(rel) = path.strip_prefix(base) {
                found.insert(rel.to_path_buf());
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(dir, dir, &mut found);
    found
}

/// Files below `dir` whose names mark them as partial or temporary (`.eraser-part-`,
/// `.eraser-tmp-`).
pub fn temp_files_below(dir: &Path) -> Vec<PathBuf> {
    files_below(dir)
        .into_iter()
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            name.contains(".eraser-part-") || name.contains(".eraser-tmp-")
        })
        .collect()
}

/// Why the file at `path` is not the output of the input with sha256 `source`, if it is not.
pub fn output_problem(path: &Path, source: &str) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return Some(format!("{}: cannot read: {e}", path.display())),
    };
    if let Err(e) = image::load_from_memory(&bytes) {
        return Some(format!("{}: not a decodable image: {e}", path.display()));
    }
    match emulator::source_sha256(&bytes) {
        Some(sha) if sha == source => None,
        Some(sha) => Some(format!(
            "{}: made from {sha}, expected {source}",
            path.display()
        )),
        None => Some(format!("{}: carries no source marker", path.display())),
    }
}

/// Asserts OUT holds exactly the expected files, each a decodable image made from its input.
pub fn assert_outputs_exactly(out: &Path, expected: &Expected) {
    let found = files_below(out);
    let wanted: BTreeSet<PathBuf> = expected.keys().cloned().collect();
    let missing: Vec<_> = wanted.difference(&found).collect();
    let extra: Vec<_> = found.difference(&wanted).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "OUT differs from the expected layout\n  missing: {missing:?}\n  extra: {extra:?}"
    );
    assert_outputs_valid(out, expected);
}

/// Asserts each expected output exists, decodes, and was made from its input (other files in
/// OUT are not looked at).
pub fn assert_outputs_valid(out: &Path, expected: &Expected) {
    let problems: Vec<String> = expected
        .iter()
        .filter_map(|(rel, sha)| output_problem(&out.join(rel), sha))
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} outputs are wrong:\n{}",
        problems.len(),
        expected.len(),
        problems.join("\n")
    );
}

// --- emulator counters ----------------------------------------------------------------------------

/// Asserts the emulator created exactly one job for each of `shas` and none for anything else.
pub fn assert_each_uploaded_once<'a>(
    counters: &Counters,
    shas: impl IntoIterator<Item = &'a String>,
) {
    let wanted: BTreeMap<String, u64> = shas.into_iter().map(|s| (s.clone(), 1)).collect();
    let seen: BTreeMap<String, u64> = counters
        .create_jobs_by_sha
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "images uploaded more than once: {twice:?}"
    );
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        wanted.keys().collect::<Vec<_>>(),
        "the images uploaded are not the images expected"
    );
}

/// A JSON number as u64, panicking with the field's name when absent.
pub fn num(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}
