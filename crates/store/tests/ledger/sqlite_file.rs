//! What only a SQLite ledger has: a file (created with its folders, in WAL mode), migrations
//! applied on open, and refusals that leave a file this binary must not touch byte-identical.

use std::path::Path;
use std::time::Duration;

use eraser_store::{Error, ErrorKind, ImageStatus, Ledger, Location, OpenOptions, Sha256};
use sqlx::ConnectOptions;
use sqlx::migrate::Migrate;

use crate::support::{Backend, close, fresh, sqlite};

/// A SQLite connection that creates the file, for building old ledgers by hand.
async fn create(path: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn open_creates_missing_folders_and_applies_every_migration() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::file(dir.path().join("a/b/ledger.db"));

    Ledger::open(&location).await.unwrap();

    let mut conn = sqlite(&location).await;
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let known: Vec<i64> = eraser_store::sqlite_migrator()
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(applied, known);
    let tables: Vec<String> =
        sqlx::query_scalar("select name from sqlite_master where type = 'table' order by name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for table in ["counters", "images", "inputs", "meta", "run_roots", "runs"] {
        assert!(
            tables.iter().any(|t| t == table),
            "missing table {table} in {tables:?}"
        );
    }
    close(conn).await;
}

#[tokio::test]
async fn the_ledger_file_is_in_wal_mode() {
    let t = fresh(Backend::Sqlite)
        .await
        .expect("SQLite needs no server");
    let mut conn = sqlite(&t.location).await;
    let mode: String = sqlx::query_scalar("pragma journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    close(conn).await;
}

#[tokio::test]
async fn an_older_ledger_is_migrated_and_its_counters_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let mut conn = create(&path).await;
    conn.ensure_migrations_table().await.unwrap();
    let first = eraser_store::sqlite_migrator().iter().next().unwrap();
    conn.apply(first).await.unwrap();
    sqlx::query(
        "insert into images (sha256, size, format, status, created_at, updated_at)
         values (?1, 1, 'jpeg', 'new', '2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z')",
    )
    .bind("ab".repeat(32))
    .execute(&mut conn)
    .await
    .unwrap();
    close(conn).await;

    let ledger = Ledger::open(&Location::file(&path)).await.unwrap();

    let counts = ledger.status_counts().await.unwrap();
    assert_eq!((counts.total, counts.new), (1, 1));
    assert!(ledger.check_consistency().await.unwrap().is_ok());
}

/// A ledger at `path` as eraser left it at schema version 8, with `rows` (SQL) written into it.
async fn schema_8_ledger(path: &Path, rows: &str) {
    let mut conn = create(path).await;
    conn.ensure_migrations_table().await.unwrap();
    for migration in eraser_store::sqlite_migrator()
        .iter()
        .filter(|m| m.version <= 8)
    {
        conn.apply(migration).await.unwrap();
    }
    sqlx::raw_sql(rows).execute(&mut conn).await.unwrap();
    close(conn).await;
}

#[tokio::test]
async fn a_ledger_of_schema_8_keeps_every_image_and_input_when_its_hashes_become_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v8.db");
    let at = "'2024-01-01T00:00:00.000000Z'";
    let rows = format!(
        "insert into runs (id, host, pid, command, started_at, heartbeat_at)
         values (1, 'h', 1, 'run', {at}, {at});
         insert into images (id, sha256, size, format, created_at, updated_at)
         values (1, '{done}', 10, 'jpeg', {at}, {at}),
                (2, '{failed}', 20, 'png', {at}, {at}),
                (3, '{new}', 30, 'webp', {at}, {at});
         insert into inputs (path, size, mtime_ns, image_id, last_run, last_seen)
         values (cast('/in/a.jpg' as blob), 10, 1, 1, 1, {at}),
                (cast('/in/a-copy.jpg' as blob), 10, 1, 1, 1, {at}),
                (cast('/in/b.png' as blob), 20, 1, 2, 1, {at}),
                (cast('/in/c.webp' as blob), 30, 1, 3, 1, {at});
         update images set status = 'done', job_id = 'job-1', p_credits = 2 where id = 1;
         update images set status = 'failed', job_id = 'job-2' where id = 2;",
        done = "0a".repeat(32),
        failed = "fb".repeat(32),
        new = "1c".repeat(32),
    );
    schema_8_ledger(&path, &rows).await;

    let ledger = Ledger::open(&Location::file(&path)).await.unwrap();

    let done = Sha256([0x0a; 32]);
    let image = ledger.image(&done).await.unwrap().expect("the done image");
    assert_eq!(
        (image.status, image.job_id.as_deref(), image.size),
        (ImageStatus::Done, Some("job-1"), 10)
    );
    assert_eq!(ledger.inputs_of_image(&done).await.unwrap().len(), 2);
    let input = ledger.input(Path::new("/in/b.png")).await.unwrap();
    assert_eq!(input.expect("input b").sha256, Sha256([0xfb; 32]));
    let listed = ledger.list_images(None, None, 10).await.unwrap();
    let hashes: Vec<String> = listed.iter().map(|r| r.sha256.to_string()).collect();
    assert_eq!(hashes, ["0a".repeat(32), "1c".repeat(32), "fb".repeat(32)]);
    let counts = ledger.status_counts().await.unwrap();
    assert_eq!((counts.done, counts.failed, counts.new), (1, 1, 1));
    let inputs = ledger.input_counts().await.unwrap();
    assert_eq!((inputs.total, inputs.done, inputs.failed), (4, 2, 1));
    assert_eq!(ledger.credits_used().await.unwrap().p_credits, 2);
    let report = ledger.check_consistency().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test]
