//! Running a child process and measuring it: wall time, CPU time and peak RSS from `wait4`'s
//! rusage, read by a small helper process (so no `/usr/bin/time` is needed), plus this
//! process's own CPU clocks.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::BenchResult;

/// What to do with the child's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// Keep every byte (small outputs: a JSON summary).
    Capture,
    /// Count lines and bytes, keep nothing (large outputs: an export).
    Count,
}

/// One finished child process.
#[derive(Debug)]
pub struct Measured {
    /// From spawn to reaped.
    pub wall: Duration,
    /// User + system CPU time of the child (all its threads, not its own children).
    pub cpu: Duration,
    /// Peak resident set size, bytes.
    pub max_rss: u64,
    /// Exit code, or `None` when killed by a signal.
    pub code: Option<i32>,
    /// stdout, with [`Stdout::Capture`].
    pub stdout: Vec<u8>,
    /// Newlines seen on stdout.
    pub stdout_lines: u64,
    /// Bytes seen on stdout.
    pub stdout_bytes: u64,
    /// stderr (kept for error messages).
    pub stderr: String,
}

impl Measured {
    /// Ok when the child exited 0, else an error quoting the end of its stderr.
    pub fn success(self, what: &str) -> BenchResult<Measured> {
        if self.code == Some(0) {
            return Ok(self);
        }
        let tail: String = {
            let lines: Vec<&str> = self.stderr.lines().collect();
            lines[lines.len().saturating_sub(4)..].join(" | ")
        };
        let how = match self.code {
            Some(code) => format!("exit {code}"),
            None => "killed by a signal".to_owned(),
        };
        Err(format!("{what}: {how}: {tail}").into())
    }
}

/// First argument that makes this executable the measuring helper instead of the bench.
pub const HELPER_ARG: &str = "__measure-child";

/// Runs `cmd` to its end (stdin closed, stdout and stderr piped) and measures it.
///
/// The command is started by a helper — this same executable, re-run with [`HELPER_ARG`] — that
/// reports the child's `wait4` rusage. Linux carries the spawning process's peak RSS into the
/// child's `ru_maxrss` (it is kept across `execve`), so a child spawned straight from the bench
/// (hundreds of MiB: buffers, the in-process emulator's records) would report at least that much;
/// the freshly exec'd helper is a few MiB.
pub fn run(cmd: &mut Command, stdout: Stdout) -> BenchResult<Measured> {
    let report = tempfile::NamedTempFile::new()?;
    let me = std::env::current_exe()?;
    let mut outer = Command::new(me);
    outer
        .arg(HELPER_ARG)
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => outer.env(key, value),
            None => outer.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        outer.current_dir(dir);
    }
    outer
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = outer
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let out_reader = child.stdout.take().map(|pipe| read_stdout(pipe, stdout));
    let err_reader = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    });
    let helper = child.wait()?;
    let (stdout, stdout_lines, stdout_bytes) = match out_reader {
        Some(handle) => join(handle)?,
        None => (Vec::new(), 0, 0),
    };
    let stderr = match err_reader {
        Some(handle) => join(handle)?,
        None => String::new(),
    };
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    let Some(report) = Report::parse(&text) else {
        return Err(format!(
            "cannot measure {:?} ({helper}): {}",
            cmd.get_program(),
            stderr.trim()
        )
        .into());
    };
    Ok(Measured {
        wall: report.wall,
        cpu: report.cpu,
        max_rss: report.max_rss,
        code: report.code,
        stdout,
        stdout_lines,
        stdout_bytes,
        stderr,
    })
}

/// What the helper writes into its report file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    code: Option<i32>,
    wall: Duration,
    cpu: Duration,
    max_rss: u64,
}

impl Report {
    /// `code wall_ns cpu_ns max_rss_bytes`, code -1 for "killed by a signal".
    fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.code.unwrap_or(-1),
            self.wall.as_nanos(),
            self.cpu.as_nanos(),
            self.max_rss
        )
    }

    fn parse(text: &str) -> Option<Report> {
        let mut fields = text.split_whitespace();
        let code: i32 = fields.next()?.parse().ok()?;
        let nanos = |f: Option<&str>| f?.parse::<u64>().ok().map(Duration::from_nanos);
        let wall = nanos(fields.next())?;
        let cpu = nanos(fields.next())?;
        let max_rss = fields.next()?.parse().ok()?;
        Some(Report {
            code: (code >= 0).then_some(code),
            wall,
            cpu,
            max_rss,
        })
    }
}

