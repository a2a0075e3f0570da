use std::path::Path;

use eraser_api::{CreateJob, Error, JobState};
use eraser_tests::emulator::{Knobs, sample_jpeg};

use crate::util::{client, emulator, sha256, wait_done, write_input};

fn job(path: &Path) -> CreateJob<'_> {
    CreateJob {
        path,
        file_name: None,
        expected_sha256: None,
    }
}

#[tokio::test]
async fn a_refused_create_job_surfaces_code_and_message_without_retry() {
    let em = emulator(Knobs {
        refuse_code: Some(300002),
        ..Knobs::default()
    })
    .await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "a.jpg", &sample_jpeg(30));

    let err = client.create_job(&job(&path)).await.unwrap_err();

    let Error::Api { code, message } = &err else {
        panic!("expected Api, got {err:?}")
    };
    assert_eq!(*code, 300002);
    assert!(!message.is_empty());
    assert!(!err.is_retryable());
    assert_eq!(em.counters().create_job_requests, 1);
}

#[tokio::test]
async fn a_failed_job_reports_its_code_and_message() {
    let em = emulator(Knobs {
        p_job_fail: 1.0,
        job_fail_code: 300011,
        ..Knobs::default()
    })
    .await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "a.jpg", &sample_jpeg(31));
    let id = client.create_job(&job(&path)).await.unwrap();

    let mut state = client.get_job(&id).await.unwrap();
    for _ in 0..100 {
        if state != JobState::InProgress {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        state = client.get_job(&id).await.unwrap();
    }

    let JobState::Failed { code, message } = state else {
        panic!("expected Failed, got {state:?}")
    };
    assert_eq!(code, 300011);
    assert!(!message.is_empty());
}

#[tokio::test]
async fn a_non_image_is_refused_before_anything_is_sent() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(
        dir.path(),
        "notes.jpg",
        b"just some text, named like a photo",
    );

    let err = client.create_job(&job(&path)).await.unwrap_err();

    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(em.counters().create_job_requests, 0);
}

#[tokio::test]
async fn an_empty_file_is_refused_before_anything_is_sent() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "empty.jpg", b"");

    let err = client.create_job(&job(&path)).await.unwrap_err();

    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(em.counters().create_job_requests, 0);
}

#[tokio::test]
async fn a_file_over_the_upload_limit_is_refused_before_sending() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).max_upload_bytes(100).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = sample_jpeg(32);
    let path = write_input(dir.path(), "big.jpg", &input);

    let err = client.create_job(&job(&path)).await.unwrap_err();

    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let expected = format!("{} bytes, over the limit of 100", input.len());
    assert!(err.to_string().contains(&expected), "{err}");
    assert_eq!(em.counters().create_job_requests, 0);
}

#[tokio::test]
async fn a_missing_file_is_an_io_error() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let err = client
        .create_job(&job(&dir.path().join("gone.jpg")))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(em.counters().create_job_requests, 0);
}

#[tokio::test]
async fn a_hash_mismatch_aborts_the_upload_and_no_job_is_created() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Bigger than one chunk, so part of the body does go out before the abort.
    let mut input = sample_jpeg(33);
    input.resize(300 * 1024, 0);
    let path = write_input(dir.path(), "changed.jpg", &input);

    let stale = CreateJob {
        path: &path,
        file_name: None,
        expected_sha256: Some(sha256(b"the old bytes")),
    };
    let err = client.create_job(&stale).await.unwrap_err();

    assert!(matches!(err, Error::InputChanged { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let counters = em.counters();
    assert_eq!(counters.create_jobs, 0);
    assert!(
        em.uploads().is_empty(),
        "the emulator read a complete upload"
    );
}

#[tokio::test]
async fn a_matching_hash_uploads_normally() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut input = sample_jpeg(34);
    input.resize(300 * 1024, 0);
    let path = write_input(dir.path(), "same.jpg", &input);

    let fresh = CreateJob {
        path: &path,
        file_name: None,
        expected_sha256: Some(sha256(&input)),
    };
    let id = client.create_job(&fresh).await.unwrap();
    wait_done(&client, &id).await;

    assert_eq!(em.uploads()[0].sha256, hex::encode(sha256(&input)));
}
