use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eraser_api::{Client, ClientBuilder, CreateJob, JobDone};
use eraser_tests::emulator::{Emulator, Knobs, sample_jpeg, source_sha256};
use tempfile::TempDir;

use crate::util::{Retries, client, emulator, record_and_heal, sha256, wait_done, write_input};

/// An emulator, a client whose first retry heals the emulator, and one input file.
async fn setup() -> (Arc<Emulator>, Client, Retries, TempDir, PathBuf) {
    setup_with(|builder| builder).await
}

/// [`setup`] with the client's settings changed by `configure`.
async fn setup_with(
    configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> (Arc<Emulator>, Client, Retries, TempDir, PathBuf) {
    let em = emulator(Knobs::default()).await;
    let retries = Retries::default();
    let client = configure(client(&em))
        .on_retry(record_and_heal(&retries, &em, Knobs::default()))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "in.jpg", &sample_jpeg(20));
    (em, client, retries, dir, path)
}

fn job(path: &std::path::Path) -> CreateJob<'_> {
    CreateJob {
        path,
        file_name: None,
        expected_sha256: None,
    }
}

async fn done_job(client: &Client, path: &std::path::Path) -> JobDone {
    let id = client.create_job(&job(path)).await.unwrap();
    wait_done(client, &id).await
}

#[tokio::test]
async fn http_500_on_create_job_is_retried_and_the_file_reuploaded() {
    let (em, client, retries, _dir, path) = setup().await;
    em.set_knobs(Knobs {
        p_http_500: 1.0,
        ..Knobs::default()
    });

    client.create_job(&job(&path)).await.unwrap();

    let events = retries.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].operation, events[0].status, events[0].attempt),
        ("create-job", Some(500), 1)
    );
    let counters = em.counters();
    assert_eq!((counters.create_job_requests, counters.create_jobs), (2, 1));
}

#[tokio::test]
async fn http_429_retry_after_is_honoured_as_the_delay() {
    let (em, client, retries, _dir, path) = setup().await;
    em.set_knobs(Knobs {
        p_http_429: 1.0,
        retry_after_secs: 1,
        ..Knobs::default()
    });

    client.create_job(&job(&path)).await.unwrap();

    let events = retries.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, Some(429));
    assert!(
        events[0].delay >= Duration::from_secs(1),
        "waited only {:?}",
        events[0].delay
    );
}

