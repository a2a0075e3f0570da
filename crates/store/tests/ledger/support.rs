//! Shared fixtures: a fresh ledger on each backend, deterministic hashes and inputs, scans that
//! record them, images driven to a status, edits made behind the ledger's back, children.
//!
//! Every edit behind the ledger's back is one function per need, each a `match` on the
//! backend: the SQL differs between SQLite and PostgreSQL, the test's intent does not.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use eraser_store::{
    Content, DoneRecord, Failure, FoundInput, ImageStatus, Ledger, Location, RejectKind, Rejection,
    Root, RunId, ScanBatch, ScanSession, Sha256,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;

/// The backends a test runs on (`#[values(…)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests use: `ERASER_TEST_POSTGRES`, the URL of a role that may
/// create databases (`.ci/postgres start` prints one). Under CI (`ERASER_CI` set) a test that
/// needs it fails without it; elsewhere such a test says why and passes over.
fn postgres_admin() -> Option<String> {
    match std::env::var("ERASER_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("ERASER_CI").is_some() => {
            panic!("ERASER_CI is set but ERASER_TEST_POSTGRES is not: no PostgreSQL server")
        }
        _ => {
            eprintln!("no PostgreSQL server (ERASER_TEST_POSTGRES unset): this case is not run");
            None
        }
    }
}

/// Where a fresh, not yet opened ledger lives, and what keeps it there until dropped.
pub struct Place {
    pub location: Location,
    _dir: Option<TempDir>,
    _database: Option<Database>,
}

/// A database of its own for one test, dropped with it.
struct Database {
    admin: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A test's runtime may be gone by now: the drop gets one of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        });
        let _ = dropped.join();
    }
}

/// A place for a ledger nothing has opened yet: a file in its own temp folder on SQLite, a
/// database of its own on PostgreSQL (`None` when there is no server to test on).
pub async fn place(backend: Backend) -> Option<Place> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            Some(Place {
                location: Location::file(dir.path().join("ledger.db")),
                _dir: Some(dir),
                _database: None,
            })
        }
        Backend::Postgres => {
            let admin = postgres_admin()?;
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("eraser_test_{}_{n}", std::process::id());
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("create database \"{name}\""))
                .execute(&mut conn)
                .await
                .unwrap();
            let _ = conn.close().await;
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&format!("/{name}"));
            let location = Location::parse(url.as_str().as_ref()).unwrap();
            Some(Place {
                location,
                _dir: None,
                _database: Some(Database { admin, name }),
            })
        }
    }
}

/// An opened, empty ledger of one backend (removed on drop).
pub struct TestLedger {
    pub backend: Backend,
    pub location: Location,
    pub ledger: Ledger,
    _place: Place,
}

impl TestLedger {
    /// Another handle on the same ledger (its own connections, as another process has).
    pub async fn another_handle(&self) -> Ledger {
        Ledger::open(&self.location).await.unwrap()
    }
}

/// A fresh ledger of `backend`, or `None` when there is no PostgreSQL server to test on.
pub async fn fresh(backend: Backend) -> Option<TestLedger> {
    let place = place(backend).await?;
    let ledger = Ledger::open(&place.location).await.unwrap();
    Some(TestLedger {
        backend,
        location: place.location.clone(),
        ledger,
        _place: place,
    })
}

/// The text a child process is given to open the same ledger (the URL unmasked).
pub fn location_text(location: &Location) -> OsString {
    match location {
        Location::File(path) => path.clone().into_os_string(),
        Location::Postgres(url) => url.expose().into(),
    }
}

