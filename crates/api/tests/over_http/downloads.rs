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

/// Serves `body` (announced as `announced` bytes) once per connection on 127.0.0.1, to any
/// request; the connection is closed after the body. Returns the URL.
async fn serve_once(body: Vec<u8>, announced: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}/output/big.jpg")
}

/// A JPEG-looking body of `len` bytes, different at every position.
fn big_jpeg(len: usize) -> Vec<u8> {
    let mut body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    body[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    body
}

#[tokio::test]
async fn a_result_larger_than_the_write_buffer_is_streamed_to_dest_whole() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let body = big_jpeg(3 * 1024 * 1024 + 17);
    let url = serve_once(body.clone(), body.len()).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.jpg");

    let saved = client.download(&url, &dest).await.unwrap();

    assert_eq!(saved.bytes, body.len() as u64);
    assert_eq!(saved.sha256, crate::util::sha256(&body));
    assert!(
        std::fs::read(&dest).unwrap() == body,
        "dest differs from the body"
    );
    assert_eq!(list_dir(dir.path()), ["big.jpg"]);
}

#[tokio::test]
async fn a_large_result_cut_short_leaves_nothing_at_dest_and_no_temp_file() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em)
        .retry(RetryPolicy {
            max_attempts: 1,
            ..crate::util::fast_retry()
        })
        .build()
        .unwrap();
    let body = big_jpeg(2 * 1024 * 1024);
    let url = serve_once(body.clone(), body.len() + 4096).await;
    let dir = tempfile::tempdir().unwrap();

    let err = client
        .download(&url, &dir.path().join("big.jpg"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert!(
        list_dir(dir.path()).is_empty(),
        "left behind: {:?}",
        list_dir(dir.path())
    );
}