/// A caller that schedules its own uploads gets a refused create-job back at once, with the
/// service's `Retry-After`, and nothing is retried behind its back.
#[tokio::test]
async fn a_429_on_create_job_goes_back_to_a_caller_that_asked_for_it() {
    let (em, client, retries, _dir, path) =
        setup_with(|builder| builder.throttled_uploads_to_caller(true)).await;
    em.set_knobs(Knobs {
        p_http_429: 1.0,
        retry_after_secs: 2,
        ..Knobs::default()
    });

    let err = client.create_job(&job(&path)).await.unwrap_err();

    assert_eq!(err.http_status(), Some(429), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert!(retries.events().is_empty(), "{:?}", retries.events());
    let counters = em.counters();
    assert_eq!((counters.create_job_requests, counters.create_jobs), (1, 0));
}

/// Only uploads are handed back: a `get-job` answered 429 is still waited out and retried.
#[tokio::test]
async fn a_429_on_get_job_is_retried_even_when_uploads_are_handed_back() {
    let (em, client, retries, _dir, path) =
        setup_with(|builder| builder.throttled_uploads_to_caller(true)).await;
    let id = client.create_job(&job(&path)).await.unwrap();
    em.set_knobs(Knobs {
        p_http_429: 1.0,
        retry_after_secs: 0,
        ..Knobs::default()
    });

    wait_done(&client, &id).await;

    let events = retries.events();
    assert_eq!(
        (events[0].operation, events[0].status),
        ("get-job", Some(429))
    );
}

#[tokio::test]
async fn http_500_on_get_job_is_retried() {
    let (em, client, retries, _dir, path) = setup().await;
    let id = client.create_job(&job(&path)).await.unwrap();
    em.set_knobs(Knobs {
        p_http_500: 1.0,
        ..Knobs::default()
    });

    wait_done(&client, &id).await;

    let events = retries.events();
    assert_eq!(
        (events[0].operation, events[0].status),
        ("get-job", Some(500))
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let (em, client, retries, _dir, path) = setup().await;
    em.set_knobs(Knobs {
        p_drop: 1.0,
        ..Knobs::default()
    });

    client.create_job(&job(&path)).await.unwrap();

    let events = retries.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, None, "a dropped connection has no status");
    assert_eq!(em.counters().create_jobs, 1);
}

#[tokio::test]
async fn a_garbage_body_is_retried() {
    let (em, client, retries, _dir, path) = setup().await;
    em.set_knobs(Knobs {
        p_garbage: 1.0,
        ..Knobs::default()
    });

    client.create_job(&job(&path)).await.unwrap();

    assert_eq!(retries.events().len(), 1);
    assert!(em.counters().faults_injected >= 1);
}

#[tokio::test]
async fn a_cdn_error_is_retried() {
    let (em, client, retries, dir, path) = setup().await;
    let done = done_job(&client, &path).await;
    em.set_knobs(Knobs {
        p_cdn_error: 1.0,
        ..Knobs::default()
    });

    let dest = dir.path().join("out.jpg");
    client.download(&done.output_urls[0], &dest).await.unwrap();

    let events = retries.events();
    assert_eq!(events[0].operation, "download");
    assert!(
        matches!(events[0].status, Some(500 | 503)),
        "{:?}",
        events[0].status
    );
    assert!(source_sha256(&std::fs::read(&dest).unwrap()).is_some());
}

#[tokio::test]
async fn a_truncated_download_is_retried_and_lands_whole() {
    let (em, client, retries, dir, path) = setup().await;
    let input = std::fs::read(&path).unwrap();
    let done = done_job(&client, &path).await;
    em.set_knobs(Knobs {
        p_truncate: 1.0,
        ..Knobs::default()
    });

    let dest = dir.path().join("out.jpg");
    let saved = client.download(&done.output_urls[0], &dest).await.unwrap();

    assert_eq!(retries.events()[0].operation, "download");
    let output = std::fs::read(&dest).unwrap();
    assert_eq!(saved.sha256, sha256(&output));
    assert_eq!(source_sha256(&output), Some(hex::encode(sha256(&input))));
}

/// Two quick attempts: enough to see how a call that keeps failing ends.
fn two_attempts() -> eraser_api::RetryPolicy {
    eraser_api::RetryPolicy {
        max_attempts: 2,
        ..crate::util::fast_retry()
    }
}

/// A client of a port nothing listens on (two attempts), and an input for it.
async fn client_of_a_closed_port() -> (Client, TempDir, PathBuf) {
    let em = emulator(Knobs::default()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let client = client(&em)
        .base_url(format!("http://127.0.0.1:{port}"))
        .retry(two_attempts())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "in.jpg", &sample_jpeg(21));
    (client, dir, path)
}

#[tokio::test]
async fn a_refused_connection_says_the_service_was_not_reached() {
    let (client, _dir, path) = client_of_a_closed_port().await;

    let err = client.create_job(&job(&path)).await.unwrap_err();

    assert!(err.is_unreached(), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_upload_that_could_not_connect_counts_no_lost_reply() {
    let (client, _dir, path) = client_of_a_closed_port().await;

    let submitted = client.submit(&job(&path)).await;

    let err = submitted.result.unwrap_err();
    assert!(!err.maybe_delivered(), "{err:?}");
    assert_eq!(submitted.lost_replies, 0);
}

#[tokio::test]
async fn a_reply_lost_after_the_job_was_made_is_retried_and_counted_as_a_possible_repeat() {
    let (em, client, retries, _dir, path) = setup().await;
    em.set_knobs(Knobs {
        p_lose_reply: 1.0,
        ..Knobs::default()
    });

    let submitted = client.submit(&job(&path)).await;

    submitted.result.unwrap();
    assert_eq!(submitted.lost_replies, 1);
    assert_eq!(retries.events().len(), 1);
    let counters = em.counters();
    assert_eq!(
        (counters.create_jobs, counters.replies_lost),
        (2, 1),
        "the service made a job of each upload"
    );
}

#[tokio::test]
async fn a_connection_dropped_after_the_request_is_not_taken_for_an_unreached_service() {
    let (em, _, _, _dir, path) = setup().await;
    em.set_knobs(Knobs {
        p_drop: 1.0,
        ..Knobs::default()
    });
    let client = client(&em).retry(two_attempts()).build().unwrap();

    let err = client.create_job(&job(&path)).await.unwrap_err();

    assert!(!err.is_unreached(), "the request was sent: {err:?}");
    assert!(err.is_retryable());
}
