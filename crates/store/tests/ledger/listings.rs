//! Kept listings are read back only at the version of the inputs they were kept at: every
//! kind of change to the inputs moves that version on and makes them stale.

use std::path::{Path, PathBuf};

use eraser_store::{FoundInput, Ledger, Listing, Lookup, RunId, ScanSession};
use rstest::rstest;

use crate::support::{
    Backend, MTIME, batch, delete_input_behind_the_ledgers_back, fresh, img, input, record,
    record_inputs, record_with, seen, sha,
};

/// The listing a walk would send for `/in` holding inputs 0..count (any digest will do here:
/// the ledger keeps and compares it, the walk computes it).
fn listing(count: u64) -> Listing {
    let mut digest = [7u8; 32];
    digest[..8].copy_from_slice(&count.to_be_bytes());
    Listing {
        digest,
        files: count,
    }
}

/// A run into `/out` that records inputs `/in/img-0..count`, walks `/in` completely and keeps
/// its listing; returns the run and whether the listing was kept.
async fn first_scan(ledger: &Ledger, count: u64) -> (RunId, bool) {
    let run = ledger.begin_run("first", Path::new("/out")).await.unwrap();
    let scan = ledger.begin_scan(run).await.unwrap();
    record_with(&scan, "/in", 0, count).await;
    assert_eq!(scan.complete().await.unwrap(), 0);
    let kept = scan
        .keep_listings(&[(PathBuf::from("/in"), listing(count))])
        .await
        .unwrap();
    (run, kept)
}

/// The listings a scan of a run into `out` beginning now would find.
async fn kept_for(ledger: &Ledger, out: &str) -> Vec<(PathBuf, Listing)> {
    let run = ledger.begin_run("next", Path::new(out)).await.unwrap();
    let scan = ledger.begin_scan(run).await.unwrap();
    let mut kept: Vec<_> = scan.kept_listings(100).await.unwrap().into_iter().collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kept
}

/// A later run into `/out` that records `inputs` under `/in`.
async fn later_records(ledger: &Ledger, inputs: Vec<FoundInput>) {
    let run = ledger.begin_run("later", Path::new("/out")).await.unwrap();
    record_inputs(ledger, run, "/in", inputs).await;
}

#[rstest]
#[tokio::test]
async fn a_listing_kept_by_a_scan_that_made_every_change_itself_is_read_back_into_the_same_out(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (_, kept) = first_scan(&t.ledger, 5).await;

    assert!(kept);
    assert_eq!(
        kept_for(&t.ledger, "/out").await,
        [(PathBuf::from("/in"), listing(5))]
    );
    assert!(
        kept_for(&t.ledger, "/elsewhere").await.is_empty(),
        "per OUT"
    );
}

#[rstest]
#[tokio::test]
async fn an_input_changed_by_another_process_during_the_scan_keeps_no_listing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t
        .ledger
        .begin_run("first", Path::new("/out"))
        .await
        .unwrap();
    let scan = t.ledger.begin_scan(run).await.unwrap();
    record_with(&scan, "/in", 0, 5).await;
    // Another process records a file while this scan runs.
    let other = t.another_handle().await;
    let theirs = other.begin_run("other", Path::new("/out")).await.unwrap();
    record(&other, theirs, 5, 1).await;
    other.close().await;
    scan.complete().await.unwrap();

    let kept = scan
        .keep_listings(&[(PathBuf::from("/in"), listing(5))])
        .await
        .unwrap();

    assert!(!kept);
    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[rstest]
