//! The one-at-a-time reference: a client like the web page, written with reqwest directly —
//! upload one image, poll its job every few seconds until done, download the result, next.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::BenchResult;

const CREATE_JOB: &str = "/api/magiceraser/v3/ai-image-watermark-remove-auto/create-job";
const GET_JOB: &str = "/api/magiceraser/v2/ai-remove-object/get-job/";
const DONE: i64 = 100_000;
const IN_PROGRESS: i64 = 300_006;

/// Processes `files` one after the other through the API at `api` (loopback only), polling
/// every `poll`; returns the total wall time.
pub fn run(api: &str, files: &[PathBuf], poll: Duration) -> BenchResult<Duration> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let started = Instant::now();
        for file in files {
            one(&client, api, file, poll).await?;
        }
        Ok(started.elapsed())
    })
}

async fn one(
    client: &reqwest::Client,
    api: &str,
    file: &PathBuf,
    poll: Duration,
) -> BenchResult<()> {
    let bytes = tokio::fs::read(file).await?;
    let name = file
        .file_name()
        .map_or_else(|| "image.jpg".into(), |n| n.to_string_lossy().into_owned());
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name)
        .mime_str("image/jpeg")?;
    let form = reqwest::multipart::Form::new().part("original_image_file", part);
    let created: Value = client
        .post(format!("{api}{CREATE_JOB}"))
        .header("Product-Serial", "00000000-0000-4000-8000-000000000001")
        .header("Product-Code", "067003")
        .multipart(form)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let job_id = match (code(&created), created.pointer("/result/job_id")) {
        (DONE, Some(Value::String(id))) => id.clone(),
        _ => return Err(format!("create-job refused: {created}").into()),
    };
    let output_url = loop {
        tokio::time::sleep(poll).await;
        let job: Value = client
            .get(format!("{api}{GET_JOB}{job_id}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match code(&job) {
            DONE => match job.pointer("/result/output_url/0") {
                Some(Value::String(url)) => break url.clone(),
                _ => return Err(format!("done without output_url: {job}").into()),
            },
            IN_PROGRESS => continue,
            _ => return Err(format!("job failed: {job}").into()),
        }
    };
    if !output_url.starts_with("http://127.0.0.1:") {
        return Err(format!("refusing a non-loopback output url {output_url}").into());
    }
    let result = client
        .get(&output_url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    if result.is_empty() {
        return Err("empty result".into());
    }
    Ok(())
}

fn code(reply: &Value) -> i64 {
    reply.get("code").and_then(Value::as_i64).unwrap_or(-1)
}
