use std::time::Duration;

use eraser_store::{Error, ImageStatus, Ledger, RunId};

use crate::support::{close, fresh, record, sql, status_of};

const STALE: Duration = Duration::from_secs(60);

/// A run with `n` claimed images; returns the run and the claimed hashes.
async fn run_with_claims(
    ledger: &Ledger,
    first: u64,
    n: u64,
) -> (RunId, Vec<eraser_store::Sha256>) {
    let run = ledger
        .begin_run("test", std::path::Path::new("/out"))
        .await
        .unwrap();
    record(ledger, run, first, n).await;
    let claims = ledger
        .claim_for_upload(run, u32::try_from(n).unwrap())
        .await
        .unwrap();
    assert_eq!(claims.len() as u64, n);
    (run, claims.into_iter().map(|c| c.sha256).collect())
}

/// Rewrites a run's registry row behind the ledger's back.
async fn set_run(path: &std::path::Path, run: RunId, assignments: &str) {
    let mut conn = sql(path).await;
    sqlx::query(&format!("update runs set {assignments} where id = ?1"))
        .bind(run.0)
        .execute(&mut conn)
        .await
        .unwrap();
    close(conn).await;
}

#[tokio::test]
async fn a_live_runs_claims_are_left_alone() {
    let t = fresh().await;
    let (run, shas) = run_with_claims(&t.ledger, 0, 3).await;

    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 0);

    for sha in &shas {
        let row = t.ledger.image(sha).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.claimed_by),
            (ImageStatus::Uploading, Some(run))
        );
    }
}

#[tokio::test]
async fn claims_of_a_finished_run_go_back_to_new_as_possible_repeat_uploads() {
    let t = fresh().await;
    let (run, shas) = run_with_claims(&t.ledger, 0, 3).await;
    t.ledger.finish_run(run, "interrupted", "{}").await.unwrap();

    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 3);

    for sha in &shas {
        let row = t.ledger.image(sha).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.claimed_by, row.repeat_uploads),
            (ImageStatus::New, None, 1)
        );
    }
}

#[tokio::test]
async fn claims_of_a_run_whose_process_is_gone_from_this_host_are_taken_back() {
    let t = fresh().await;
    let (run, shas) = run_with_claims(&t.ledger, 0, 2).await;
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    set_run(&t.path, run, &format!("pid = {pid}")).await;

    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 2);

    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::New);
}

#[tokio::test]
async fn a_stale_heartbeat_counts_as_dead_even_with_a_live_pid() {
    let t = fresh().await;
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    set_run(&t.path, run, "heartbeat_at = '2000-01-01T00:00:00.000000Z'").await;

    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 1);

    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::New);
}

#[tokio::test]
async fn another_hosts_run_is_trusted_until_its_heartbeat_goes_stale() {
    let t = fresh().await;
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    set_run(&t.path, run, "host = 'elsewhere.invalid', pid = 1").await;

    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 0);
    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::Uploading);

    set_run(&t.path, run, "heartbeat_at = '2000-01-01T00:00:00.000000Z'").await;
    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 1);
    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::New);
}

#[tokio::test]
async fn a_heartbeat_keeps_a_run_fresh() {
    let t = fresh().await;
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    set_run(&t.path, run, "heartbeat_at = '2000-01-01T00:00:00.000000Z'").await;

    t.ledger.heartbeat(run).await.unwrap();

    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 0);
    assert_eq!(status_of(&t.ledger, &shas[0]).await, ImageStatus::Uploading);
}

#[tokio::test]
async fn claims_of_a_run_no_longer_registered_are_taken_back() {
    let t = fresh().await;
    let (run, shas) = run_with_claims(&t.ledger, 0, 2).await;
    let mut conn = sql(&t.path).await;
    sqlx::query("pragma foreign_keys = on")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("delete from runs where id = ?1")
        .bind(run.0)
        .execute(&mut conn)
        .await
        .unwrap();
    close(conn).await;

    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 2);

    assert_eq!(status_of(&t.ledger, &shas[1]).await, ImageStatus::New);
}

#[tokio::test]
async fn processing_images_stay_to_be_polled() {
    let t = fresh().await;
    let (run, shas) = run_with_claims(&t.ledger, 0, 1).await;
    t.ledger.mark_processing(&shas[0], "job").await.unwrap();
    t.ledger.finish_run(run, "interrupted", "{}").await.unwrap();

    assert_eq!(t.ledger.recover(STALE).await.unwrap(), 0);

    assert_eq!(
        status_of(&t.ledger, &shas[0]).await,
        ImageStatus::Processing
    );
}

#[tokio::test]
async fn a_heartbeat_for_an_unknown_run_is_refused() {
    let t = fresh().await;

    let err = t.ledger.heartbeat(RunId(4242)).await.unwrap_err();

    assert!(matches!(err, Error::UnknownRun { run: 4242 }), "{err:?}");
}
