//! A run's inputs are the present inputs under its roots: the folders and the files it was
//! given, registered by the scan, never overlapping. A batch writes roots, inputs and
//! rejected files in one transaction.

use std::path::{Path, PathBuf};

use eraser_store::{RejectKind, Root, ScanBatch};
use rstest::rstest;

use crate::support::{
    Backend, accept_rejected_files, assert_counters_exact, batch, claimed_paths, folder, fresh,
    input, record_batch, record_inputs, refuse_rejected_files, rejection,
};

fn file(path: &str) -> Root {
    Root::File(PathBuf::from(path))
}

/// Paths of the run's inputs, as `run_inputs` lists them.
async fn inputs_of(ledger: &eraser_store::Ledger, run: eraser_store::RunId) -> Vec<PathBuf> {
    ledger
        .run_inputs(run, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.input.path)
        .collect()
}

#[rstest]
#[tokio::test]
async fn a_named_file_is_the_runs_and_a_path_beside_it_is_not(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("named", Path::new("/out")).await.unwrap();
    let named = ScanBatch {
        roots: vec![file("/in/a.jpg")],
        inputs: vec![
            input("/in/a.jpg", 1),
            input("/in/a.jpg2", 2),
            input("/in/a.jpe", 3),
            input("/in/b.jpg", 4),
        ],
        rejected: Vec::new(),
    };

    record_batch(l, run, &named).await;

    assert_eq!(inputs_of(l, run).await, [PathBuf::from("/in/a.jpg")]);
    assert_eq!(l.run_progress(run).await.unwrap().inputs, 1);
    assert_eq!(
        claimed_paths(l, run, 10).await,
        [PathBuf::from("/in/a.jpg")]
    );
    assert_eq!(l.input_counts().await.unwrap().total, 4, "all recorded");
}

#[rstest]
#[tokio::test]
async fn a_run_given_folders_and_files_has_the_inputs_of_each(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("mixed", Path::new("/out")).await.unwrap();
    let mixed = ScanBatch {
        roots: vec![folder("/in"), file("/more/single.jpg")],
        inputs: vec![
            input("/in/a.jpg", 1),
            input("/in/sub/b.jpg", 2),
            input("/more/single.jpg", 3),
            input("/more/other.jpg", 4),
        ],
        rejected: Vec::new(),
    };

    record_batch(l, run, &mixed).await;

    assert_eq!(
        inputs_of(l, run).await,
        [
            PathBuf::from("/in/a.jpg"),
            PathBuf::from("/in/sub/b.jpg"),
            PathBuf::from("/more/single.jpg")
        ]
    );
}

#[rstest]
#[tokio::test]
async fn a_root_inside_one_the_run_has_is_not_added(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let scan = l.begin_scan(run).await.unwrap();
    scan.record(&batch(
        "/in",
        vec![input("/in/a.jpg", 1), input("/in/sub/b.jpg", 2)],
    ))
    .await
    .unwrap();

    let inner = ScanBatch {
        roots: vec![folder("/in/sub"), file("/in/a.jpg"), folder("/in")],
        ..ScanBatch::default()
    };
    scan.record(&inner).await.unwrap();

    assert_eq!(
        inputs_of(l, run).await,
        [PathBuf::from("/in/a.jpg"), PathBuf::from("/in/sub/b.jpg")],
        "each input once"
    );
    assert_eq!(l.run_progress(run).await.unwrap().inputs, 2);
}

#[rstest]
#[tokio::test]
async fn a_root_holding_earlier_ones_replaces_them(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let scan = l.begin_scan(run).await.unwrap();
    let parts = ScanBatch {
        roots: vec![folder("/in/a"), file("/in/b/x.jpg")],
        inputs: vec![
            input("/in/a/1.jpg", 1),
            input("/in/b/x.jpg", 2),
            input("/in/c/3.jpg", 3),
        ],
        rejected: Vec::new(),
    };
    scan.record(&parts).await.unwrap();
    assert_eq!(l.run_progress(run).await.unwrap().inputs, 2);

    scan.record(&batch("/in", Vec::new())).await.unwrap();

    assert_eq!(
        inputs_of(l, run).await,
        [
            PathBuf::from("/in/a/1.jpg"),
            PathBuf::from("/in/b/x.jpg"),
            PathBuf::from("/in/c/3.jpg")
        ],
        "each input once"
    );
    assert_eq!(l.run_progress(run).await.unwrap().inputs, 3);
}

#[rstest]
#[tokio::test]
async fn one_batch_writes_its_roots_inputs_and_rejected_files_together(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let scan = l.begin_scan(run).await.unwrap();
    let mut whole = batch("/in", vec![input("/in/a.jpg", 1)]);
    whole.rejected = vec![rejection(
        "/in/notes.txt",
        RejectKind::Skipped,
        "not an image",
    )];

    scan.record(&whole).await.unwrap();

    assert_eq!(inputs_of(l, run).await, [PathBuf::from("/in/a.jpg")]);
    assert!(
        l.rejected(Path::new("/in/notes.txt"))
            .await
            .unwrap()
            .is_some()
    );
    let counts = l.input_counts().await.unwrap();
    assert_eq!((counts.total, counts.skipped), (1, 1));
}

#[rstest]
#[tokio::test]
async fn a_batch_that_fails_part_way_writes_none_of_it(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let scan = l.begin_scan(run).await.unwrap();
    let mut whole = batch("/in", vec![input("/in/a.jpg", 1)]);
    whole.rejected = vec![rejection(
        "/in/notes.txt",
        RejectKind::Skipped,
        "not an image",
    )];
    // The rejected files are written last: the roots and inputs were already written.
    refuse_rejected_files(&t).await;

    assert!(scan.record(&whole).await.is_err());

    assert!(l.input(Path::new("/in/a.jpg")).await.unwrap().is_none());
    assert_eq!(l.status_counts().await.unwrap().total, 0);
    assert_counters_exact(l, "a failed batch").await;
    let other = l.begin_run("other", Path::new("/out")).await.unwrap();
    record_inputs(l, other, "/in", vec![input("/in/b.jpg", 2)]).await;
    assert_eq!(
        l.run_progress(run).await.unwrap().inputs,
        0,
        "the root /in was not registered"
    );
    accept_rejected_files(&t).await;
    scan.record(&whole).await.unwrap();
    assert_eq!(
        inputs_of(l, run).await,
        [PathBuf::from("/in/a.jpg"), PathBuf::from("/in/b.jpg")]
    );
}
