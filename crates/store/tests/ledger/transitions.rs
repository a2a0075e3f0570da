use std::path::Path;

use eraser_store::{Error, ErrorKind, ImageStatus, Ledger, RunId, Sha256};
use rstest::rstest;

use crate::support::{
    Backend, age_heartbeat, done_record, failure, fresh, image_in, input, record, record_inputs,
    status_of,
};

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

/// Asserts `result` says the run no longer holds its claim on `sha`.
fn assert_claim_lost(result: eraser_store::Result<()>, sha: &Sha256) {
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::ClaimLost { sha256 } if *sha256 == sha.to_string()),
        "expected ClaimLost, got {err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Bug);
}

/// Asserts the refusal of a transition of a claim: an image that is `new` was never (or is no
/// longer) the run's claim; any other status is an illegal transition.
fn assert_claim_refused(
    result: eraser_store::Result<()>,
    sha: &Sha256,
    from: ImageStatus,
    to: &str,
) {
    if from == ImageStatus::New {
        assert_claim_lost(result, sha);
    } else {
        assert_refused(result, sha, from, to);
    }
}

/// One image in each status but `allowed`, numbered from `base`, with the run that drove it.
async fn images_not_in(
    ledger: &Ledger,
    base: u64,
    allowed: &[ImageStatus],
) -> Vec<(RunId, Sha256, ImageStatus)> {
    let mut out = Vec::new();
    for (i, status) in ImageStatus::ALL.into_iter().enumerate() {
        if !allowed.contains(&status) {
            let (run, sha) = image_in(ledger, base + i as u64, status).await;
            out.push((run, sha, status));
        }
    }
    out
}

#[rstest]
#[tokio::test]
async fn recorded_images_start_new(#[values(Backend::Sqlite, Backend::Postgres)] backend: Backend) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (_, sha) = image_in(&t.ledger, 1, ImageStatus::New).await;
    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.claimed_by),
        (ImageStatus::New, 0, None)
    );
}

#[rstest]
#[tokio::test]
async fn claim_moves_new_images_of_the_run_to_uploading_held_by_the_run(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
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

#[rstest]
#[tokio::test]
async fn claim_takes_at_most_n_and_never_the_same_image_twice(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
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

#[rstest]
#[tokio::test]
async fn claim_skips_images_with_no_input_under_the_runs_roots(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let earlier = t
        .ledger
        .begin_run("earlier", Path::new("/out"))
        .await
        .unwrap();
    crate::support::record_in(&t.ledger, earlier, "/elsewhere", 0, 2).await;
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let mine = record(&t.ledger, run, 10, 1).await;

    let claims = t.ledger.claim_for_upload(run, 10).await.unwrap();

    assert_eq!(claims.iter().map(|c| c.sha256).collect::<Vec<_>>(), mine);
}

#[rstest]
#[tokio::test]
async fn a_claim_carries_size_format_attempts_and_a_source_path_of_the_run(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let old = t.ledger.begin_run("old", Path::new("/out")).await.unwrap();
    // Sorts before the run's own copies, but lies outside its roots.
    record_inputs(&t.ledger, old, "/a-old", vec![input("/a-old/a.jpg", 7)]).await;
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(
        &t.ledger,
        run,
        "/in",
        vec![input("/in/b-copy.jpg", 7), input("/in/c-copy.jpg", 7)],
    )
    .await;

    let claims = t.ledger.claim_for_upload(run, 10).await.unwrap();

    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim.source_path, Path::new("/in/b-copy.jpg"));
    assert_eq!(
        (claim.size, claim.format.as_str(), claim.attempts),
        (1007, "jpeg", 0)
    );
}

#[rstest]
#[tokio::test]
async fn mark_processing_records_the_job_counts_an_attempt_and_drops_the_claim(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, sha) = image_in(&t.ledger, 1, ImageStatus::Uploading).await;

    t.ledger.mark_processing(run, &sha, "job-x").await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(row.status, ImageStatus::Processing);
    assert_eq!(row.job_id.as_deref(), Some("job-x"));
    assert_eq!((row.attempts, row.claimed_by), (1, None));
}

#[rstest]
#[tokio::test]
async fn recording_the_same_job_id_again_changes_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, sha) = image_in(&t.ledger, 1, ImageStatus::Uploading).await;
    t.ledger.mark_processing(run, &sha, "job-x").await.unwrap();

    // As after a reply lost on the way back: the second try finds its own record.
    t.ledger.mark_processing(run, &sha, "job-x").await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (ImageStatus::Processing, 1));
    assert!(t.ledger.mark_processing(run, &sha, "job-y").await.is_err());
}

