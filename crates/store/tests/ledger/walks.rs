use std::path::{Path, PathBuf};

use eraser_store::{Ledger, Lookup, RunId, ScanSession};
use rstest::rstest;

use crate::support::{
    Backend, MTIME, batch, claimed_paths, fresh, img, input, record, record_in, record_inputs,
    record_with, seen,
};

/// The path `record` gives input `n`.
fn path(n: u64) -> PathBuf {
    img("/in", n)
}

/// What the ledger holds of input `n` as `record` wrote it (same size and mtime).
async fn look_up(scan: &ScanSession, n: u64) -> Lookup {
    let p = path(n);
    scan.look_up(&[(p.as_path(), 1000 + n, MTIME)])
        .await
        .unwrap()[0]
}

/// A scan of `run` that registered the root `/in` and recorded nothing yet.
async fn walk_of_in(ledger: &Ledger, run: RunId) -> ScanSession {
    let scan = ledger.begin_scan(run).await.unwrap();
    scan.record(&batch("/in", Vec::new())).await.unwrap();
    scan
}

/// Completes the walk of `scan`, having found the inputs `found` (all current); returns how
/// many inputs it marked missing.
async fn walked(scan: &ScanSession, found: impl IntoIterator<Item = u64>) -> u64 {
    for n in found {
        assert_eq!(
            look_up(scan, n).await,
            Lookup::Current,
            "input {n} is not current"
        );
    }
    scan.complete().await.unwrap()
}

/// A run into `/out` that found `found` unchanged, recorded nothing, and walked `/in`
/// completely; returns the run and how many inputs its walk marked missing.
async fn rescan(ledger: &Ledger, found: impl IntoIterator<Item = u64>) -> (RunId, u64) {
    let run = ledger.begin_run("rescan", Path::new("/out")).await.unwrap();
    let marked = walked(&walk_of_in(ledger, run).await, found).await;
    (run, marked)
}

/// A first run that recorded inputs 0..count, walked `/in` completely and finished.
async fn recorded(ledger: &Ledger, count: u64) {
    let run = ledger.begin_run("first", Path::new("/out")).await.unwrap();
    let scan = ledger.begin_scan(run).await.unwrap();
    record_with(&scan, "/in", 0, count).await;
    assert_eq!(
        scan.complete().await.unwrap(),
        0,
        "every input was recorded"
    );
    ledger.finish_run(run, "complete", "{}").await.unwrap();
}

#[rstest]
#[tokio::test]
async fn a_complete_walk_makes_every_input_it_found_the_runs_without_recording_them(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 5).await;

    let (run, marked) = rescan(&t.ledger, 0..5).await;

    assert_eq!(marked, 0);
    let progress = t.ledger.run_progress(run).await.unwrap();
    assert_eq!(progress.inputs, 5);
    assert_eq!(progress.images.new, 5);
    let listed = t.ledger.run_inputs(run, None, 2).await.unwrap();
    assert_eq!(listed.len(), 2, "paged");
    assert_eq!(t.ledger.claim_for_upload(run, 10).await.unwrap().len(), 5);
}

#[rstest]
#[tokio::test]
async fn inputs_a_complete_walk_did_not_find_are_marked_missing_and_are_not_the_runs(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 5).await;
    let run = t
        .ledger
        .begin_run("rescan", Path::new("/out"))
        .await
        .unwrap();
    let scan = walk_of_in(&t.ledger, run).await;

    let marked = walked(&scan, 0..3).await;

    assert_eq!(marked, 2);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 3);
    assert_eq!(
        claimed_paths(&t.ledger, run, 10).await,
        [path(0), path(1), path(2)]
    );
    assert_eq!(
        look_up(&scan, 3).await,
        Lookup::Unchanged,
        "a missing input is recorded when found again"
    );
}

#[rstest]
#[tokio::test]
async fn a_missing_input_found_again_is_recorded_and_the_runs_again(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 3).await;
    let (first, _) = rescan(&t.ledger, 0..2).await;
    t.ledger.finish_run(first, "complete", "{}").await.unwrap();

    let run = t
        .ledger
        .begin_run("again", Path::new("/out"))
        .await
        .unwrap();
    let scan = t.ledger.begin_scan(run).await.unwrap();
    scan.record(&batch("/in", vec![seen(path(2), 2)]))
        .await
        .unwrap();
    let marked = walked(&scan, 0..2).await;

    assert_eq!(marked, 0);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 3);
    assert_eq!(look_up(&scan, 2).await, Lookup::Current);
}

