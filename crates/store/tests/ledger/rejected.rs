use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use eraser_store::{Ledger, RejectKind, Rejection, RunId, ScanBatch};
use rstest::rstest;

use crate::support::{Backend, batch, folder, fresh, input, record_inputs, rejection};

/// Records `rejected` for `run`, whose root is `/in`.
async fn record_rejected(ledger: &Ledger, run: RunId, rejected: Vec<Rejection>) {
    let batch = ScanBatch {
        roots: vec![folder("/in")],
        inputs: Vec::new(),
        rejected,
    };
    crate::support::record_batch(ledger, run, &batch).await;
}

#[rstest]
#[tokio::test]
async fn rejected_files_are_listed_by_path_and_kind_and_counted(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record_rejected(
        l,
        run,
        vec![
            rejection("/in/notes.txt", RejectKind::Skipped, "not an image"),
            rejection("/in/big.jpg", RejectKind::Error, "over the upload limit"),
            rejection("/in/empty.png", RejectKind::Error, "empty file"),
        ],
    )
    .await;

    let all = l.list_rejected(None, None, 10).await.unwrap();
    let paths: Vec<&Path> = all.iter().map(|r| r.path.as_path()).collect();
    assert_eq!(
        paths,
        [
            Path::new("/in/big.jpg"),
            Path::new("/in/empty.png"),
            Path::new("/in/notes.txt")
        ]
    );
    assert!(all.iter().all(|r| r.run == run.0));
    let errors = l
        .list_rejected(Some(RejectKind::Error), None, 10)
        .await
        .unwrap();
    assert_eq!(errors.len(), 2);
    let page = l
        .list_rejected(None, Some(Path::new("/in/big.jpg")), 1)
        .await
        .unwrap();
    assert_eq!(page[0].path, Path::new("/in/empty.png"));
    let counts = l.input_counts().await.unwrap();
    assert_eq!((counts.skipped, counts.rejected), (1, 2));
}

#[rstest]
#[tokio::test]
async fn a_rejection_seen_again_is_refreshed_not_duplicated(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let first = l.begin_run("test", Path::new("/out")).await.unwrap();
    let path = "/in/x.jpg";
    record_rejected(
        l,
        first,
        vec![rejection(path, RejectKind::Skipped, "not an image")],
    )
    .await;
    let second = l.begin_run("test", Path::new("/out")).await.unwrap();
    record_rejected(
        l,
        second,
        vec![rejection(path, RejectKind::Error, "cannot read")],
    )
    .await;

    let row = l.rejected(Path::new(path)).await.unwrap().expect("row");
    assert_eq!(
        (row.kind, row.reason.as_str(), row.run),
        (RejectKind::Error, "cannot read", second.0)
    );
    let counts = l.input_counts().await.unwrap();
    assert_eq!((counts.skipped, counts.rejected), (0, 1));
}

#[rstest]
#[tokio::test]
async fn a_rejected_path_that_becomes_an_input_leaves_the_rejected_list(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record_rejected(
        l,
        run,
        vec![rejection("/in/a.jpg", RejectKind::Error, "empty file")],
    )
    .await;

    record_inputs(l, run, "/in", vec![input("/in/a.jpg", 1)]).await;

    assert!(l.rejected(Path::new("/in/a.jpg")).await.unwrap().is_none());
    assert_eq!(l.input_counts().await.unwrap().rejected, 0);
}

#[rstest]
#[tokio::test]
async fn rejected_paths_keep_bytes_that_are_not_utf8(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/in/caf\xe9.jpg"));
    let odd_file = Rejection {
        path: odd.clone(),
        kind: RejectKind::Skipped,
        reason: "not an image".into(),
    };
    record_rejected(l, run, vec![odd_file]).await;

    let rows = l.list_rejected(None, None, 10).await.unwrap();
    assert_eq!(rows[0].path, odd);
}

#[rstest]
#[tokio::test]
async fn a_completed_walk_forgets_only_the_rejected_files_under_its_roots_it_did_not_see_again(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let first = l.begin_run("first", Path::new("/out")).await.unwrap();
    let everywhere = ScanBatch {
        roots: vec![folder("/in"), folder("/in2")],
        inputs: Vec::new(),
        rejected: vec![
            rejection("/in/gone.txt", RejectKind::Skipped, "not an image"),
            rejection("/in/sub/gone.jpg", RejectKind::Error, "empty file"),
            rejection("/in/still.txt", RejectKind::Skipped, "not an image"),
            rejection("/in2/elsewhere.txt", RejectKind::Skipped, "not an image"),
        ],
    };
    crate::support::record_batch(l, first, &everywhere).await;
    let second = l.begin_run("second", Path::new("/out")).await.unwrap();
    let scan = l.begin_scan(second).await.unwrap();
    let mut again = batch("/in", Vec::new());
    again.rejected = vec![rejection(
        "/in/still.txt",
        RejectKind::Skipped,
        "not an image",
    )];
    scan.record(&again).await.unwrap();

    scan.complete().await.unwrap();

    let left: Vec<PathBuf> = l
        .list_rejected(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        left,
        [
            PathBuf::from("/in/still.txt"),
            PathBuf::from("/in2/elsewhere.txt")
        ]
    );
    let counts = l.input_counts().await.unwrap();
    assert_eq!((counts.skipped, counts.rejected), (2, 0));
}

#[rstest]
#[tokio::test]
async fn rejected_files_stay_until_the_walk_is_complete(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let first = l.begin_run("first", Path::new("/out")).await.unwrap();
    record_rejected(
        l,
        first,
        vec![rejection(
            "/in/notes.txt",
            RejectKind::Skipped,
            "not an image",
        )],
    )
    .await;
    let second = l.begin_run("second", Path::new("/out")).await.unwrap();

    record_rejected(l, second, Vec::new()).await;

    assert!(
        l.rejected(Path::new("/in/notes.txt"))
            .await
            .unwrap()
            .is_some()
    );
}