/// The helper: `bench __measure-child REPORT PROGRAM ARGS…` runs PROGRAM with this process's
/// stdio and environment, reaps it with `wait4` and writes the [`Report`] line into REPORT.
pub fn helper_main(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    let [report, program, rest @ ..] = args else {
        eprintln!("usage: bench {HELPER_ARG} REPORT PROGRAM [ARGS…]");
        return std::process::ExitCode::from(2);
    };
    let started = Instant::now();
    let child = match Command::new(program).args(rest).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start {}: {e}", program.to_string_lossy());
            return std::process::ExitCode::FAILURE;
        }
    };
    let reaped = wait4(child.id());
    let wall = started.elapsed();
    // Reaped by wait4: std must not wait for it again.
    drop(child);
    let (code, cpu, max_rss) = match reaped {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let line = Report {
        code,
        wall,
        cpu,
        max_rss,
    }
    .line();
    match std::fs::write(report, line) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write {}: {e}", report.to_string_lossy());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads a pipe to its end on a thread, keeping or counting what it carries.
fn read_stdout(
    mut pipe: std::process::ChildStdout,
    mode: Stdout,
) -> JoinHandle<(Vec<u8>, u64, u64)> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut lines = 0u64;
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = &buf[..n];
                    bytes += n as u64;
                    lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                    if mode == Stdout::Capture {
                        kept.extend_from_slice(chunk);
                    }
                }
            }
        }
        (kept, lines, bytes)
    })
}

fn join<T>(handle: JoinHandle<T>) -> BenchResult<T> {
    handle
        .join()
        .map_err(|_| "a pipe-reading thread panicked".into())
}

/// Waits for child `pid` and returns (exit code, user+sys CPU, peak RSS in bytes).
fn wait4(pid: u32) -> BenchResult<(Option<i32>, Duration, u64)> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| "child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live, writable locals of the types wait4 expects.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4 on child {pid}: {err}").into());
        }
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    // Linux reports ru_maxrss in KiB.
    let max_rss = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    Ok((code, cpu, max_rss))
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

/// User + system CPU time of this whole process (every thread, including an in-process
/// emulator's runtime) so far.
pub fn process_cpu() -> Duration {
    rusage_cpu(libc::RUSAGE_SELF)
}

/// User + system CPU time of the calling thread so far.
pub fn thread_cpu() -> Duration {
    rusage_cpu(libc::RUSAGE_THREAD)
}

fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: as in wait4: a zeroed rusage is valid and the pointer is to a live local.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `who` is one of the RUSAGE_* constants and `usage` is writable.
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// Runs `make()`'s command `n` times and returns every measurement (each must exit 0).
pub fn repeat(
    n: usize,
    what: &str,
    stdout: Stdout,
    mut make: impl FnMut() -> Command,
) -> BenchResult<Vec<Measured>> {
    (0..n)
        .map(|_| run(&mut make(), stdout).and_then(|m| m.success(what)))
        .collect()
}

/// The median wall time of `runs` (the upper one of an even count); zero when empty.
pub fn median_wall(runs: &[Measured]) -> Duration {
    let mut walls: Vec<Duration> = runs.iter().map(|m| m.wall).collect();
    walls.sort();
    walls.get(walls.len() / 2).copied().unwrap_or_default()
}

/// The shortest wall time of `runs`; zero when empty.
pub fn best_wall(runs: &[Measured]) -> Duration {
    runs.iter().map(|m| m.wall).min().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_line_reads_back_as_written() {
        let report = Report {
            code: Some(3),
            wall: Duration::from_millis(1500),
            cpu: Duration::from_micros(250),
            max_rss: 12 << 20,
        };
        assert_eq!(Report::parse(&report.line()), Some(report));
        let killed = Report {
            code: None,
            ..report
        };
        assert_eq!(Report::parse(&killed.line()), Some(killed));
    }

    #[test]
    fn a_truncated_report_is_refused() {
        assert_eq!(Report::parse("0 15"), None);
        assert_eq!(Report::parse(""), None);
    }
}
