//! A real ledger written by the eraser of commit dfc8f9f (schema 0011), opened by this one:
//! it is upgraded in place and keeps everything it held.
//!
//! The fixture holds five runs over `/tmp/fx/photos` (two OUTs: `/tmp/fx/out` and
//! `/tmp/fx/out2`), a named file `/tmp/fx/more/single.png`, and a run killed while its job for
//! `/tmp/fx/more/slow.png` was processing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use eraser_store::{ImageStatus, InputCounts, Ledger, Location, RejectKind, RunId, StatusCounts};
use tempfile::TempDir;

use crate::support::{batch, close, sqlite};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ledger-dfc8f9f.db"
);

/// The fixture copied into a temp folder and opened (so upgraded) by this eraser.
async fn upgraded() -> (TempDir, Location, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ledger.db");
    std::fs::copy(FIXTURE, &copy).unwrap();
    let location = Location::file(copy);
    let ledger = Ledger::open(&location).await.unwrap();
    (dir, location, ledger)
}

fn sha(hex: &str) -> eraser_store::Sha256 {
    hex.to_ascii_lowercase().parse().unwrap()
}

const PROCESSING_JOB: &str = "8757b64e-c835-45cf-8c3b-0d34bd2fcd49";
const NEW_IMAGE: &str = "321EF50D847D73193FB49D46B34D161D886BB544291129074518E8E5231B7226";
const SLOW_IMAGE: &str = "C3ACC2F9D5765122CA2804C1858BEC055D157E72B311B03211809B4B023B1590";
const SINGLE_IMAGE: &str = "448C43FE85ED5088FBCCEC5AB8A7B9E391D5C3B71BACD1D155BC5474A6AFD6A7";
/// `/tmp/fx/photos/2024/img 00.png` and its copy `2025/dup-of-0.png`.
const IMG_00: &str = "81C54F26E5E6492FD5977779FDB8B629E879AFB53C6E33FE425CE9A66266EED8";

#[tokio::test]
async fn a_ledger_of_dfc8f9f_is_upgraded_to_every_migration() {
    let (_dir, location, ledger) = upgraded().await;
    ledger.close().await;

    let mut conn = sqlite(&location).await;
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let schema_version: i64 =
        sqlx::query_scalar("select count(*) from meta where key = 'schema_version'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    close(conn).await;
    let known: Vec<i64> = eraser_store::sqlite_migrator()
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(applied, known);
    assert_eq!(schema_version, 0, "_sqlx_migrations alone says which ran");
}

#[tokio::test]
async fn a_ledger_of_dfc8f9f_keeps_its_images_inputs_and_counts() {
    let (_dir, _location, ledger) = upgraded().await;

    assert_eq!(
        ledger.status_counts().await.unwrap(),
        StatusCounts {
            total: 16,
            new: 1,
            uploading: 0,
            processing: 1,
            done: 10,
            failed: 4,
        }
    );
    assert_eq!(
        ledger.input_counts().await.unwrap(),
        InputCounts {
            total: 17,
            done: 11,
            failed: 4,
            skipped: 1,
            rejected: 0,
        }
    );
    let report = ledger.check_consistency().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        ledger.product_serial().await.unwrap(),
        "3b8f677c-3c56-4288-a808-3d1d7886be08"
    );
}

#[tokio::test]
async fn a_ledger_of_dfc8f9f_keeps_the_processing_job_the_missing_input_and_the_skipped_file() {
    let (_dir, _location, ledger) = upgraded().await;

    let processing = ledger.image_by_job(PROCESSING_JOB).await.unwrap().unwrap();
    assert_eq!(
        (processing.sha256, processing.status),
        (sha(SLOW_IMAGE), ImageStatus::Processing)
    );
    let of_slow = ledger.inputs_of_image(&sha(SLOW_IMAGE)).await.unwrap();
    let paths: Vec<_> = of_slow.iter().map(|i| i.path.as_path()).collect();
    assert_eq!(paths, [Path::new("/tmp/fx/more/slow.png")]);

    let missing = ledger
        .input(Path::new("/tmp/fx/photos/2024/img 05.png"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(missing.missing, Some(RunId(3)));

    let skipped = ledger
        .rejected(Path::new("/tmp/fx/photos/notes.txt"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((skipped.kind, skipped.run), (RejectKind::Skipped, 4));
}

#[tokio::test]
async fn a_ledger_of_dfc8f9f_keeps_outputs_in_both_outs_and_a_path_that_is_not_utf8() {
    let (_dir, _location, ledger) = upgraded().await;

    let single = ledger
        .input(Path::new("/tmp/fx/more/single.png"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(single.sha256, sha(SINGLE_IMAGE));
    assert_eq!(
        single.output_path.as_deref(),
        Some(Path::new("/tmp/fx/out/single.jpg"))
    );
    // Run 2 walked /tmp/fx/photos into /tmp/fx/out2, run 4 into /tmp/fx/out.
    for (run, out) in [(RunId(2), "/tmp/fx/out2"), (RunId(4), "/tmp/fx/out")] {
        let of_run = ledger.run_inputs_of_image(run, &sha(IMG_00)).await.unwrap();
        let written: Vec<_> = of_run.iter().map(|i| i.output_path.clone()).collect();
        assert_eq!(
            written,
            [
                Some(PathBuf::from(format!("{out}/2024/img 00.jpg"))),
                Some(PathBuf::from(format!("{out}/2025/dup-of-0.jpg")))
            ],
            "run {run:?}"
        );
    }
    let cafe = PathBuf::from(OsStr::from_bytes(b"/tmp/fx/photos/2025/caf\xe9.png"));
    let row = ledger
        .input(&cafe)
        .await
        .unwrap()
        .expect("the latin-1 name");
    assert_eq!(row.path, cafe);
    let image = ledger.image(&row.sha256).await.unwrap().unwrap();
    assert_eq!(image.status, ImageStatus::Done);
    assert_eq!(
        image.output_path,
        Some(PathBuf::from(OsStr::from_bytes(
            b"/tmp/fx/out/2025/caf\xe9.jpg"
        )))
    );
}

#[tokio::test]
async fn a_new_run_over_the_photos_of_a_dfc8f9f_ledger_claims_its_new_image() {
    let (_dir, _location, ledger) = upgraded().await;
    let run = ledger
        .begin_run("run", Path::new("/tmp/fx/out"))
        .await
        .unwrap();

    crate::support::record_batch(&ledger, run, &batch("/tmp/fx/photos", Vec::new())).await;
    let claims = ledger.claim_for_upload(run, 10).await.unwrap();

    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].sha256, sha(NEW_IMAGE));
    assert_eq!(
        claims[0].source_path,
        Path::new("/tmp/fx/photos/2025/new-one.png")
    );
    assert!(ledger.check_consistency().await.unwrap().is_ok());
}