#[rstest]
#[tokio::test]
async fn an_input_another_run_recorded_before_the_walk_began_is_marked_missing_when_not_found(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 2).await;
    let other = t
        .ledger
        .begin_run("other", Path::new("/out"))
        .await
        .unwrap();
    let late = record(&t.ledger, other, 100, 1).await;

    let (run, marked) = rescan(&t.ledger, 0..2).await;

    assert_eq!(marked, 1, "this walk did not find it");
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 2);
    assert_eq!(t.ledger.run_progress(other).await.unwrap().inputs, 2);
    let of_other = t.ledger.run_inputs_of_image(other, &late[0]).await.unwrap();
    assert!(of_other.is_empty(), "a missing input is no run's");
}

#[rstest]
#[tokio::test]
async fn an_input_another_run_recorded_after_the_walk_began_is_left_alone(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 2).await;
    let run = t
        .ledger
        .begin_run("rescan", Path::new("/out"))
        .await
        .unwrap();
    let scan = walk_of_in(&t.ledger, run).await;
    let other = t
        .ledger
        .begin_run("other", Path::new("/out"))
        .await
        .unwrap();
    let late = record(&t.ledger, other, 100, 1).await;

    let marked = walked(&scan, 0..2).await;

    assert_eq!(
        marked, 0,
        "the walk may have passed its folder before it came"
    );
    let row = t.ledger.input(&path(100)).await.unwrap().unwrap();
    assert_eq!(row.missing, None);
    let of_other = t.ledger.run_inputs_of_image(other, &late[0]).await.unwrap();
    assert_eq!(of_other.len(), 1);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 3);
}

#[rstest]
#[tokio::test]
async fn inputs_outside_the_walked_folders_are_neither_marked_nor_the_runs(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 2).await;
    let elsewhere = t
        .ledger
        .begin_run("elsewhere", Path::new("/out"))
        .await
        .unwrap();
    record_inputs(&t.ledger, elsewhere, "/in2", vec![input("/in2/x.jpg", 50)]).await;
    t.ledger
        .finish_run(elsewhere, "complete", "{}")
        .await
        .unwrap();

    let (run, marked) = rescan(&t.ledger, 0..2).await;

    assert_eq!(marked, 0);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 2);
    let row = t.ledger.input(Path::new("/in2/x.jpg")).await.unwrap();
    assert_eq!(row.expect("still recorded").missing, None);
}

#[rstest]
#[tokio::test]
async fn an_input_unrecorded_by_a_rescan_was_last_seen_by_that_rescan(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 1).await;
    let before = t.ledger.input(&path(0)).await.unwrap().unwrap();

    let (run, _) = rescan(&t.ledger, 0..1).await;

    let after = t.ledger.input(&path(0)).await.unwrap().unwrap();
    assert_eq!(after.last_run, Some(run));
    assert!(after.last_seen > before.last_seen);
}

#[rstest]
#[tokio::test]
async fn a_finished_runs_walk_no_longer_counts_for_a_later_run(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 2).await;
    let (first, _) = rescan(&t.ledger, 0..2).await;
    t.ledger.finish_run(first, "complete", "{}").await.unwrap();

    let later = t
        .ledger
        .begin_run("later", Path::new("/out"))
        .await
        .unwrap();

    assert_eq!(t.ledger.run_progress(later).await.unwrap().inputs, 0);
    assert!(
        t.ledger
            .claim_for_upload(later, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[rstest]
#[tokio::test]
async fn a_missing_input_keeps_when_it_was_last_seen_and_by_which_run(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    recorded(&t.ledger, 2).await;
    let before = t.ledger.input(&path(1)).await.unwrap().unwrap();

    let (run, marked) = rescan(&t.ledger, 0..1).await;

    assert_eq!(marked, 1);
    let after = t.ledger.input(&path(1)).await.unwrap().unwrap();
    assert_eq!(after.missing, Some(run));
    assert_eq!(after.last_run, before.last_run, "the first run saw it last");
    assert_eq!(
        after.last_seen, before.last_seen,
        "when the first run's walk found it"
    );
}

#[rstest]
#[tokio::test]
async fn a_folder_holds_inputs_only_when_one_lies_under_it(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record_in(&t.ledger, run, "/in", 0, 1).await;
    let scan = t.ledger.begin_scan(run).await.unwrap();

    for (folder, holds) in [
        ("/in", true),
        ("/in/", true),
        ("/", true),
        ("/in2", false),
        ("/i", false),
        ("/in/img-000000.jpg", false),
        ("/elsewhere", false),
    ] {
        assert_eq!(
            scan.holds_inputs_under(Path::new(folder)).await.unwrap(),
            holds,
            "{folder}"
        );
    }
}
