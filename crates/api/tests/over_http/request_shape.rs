use eraser_api::{CreateJob, Token};
use eraser_tests::emulator::{Knobs, sample_jpeg, sample_png};

use crate::util::{SERIAL, client, emulator, sha256, write_input};

/// The captured file name.
const CAPTURED_NAME: &str = "Horizon-Towers-Orchard-River-Valley-Singapore.jpg";

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn upload_matches_the_capture_field_by_field() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = sample_jpeg(10);
    let path = write_input(dir.path(), CAPTURED_NAME, &input);

    let job = CreateJob {
        path: &path,
        file_name: None,
        expected_sha256: None,
    };
    let id = client.create_job(&job).await.unwrap();

    let uploads = em.uploads();
    assert_eq!(uploads.len(), 1);
    let upload = &uploads[0];
    assert_eq!(upload.field_name, "original_image_file");
    assert_eq!(upload.file_name.as_deref(), Some(CAPTURED_NAME));
    assert_eq!(upload.part_content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(upload.sha256, hex::encode(sha256(&input)));
    assert_eq!(upload.size, input.len() as u64);
    assert_eq!(upload.job_id.as_deref(), Some(id.as_str()));

    let h = &upload.headers;
    assert_eq!(header(h, "product-serial"), Some(SERIAL));
    assert_eq!(header(h, "product-code"), Some("067003"));
    assert_eq!(header(h, "origin"), Some("https://magiceraser.org"));
    assert_eq!(header(h, "referer"), Some("https://magiceraser.org/"));
    assert_eq!(header(h, "accept"), Some("*/*"));
    let expected_ua = format!("eraser/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(header(h, "user-agent"), Some(expected_ua.as_str()));
    assert!(
        header(h, "content-type").is_some_and(|v| v.starts_with("multipart/form-data; boundary="))
    );
    assert!(
        header(h, "content-length").is_some(),
        "the streamed body has a known length"
    );
    assert_eq!(
        header(h, "authorization"),
        None,
        "no token configured, no Authorization"
    );
}

#[tokio::test]
async fn authorization_is_sent_verbatim_when_a_token_is_set() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em)
        .token(Some(Token::new("Bearer t0k/=+")))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "a.jpg", &sample_jpeg(11));

    client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap();

    assert_eq!(
        header(&em.uploads()[0].headers, "authorization"),
        Some("Bearer t0k/=+")
    );
}

#[tokio::test]
async fn an_anonymous_file_name_replaces_the_path_name() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = sample_jpeg(12);
    let path = write_input(dir.path(), "private holiday name.jpg", &input);
    let anonymous = format!("{}.jpg", hex::encode(sha256(&input)));

    let job = CreateJob {
        path: &path,
        file_name: Some(&anonymous),
        expected_sha256: None,
    };
    client.create_job(&job).await.unwrap();

    assert_eq!(
        em.uploads()[0].file_name.as_deref(),
        Some(anonymous.as_str())
    );
}

#[tokio::test]
async fn part_content_type_follows_the_bytes_not_the_extension() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "really-a-png.jpg", &sample_png(13));

    client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap();

    assert_eq!(
        em.uploads()[0].part_content_type.as_deref(),
        Some("image/png")
    );
}

#[tokio::test]
async fn get_job_carries_the_api_headers_and_extras() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).header("X-Extra", "yes").build().unwrap();

    // An unknown id is fine here: only the request's headers matter.
    let _ = client.get_job(&eraser_api::JobId::new("no-such-job")).await;

    let counters = em.counters();
    let h = counters.api_headers.last().expect("one API request");
    assert_eq!(header(h, "product-serial"), Some(SERIAL));
    assert_eq!(header(h, "product-code"), Some("067003"));
    assert_eq!(header(h, "origin"), Some("https://magiceraser.org"));
    assert_eq!(header(h, "x-extra"), Some("yes"));
}
