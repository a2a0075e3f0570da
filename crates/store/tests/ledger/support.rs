use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use eraser_store::{
    DoneRecord, Failure, FoundInputs, ImageStatus, InputRecord, Ledger, RunId, Sha256,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;

/// A ledger in its own temp folder (removed on drop).
pub struct TestLedger {
    _dir: TempDir,
    pub path: PathBuf,
    pub ledger: Ledger,
}

pub async fn fresh() -> TestLedger {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(&path).await.unwrap();
    TestLedger {
        _dir: dir,
        path,
        ledger,
    }
}

/// A distinct, deterministic hash per number.
pub fn sha(n: u64) -> Sha256 {
    let mut bytes = [0xa5u8; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    Sha256(bytes)
}

/// An input at `path` holding image `n`, planned to go to `path` under `/out`.
pub fn input(path: impl Into<PathBuf>, n: u64) -> InputRecord {
    let path = path.into();
    let planned_output = Path::new("/out").join(path.strip_prefix("/").unwrap_or(&path));
    InputRecord {
        path,
        size: 1000 + n,
        mtime_ns: 1_700_000_000_000_000_000,
        sha256: sha(n),
        format: "jpeg".into(),
        planned_output,
    }
}

/// Completes `run`'s walk of `/in` having found nothing it did not record; returns how many
/// inputs the walk marked missing.
pub async fn walk_of_in_recorded(ledger: &Ledger, run: RunId) -> u64 {
    ledger
        .complete_walk(
            run,
            &[PathBuf::from("/in")],
            &FoundInputs::default(),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap()
}

/// Claims up to `n` images for `run`; returns the source paths of the claims, sorted.
pub async fn claimed_paths(ledger: &Ledger, run: RunId, n: u32) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = ledger
        .claim_for_upload(run, n)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.source_path)
        .collect();
    paths.sort();
    paths
}

/// Records `count` inputs `/in/img-<n>.jpg` holding images `first..first+count` for `run`.
pub async fn record(ledger: &Ledger, run: RunId, first: u64, count: u64) -> Vec<Sha256> {
    let batch: Vec<_> = (first..first + count)
        .map(|n| input(format!("/in/img-{n:06}.jpg"), n))
        .collect();
    ledger.record_inputs(run, &batch).await.unwrap();
    batch.iter().map(|r| r.sha256).collect()
}

pub fn failure(code: i64) -> Failure {
    Failure {
        code: Some(code),
        message: format!("service said {code}"),
        retryable: true,
    }
}

pub fn done_record(n: u64) -> DoneRecord {
    DoneRecord {
        output_url: format!("http://127.0.0.1:9/out/{n}.jpg"),
        output_path: PathBuf::from(format!("/out/img-{n:06}.jpg")),
        output_sha256: Some(sha(n + 1_000_000)),
        output_size: 2000 + n,
        credits_states: Some(2),
        need_credits: Some(0),
        p_credits: Some(1),
        s_credits: Some(3),
        raw_response: r#"{"code":100000}"#.into(),
    }
}

/// Records image `n` for a new run and drives it to `status`; returns its hash.
pub async fn image_in(ledger: &Ledger, n: u64, status: ImageStatus) -> Sha256 {
    let run = ledger
        .begin_run("test", std::path::Path::new("/out"))
        .await
        .unwrap();
    let sha = record(ledger, run, n, 1).await[0];
    if status == ImageStatus::New {
        return sha;
    }
    let claims = ledger.claim_for_upload(run, 1).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].sha256, sha);
    match status {
        ImageStatus::New | ImageStatus::Uploading => {}
        ImageStatus::Processing => ledger
            .mark_processing(&sha, &format!("job-{n}"))
            .await
            .unwrap(),
        ImageStatus::Done => {
            ledger
                .mark_processing(&sha, &format!("job-{n}"))
                .await
                .unwrap();
            ledger.mark_done(&sha, &done_record(n)).await.unwrap();
        }
        ImageStatus::Failed => ledger.mark_failed(&sha, &failure(500)).await.unwrap(),
    }
    sha
}

/// A plain SQLite connection to the file, for looking behind the ledger's back.
pub async fn sql(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

/// Deletes the input at `input` with plain SQL, as an edit behind the ledger's back would.
pub async fn delete_input_behind_the_ledgers_back(ledger_file: &Path, input: &str) {
    let mut conn = sql(ledger_file).await;
    sqlx::query("delete from inputs where path = cast(?1 as blob)")
        .bind(input)
        .execute(&mut conn)
        .await
        .unwrap();
    close(conn).await;
}

/// Status of one image as stored.
pub async fn status_of(ledger: &Ledger, sha: &Sha256) -> ImageStatus {
    ledger.image(sha).await.unwrap().unwrap().status
}

/// Closes a connection (drops it when closing fails; tests only).
pub async fn close(conn: SqliteConnection) {
    let _ = conn.close().await;
}

/// This test binary running `child::entry` in `role`; killed when dropped.
pub struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl ChildProcess {
    pub fn spawn(role: &str, ledger: &Path, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "child::entry", "--nocapture", "--test-threads=1"])
            .env(crate::child::ROLE, role)
            .env(crate::child::LEDGER, ledger)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The next line the child reported (after its [`crate::child::PREFIX`]), or `None` once it exited.
    pub fn next_report(&mut self) -> Option<String> {
        for line in self.lines.by_ref() {
            // libtest may print `test child::entry ... ` on the same line first.
            if let Some((_, report)) = line.unwrap().split_once(crate::child::PREFIX) {
                return Some(report.to_owned());
            }
        }
        None
    }

    /// Waits for the report starting with `prefix`, returning the rest of it.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            match self.next_report() {
                Some(r) if r.starts_with(prefix) => return r[prefix.len()..].trim().to_owned(),
                Some(_) => {}
                None => panic!("child exited before reporting {prefix:?}"),
            }
        }
    }

    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// SIGKILL, then reap (a zombie would still look alive).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for a normal exit and asserts success.
    pub fn finish(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
