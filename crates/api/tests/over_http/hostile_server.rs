use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eraser_api::{Client, CreateJob, Error, JobDone, JobId, JobState, RetryPolicy};
use eraser_tests::emulator::{Emulator, Hostile, Knobs, sample_jpeg};

use crate::util::{client, emulator, list_dir, write_input};

fn hostile(mode: Hostile) -> Knobs {
    Knobs {
        hostile: Some(mode),
        ..Knobs::default()
    }
}

/// A job created while the emulator behaves, then the emulator turned hostile.
async fn job_then(mode: Hostile, client: &Client, em: &Arc<Emulator>, dir: &Path) -> JobId {
    let path = write_input(dir, "in.jpg", &sample_jpeg(50));
    let id = client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap();
    em.set_knobs(hostile(mode));
    id
}

/// The done reply of a job under `mode` (which must leave get-job answering "done").
async fn done_under(mode: Hostile, client: &Client, em: &Arc<Emulator>, dir: &Path) -> JobDone {
    let id = job_then(mode, client, em, dir).await;
    match client.get_job(&id).await.unwrap() {
        JobState::Done(done) => done,
        other => panic!("expected done, got {other:?}"),
    }
}

#[tokio::test]
async fn a_huge_json_body_is_refused_as_too_large() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = job_then(Hostile::HugeJson, &client, &em, dir.path()).await;

    let err = client.get_job(&id).await.unwrap_err();

    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_endless_body_is_refused_as_too_large() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).max_response_bytes(256 * 1024).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = job_then(Hostile::EndlessBody, &client, &em, dir.path()).await;

    let err = client.get_job(&id).await.unwrap_err();

    assert!(
        matches!(err, Error::TooLarge { limit: 262144, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_drip_ends_in_a_retryable_timeout() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em)
        .request_timeout(Duration::from_millis(300))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = job_then(Hostile::SlowDrip, &client, &em, dir.path()).await;

    let err = client.get_job(&id).await.unwrap_err();

    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_html_page_with_200_is_a_retryable_decode_error() {
    let em = emulator(hostile(Hostile::HtmlErrorPage200)).await;
    let client = client(&em).retry(RetryPolicy::none()).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "in.jpg", &sample_jpeg(51));

    let err = client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn done_with_an_empty_output_url_is_a_protocol_error() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = job_then(Hostile::EmptyOutputUrl, &client, &em, dir.path()).await;

    let err = client.get_job(&id).await.unwrap_err();

    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn done_without_output_url_is_a_protocol_error() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = job_then(Hostile::MissingOutputUrl, &client, &em, dir.path()).await;

    let err = client.get_job(&id).await.unwrap_err();

    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
}

#[tokio::test]
async fn an_output_that_is_not_an_image_is_refused_and_leaves_nothing() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let done = done_under(Hostile::NotAnImageOutput, &client, &em, dir.path()).await;
    let out = tempfile::tempdir().unwrap();

    let err = client
        .download(&done.output_urls[0], &out.path().join("in.jpg"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::NotAnImage { .. }), "{err:?}");
    assert!(list_dir(out.path()).is_empty());
}

#[tokio::test]
async fn a_file_output_url_is_never_fetched() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let done = done_under(Hostile::FileOutputUrl, &client, &em, dir.path()).await;
    let out = tempfile::tempdir().unwrap();

    let err = client
        .download(&done.output_urls[0], &out.path().join("in.jpg"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::UnsupportedUrl { .. }), "{err:?}");
    assert!(list_dir(out.path()).is_empty());
}

#[tokio::test]
async fn a_redirect_to_a_file_url_is_refused_and_leaves_nothing() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let done = done_under(Hostile::RedirectToFile, &client, &em, dir.path()).await;
    let out = tempfile::tempdir().unwrap();

    let err = client
        .download(&done.output_urls[0], &out.path().join("in.jpg"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::UnsupportedUrl { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(list_dir(out.path()).is_empty());
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let done = done_under(Hostile::RedirectToOtherScheme, &client, &em, dir.path()).await;
    let out = tempfile::tempdir().unwrap();

    let err = client
        .download(&done.output_urls[0], &out.path().join("in.jpg"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::UnsupportedUrl { .. }), "{err:?}");
    assert!(list_dir(out.path()).is_empty());
}

#[tokio::test]
async fn a_traversal_in_the_output_url_cannot_move_the_destination() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("sub").join("in.jpg");
    std::fs::create_dir(out.path().join("sub")).unwrap();

    for mode in [
        Hostile::TraversalOutputUrl,
        Hostile::EncodedTraversalOutputUrl,
    ] {
        em.set_knobs(Knobs::default());
        let done = done_under(mode, &client, &em, dir.path()).await;
        // Whatever the CDN answers, a result can only ever land at `dest`.
        let _ = client.download(&done.output_urls[0], &dest).await;
        assert_eq!(list_dir(out.path()), ["sub"]);
        let inside = list_dir(&out.path().join("sub"));
        assert!(inside.is_empty() || inside == ["in.jpg"], "{inside:?}");
    }
}
