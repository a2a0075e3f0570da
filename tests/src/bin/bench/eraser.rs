//! The release `eraser` binary under test: found next to this executable, run in a clean
//! environment (no `ERASER_*` variables, no user config file), its `--json` summary read back.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::BenchResult;
use crate::measure::{self, Measured, Stdout};

/// How to start eraser for the bench.
#[derive(Debug, Clone)]
pub struct Eraser {
    exe: PathBuf,
    home: PathBuf,
}

impl Eraser {
    /// The `eraser` next to the running executable (both are built into the same
    /// `target/release`); `home` holds the empty config and data folders eraser is given.
    pub fn locate(home: &Path) -> Result<Eraser, String> {
        let me = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
        let dir = me.parent().unwrap_or(Path::new("."));
        let exe = dir.join(format!("eraser{}", std::env::consts::EXE_SUFFIX));
        if !exe.is_file() {
            return Err(format!(
                "{} not found: build it first with `cargo build --release --workspace` \
                 (`just bench` does)",
                exe.display()
            ));
        }
        Ok(Eraser {
            exe,
            home: home.to_path_buf(),
        })
    }

    /// The eraser binary at `exe` (a `--baseline`), which must be a file that answers
    /// `--version`; `home` as for [`Eraser::locate`].
    pub fn at(exe: &Path, home: &Path) -> Result<Eraser, String> {
        let exe =
            std::path::absolute(exe).map_err(|e| format!("baseline {}: {e}", exe.display()))?;
        if !exe.is_file() {
            return Err(format!("baseline {}: no such file", exe.display()));
        }
        let answers = Command::new(&exe)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("baseline {}: cannot run it: {e}", exe.display()))?;
        if !answers.status.success() {
            return Err(format!(
                "baseline {}: `--version` failed ({}); is it an eraser binary?",
                exe.display(),
                answers.status
            ));
        }
        Ok(Eraser {
            exe,
            home: home.to_path_buf(),
        })
    }

    /// Where the binary is.
    pub fn path(&self) -> &Path {
        &self.exe
    }

    /// `eraser --ledger LEDGER` with an environment that cannot reach the user's config, ledger
    /// or any proxy.
    pub fn command(&self, ledger: &Path) -> Command {
        let mut cmd = Command::new(&self.exe);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ERASER_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env_remove("RUST_LOG")
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_DATA_HOME", self.home.join("data"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .arg("--ledger")
            .arg(ledger);
        cmd
    }

    /// `eraser --ledger LEDGER run INPUT -o OUT --json -q EXTRA…`, which must exit 0; returns the
    /// measurement and the parsed summary.
    pub fn run(
        &self,
        ledger: &Path,
        input: &Path,
        out: &Path,
        extra: &[&str],
    ) -> BenchResult<(Measured, RunSummary)> {
        self.run_env(ledger, input, out, extra, &[])
    }

    /// [`Eraser::run`] with extra environment variables (e.g. `RUST_LOG` for a figure eraser
    /// only logs).
    pub fn run_env(
        &self,
        ledger: &Path,
        input: &Path,
        out: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> BenchResult<(Measured, RunSummary)> {
        let mut cmd = self.command(ledger);
        cmd.envs(env.iter().copied());
        cmd.arg("run")
            .arg(input)
            .arg("-o")
            .arg(out)
            .args(["--json", "-q"])
            .args(extra);
        let measured = measure::run(&mut cmd, Stdout::Capture)?.success("eraser run")?;
        let summary = RunSummary::parse(&measured.stdout)?;
        Ok((measured, summary))
    }
}

/// The figures of `eraser run --json` the bench reads.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Image inputs found.
    pub inputs: u64,
    /// Files hashed (others reused the ledger's hash).
    pub hashed: u64,
    /// Jobs created.
    pub uploads: u64,
    /// Results downloaded.
    pub downloads: u64,
    /// Requests eraser sent again after a failure.
    pub retries: u64,
    /// Inputs with their output in place.
    pub outputs_done: u64,
    /// Inputs without an output.
    pub outputs_failed: u64,
    /// get-job calls eraser made.
    pub get_job_calls: u64,
    /// The jobs-in-flight limit eraser settled at.
    pub concurrency_limit: u64,
}

impl RunSummary {
    /// Reads the fields above from the JSON object; a missing field counts as 0.
    pub fn parse(stdout: &[u8]) -> BenchResult<RunSummary> {
        let value: Value = serde_json::from_slice(stdout).map_err(|e| {
            format!(
                "eraser's --json summary is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&stdout[..stdout.len().min(200)])
            )
        })?;
        let n = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
        Ok(RunSummary {
            inputs: n("inputs"),
            hashed: n("hashed"),
            uploads: n("uploads"),
            downloads: n("downloads"),
            retries: n("retries"),
            outputs_done: n("outputs_done"),
            outputs_failed: n("outputs_failed"),
            get_job_calls: n("get_job_calls"),
            concurrency_limit: n("concurrency_limit"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_that_is_not_there_is_refused_by_name() {
        let error = Eraser::at(Path::new("/no/such/eraser"), Path::new("/tmp")).expect_err("gone");
        assert!(error.contains("/no/such/eraser: no such file"), "{error}");
    }

    #[test]
    fn a_baseline_that_fails_its_version_is_refused() {
        let Some(fails) = ["/bin/false", "/usr/bin/false"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
        else {
            eprintln!("no `false` program: not checked");
            return;
        };
        let error = Eraser::at(fails, Path::new("/tmp")).expect_err("not eraser");
        assert!(error.contains("`--version` failed"), "{error}");
    }
}