/// A distinct, deterministic hash per number.
pub fn sha(n: u64) -> Sha256 {
    let mut bytes = [0xa5u8; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    Sha256(bytes)
}

/// The mtime every generated input has.
pub const MTIME: i64 = 1_700_000_000_000_000_000;

/// Where `path`'s result is planned: the same path under `/out`.
pub fn planned(path: &Path) -> PathBuf {
    Path::new("/out").join(path.strip_prefix("/").unwrap_or(path))
}

/// The path `record_in` gives input `n` in `folder`.
pub fn img(folder: &str, n: u64) -> PathBuf {
    PathBuf::from(format!("{folder}/img-{n:06}.jpg"))
}

/// A hashed input at `path` holding image `n` (size `1000 + n`), planned under `/out`.
pub fn input(path: impl Into<PathBuf>, n: u64) -> FoundInput {
    let path = path.into();
    FoundInput {
        planned_output: planned(&path),
        size: 1000 + n,
        mtime_ns: MTIME,
        content: Some(Content {
            sha256: sha(n),
            format: "jpeg",
        }),
        path,
    }
}

/// The same file as [`input`], found by a scan that did not read it (the ledger holds it).
pub fn seen(path: impl Into<PathBuf>, n: u64) -> FoundInput {
    FoundInput {
        content: None,
        ..input(path, n)
    }
}

pub fn folder(path: &str) -> Root {
    Root::Folder(PathBuf::from(path))
}

pub fn rejection(path: &str, kind: RejectKind, reason: &str) -> Rejection {
    Rejection {
        path: PathBuf::from(path),
        kind,
        reason: reason.into(),
    }
}

/// A batch registering the folder `root` and recording `inputs`.
pub fn batch(root: &str, inputs: Vec<FoundInput>) -> ScanBatch {
    ScanBatch {
        roots: vec![folder(root)],
        inputs,
        rejected: Vec::new(),
    }
}

/// Records `batch` for `run` in a scan session of its own.
pub async fn record_batch(ledger: &Ledger, run: RunId, batch: &ScanBatch) {
    ledger
        .begin_scan(run)
        .await
        .unwrap()
        .record(batch)
        .await
        .unwrap();
}

/// Records `inputs` for `run`, whose root is the folder `root`.
pub async fn record_inputs(ledger: &Ledger, run: RunId, root: &str, inputs: Vec<FoundInput>) {
    record_batch(ledger, run, &batch(root, inputs)).await;
}

/// Records `count` inputs `folder/img-<n>.jpg` holding images `first..first+count` in `scan`,
/// registering `folder` as a root of its run.
pub async fn record_with(scan: &ScanSession, folder: &str, first: u64, count: u64) -> Vec<Sha256> {
    let inputs: Vec<_> = (first..first + count)
        .map(|n| input(img(folder, n), n))
        .collect();
    scan.record(&batch(folder, inputs)).await.unwrap();
    (first..first + count).map(sha).collect()
}

/// [`record_with`] in a scan session of its own.
pub async fn record_in(
    ledger: &Ledger,
    run: RunId,
    folder: &str,
    first: u64,
    count: u64,
) -> Vec<Sha256> {
    let scan = ledger.begin_scan(run).await.unwrap();
    record_with(&scan, folder, first, count).await
}

/// Records inputs `/in/img-<n>.jpg` holding images `first..first+count` for `run` (root `/in`).
pub async fn record(ledger: &Ledger, run: RunId, first: u64, count: u64) -> Vec<Sha256> {
    record_in(ledger, run, "/in", first, count).await
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

/// Records image `n` at `/in/img-<n>.jpg` for a new run given that file alone, and drives it to
/// `status`; returns the run and the image's hash.
pub async fn image_in(ledger: &Ledger, n: u64, status: ImageStatus) -> (RunId, Sha256) {
    let run = ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let path = img("/in", n);
    let batch = ScanBatch {
        roots: vec![Root::File(path.clone())],
        inputs: vec![input(path, n)],
        rejected: Vec::new(),
    };
    record_batch(ledger, run, &batch).await;
    let sha = sha(n);
    if status == ImageStatus::New {
        return (run, sha);
    }
    let claims = ledger.claim_for_upload(run, 1).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].sha256, sha);
    let job = format!("job-{n}");
    match status {
        ImageStatus::New | ImageStatus::Uploading => {}
        ImageStatus::Processing => ledger.mark_processing(run, &sha, &job).await.unwrap(),
        ImageStatus::Done => {
            ledger.mark_processing(run, &sha, &job).await.unwrap();
            ledger.mark_done(&sha, &done_record(n)).await.unwrap();
        }
        ImageStatus::Failed => ledger.mark_failed(run, &sha, &failure(500)).await.unwrap(),
    }
    (run, sha)
}

/// Status of one image as stored.
pub async fn status_of(ledger: &Ledger, sha: &Sha256) -> ImageStatus {
    ledger.image(sha).await.unwrap().unwrap().status
}

