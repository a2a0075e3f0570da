use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use eraser_store::{RejectKind, Rejection};

use crate::support::{fresh, input};

fn rejection(path: &str, kind: RejectKind, reason: &str) -> Rejection {
    Rejection {
        path: PathBuf::from(path),
        kind,
        reason: reason.into(),
    }
}

#[tokio::test]
async fn rejected_files_are_listed_by_path_and_kind_and_counted() {
    let t = fresh().await;
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    l.record_rejected(
        run,
        &[
            rejection("/in/notes.txt", RejectKind::Skipped, "not an image"),
            rejection("/in/big.jpg", RejectKind::Error, "over the upload limit"),
            rejection("/in/empty.png", RejectKind::Error, "empty file"),
        ],
    )
    .await
    .unwrap();

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

#[tokio::test]
async fn a_rejection_seen_again_is_refreshed_not_duplicated() {
    let t = fresh().await;
    let l = &t.ledger;
    let first = l.begin_run("test", Path::new("/out")).await.unwrap();
    let path = "/in/x.jpg";
    l.record_rejected(
        first,
        &[rejection(path, RejectKind::Skipped, "not an image")],
    )
    .await
    .unwrap();
    let second = l.begin_run("test", Path::new("/out")).await.unwrap();
    l.record_rejected(second, &[rejection(path, RejectKind::Error, "cannot read")])
        .await
        .unwrap();

    let row = l.rejected(Path::new(path)).await.unwrap().expect("row");
    assert_eq!(
        (row.kind, row.reason.as_str(), row.run),
        (RejectKind::Error, "cannot read", second.0)
    );
    let counts = l.input_counts().await.unwrap();
    assert_eq!((counts.skipped, counts.rejected), (0, 1));
}

#[tokio::test]
async fn a_rejected_path_that_becomes_an_input_leaves_the_rejected_list() {
    let t = fresh().await;
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    l.record_rejected(
        run,
        &[rejection("/in/a.jpg", RejectKind::Error, "empty file")],
    )
    .await
    .unwrap();

    l.record_inputs(run, &[input("/in/a.jpg", 1)])
        .await
        .unwrap();

    assert!(l.rejected(Path::new("/in/a.jpg")).await.unwrap().is_none());
    assert_eq!(l.input_counts().await.unwrap().rejected, 0);
}

#[tokio::test]
async fn rejected_paths_keep_bytes_that_are_not_utf8() {
    let t = fresh().await;
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/in/caf\xe9.jpg"));
    l.record_rejected(
        run,
        &[Rejection {
            path: odd.clone(),
            kind: RejectKind::Skipped,
            reason: "not an image".into(),
        }],
    )
    .await
    .unwrap();

    let rows = l.list_rejected(None, None, 10).await.unwrap();
    assert_eq!(rows[0].path, odd);
}

#[tokio::test]
async fn pruning_a_walked_folder_forgets_only_its_files_the_run_did_not_see_again() {
    let t = fresh().await;
    let l = &t.ledger;
    let first = l.begin_run("first", Path::new("/out")).await.unwrap();
    l.record_rejected(
        first,
        &[
            rejection("/in/gone.txt", RejectKind::Skipped, "not an image"),
            rejection("/in/sub/gone.jpg", RejectKind::Error, "empty file"),
            rejection("/in/still.txt", RejectKind::Skipped, "not an image"),
            rejection("/in2/elsewhere.txt", RejectKind::Skipped, "not an image"),
        ],
    )
    .await
    .unwrap();
    let second = l.begin_run("second", Path::new("/out")).await.unwrap();
    l.record_rejected(
        second,
        &[rejection(
            "/in/still.txt",
            RejectKind::Skipped,
            "not an image",
        )],
    )
    .await
    .unwrap();

    let forgotten = l.prune_rejected(second, &[Path::new("/in")]).await.unwrap();

    assert_eq!(forgotten, 2);
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
