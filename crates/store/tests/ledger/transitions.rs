use eraser_store::{Error, ErrorKind, ImageStatus, Ledger, Sha256};

use crate::support::{done_record, failure, fresh, image_in, input, record, status_of};

/// Asserts `result` is the refusal of a move from `from` to `to`.
fn assert_refused(result: eraser_store::Result<()>, sha: &Sha256, from: ImageStatus, to: &str) {
    let err = result.unwrap_err();
    match &err {
        Error::IllegalTransition {
            sha256,
            from: f,
            to: t,
        } => {
            assert_eq!(sha256, &sha.to_string());
            assert_eq!((f.as_str(), t.as_str()), (from.as_str(), to));
        }
        other => panic!("expected IllegalTransition from {from} to {to}, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Bug);
}

/// One image in each status but `allowed`, numbered from `base`.
async fn images_not_in(
    ledger: &Ledger,
    base: u64,
    allowed: &[ImageStatus],
) -> Vec<(Sha256, ImageStatus)> {
    let mut out = Vec::new();
    for (i, status) in ImageStatus::ALL.into_iter().enumerate() {
        if !allowed.contains(&status) {
            out.push((image_in(ledger, base + i as u64, status).await, status));
        }
    }
    out
}

#[tokio::test]
async fn recorded_images_start_new() {
    let t = fresh().await;
    let sha = image_in(&t.ledger, 1, ImageStatus::New).await;
    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.claimed_by),
        (ImageStatus::New, 0, None)
    );
}

#[tokio::test]
async fn claim_moves_new_images_of_the_run_to_uploading_held_by_the_run() {
    let t = fresh().await;
    let run = t
        .ledger
        .begin_run("test", std::path::Path::new("/out"))
        .await
        .unwrap();
    let shas = record(&t.ledger, run, 0, 3).await;

    let claims = t.ledger.claim_for_upload(run, 10).await.unwrap();

    let mut claimed: Vec<_> = claims.iter().map(|c| c.sha256).collect();
    claimed.sort();
    let mut expected = shas.clone();
    expected.sort();
    assert_eq!(claimed, expected);
    for sha in &shas {
        let row = t.ledger.image(sha).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.claimed_by),
            (ImageStatus::Uploading, Some(run))
        );
    }
}

#[tokio::test]
async fn claim_takes_at_most_n_and_never_the_same_image_twice() {
    let t = fresh().await;
    let run = t
        .ledger
        .begin_run("test", std::path::Path::new("/out"))
        .await
        .unwrap();
    record(&t.ledger, run, 0, 5).await;

    let first = t.ledger.claim_for_upload(run, 2).await.unwrap();
    let second = t.ledger.claim_for_upload(run, 2).await.unwrap();
    let third = t.ledger.claim_for_upload(run, 2).await.unwrap();
    let fourth = t.ledger.claim_for_upload(run, 2).await.unwrap();

    assert_eq!(
        (first.len(), second.len(), third.len(), fourth.len()),
        (2, 2, 1, 0)
    );
    let mut all: Vec<_> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .map(|c| c.sha256)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 5);
}

#[tokio::test]
async fn claim_skips_images_no_input_of_the_run_holds() {
    let t = fresh().await;
    let earlier = t
        .ledger
        .begin_run("earlier", std::path::Path::new("/out"))
        .await
        .unwrap();
    record(&t.ledger, earlier, 0, 2).await;
    let run = t
        .ledger
        .begin_run("test", std::path::Path::new("/out"))
        .await
        .unwrap();
    let mine = record(&t.ledger, run, 10, 1).await;

    let claims = t.ledger.claim_for_upload(run, 10).await.unwrap();

    assert_eq!(claims.iter().map(|c| c.sha256).collect::<Vec<_>>(), mine);
}

#[tokio::test]
async fn a_claim_carries_size_format_attempts_and_a_source_path_seen_by_the_run() {
    let t = fresh().await;
    let old = t
        .ledger
        .begin_run("old", std::path::Path::new("/out"))
        .await
        .unwrap();
    t.ledger
        .record_inputs(old, &[input("/in/a-old.jpg", 7)])
        .await
        .unwrap();
    let run = t
        .ledger
        .begin_run("test", std::path::Path::new("/out"))
        .await
        .unwrap();
    t.ledger
        .record_inputs(
            run,
            &[input("/in/b-copy.jpg", 7), input("/in/c-copy.jpg", 7)],
        )
        .await
        .unwrap();

    let claims = t.ledger.claim_for_upload(run, 10).await.unwrap();

    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim.source_path, std::path::Path::new("/in/b-copy.jpg"));
    assert_eq!(
        (claim.size, claim.format.as_str(), claim.attempts),
        (1007, "jpeg", 0)
    );
}

#[tokio::test]
async fn mark_processing_records_the_job_counts_an_attempt_and_drops_the_claim() {
    let t = fresh().await;
    let sha = image_in(&t.ledger, 1, ImageStatus::Uploading).await;

    t.ledger.mark_processing(&sha, "job-x").await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(row.status, ImageStatus::Processing);
    assert_eq!(row.job_id.as_deref(), Some("job-x"));
    assert_eq!((row.attempts, row.claimed_by), (1, None));
}

