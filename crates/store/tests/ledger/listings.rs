use std::path::{Path, PathBuf};
use std::time::Duration;

use eraser_store::{FoundInputs, Ledger, Listing, RunId};

use crate::support::{
    delete_input_behind_the_ledgers_back, fresh, input, record, walk_of_in_recorded,
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
    let since = ledger.inputs_state().await.unwrap();
    let run = ledger.begin_run("first", Path::new("/out")).await.unwrap();
    record(ledger, run, 0, count).await;
    assert_eq!(walk_of_in_recorded(ledger, run).await, 0);
    let kept = ledger
        .keep_listings(run, &since, &[(PathBuf::from("/in"), listing(count))])
        .await
        .unwrap();
    (run, kept)
}

/// The listings a run into `out` beginning now would find.
async fn kept_for(ledger: &Ledger, out: &str) -> Vec<(PathBuf, Listing)> {
    let run = ledger.begin_run("next", Path::new(out)).await.unwrap();
    let state = ledger.inputs_state().await.unwrap();
    let mut kept: Vec<_> = ledger
        .kept_listings(run, &state, 100)
        .await
        .unwrap()
        .into_iter()
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kept
}

#[tokio::test]
async fn a_listing_kept_by_a_scan_that_made_every_change_itself_is_read_back_into_the_same_out() {
    let t = fresh().await;
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

#[tokio::test]
async fn an_input_changed_by_another_process_during_the_scan_keeps_no_listing() {
    let t = fresh().await;
    let since = t.ledger.inputs_state().await.unwrap();
    let run = t
        .ledger
        .begin_run("first", Path::new("/out"))
        .await
        .unwrap();
    record(&t.ledger, run, 0, 5).await;
    // Another process records a file while this scan runs.
    let other = Ledger::open_existing(&t.path).await.unwrap();
    let theirs = other.begin_run("other", Path::new("/out")).await.unwrap();
    record(&other, theirs, 5, 1).await;
    other.close().await;
    walk_of_in_recorded(&t.ledger, run).await;

    let kept = t
        .ledger
        .keep_listings(run, &since, &[(PathBuf::from("/in"), listing(5))])
        .await
        .unwrap();

    assert!(!kept);
    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[tokio::test]
async fn an_input_recorded_after_the_listing_was_kept_makes_it_stale() {
    let t = fresh().await;
    first_scan(&t.ledger, 5).await;
    let run = t
        .ledger
        .begin_run("later", Path::new("/out"))
        .await
        .unwrap();
    let mut changed = input("/in/img-000001.jpg", 1);
    changed.mtime_ns += 1;
    t.ledger.record_inputs(run, &[changed]).await.unwrap();

    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[tokio::test]
async fn an_input_deleted_behind_the_ledgers_back_makes_the_listing_stale() {
    let t = fresh().await;
    first_scan(&t.ledger, 5).await;
    delete_input_behind_the_ledgers_back(&t.path, "/in/img-000004.jpg").await;

    assert!(kept_for(&t.ledger, "/out").await.is_empty());
}

#[tokio::test]
async fn image_status_changes_leave_the_listing_standing() {
    let t = fresh().await;
    let (run, _) = first_scan(&t.ledger, 5).await;
    assert_eq!(t.ledger.claim_for_upload(run, 2).await.unwrap().len(), 2);

    assert_eq!(kept_for(&t.ledger, "/out").await.len(), 1);
}

#[tokio::test]
async fn more_kept_listings_than_the_limit_are_not_loaded() {
    let t = fresh().await;
    first_scan(&t.ledger, 5).await;
    let run = t.ledger.begin_run("next", Path::new("/out")).await.unwrap();
    let state = t.ledger.inputs_state().await.unwrap();

    assert_eq!(
        t.ledger.kept_listings(run, &state, 1).await.unwrap().len(),
        1
    );
    assert!(
        t.ledger
            .kept_listings(run, &state, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_complete_walk_marks_missing_only_the_inputs_outside_the_folders_found_whole() {
    let t = fresh().await;
    let first = t
        .ledger
        .begin_run("first", Path::new("/out"))
        .await
        .unwrap();
    t.ledger
        .record_inputs(
            first,
            &[
                input("/in/a/one.jpg", 1),
                input("/in/a/two.jpg", 2),
                input("/in/b/three.jpg", 3),
                input("/in/b/gone.jpg", 4),
            ],
        )
        .await
        .unwrap();
    walk_of_in_recorded(&t.ledger, first).await;
    t.ledger.finish_run(first, "complete", "{}").await.unwrap();

    // The next walk takes /in/a whole and finds only three.jpg of /in/b.
    let run = t.ledger.begin_run("next", Path::new("/out")).await.unwrap();
    let mut found = FoundInputs::default();
    found.insert_folder(PathBuf::from("/in/a"), 2);
    let three = PathBuf::from("/in/b/three.jpg");
    let stamp = [(three.as_path(), 1003, 1_700_000_000_000_000_000)];
    let eraser_store::Lookup::Current(id) = t.ledger.look_up_inputs(run, &stamp).await.unwrap()[0]
    else {
        panic!("three.jpg is not current");
    };
    found.insert(id);

    let marked = t
        .ledger
        .complete_walk(
            run,
            &[PathBuf::from("/in")],
            &found,
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    assert_eq!(marked, 1);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 3);
}
