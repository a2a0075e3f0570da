use std::path::Path;
use std::time::Duration;

use eraser_store::{Error, ImageStatus, Ledger, OpenOptions, RunId, Sha256};
use rstest::rstest;

use crate::support::{
    Backend, age_heartbeat, delete_run_behind_the_ledgers_back, fresh, record, set_run_host,
    set_run_pid, status_of,
};

/// A heartbeat older than the default lease.
const LONG_AGO: i64 = 3600;

/// A run with `n` claimed images; returns the run and the claimed hashes.
async fn run_with_claims(ledger: &Ledger, first: u64, n: u64) -> (RunId, Vec<Sha256>) {
    let run = ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record(ledger, run, first, n).await;
    let claims = ledger
        .claim_for_upload(run, u32::try_from(n).unwrap())
        .await
        .unwrap();
    assert_eq!(claims.len() as u64, n);
    (run, claims.into_iter().map(|c| c.sha256).collect())
}

#[rstest]
#[tokio::test]
async fn a_live_runs_claims_are_left_alone(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 3).await;

    assert_eq!(t.ledger.recover().await.unwrap(), 0);

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
async fn claims_of_a_finished_run_go_back_to_new_as_possible_repeat_uploads(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 3).await;
    t.ledger.finish_run(run, "interrupted", "{}").await.unwrap();

    assert_eq!(t.ledger.recover().await.unwrap(), 3);

    for sha in &shas {
        let row = t.ledger.image(sha).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.claimed_by, row.repeat_uploads),
            (ImageStatus::New, None, 1)
        );
    }
}

#[rstest]
#[tokio::test]
async fn claims_of_a_run_whose_process_is_gone_from_this_host_are_taken_back(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 2).await;
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    set_run_pid(&t, run, i64::from(pid)).await;

    assert_eq!(t.ledger.recover().await.unwrap(), 2);

    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::New);
}

#[rstest]
#[tokio::test]
async fn a_stale_heartbeat_counts_as_dead_even_with_a_live_pid(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    age_heartbeat(&t, run, LONG_AGO).await;

    assert_eq!(t.ledger.recover().await.unwrap(), 1);

    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::New);
}

#[rstest]
#[tokio::test]
async fn another_hosts_run_is_trusted_until_its_heartbeat_goes_stale(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    set_run_host(&t, run, "elsewhere.invalid").await;
    set_run_pid(&t, run, 1).await;

    assert_eq!(t.ledger.recover().await.unwrap(), 0);
    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::Uploading);

    age_heartbeat(&t, run, LONG_AGO).await;
    assert_eq!(t.ledger.recover().await.unwrap(), 1);
    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::New);
}

#[rstest]
#[tokio::test]
async fn a_shorter_lease_presumes_a_silent_run_dead_sooner(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    set_run_host(&t, run, "elsewhere.invalid").await;
    age_heartbeat(&t, run, 30).await;
    assert_eq!(
        t.ledger.recover().await.unwrap(),
        0,
        "within the default lease"
    );

    let short = OpenOptions::new()
        .lease(Duration::from_secs(20))
        .open(&t.location)
        .await
        .unwrap();
    assert_eq!(short.recover().await.unwrap(), 1);
    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::New);
}

#[rstest]
#[tokio::test]
async fn a_heartbeat_keeps_a_run_fresh(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    age_heartbeat(&t, run, LONG_AGO).await;

    t.ledger.heartbeat(run).await.unwrap();

    assert_eq!(t.ledger.recover().await.unwrap(), 0);
    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::Uploading);
}

#[rstest]
#[tokio::test]
async fn claims_of_a_run_no_longer_registered_are_taken_back(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 2).await;
    delete_run_behind_the_ledgers_back(&t, run).await;

    assert_eq!(t.ledger.recover().await.unwrap(), 2);

    assert_eq!(status_of(&t.ledger, &shas[1]).await, ImageStatus::New);
}

#[rstest]
#[tokio::test]
async fn processing_images_stay_to_be_polled(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    t.ledger
        .mark_processing(run, &shas[0], "job")
        .await
        .unwrap();
    t.ledger.finish_run(run, "interrupted", "{}").await.unwrap();

    assert_eq!(t.ledger.recover().await.unwrap(), 0);

    assert_eq!(
        status_of(&t.ledger, &shas[0]).await,
        ImageStatus::Processing
    );
}

#[rstest]
#[tokio::test]
async fn a_heartbeat_for_an_unknown_run_is_refused(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };

    let err = t.ledger.heartbeat(RunId(4242)).await.unwrap_err();

    assert!(matches!(err, Error::UnknownRun { run: 4242 }), "{err:?}");
}
