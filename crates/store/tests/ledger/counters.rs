//! The counters (images by status, inputs by their image's outcome, files not used, credits)
//! are kept by the database itself: every kind of write leaves them equal to a recount, and a
//! counter that drifted fails the consistency check.

use std::path::Path;

use eraser_store::{DoneRecord, Failure, Lookup, RejectKind, ScanBatch};
use rstest::rstest;

use crate::support::{
    Backend, MTIME, assert_counters_exact, batch, done_record, drift_counter, failure, folder,
    fresh, image_in, input, rejection, seen, sha,
};

#[rstest]
#[tokio::test]
async fn the_counters_stay_exact_after_every_kind_of_write(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let scan = l.begin_scan(run).await.unwrap();
    assert_counters_exact(l, "opening").await;

    let first = ScanBatch {
        roots: vec![folder("/in")],
        inputs: (1..=5)
            .map(|n| input(format!("/in/{n}.jpg"), n))
            .chain([input("/in/1-copy.jpg", 1)])
            .collect(),
        rejected: vec![
            rejection("/in/notes.txt", RejectKind::Skipped, "not an image"),
            rejection("/in/big.jpg", RejectKind::Error, "over the upload limit"),
        ],
    };
    scan.record(&first).await.unwrap();
    assert_counters_exact(l, "a batch of new images, inputs and rejected files").await;

    let moved = batch(
        "/in",
        vec![input("/in/1-copy.jpg", 6), seen("/in/3.jpg", 3)],
    );
    scan.record(&moved).await.unwrap();
    assert_counters_exact(l, "an input moved to other content, one seen unchanged").await;

    assert_eq!(l.claim_for_upload(run, 10).await.unwrap().len(), 6);
    assert_counters_exact(l, "claims").await;

    l.release_claim(run, &sha(6)).await.unwrap();
    assert_counters_exact(l, "a released claim").await;

    for n in 1..=3 {
        l.mark_processing(run, &sha(n), &format!("job-{n}"))
            .await
            .unwrap();
    }
    assert_counters_exact(l, "accepted uploads").await;

    l.mark_done(&sha(1), &done_record(1)).await.unwrap();
    assert_counters_exact(l, "a done job with its credits").await;
    assert_eq!(l.credits_used().await.unwrap().s_credits, 3);

    l.mark_failed(run, &sha(2), &failure(300_010))
        .await
        .unwrap();
    l.mark_failed(run, &sha(4), &failure(429)).await.unwrap();
    assert_counters_exact(l, "a failed job and a failed upload").await;

    assert_eq!(l.requeue(Some(&[sha(4)])).await.unwrap(), 1);
    assert_counters_exact(l, "a requeue").await;

    let gave_up = Failure {
        code: None,
        message: "job still unfinished (--job-timeout)".into(),
        retryable: true,
    };
    l.mark_failed(run, &sha(3), &gave_up).await.unwrap();
    let retried = l.retry_failed(None).await.unwrap();
    assert_eq!((retried.to_poll, retried.to_upload), (1, 1));
    assert_counters_exact(l, "a retry to poll and to upload").await;

    let paid = DoneRecord {
        p_credits: Some(5),
        s_credits: Some(7),
        need_credits: Some(11),
        ..done_record(3)
    };
    l.mark_done(&sha(3), &paid).await.unwrap();
    assert_counters_exact(l, "a second done job").await;

    l.reset_done(&sha(1)).await.unwrap();
    assert_counters_exact(l, "a done image reset").await;
    assert_eq!(l.credits_used().await.unwrap().need_credits, 11);

    l.note_repeat_uploads(&sha(3), 1).await.unwrap();
    l.clear_image_output(&sha(3)).await.unwrap();
    l.set_input_output(run, Path::new("/in/3.jpg"), Path::new("/out/3.jpg"))
        .await
        .unwrap();
    l.clear_input_output(Path::new("/in/3.jpg")).await.unwrap();
    assert_counters_exact(l, "outputs written and forgotten").await;

    scan.record(&batch("/in", vec![input("/in/big.jpg", 7)]))
        .await
        .unwrap();
    assert_counters_exact(l, "a rejected file that became an input").await;

    let rescan_run = l.begin_run("rescan", Path::new("/out")).await.unwrap();
    let rescan = l.begin_scan(rescan_run).await.unwrap();
    rescan.record(&batch("/in", Vec::new())).await.unwrap();
    let found = [(Path::new("/in/3.jpg"), 1003, MTIME)];
    assert_eq!(rescan.look_up(&found).await.unwrap(), [Lookup::Current]);
    assert!(rescan.complete().await.unwrap() > 0);
    assert!(
        l.rejected(Path::new("/in/notes.txt"))
            .await
            .unwrap()
            .is_none()
    );
    assert_counters_exact(
        l,
        "a walk that marked inputs missing and forgot a rejected file",
    )
    .await;

    scan.record(&batch("/in", vec![input("/in/1-copy.jpg", 8)]))
        .await
        .unwrap();
    assert!(l.forget_unused(&sha(6)).await.unwrap());
    assert_counters_exact(l, "an unused image forgotten").await;

    l.finish_run(run, "interrupted", "{}").await.unwrap();
    assert!(l.recover().await.unwrap() > 0);
    assert_counters_exact(l, "claims of a finished run taken back").await;
}

#[rstest]
#[tokio::test]
async fn input_counters_that_drifted_from_a_recount_fail_the_consistency_check(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    image_in(l, 1, eraser_store::ImageStatus::Done).await;
    assert!(l.check_consistency().await.unwrap().is_ok());
    drift_counter(&t, "inputs_done", 1).await;

    let report = l.check_consistency().await.unwrap();

    assert!(!report.is_ok());
    assert_eq!(
        report.counts_table, report.recount,
        "the images' counts are exact"
    );
    assert_eq!(
        (report.input_counts_table.done, report.input_recount.done),
        (2, 1)
    );
}

#[rstest]
#[tokio::test]
async fn credits_that_drifted_from_a_recount_fail_the_consistency_check(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    image_in(l, 1, eraser_store::ImageStatus::Done).await;
    drift_counter(&t, "p_credits", 4).await;

    let report = l.check_consistency().await.unwrap();

    assert!(!report.is_ok());
    assert_eq!(report.input_counts_table, report.input_recount);
    assert_eq!(
        (
            report.credits_table.p_credits,
            report.credits_recount.p_credits
        ),
        (5, 1)
    );
    assert_eq!(l.credits_used().await.unwrap().p_credits, 5, "as kept");
}

#[rstest]
#[tokio::test]
async fn image_counters_that_drifted_from_a_recount_fail_the_consistency_check(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    image_in(l, 1, eraser_store::ImageStatus::Failed).await;
    drift_counter(&t, "images_failed", -1).await;

    let report = l.check_consistency().await.unwrap();

    assert!(!report.is_ok());
    assert_eq!((report.counts_table.failed, report.recount.failed), (0, 1));
}