#[tokio::test]
async fn a_new_input_makes_the_kept_listings_stale(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;

    later_records(&t.ledger, vec![input(img("/in", 5), 5)]).await;

    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[rstest]
#[tokio::test]
async fn an_input_with_another_mtime_makes_the_kept_listings_stale(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;
    let mut changed = input(img("/in", 1), 1);
    changed.mtime_ns += 1;

    later_records(&t.ledger, vec![changed]).await;

    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[rstest]
#[tokio::test]
async fn an_input_with_another_size_makes_the_kept_listings_stale(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;
    let mut changed = input(img("/in", 1), 1);
    changed.size += 1;

    later_records(&t.ledger, vec![changed]).await;

    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[rstest]
#[tokio::test]
async fn an_input_moved_to_other_content_makes_the_kept_listings_stale(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;
    // Same path, size and mtime, other bytes.
    let mut changed = input(img("/in", 1), 1);
    changed.content = Some(eraser_store::Content {
        sha256: sha(99),
        format: "jpeg",
    });

    later_records(&t.ledger, vec![changed]).await;

    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[rstest]
#[tokio::test]
async fn an_input_marked_missing_makes_the_kept_listings_stale(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;
    let run = t
        .ledger
        .begin_run("later", Path::new("/out"))
        .await
        .unwrap();
    let scan = rescan_finding(&t.ledger, run, 0..4).await;

    assert_eq!(scan.complete().await.unwrap(), 1);

    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[rstest]
#[tokio::test]
async fn an_input_deleted_behind_the_ledgers_back_makes_the_kept_listings_stale(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;

    delete_input_behind_the_ledgers_back(&t, &img("/in", 4)).await;

    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[rstest]
#[tokio::test]
async fn an_input_seen_unchanged_leaves_the_kept_listings_standing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;

    later_records(&t.ledger, vec![seen(img("/in", 1), 1)]).await;

    assert_eq!(kept_for(&t.ledger, "/out").await.len(), 1);
}

#[rstest]
#[tokio::test]
async fn image_status_changes_leave_the_kept_listings_standing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, _) = first_scan(&t.ledger, 5).await;
    assert_eq!(t.ledger.claim_for_upload(run, 2).await.unwrap().len(), 2);

    assert_eq!(kept_for(&t.ledger, "/out").await.len(), 1);
}

#[rstest]
#[tokio::test]
async fn a_rescan_that_changed_nothing_keeps_its_listings_again(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;
    let run = t
        .ledger
        .begin_run("again", Path::new("/out"))
        .await
        .unwrap();
    let scan = t.ledger.begin_scan(run).await.unwrap();
    let kept = scan.kept_listings(100).await.unwrap();
    scan.record(&batch("/in", Vec::new())).await.unwrap();
    scan.found_folder(PathBuf::from("/in"), kept[Path::new("/in")].files);

    assert_eq!(scan.complete().await.unwrap(), 0);
    assert!(
        scan.keep_listings(&[(PathBuf::from("/in"), listing(5))])
            .await
            .unwrap()
    );

    assert_eq!(kept_for(&t.ledger, "/out").await.len(), 1);
}

#[rstest]
#[tokio::test]
async fn more_kept_listings_than_the_limit_are_not_loaded(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    first_scan(&t.ledger, 5).await;
    let run = t.ledger.begin_run("next", Path::new("/out")).await.unwrap();
    let scan = t.ledger.begin_scan(run).await.unwrap();

    assert_eq!(scan.kept_listings(1).await.unwrap().len(), 1);
    assert!(scan.kept_listings(0).await.unwrap().is_empty());
}

/// A scan of `run` that registered `/in` and found the inputs `found` current.
async fn rescan_finding(
    ledger: &Ledger,
    run: RunId,
    found: impl IntoIterator<Item = u64>,
) -> ScanSession {
    let scan = ledger.begin_scan(run).await.unwrap();
    scan.record(&batch("/in", Vec::new())).await.unwrap();
    for n in found {
        let p = img("/in", n);
        let answer = scan
            .look_up(&[(p.as_path(), 1000 + n, MTIME)])
            .await
            .unwrap();
        assert_eq!(answer, [Lookup::Current], "input {n}");
    }
    scan
}

#[rstest]
#[tokio::test]
async fn a_complete_walk_marks_missing_only_the_inputs_outside_the_folders_found_whole(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let first = t
        .ledger
        .begin_run("first", Path::new("/out"))
        .await
        .unwrap();
    let scan = t.ledger.begin_scan(first).await.unwrap();
    let inputs = vec![
        input("/in/a/one.jpg", 1),
        input("/in/a/two.jpg", 2),
        input("/in/b/three.jpg", 3),
        input("/in/b/gone.jpg", 4),
    ];
    scan.record(&batch("/in", inputs)).await.unwrap();
    scan.complete().await.unwrap();
    t.ledger.finish_run(first, "complete", "{}").await.unwrap();

    // The next walk takes /in/a whole and finds only three.jpg of /in/b.
    let run = t.ledger.begin_run("next", Path::new("/out")).await.unwrap();
    let scan = t.ledger.begin_scan(run).await.unwrap();
    scan.record(&batch("/in", Vec::new())).await.unwrap();
    scan.found_folder(PathBuf::from("/in/a"), 2);
    let three = PathBuf::from("/in/b/three.jpg");
    let stamp = [(three.as_path(), 1003, MTIME)];
    assert_eq!(scan.look_up(&stamp).await.unwrap(), [Lookup::Current]);

    let marked = scan.complete().await.unwrap();

    assert_eq!(marked, 1);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 3);
}
