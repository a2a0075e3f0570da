use std::time::Duration;

use eraser_api::{CreateJob, ImageFormat, JobState};
use eraser_tests::emulator::{Knobs, sample_jpeg, source_sha256};

use crate::util::{client, emulator, sha256, wait_done, write_input};

#[tokio::test]
async fn create_poll_download_yields_the_output_of_this_input() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = sample_jpeg(1);
    let path = write_input(dir.path(), "photo.jpg", &input);

    let job = CreateJob {
        path: &path,
        file_name: None,
        expected_sha256: Some(sha256(&input)),
    };
    let id = client.create_job(&job).await.unwrap();
    let done = wait_done(&client, &id).await;
    let dest = dir.path().join("photo.clean.jpg");
    let saved = client.download(&done.output_urls[0], &dest).await.unwrap();

    let output = std::fs::read(&dest).unwrap();
    assert_eq!(source_sha256(&output), Some(hex::encode(sha256(&input))));
    assert_eq!(saved.sha256, sha256(&output));
    assert_eq!(saved.bytes, output.len() as u64);
    assert_eq!(saved.format, ImageFormat::Jpeg);
    let counters = em.counters();
    assert_eq!((counters.create_jobs, counters.downloads), (1, 1));
}

#[tokio::test]
async fn a_job_still_processing_reads_as_in_progress() {
    let em = emulator(Knobs {
        processing_time: Duration::from_secs(600),
        ..Knobs::default()
    })
    .await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "a.jpg", &sample_jpeg(2));

    let job = CreateJob {
        path: &path,
        file_name: None,
        expected_sha256: None,
    };
    let id = client.create_job(&job).await.unwrap();
    assert_eq!(client.get_job(&id).await.unwrap(), JobState::InProgress);
}

#[tokio::test]
async fn a_done_job_keeps_the_raw_reply_and_its_credits() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "a.jpg", &sample_jpeg(3));

    let id = client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap();
    let done = wait_done(&client, &id).await;
    let raw: serde_json::Value = serde_json::from_str(&done.raw).unwrap();
    assert_eq!(raw["code"], 100000);
    assert_eq!(raw["result"]["output_url"][0], done.output_urls[0].as_str());
    assert_eq!(
        done.credits_states,
        raw["result"]["credits_states"].as_i64()
    );
}