#[rstest]
#[tokio::test]
async fn mark_processing_is_refused_unless_uploading(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    for (run, sha, from) in images_not_in(&t.ledger, 100, &[ImageStatus::Uploading]).await {
        assert_claim_refused(
            t.ledger.mark_processing(run, &sha, "job").await,
            &sha,
            from,
            "processing",
        );
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[rstest]
#[tokio::test]
async fn mark_done_records_the_result_and_clears_the_last_error(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (_, sha) = image_in(&t.ledger, 1, ImageStatus::Failed).await;
    t.ledger.requeue(None).await.unwrap();
    let run = t
        .ledger
        .begin_run("retry", Path::new("/out"))
        .await
        .unwrap();
    record(&t.ledger, run, 1, 1).await;
    t.ledger.claim_for_upload(run, 1).await.unwrap();
    t.ledger.mark_processing(run, &sha, "job-2").await.unwrap();

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

#[rstest]
#[tokio::test]
async fn mark_done_is_refused_unless_processing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    for (_, sha, from) in images_not_in(&t.ledger, 100, &[ImageStatus::Processing]).await {
        assert_refused(
            t.ledger.mark_done(&sha, &done_record(0)).await,
            &sha,
            from,
            "done",
        );
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[rstest]
#[tokio::test]
async fn a_failed_upload_counts_an_attempt_and_records_the_error(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, sha) = image_in(&t.ledger, 1, ImageStatus::Uploading).await;

    t.ledger
        .mark_failed(run, &sha, &failure(429))
        .await
        .unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(row.status, ImageStatus::Failed);
    assert_eq!(
        (row.error_code, row.retryable, row.attempts, row.claimed_by),
        (Some(429), Some(true), 1, None)
    );
    assert_eq!(row.error_message.as_deref(), Some("service said 429"));
}

#[rstest]
#[tokio::test]
async fn a_failed_job_is_not_counted_twice(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, sha) = image_in(&t.ledger, 1, ImageStatus::Processing).await;
    let failure = eraser_store::Failure {
        code: None,
        message: "job timed out".into(),
        retryable: false,
    };

    t.ledger.mark_failed(run, &sha, &failure).await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (ImageStatus::Failed, 1));
    assert_eq!((row.error_code, row.retryable), (None, Some(false)));
}

#[rstest]
#[tokio::test]
async fn mark_failed_is_refused_unless_uploading_or_processing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let allowed = [ImageStatus::Uploading, ImageStatus::Processing];
    for (run, sha, from) in images_not_in(&t.ledger, 100, &allowed).await {
        assert_claim_refused(
            t.ledger.mark_failed(run, &sha, &failure(1)).await,
            &sha,
            from,
            "failed",
        );
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[rstest]
#[tokio::test]
async fn release_claim_returns_the_image_to_new_without_an_attempt(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, sha) = image_in(&t.ledger, 1, ImageStatus::Uploading).await;

    t.ledger.release_claim(run, &sha).await.unwrap();

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.claimed_by, row.repeat_uploads),
        (ImageStatus::New, 0, None, 0)
    );
}

#[rstest]
#[tokio::test]
async fn release_claim_is_refused_unless_uploading(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    for (run, sha, from) in images_not_in(&t.ledger, 100, &[ImageStatus::Uploading]).await {
        assert_claim_refused(t.ledger.release_claim(run, &sha).await, &sha, from, "new");
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

/// Image 1 claimed by a run that then went silent (its heartbeat stale), taken back by
/// `recover`; returns that run and the image.
async fn claim_taken_back(t: &crate::support::TestLedger) -> (RunId, Sha256) {
    let (run, sha) = image_in(&t.ledger, 1, ImageStatus::Uploading).await;
    age_heartbeat(t, run, 3600).await;
    assert_eq!(t.ledger.recover().await.unwrap(), 1);
    (run, sha)
}

#[rstest]
#[tokio::test]
async fn a_claim_recover_took_back_and_another_run_claimed_is_lost_to_its_first_holder(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (presumed_dead, sha) = claim_taken_back(&t).await;
    let other = t
        .ledger
        .begin_run("other", Path::new("/out"))
        .await
        .unwrap();
    record(&t.ledger, other, 1, 1).await;
    assert_eq!(t.ledger.claim_for_upload(other, 1).await.unwrap().len(), 1);

    assert_claim_lost(
        t.ledger
            .mark_processing(presumed_dead, &sha, "job-late")
            .await,
        &sha,
    );
    assert_claim_lost(
        t.ledger.mark_failed(presumed_dead, &sha, &failure(1)).await,
        &sha,
    );
    assert_claim_lost(t.ledger.release_claim(presumed_dead, &sha).await, &sha);

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.claimed_by, row.job_id, row.attempts),
        (ImageStatus::Uploading, Some(other), None, 0),
        "the other run's claim stands"
    );
    t.ledger
        .mark_processing(other, &sha, "job-2")
        .await
        .unwrap();
}