/// Asserts the ledger's counters equal a recount (and the database is sound), naming `after`.
pub async fn assert_counters_exact(ledger: &Ledger, after: &str) {
    let report = ledger.check_consistency().await.unwrap();
    assert!(report.is_ok(), "after {after}: {report:?}");
}

// Edits behind the ledger's back.

/// A plain SQLite connection to the ledger's file.
pub async fn sqlite(location: &Location) -> SqliteConnection {
    let path = location.as_file().expect("a SQLite ledger");
    SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

/// Runs one statement on a SQLite ledger behind its back, binding `args` as ?1, ?2, ….
async fn sqlite_exec(location: &Location, sql: &str, args: &[SqlArg<'_>]) {
    let mut conn = sqlite(location).await;
    let mut query = sqlx::query(sql);
    for arg in args {
        query = match arg {
            SqlArg::Int(v) => query.bind(*v),
            SqlArg::Text(v) => query.bind(*v),
            SqlArg::Bytes(v) => query.bind(*v),
        };
    }
    query.execute(&mut conn).await.unwrap();
    close(conn).await;
}

enum SqlArg<'a> {
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// Runs one statement on a PostgreSQL ledger behind its back, binding `args` as $1, $2, ….
async fn postgres_exec(location: &Location, sql: &str, args: &[SqlArg<'_>]) {
    let Location::Postgres(url) = location else {
        panic!("a PostgreSQL ledger")
    };
    let mut conn = sqlx::PgConnection::connect(url.expose()).await.unwrap();
    let mut query = sqlx::query(sql);
    for arg in args {
        query = match arg {
            SqlArg::Int(v) => query.bind(*v),
            SqlArg::Text(v) => query.bind(*v),
            SqlArg::Bytes(v) => query.bind(*v),
        };
    }
    query.execute(&mut conn).await.unwrap();
    let _ = conn.close().await;
}

/// Closes a connection (drops it when closing fails; tests only).
pub async fn close(conn: SqliteConnection) {
    let _ = conn.close().await;
}

/// Moves the run's last heartbeat `secs` seconds into the past.
pub async fn age_heartbeat(t: &TestLedger, run: RunId, secs: i64) {
    let at = (chrono::Utc::now() - chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    match t.backend {
        Backend::Sqlite => {
            let sql = "update runs set heartbeat_at = ?2 where id = ?1";
            sqlite_exec(&t.location, sql, &[SqlArg::Int(run.0), SqlArg::Text(&at)]).await;
        }
        Backend::Postgres => {
            let sql =
                "update runs set heartbeat_at = now() - $2 * interval '1 second' where id = $1";
            postgres_exec(&t.location, sql, &[SqlArg::Int(run.0), SqlArg::Int(secs)]).await;
        }
    }
}

/// Registers the run as the process `pid` (of the host it has).
pub async fn set_run_pid(t: &TestLedger, run: RunId, pid: i64) {
    match t.backend {
        Backend::Sqlite => {
            let sql = "update runs set pid = ?2 where id = ?1";
            sqlite_exec(&t.location, sql, &[SqlArg::Int(run.0), SqlArg::Int(pid)]).await;
        }
        Backend::Postgres => {
            let sql = "update runs set pid = $2 where id = $1";
            postgres_exec(&t.location, sql, &[SqlArg::Int(run.0), SqlArg::Int(pid)]).await;
        }
    }
}

/// Registers the run as one of another machine, `host`.
pub async fn set_run_host(t: &TestLedger, run: RunId, host: &str) {
    match t.backend {
        Backend::Sqlite => {
            let sql = "update runs set host = ?2 where id = ?1";
            sqlite_exec(&t.location, sql, &[SqlArg::Int(run.0), SqlArg::Text(host)]).await;
        }
        Backend::Postgres => {
            let sql = "insert into machines (name) values ($1) on conflict do nothing";
            postgres_exec(&t.location, sql, &[SqlArg::Text(host)]).await;
            let sql = "update runs set machine = (select id from machines where name = $2)
                       where id = $1";
            postgres_exec(&t.location, sql, &[SqlArg::Int(run.0), SqlArg::Text(host)]).await;
        }
    }
}

/// Deletes the run from the registry (its claims then name no run).
pub async fn delete_run_behind_the_ledgers_back(t: &TestLedger, run: RunId) {
    match t.backend {
        Backend::Sqlite => {
            let mut conn = sqlite(&t.location).await;
            sqlx::query("pragma foreign_keys = on")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("delete from runs where id = ?1")
                .bind(run.0)
                .execute(&mut conn)
                .await
                .unwrap();
            close(conn).await;
        }
        Backend::Postgres => {
            let sql = "delete from runs where id = $1";
            postgres_exec(&t.location, sql, &[SqlArg::Int(run.0)]).await;
        }
    }
}

/// Deletes the input at `path`, as an edit behind the ledger's back would.
pub async fn delete_input_behind_the_ledgers_back(t: &TestLedger, path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    let key = path.as_os_str().as_bytes();
    match t.backend {
        Backend::Sqlite => {
            let sql = "delete from inputs where path = ?1";
            sqlite_exec(&t.location, sql, &[SqlArg::Bytes(key)]).await;
        }
        Backend::Postgres => {
            let sql = "delete from inputs where path = $1";
            postgres_exec(&t.location, sql, &[SqlArg::Bytes(key)]).await;
        }
    }
}

/// Adds `by` to the kept counter `name` (`images_done`, `inputs_done`, `p_credits`, …).
pub async fn drift_counter(t: &TestLedger, name: &str, by: i64) {
    match t.backend {
        Backend::Sqlite => {
            let sql = "update counters set n = n + ?2 where name = ?1";
            sqlite_exec(&t.location, sql, &[SqlArg::Text(name), SqlArg::Int(by)]).await;
        }
        Backend::Postgres => {
            let sql = "insert into counters (name, shard, n) values ($1, 99, $2)
                       on conflict (name, shard) do update set n = counters.n + excluded.n";
            postgres_exec(&t.location, sql, &[SqlArg::Text(name), SqlArg::Int(by)]).await;
        }
    }
}

/// Stores a processing estimate that is not a number.
pub async fn spoil_processing_estimate(t: &TestLedger) {
    match t.backend {
        Backend::Sqlite => {
            let sql = "update meta set value = 'soon' where key = 'processing_seconds'";
            sqlite_exec(&t.location, sql, &[]).await;
        }
        Backend::Postgres => {
            let sql = "update meta set value = 'soon' where key = 'processing_seconds'";
            postgres_exec(&t.location, sql, &[]).await;
        }
    }
}

/// Makes the database refuse every new row of files found but not used, until
/// [`accept_rejected_files`]: a write that fails after its other statements ran.
pub async fn refuse_rejected_files(t: &TestLedger) {
    match t.backend {
        Backend::Sqlite => {
            let sql = "create trigger test_refuse_rejected before insert on rejected_inputs
                       begin select raise(abort, 'refused by the test'); end";
            sqlite_exec(&t.location, sql, &[]).await;
        }
        Backend::Postgres => {
            let sql = "create function test_refuse() returns trigger language plpgsql as
                       $$ begin raise exception 'refused by the test'; end $$";
            postgres_exec(&t.location, sql, &[]).await;
            let sql = "create trigger test_refuse_rejected before insert on rejected_inputs
                       for each row execute function test_refuse()";
            postgres_exec(&t.location, sql, &[]).await;
        }
    }
}

/// Undoes [`refuse_rejected_files`].
pub async fn accept_rejected_files(t: &TestLedger) {
    match t.backend {
        Backend::Sqlite => {
            sqlite_exec(&t.location, "drop trigger test_refuse_rejected", &[]).await;
        }
        Backend::Postgres => {
            let sql = "drop trigger test_refuse_rejected on rejected_inputs";
            postgres_exec(&t.location, sql, &[]).await;
            postgres_exec(&t.location, "drop function test_refuse()", &[]).await;
        }
    }
}

// Child processes.

/// This test binary running `child::entry` in `role` on the ledger at `location`; killed when
/// dropped.
pub struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl ChildProcess {
    pub fn spawn(role: &str, location: &Location, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "child::entry", "--nocapture", "--test-threads=1"])
            .env(crate::child::ROLE, role)
            .env(crate::child::LEDGER, location_text(location))
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
