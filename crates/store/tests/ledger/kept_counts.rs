use std::path::{Path, PathBuf};
use std::time::Duration;

use eraser_store::{EndProgress, FoundInputs, Ledger, Lookup, RunId, SeenInput};

use crate::support::{
    delete_input_behind_the_ledgers_back, fresh, input, record, sha, walk_of_in_recorded,
};

/// A first run that recorded inputs `/in/img-0..count` and walked `/in`; its end count kept.
async fn first_run(ledger: &Ledger, count: u64) -> EndProgress {
    let run = ledger.begin_run("first", Path::new("/out")).await.unwrap();
    record(ledger, run, 0, count).await;
    assert_eq!(walk_of_in_recorded(ledger, run).await, 0);
    let end = ledger.end_progress(run).await.unwrap();
    ledger.finish_run(run, "complete", "{}").await.unwrap();
    end
}

/// A run into `/out` that found the inputs `found` of `/in` unchanged, recorded those the
/// ledger needs recorded (as a scan does) and walked `/in` completely.
async fn rescan(ledger: &Ledger, found: impl IntoIterator<Item = u64>) -> RunId {
    let run = ledger.begin_run("rescan", Path::new("/out")).await.unwrap();
    let mut seen = FoundInputs::default();
    for n in found {
        let path = PathBuf::from(format!("/in/img-{n:06}.jpg"));
        let stamp = [(path.as_path(), 1000 + n, 1_700_000_000_000_000_000)];
        match ledger.look_up_inputs(run, &stamp).await.unwrap()[0] {
            Lookup::Current(id) => {
                seen.insert(id);
            }
            Lookup::Unchanged => {
                let planned_output = Path::new("/out").join(path.strip_prefix("/").unwrap());
                let seen = [SeenInput {
                    path,
                    planned_output,
                }];
                ledger.record_unchanged(run, &seen).await.unwrap();
            }
            Lookup::Changed => panic!("input {n} changed"),
        }
    }
    ledger
        .complete_walk(run, &[PathBuf::from("/in")], &seen, Duration::from_secs(60))
        .await
        .unwrap();
    run
}

/// The run's end count, checked against a count from scratch.
async fn end_of(ledger: &Ledger, run: RunId) -> EndProgress {
    let end = ledger.end_progress(run).await.unwrap();
    assert_eq!(end.progress, ledger.run_progress(run).await.unwrap());
    end
}

#[tokio::test]
async fn a_rescan_that_changed_nothing_reads_back_the_count_kept_at_the_first_runs_end() {
    let t = fresh().await;
    let first = first_run(&t.ledger, 5).await;
    assert!(!first.reused, "nothing was kept before the first run");

    let again = end_of(&t.ledger, rescan(&t.ledger, 0..5).await).await;

    assert!(again.reused);
    assert_eq!(again.progress, first.progress);
    assert_eq!(again.progress.inputs, 5);
    assert_eq!(again.progress.images.new, 5);
}

#[tokio::test]
async fn an_image_whose_status_moved_since_makes_the_next_run_count_again() {
    let t = fresh().await;
    first_run(&t.ledger, 5).await;
    let other = rescan(&t.ledger, 0..5).await;
    assert_eq!(t.ledger.claim_for_upload(other, 1).await.unwrap().len(), 1);

    let again = end_of(&t.ledger, rescan(&t.ledger, 0..5).await).await;

    assert!(!again.reused);
    assert_eq!(again.progress.images.uploading, 1);
}

#[tokio::test]
async fn an_input_marked_missing_since_makes_the_next_run_count_again() {
    let t = fresh().await;
    first_run(&t.ledger, 5).await;

    let again = end_of(&t.ledger, rescan(&t.ledger, 0..3).await).await;

    assert!(!again.reused);
    assert_eq!(again.progress.inputs, 3);
}

#[tokio::test]
async fn a_new_input_recorded_since_makes_the_next_run_count_again() {
    let t = fresh().await;
    first_run(&t.ledger, 5).await;
    let other = t
        .ledger
        .begin_run("other", Path::new("/out"))
        .await
        .unwrap();
    record(&t.ledger, other, 5, 1).await;

    let again = end_of(&t.ledger, rescan(&t.ledger, 0..6).await).await;

    assert!(!again.reused);
    assert_eq!(again.progress.inputs, 6);
}

#[tokio::test]
async fn an_input_whose_content_changed_since_makes_the_next_run_count_again() {
    let t = fresh().await;
    first_run(&t.ledger, 5).await;
    let other = t
        .ledger
        .begin_run("other", Path::new("/out"))
        .await
        .unwrap();
    // Same path, size and mtime as input 0 (so the rescan finds it current), new content.
    let mut changed = input("/in/img-000000.jpg", 0);
    changed.sha256 = sha(99);
    t.ledger.record_inputs(other, &[changed]).await.unwrap();

    let again = end_of(&t.ledger, rescan(&t.ledger, 0..5).await).await;

    assert!(
        !again.reused,
        "the counts are the same, but not from the same state"
    );
}

#[tokio::test]
async fn an_input_deleted_behind_the_ledgers_back_makes_the_next_run_count_again() {
    let t = fresh().await;
    first_run(&t.ledger, 5).await;
    delete_input_behind_the_ledgers_back(&t.path, "/in/img-000004.jpg").await;

    let again = end_of(&t.ledger, rescan(&t.ledger, 0..4).await).await;

    assert!(!again.reused);
    assert_eq!(again.progress.inputs, 4);
}

#[tokio::test]
async fn a_run_over_other_folders_does_not_read_back_anothers_count() {
    let t = fresh().await;
    first_run(&t.ledger, 5).await;
    let run = t
        .ledger
        .begin_run("wider", Path::new("/out"))
        .await
        .unwrap();
    let folders = [PathBuf::from("/in"), PathBuf::from("/other")];
    let mut seen = FoundInputs::default();
    for n in 0..5 {
        let path = PathBuf::from(format!("/in/img-{n:06}.jpg"));
        let stamp = [(path.as_path(), 1000 + n, 1_700_000_000_000_000_000)];
        if let Lookup::Current(id) = t.ledger.look_up_inputs(run, &stamp).await.unwrap()[0] {
            seen.insert(id);
        }
    }
    t.ledger
        .complete_walk(run, &folders, &seen, Duration::from_secs(60))
        .await
        .unwrap();

    assert!(!end_of(&t.ledger, run).await.reused);
}

#[tokio::test]
async fn inputs_named_one_by_one_are_counted_at_every_end() {
    let t = fresh().await;
    for _ in 0..2 {
        let run = t
            .ledger
            .begin_run("named", Path::new("/out"))
            .await
            .unwrap();
        record(&t.ledger, run, 0, 3).await;

        let end = end_of(&t.ledger, run).await;

        assert!(
            !end.reused,
            "no walked folder: the count is this run's alone"
        );
        assert_eq!(end.progress.inputs, 3);
        t.ledger.finish_run(run, "complete", "{}").await.unwrap();
    }
}