#[rstest]
#[tokio::test]
async fn a_claim_recover_took_back_is_lost_even_before_another_run_claims_it(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (presumed_dead, sha) = claim_taken_back(&t).await;

    assert_claim_lost(
        t.ledger
            .mark_processing(presumed_dead, &sha, "job-late")
            .await,
        &sha,
    );

    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!((row.status, row.job_id), (ImageStatus::New, None));
}

#[rstest]
#[tokio::test]
async fn requeue_without_a_list_puts_every_failed_image_back_to_new(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let failed = [
        image_in(&t.ledger, 1, ImageStatus::Failed).await.1,
        image_in(&t.ledger, 2, ImageStatus::Failed).await.1,
    ];
    let (_, done) = image_in(&t.ledger, 3, ImageStatus::Done).await;

    assert_eq!(t.ledger.requeue(None).await.unwrap(), 2);

    for sha in &failed {
        assert_eq!(status_of(&t.ledger, sha).await, ImageStatus::New);
    }
    assert_eq!(status_of(&t.ledger, &done).await, ImageStatus::Done);
}

#[rstest]
#[tokio::test]
async fn requeue_of_a_list_moves_only_its_failed_images(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (_, chosen) = image_in(&t.ledger, 1, ImageStatus::Failed).await;
    let (_, other) = image_in(&t.ledger, 2, ImageStatus::Failed).await;
    let (_, processing) = image_in(&t.ledger, 3, ImageStatus::Processing).await;

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
    let (run, sha) = image_in(ledger, n, ImageStatus::Processing).await;
    let gave_up = eraser_store::Failure {
        code: None,
        message: "job still unfinished after 10m (--job-timeout)".into(),
        retryable: true,
    };
    ledger.mark_failed(run, &sha, &gave_up).await.unwrap();
    sha
}

#[rstest]
#[tokio::test]
async fn retry_failed_puts_a_timed_out_job_back_to_processing_with_its_job_id(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let sha = timed_out(&t.ledger, 1).await;

    let retried = t.ledger.retry_failed(None).await.unwrap();

    assert_eq!((retried.to_poll, retried.to_upload), (1, 0));
    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!(row.status, ImageStatus::Processing);
    assert_eq!(row.job_id.as_deref(), Some("job-1"));
}

#[rstest]
#[tokio::test]
async fn retry_failed_puts_images_the_service_failed_or_never_accepted_back_to_new(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, job_failed) = image_in(&t.ledger, 1, ImageStatus::Processing).await;
    t.ledger
        .mark_failed(run, &job_failed, &failure(300_010))
        .await
        .unwrap();
    let (_, upload_failed) = image_in(&t.ledger, 2, ImageStatus::Failed).await;

    let retried = t.ledger.retry_failed(None).await.unwrap();

    assert_eq!((retried.to_poll, retried.to_upload), (0, 2));
    assert_eq!(status_of(&t.ledger, &job_failed).await, ImageStatus::New);
    assert_eq!(status_of(&t.ledger, &upload_failed).await, ImageStatus::New);
}

#[rstest]
#[tokio::test]
async fn retry_failed_of_a_list_moves_only_its_images_each_the_right_way(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let polled = timed_out(&t.ledger, 1).await;
    let (_, uploaded) = image_in(&t.ledger, 2, ImageStatus::Failed).await;
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

#[rstest]
#[tokio::test]
async fn an_upload_afresh_forgets_the_job_id_of_an_earlier_attempt(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (first, sha) = image_in(&t.ledger, 1, ImageStatus::Processing).await;
    t.ledger
        .mark_failed(first, &sha, &failure(300_010))
        .await
        .unwrap();
    t.ledger.retry_failed(None).await.unwrap();
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record(&t.ledger, run, 1, 1).await;

    let claims = t.ledger.claim_for_upload(run, 1).await.unwrap();

    assert_eq!(claims.len(), 1);
    let row = t.ledger.image(&sha).await.unwrap().unwrap();
    assert_eq!((row.status, row.job_id), (ImageStatus::Uploading, None));
}

#[rstest]
#[tokio::test]
async fn reset_done_returns_the_image_to_new_without_its_result(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (_, sha) = image_in(&t.ledger, 1, ImageStatus::Done).await;

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

#[rstest]
#[tokio::test]
async fn reset_done_is_refused_unless_done(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    for (_, sha, from) in images_not_in(&t.ledger, 100, &[ImageStatus::Done]).await {
        assert_refused(t.ledger.reset_done(&sha).await, &sha, from, "new");
        assert_eq!(status_of(&t.ledger, &sha).await, from);
    }
}

#[rstest]
#[tokio::test]
async fn a_transition_of_an_unknown_image_names_it(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let sha = crate::support::sha(404);

    let err = t
        .ledger
        .mark_processing(run, &sha, "job")
        .await
        .unwrap_err();

    assert!(
        matches!(&err, Error::UnknownImage { sha256 } if *sha256 == sha.to_string()),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Bug);
}
