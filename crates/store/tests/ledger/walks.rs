use std::path::{Path, PathBuf};
use std::time::Duration;

use eraser_store::{FoundInputs, Ledger, Lookup, RunId, SeenInput};

use crate::support::{claimed_paths, fresh, record, walk_of_in_recorded};

const LIVE: Duration = Duration::from_secs(60);

/// The path `record` gives input `n`.
fn path(n: u64) -> PathBuf {
    PathBuf::from(format!("/in/img-{n:06}.jpg"))
}

/// What the ledger holds of input `n` as `record` wrote it (same size and mtime).
async fn look_up(ledger: &Ledger, run: RunId, n: u64) -> Lookup {
    let p = path(n);
    ledger
        .look_up_inputs(run, &[(p.as_path(), 1000 + n, 1_700_000_000_000_000_000)])
        .await
        .unwrap()[0]
}

/// Completes `run`'s walk of `/in` having found the inputs `found` (all current).
async fn walked(ledger: &Ledger, run: RunId, found: impl IntoIterator<Item = u64>) -> u64 {
    let mut seen = FoundInputs::default();
    for n in found {
        let Lookup::Current(id) = look_up(ledger, run, n).await else {
            panic!("input {n} is not current");
        };
        seen.insert(id);
    }
    ledger
        .complete_walk(run, &[PathBuf::from("/in")], &seen, LIVE)
        .await
        .unwrap()
}

/// A run into `/out` that found `found` unchanged, recorded nothing, and walked `/in`
/// completely; returns the run and how many inputs its walk marked missing.
async fn rescan(ledger: &Ledger, found: impl IntoIterator<Item = u64>) -> (RunId, u64) {
    let run = ledger.begin_run("rescan", Path::new("/out")).await.unwrap();
    let marked = walked(ledger, run, found).await;
    (run, marked)
}

/// A first run that recorded inputs 0..count, walked `/in` completely and finished.
async fn recorded(ledger: &Ledger, count: u64) {
    let run = ledger.begin_run("first", Path::new("/out")).await.unwrap();
    record(ledger, run, 0, count).await;
    assert_eq!(
        walk_of_in_recorded(ledger, run).await,
        0,
        "every input was recorded"
    );
    ledger.finish_run(run, "complete", "{}").await.unwrap();
}

#[tokio::test]
async fn a_complete_walk_makes_every_input_it_found_the_runs_without_recording_them() {
    let t = fresh().await;
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

#[tokio::test]
async fn inputs_a_complete_walk_did_not_find_are_marked_missing_and_are_not_the_runs() {
    let t = fresh().await;
    recorded(&t.ledger, 5).await;
    let (run, marked) = rescan(&t.ledger, 0..3).await;

    assert_eq!(marked, 2);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 3);
    assert_eq!(
        claimed_paths(&t.ledger, run, 10).await,
        [path(0), path(1), path(2)]
    );
    assert_eq!(
        look_up(&t.ledger, run, 3).await,
        Lookup::Unchanged,
        "a missing input is recorded when found again"
    );
}

#[tokio::test]
async fn a_missing_input_found_again_is_recorded_and_the_runs_again() {
    let t = fresh().await;
    recorded(&t.ledger, 3).await;
    let (first, _) = rescan(&t.ledger, 0..2).await;
    t.ledger.finish_run(first, "complete", "{}").await.unwrap();

    let run = t
        .ledger
        .begin_run("again", Path::new("/out"))
        .await
        .unwrap();
    t.ledger
        .record_unchanged(
            run,
            &[SeenInput {
                path: path(2),
                planned_output: PathBuf::from("/out/in/img-000002.jpg"),
            }],
        )
        .await
        .unwrap();
    let marked = walked(&t.ledger, run, 0..2).await;

    assert_eq!(marked, 0);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 3);
    assert!(matches!(
        look_up(&t.ledger, run, 2).await,
        Lookup::Current(_)
    ));
}

#[tokio::test]
async fn an_input_a_live_run_recorded_behind_the_walk_stays_that_runs_only() {
    let t = fresh().await;
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
    assert_eq!(t.ledger.run_progress(other).await.unwrap().inputs, 1);
    let of_other = t.ledger.run_inputs_of_image(other, &late[0]).await.unwrap();
    assert_eq!(of_other.len(), 1);
}

#[tokio::test]
async fn inputs_outside_the_walked_folders_are_neither_marked_nor_the_runs() {
    let t = fresh().await;
    recorded(&t.ledger, 2).await;
    let elsewhere = t
        .ledger
        .begin_run("elsewhere", Path::new("/out"))
        .await
        .unwrap();
    t.ledger
        .record_inputs(elsewhere, &[crate::support::input("/in2/x.jpg", 50)])
        .await
        .unwrap();
    t.ledger
        .finish_run(elsewhere, "complete", "{}")
        .await
        .unwrap();

    let (run, marked) = rescan(&t.ledger, 0..2).await;

    assert_eq!(marked, 0);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 2);
    let row = t.ledger.input(Path::new("/in2/x.jpg")).await.unwrap();
    assert!(row.is_some());
}

#[tokio::test]
async fn an_input_unrecorded_by_a_rescan_was_last_seen_by_that_rescan() {
    let t = fresh().await;
    recorded(&t.ledger, 1).await;
    let before = t
        .ledger
        .input(Path::new("/in/img-000000.jpg"))
        .await
        .unwrap()
        .unwrap();

    let (run, _) = rescan(&t.ledger, 0..1).await;

    let after = t
        .ledger
        .input(Path::new("/in/img-000000.jpg"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.last_run, Some(run));
    assert!(after.last_seen > before.last_seen);
}

#[tokio::test]
async fn a_finished_runs_walk_no_longer_counts_for_a_later_run() {
    let t = fresh().await;
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

#[tokio::test]
async fn a_missing_input_keeps_when_it_was_last_seen_and_by_which_run() {
    let t = fresh().await;
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

#[tokio::test]
async fn a_folder_holds_inputs_only_when_one_lies_under_it() {
    let t = fresh().await;
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record(&t.ledger, run, 0, 1).await;

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
            t.ledger
                .holds_inputs_under(Path::new(folder))
                .await
                .unwrap(),
            holds,
            "{folder}"
        );
    }
}
