use eraser_api::{CreateJob, Error, RetryPolicy};
use eraser_tests::emulator::{Knobs, sample_jpeg};

use crate::util::{client, emulator, list_dir, wait_done, write_input};

#[tokio::test]
async fn non_http_urls_are_refused_without_fetching() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.jpg");

    for url in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x.jpg",
        "data:image/jpeg;base64,/9j/4A==",
    ] {
        let err = client.download(url, &dest).await.unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedUrl { .. }),
            "{url}: {err:?}"
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(em.counters().download_requests, 0);
    assert!(list_dir(dir.path()).is_empty());
}

#[tokio::test]
async fn a_truncated_download_leaves_nothing_at_dest_and_no_temp_file() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em)
        .retry(RetryPolicy {
            max_attempts: 2,
            ..crate::util::fast_retry()
        })
        .build()
        .unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let path = write_input(inputs.path(), "a.jpg", &sample_jpeg(40));
    let id = client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap();
    let done = wait_done(&client, &id).await;
    em.set_knobs(Knobs {
        p_truncate: 1.0,
        ..Knobs::default()
    });
    let out = tempfile::tempdir().unwrap();

    let err = client
        .download(&done.output_urls[0], &out.path().join("a.jpg"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(em.counters().download_requests, 2);
    assert!(
        list_dir(out.path()).is_empty(),
        "left behind: {:?}",
        list_dir(out.path())
    );
}

#[tokio::test]
async fn a_download_over_the_limit_is_refused_and_leaves_nothing() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).max_download_bytes(64).build().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let path = write_input(inputs.path(), "a.jpg", &sample_jpeg(41));
    let id = client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap();
    let done = wait_done(&client, &id).await;
    let out = tempfile::tempdir().unwrap();

    let err = client
        .download(&done.output_urls[0], &out.path().join("a.jpg"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::TooLarge { limit: 64, .. }), "{err:?}");
    assert!(list_dir(out.path()).is_empty());
}

#[tokio::test]
async fn a_download_replaces_the_file_at_dest_whole() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "a.jpg", &sample_jpeg(42));
    let id = client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap();
    let done = wait_done(&client, &id).await;
    let dest = write_input(dir.path(), "out.jpg", b"an older result");

    let saved = client.download(&done.output_urls[0], &dest).await.unwrap();

    assert_eq!(std::fs::metadata(&dest).unwrap().len(), saved.bytes);
    assert_eq!(list_dir(dir.path()), ["a.jpg", "out.jpg"]);
}