async fn a_format_upgrade_waits_until_a_live_run_of_the_older_eraser_has_ended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v8.db");
    let location = Location::file(&path);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    schema_8_ledger(
        &path,
        &format!(
            "insert into runs (id, host, pid, command, started_at, heartbeat_at)
             values (1, 'elsewhere', 4242, 'run', '{now}', '{now}')"
        ),
    )
    .await;

    let err = Ledger::open(&location).await.unwrap_err();

    assert!(
        matches!(err, Error::InUseByOlder { pid: 4242, .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Retry);
    assert!(err.to_string().contains("pid 4242 on elsewhere"), "{err}");
    let mut conn = sqlite(&location).await;
    let version: i64 = sqlx::query_scalar("select max(version) from _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, 8, "the format is left as it was");
    sqlx::query("update runs set finished_at = heartbeat_at")
        .execute(&mut conn)
        .await
        .unwrap();
    close(conn).await;
    let ledger = Ledger::open(&location).await.unwrap();
    assert!(ledger.check_consistency().await.unwrap().is_ok());
}

#[tokio::test]
async fn open_existing_refuses_a_missing_file_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope/ledger.db");

    let err = Ledger::open_existing(&Location::file(&path))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Stop);
    assert!(err.to_string().contains(&path.display().to_string()));
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_the_file_left_byte_identical() {
    let t = fresh(Backend::Sqlite)
        .await
        .expect("SQLite needs no server");
    let path = t.location.as_file().unwrap().to_path_buf();
    let mut conn = sqlite(&t.location).await;
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
         values (99990101000000, 'from the future', true, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    close(conn).await;
    t.ledger.close().await;
    let before = std::fs::read(&path).unwrap();

    let err = Ledger::open(&t.location).await.unwrap_err();

    assert!(
        matches!(
            err,
            Error::NewerSchema {
                found: 99990101000000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Stop);
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn a_corrupt_file_is_refused_and_left_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();

    let err = Ledger::open(&Location::file(&path)).await.unwrap_err();

    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Stop);
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[tokio::test]
async fn a_sqlite_database_that_is_not_a_ledger_is_refused_and_left_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let mut conn = create(&path).await;
    sqlx::query("create table photos (name text)")
        .execute(&mut conn)
        .await
        .unwrap();
    close(conn).await;
    let before = std::fs::read(&path).unwrap();

    let err = Ledger::open(&Location::file(&path)).await.unwrap_err();

    assert!(matches!(err, Error::NotALedger { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn a_folder_at_the_ledger_path_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();

    let err = Ledger::open(&Location::file(dir.path())).await.unwrap_err();

    assert!(matches!(err, Error::CannotOpen { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Stop);
}

#[tokio::test]
async fn a_lock_held_past_the_busy_timeout_is_a_retryable_busy_error_naming_the_file() {
    let t = fresh(Backend::Sqlite)
        .await
        .expect("SQLite needs no server");
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let impatient = OpenOptions::new()
        .busy_timeout(Duration::from_millis(100))
        .open(&t.location)
        .await
        .unwrap();
    let mut holder = sqlite(&t.location).await;
    sqlx::query("begin immediate")
        .execute(&mut holder)
        .await
        .unwrap();

    let err = impatient.heartbeat(run).await.unwrap_err();

    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&t.location.to_string()));
    sqlx::query("rollback").execute(&mut holder).await.unwrap();
    impatient.heartbeat(run).await.unwrap();
    close(holder).await;
}