#[tokio::test]
async fn mark_processing_is_refused_unless_uploading() {
    let t = fresh().await;
    for (sha, from) in images_not_in(&t.ledger, 100, &[ImageStatus::Uploading]).await {
        assert_refused(
            t.ledger.mark_processing(&sha, "job").await,
            &sha,
            from,
            "processing",
        );
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[tokio::test]
async fn mark_done_records_the_result_and_clears_the_last_error() {
    let t = fresh().await;
    let sha = image_in(&t.ledger, 1, ImageStatus::Failed).await;
    t.ledger.requeue(None).await.unwrap();
    let run = t
        .ledger
        .begin_run("retry", std::path::Path::new("/out"))
        .await
        .unwrap();
    record(&t.ledger, run, 1, 1).await;
    t.ledger.claim_for_upload(run, 1).await.unwrap();
    t.ledger.mark_processing(&sha, "job-2").await.unwrap();

    t.ledger.mark_done(&sha, &done_record(1)).await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    let want = done_record(1);
    assert_eq!(row.status, ImageStatus::Done);
    assert_eq!(row.output_url.as_deref(), Some(want.output_url.as_str()));
    assert_eq!(row.output_path.as_deref(), Some(want.output_path.as_path()));
    assert_eq!(
        (row.output_sha256, row.output_size),
        (want.output_sha256, Some(want.output_size))
    );
    assert_eq!(
        (
            row.credits_states,
            row.need_credits,
            row.p_credits,
            row.s_credits
        ),
        (Some(2), Some(0), Some(1), Some(3))
    );
    assert_eq!(
        (row.error_code, row.error_message, row.retryable),
        (None, None, None)
    );
    assert_eq!(row.attempts, 2);
}

#[tokio::test]
async fn mark_done_is_refused_unless_processing() {
    let t = fresh().await;
    for (sha, from) in images_not_in(&t.ledger, 100, &[ImageStatus::Processing]).await {
        assert_refused(
            t.ledger.mark_done(&sha, &done_record(0)).await,
            &sha,
            from,
            "done",
        );
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[tokio::test]
async fn a_failed_upload_counts_an_attempt_and_records_the_error() {
    let t = fresh().await;
    let sha = image_in(&t.ledger, 1, ImageStatus::Uploading).await;

    t.ledger.mark_failed(&sha, &failure(429)).await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(row.status, ImageStatus::Failed);
    assert_eq!(
        (row.error_code, row.retryable, row.attempts, row.claimed_by),
        (Some(429), Some(true), 1, None)
    );
    assert_eq!(row.error_message.as_deref(), Some("service said 429"));
}

#[tokio::test]
async fn a_failed_job_is_not_counted_twice() {
    let t = fresh().await;
    let sha = image_in(&t.ledger, 1, ImageStatus::Processing).await;
    let failure = eraser_store::Failure {
        code: None,
        message: "job timed out".into(),
        retryable: false,
    };

    t.ledger.mark_failed(&sha, &failure).await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (ImageStatus::Failed, 1));
    assert_eq!((row.error_code, row.retryable), (None, Some(false)));
}

#[tokio::test]
async fn mark_failed_is_refused_unless_uploading_or_processing() {
    let t = fresh().await;
    for (sha, from) in images_not_in(
        &t.ledger,
        100,
        &[ImageStatus::Uploading, ImageStatus::Processing],
    )
    .await
    {
        assert_refused(
            t.ledger.mark_failed(&sha, &failure(1)).await,
            &sha,
            from,
            "failed",
        );
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[tokio::test]
async fn release_claim_returns_the_image_to_new_without_an_attempt() {
    let t = fresh().await;
    let sha = image_in(&t.ledger, 1, ImageStatus::Uploading).await;

    t.ledger.release_claim(&sha).await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.claimed_by, row.repeat_uploads),
        (ImageStatus::New, 0, None, 0)
    );
}

#[tokio::test]
async fn release_claim_is_refused_unless_uploading() {
    let t = fresh().await;
    for (sha, from) in images_not_in(&t.ledger, 100, &[ImageStatus::Uploading]).await {
        assert_refused(t.ledger.release_claim(&sha).await, &sha, from, "new");
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[tokio::test]
async fn requeue_without_a_list_puts_every_failed_image_back_to_new() {
    let t = fresh().await;
    let failed = [
        image_in(&t.ledger, 1, ImageStatus::Failed).await,
        image_in(&t.ledger, 2, ImageStatus::Failed).await,
    ];
    let done = image_in(&t.ledger, 3, ImageStatus::Done).await;

    assert_eq!(t.ledger.requeue(None).await.unwrap(), 2);

    for sha in &failed {
        assert_eq!(status_of(&t.ledger, sha).await, ImageStatus::New);
    }
    assert_eq!(status_of(&t.ledger, &done).await, ImageStatus::Done);
}

#[tokio::test]
async fn requeue_of_a_list_moves_only_its_failed_images() {
    let t = fresh().await;
    let chosen = image_in(&t.ledger, 1, ImageStatus::Failed).await;
    let other = image_in(&t.ledger, 2, ImageStatus::Failed).await;
    let processing = image_in(&t.ledger, 3, ImageStatus::Processing).await;

    assert_eq!(
        t.ledger.requeue(Some(&[chosen, processing])).await.unwrap(),
        1
    );

    assert_eq!(status_of(&t.ledger, &chosen).await, ImageStatus::New);
    assert_eq!(status_of(&t.ledger, &other).await, ImageStatus::Failed);
    assert_eq!(
        status_of(&t.ledger, &processing).await,
        ImageStatus::Processing
    );
}

/// Image `n` whose job `job-<n>` eraser stopped waiting for: failed, retryable, no code.
async fn timed_out(ledger: &Ledger, n: u64) -> Sha256 {
    let sha = image_in(ledger, n, ImageStatus::Processing).await;
    let gave_up = eraser_store::Failure {
        code: None,
        message: "job still unfinished after 10m (--job-timeout)".into(),
        retryable: true,
    };
    ledger.mark_failed(&sha, &gave_up).await.unwrap();
    sha
}

#[tokio::test]
async fn retry_failed_puts_a_timed_out_job_back_to_processing_with_its_job_id() {
    let t = fresh().await;
    let sha = timed_out(&t.ledger, 1).await;

    let retried = t.ledger.retry_failed(None).await.unwrap();

    assert_eq!((retried.to_poll, retried.to_upload), (1, 0));
    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(row.status, ImageStatus::Processing);
    assert_eq!(row.job_id.as_deref(), Some("job-1"));
}

#[tokio::test]
async fn retry_failed_puts_images_the_service_failed_or_never_accepted_back_to_new() {
    let t = fresh().await;
    let job_failed = image_in(&t.ledger, 1, ImageStatus::Processing).await;
    t.ledger
        .mark_failed(&job_failed, &failure(300_010))
        .await
        .unwrap();
    let upload_failed = image_in(&t.ledger, 2, ImageStatus::Failed).await;

    let retried = t.ledger.retry_failed(None).await.unwrap();

    assert_eq!((retried.to_poll, retried.to_upload), (0, 2));
    assert_eq!(status_of(&t.ledger, &job_failed).await, ImageStatus::New);
    assert_eq!(status_of(&t.ledger, &upload_failed).await, ImageStatus::New);
}

#[tokio::test]
async fn retry_failed_of_a_list_moves_only_its_images_each_the_right_way() {
    let t = fresh().await;
    let polled = timed_out(&t.ledger, 1).await;
    let uploaded = image_in(&t.ledger, 2, ImageStatus::Failed).await;
    let untouched = timed_out(&t.ledger, 3).await;

    let retried = t
        .ledger
        .retry_failed(Some(&[polled, uploaded]))
        .await
        .unwrap();

    assert_eq!((retried.to_poll, retried.to_upload), (1, 1));
    assert_eq!(status_of(&t.ledger, &polled).await, ImageStatus::Processing);
    assert_eq!(status_of(&t.ledger, &uploaded).await, ImageStatus::New);
    assert_eq!(status_of(&t.ledger, &untouched).await, ImageStatus::Failed);
}

#[tokio::test]
async fn an_upload_afresh_forgets_the_job_id_of_an_earlier_attempt() {
    let t = fresh().await;
    let sha = image_in(&t.ledger, 1, ImageStatus::Processing).await;
    t.ledger.mark_failed(&sha, &failure(300_010)).await.unwrap();
    t.ledger.retry_failed(None).await.unwrap();
    let run = t
        .ledger
        .begin_run("test", std::path::Path::new("/out"))
        .await
        .unwrap();
    crate::support::record(&t.ledger, run, 1, 1).await;

    let claims = t.ledger.claim_for_upload(run, 1).await.unwrap();

    assert_eq!(claims.len(), 1);
    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!((row.status, row.job_id), (ImageStatus::Uploading, None));
}

#[tokio::test]
async fn reset_done_returns_the_image_to_new_without_its_result() {
    let t = fresh().await;
    let sha = image_in(&t.ledger, 1, ImageStatus::Done).await;

    t.ledger.reset_done(&sha).await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(row.status, ImageStatus::New);
    assert_eq!(
        (row.job_id, row.output_url, row.output_path),
        (None, None, None)
    );
    assert_eq!(
        (row.output_sha256, row.output_size, row.p_credits),
        (None, None, None)
    );
}

#[tokio::test]
async fn reset_done_is_refused_unless_done() {
    let t = fresh().await;
    for (sha, from) in images_not_in(&t.ledger, 100, &[ImageStatus::Done]).await {
        assert_refused(t.ledger.reset_done(&sha).await, &sha, from, "new");
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[tokio::test]
async fn a_transition_of_an_unknown_image_names_it() {
    let t = fresh().await;
    let sha = crate::support::sha(404);

    let err = t.ledger.mark_processing(&sha, "job").await.unwrap_err();

    assert!(
        matches!(&err, Error::UnknownImage { sha256 } if *sha256 == sha.to_string()),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Bug);
}
