//! The emulator over real HTTP on 127.0.0.1: protocol shapes, refusals, faults, hostile modes.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connection::{ConnRegistry, ControlledListener};
use super::*;

const CREATE_JOB: &str = "/api/magiceraser/v3/ai-image-watermark-remove-auto/create-job";
const GET_JOB: &str = "/api/magiceraser/v2/ai-remove-object/get-job/";
const SERIAL: &str = "d92a85a2-7f15-40d0-975d-518d1610eb71";

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn image_form(bytes: Vec<u8>) -> Form {
    let part = Part::bytes(bytes)
        .file_name("Horizon-Towers.jpg")
        .mime_str("image/jpeg")
        .expect("mime");
    Form::new().part("original_image_file", part)
}

async fn create_job_with(emu: &Emulator, form: Form, serial: Option<&str>) -> Response {
    let mut request = client()
        .post(format!("{}{CREATE_JOB}", emu.api_url()))
        .header("Product-Code", "067003")
        .multipart(form);
    if let Some(serial) = serial {
        request = request.header("Product-Serial", serial);
    }
    request.send().await.expect("create-job answered")
}

async fn create_job(emu: &Emulator, bytes: Vec<u8>) -> Response {
    create_job_with(emu, image_form(bytes), Some(SERIAL)).await
}

async fn new_job(emu: &Emulator, bytes: Vec<u8>) -> String {
    let body: Value = create_job(emu, bytes).await.json().await.expect("json");
    body["result"]["job_id"]
        .as_str()
        .expect("job id")
        .to_owned()
}

async fn get_job(emu: &Emulator, job_id: &str) -> Response {
    client()
        .get(format!("{}{GET_JOB}{job_id}", emu.api_url()))
        .send()
        .await
        .expect("get-job answered")
}

async fn get_job_json(emu: &Emulator, job_id: &str) -> Value {
    get_job(emu, job_id).await.json().await.expect("json")
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn slow_jobs() -> Knobs {
    Knobs {
        processing_time: Duration::from_secs(3600),
        ..Knobs::default()
    }
}

#[tokio::test]
async fn create_job_answers_a_v4_job_id_in_the_capture_shape() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let response = create_job(&emu, sample_jpeg(1)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    assert!(
        text.starts_with(r#"{"code":100000,"result":{"job_id":""#),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["message"]["en"], "Request Success");
    assert_eq!(body["message"]["zh"], "提交任务成功");
    let id = uuid::Uuid::parse_str(body["result"]["job_id"].as_str().expect("id")).expect("uuid");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(emu.counters().create_jobs, 1);
}

#[tokio::test]
async fn the_upload_is_recorded_field_by_field() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let bytes = sample_png(2);
    let job_id = new_job(&emu, bytes.clone()).await;
    let uploads = emu.uploads();
    assert_eq!(uploads.len(), 1);
    let upload = &uploads[0];
    assert_eq!(upload.field_name, "original_image_file");
    assert_eq!(upload.file_name.as_deref(), Some("Horizon-Towers.jpg"));
    assert_eq!(upload.part_content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(upload.sha256, sha_hex(&bytes));
    assert_eq!(upload.size, bytes.len() as u64);
    assert_eq!(upload.job_id.as_deref(), Some(job_id.as_str()));
    assert!(
        upload
            .headers
            .contains(&("product-serial".to_owned(), SERIAL.to_owned()))
    );
    let counters = emu.counters();
    assert_eq!(counters.create_jobs_by_sha.get(&sha_hex(&bytes)), Some(&1));
    assert_eq!(counters.api_headers.len(), 1);
}

#[tokio::test]
async fn get_job_is_in_progress_until_processing_time_has_passed() {
    let emu = Emulator::start(slow_jobs()).await.expect("started");
    let job_id = new_job(&emu, sample_jpeg(3)).await;

    let doing = get_job_json(&emu, &job_id).await;
    assert_eq!(doing["code"], 300006);
    assert_eq!(
        doing["message"]["id"],
        "Pembuatan gambar sedang berlangsung."
    );
    let input_url = doing["result"]["input_url"].as_str().expect("input_url");
    assert!(input_url.starts_with(&format!(
        "{}/datarm7/magiceraser/image/remove-watermark/",
        emu.cdn_url()
    )));
    assert!(input_url.contains(&format!("/input/{job_id}_original_.jpg?x-oss-process=")));

    emu.set_knobs(Knobs::default()); // processing_time 0: the job is now done
    let done = get_job_json(&emu, &job_id).await;
    assert_eq!(done["code"], 100000);
    assert_eq!(done["message"]["en"], "Image generated successfully.");
    let result = &done["result"];
    assert_eq!(result["job_id"], job_id.as_str());
    assert_eq!(result["credits_states"], 2);
    assert_eq!(result["need_credits"], 0);
    assert_eq!(result["p_credits"], 0);
    assert_eq!(result["s_credits"], 0);
    assert_eq!(result["input_url"], input_url);
    let output_url = result["output_url"][0].as_str().expect("output_url");
    assert!(output_url.starts_with(&emu.cdn_url()));
    assert!(output_url.ends_with(&format!("/output/{job_id}.jpg")));
    assert_eq!(emu.counters().get_jobs_by_job.get(&job_id), Some(&2));
}

#[tokio::test]
async fn the_output_is_a_jpeg_carrying_the_input_sha256() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let input = sample_webp(4);
    let job_id = new_job(&emu, input.clone()).await;
    let done = get_job_json(&emu, &job_id).await;
    let output_url = done["result"]["output_url"][0].as_str().expect("url");

    let response = client()
        .get(output_url)
        .header("X-Probe", "cdn")
        .send()
        .await
        .expect("cdn");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let jpeg = response.bytes().await.expect("body");
    assert_eq!(
        image::guess_format(&jpeg).expect("format"),
        image::ImageFormat::Jpeg
    );
    image::load_from_memory(&jpeg).expect("decodes");
    assert_eq!(source_sha256(&jpeg), Some(sha_hex(&input)));

    let counters = emu.counters();
    assert_eq!(counters.downloads, 1);
    assert_eq!(counters.download_requests, 1);
    let probe = ("x-probe".to_owned(), "cdn".to_owned());
    assert!(counters.cdn_headers[0].contains(&probe));
    assert!(!counters.api_headers.iter().any(|h| h.contains(&probe)));
}

#[tokio::test]
async fn the_input_url_serves_the_original_bytes() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let input = sample_png(5);
    let job_id = new_job(&emu, input.clone()).await;
    let done = get_job_json(&emu, &job_id).await;
    let input_url = done["result"]["input_url"].as_str().expect("url");
    let response = client().get(input_url).send().await.expect("cdn");
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.bytes().await.expect("body").to_vec(), input);
}

#[tokio::test]
async fn an_upload_that_is_not_an_image_is_refused() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let response = create_job(&emu, b"just text named .jpg".to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], codes::INVALID_IMAGE);
    assert_eq!(body["result"], Value::Null);
    assert_eq!(body["message"]["en"], "Invalid image");
    let counters = emu.counters();
    assert_eq!((counters.create_jobs, counters.rejected), (0, 1));
}

#[tokio::test]
async fn create_job_without_product_serial_is_refused() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let response = create_job_with(&emu, image_form(sample_jpeg(6)), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], codes::MISSING_PRODUCT);
    assert!(body["message"]["zh"].is_string());
    assert_eq!(emu.counters().create_jobs, 0);
}

#[tokio::test]
async fn create_job_without_the_file_field_is_refused() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let form = Form::new().part("image", Part::bytes(sample_jpeg(7)).file_name("a.jpg"));
    let response = create_job_with(&emu, form, Some(SERIAL)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], codes::MISSING_FILE);
    assert_eq!(emu.uploads()[0].field_name, "image");
    assert_eq!(emu.counters().create_jobs, 0);
}

#[tokio::test]
async fn refuse_code_refuses_every_create_job() {
    let knobs = Knobs {
        refuse_code: Some(codes::INSUFFICIENT_CREDITS),
        ..Knobs::default()
    };
    let emu = Emulator::start(knobs).await.expect("started");
    for seed in 0..3 {
        let body: Value = create_job(&emu, sample_jpeg(seed))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(body["code"], 300002);
        assert_eq!(body["result"], Value::Null);
        assert_eq!(body["message"]["en"], "Insufficient credits");
    }
    let counters = emu.counters();
    assert_eq!(
        (
            counters.create_jobs,
            counters.rejected,
            counters.create_job_requests
        ),
        (0, 3, 3)
    );
}

#[tokio::test]
async fn a_multipart_body_cut_short_creates_no_job() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let addr = emu.api_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"original_image_file\"; \
                filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\u{ff}\u{d8}\u{ff}partial";
    let head = format!(
        "POST {CREATE_JOB} HTTP/1.1\r\nHost: x\r\nProduct-Serial: s\r\nProduct-Code: 067003\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(body.as_bytes()).await.expect("body");
    stream.shutdown().await.expect("client gives up mid-body");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;

    let counters = emu.counters();
    assert_eq!(counters.create_job_requests, 1);
    assert_eq!(counters.rejected, 1);
    assert_eq!(counters.create_jobs, 0);
    assert!(emu.uploads().is_empty());
}

#[tokio::test]
async fn an_unknown_job_id_answers_job_not_found() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let response = get_job(&emu, "5725caa4-2be6-4dd1-916f-d62e772624c2").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], codes::JOB_NOT_FOUND);
    assert_eq!(body["result"], Value::Null);
}

#[tokio::test]
async fn a_failed_job_answers_its_failure_code() {
    let knobs = Knobs {
        p_job_fail: 1.0,
        job_fail_code: 300_099,
        ..Knobs::default()
    };
    let emu = Emulator::start(knobs).await.expect("started");
    let job_id = new_job(&emu, sample_jpeg(8)).await;
    let body = get_job_json(&emu, &job_id).await;
    assert_eq!(body["code"], 300_099);
    assert_eq!(body["result"], Value::Null);
    assert_eq!(body["message"]["en"], "Image generation failed.");
    assert_eq!(emu.counters().faults_injected, 1);
}

#[tokio::test]
async fn the_in_flight_limit_answers_429_with_retry_after() {
    let knobs = Knobs {
        max_in_flight: Some(1),
        retry_after_secs: 7,
        ..slow_jobs()
    };
    let emu = Emulator::start(knobs).await.expect("started");
    assert_eq!(
        create_job(&emu, sample_jpeg(9)).await.status(),
        StatusCode::OK
    );
    let refused = create_job(&emu, sample_jpeg(10)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "7");
    let counters = emu.counters();
    assert_eq!((counters.create_jobs, counters.throttled), (1, 1));
    assert_eq!(counters.max_in_flight_seen, 1);
}

#[tokio::test]
async fn finished_jobs_leave_room_under_the_in_flight_limit() {
    let emu = Emulator::start(Knobs {
        max_in_flight: Some(1),
        ..Knobs::default()
    })
    .await
    .expect("started");
    for seed in 0..3 {
        assert_eq!(
            create_job(&emu, sample_jpeg(seed)).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(emu.counters().max_in_flight_seen, 1);
}

#[tokio::test]
async fn a_dropped_connection_gets_no_response_and_the_service_goes_on() {
    let emu = Emulator::start(Knobs {
        p_drop: 1.0,
        ..Knobs::default()
    })
    .await
    .expect("started");
    let error = client()
        .get(format!("{}{GET_JOB}x", emu.api_url()))
        .send()
        .await
        .expect_err("no response");
    assert!(!error.is_timeout(), "{error}");
    assert_eq!(emu.counters().faults_injected, 1);

    emu.set_knobs(Knobs::default());
    assert_eq!(
        create_job(&emu, sample_jpeg(11)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_dropped_create_job_creates_no_job() {
    let emu = Emulator::start(Knobs {
        p_drop: 1.0,
        ..Knobs::default()
    })
    .await
    .expect("started");
    let sent = client()
        .post(format!("{}{CREATE_JOB}", emu.api_url()))
        .header("Product-Serial", SERIAL)
        .header("Product-Code", "067003")
        .multipart(image_form(sample_jpeg(12)))
        .send()
        .await;
    assert!(sent.is_err());
    let counters = emu.counters();
    assert_eq!((counters.create_job_requests, counters.create_jobs), (1, 0));
}

#[tokio::test]
async fn a_truncated_download_delivers_less_than_its_content_length() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let job_id = new_job(&emu, sample_jpeg(13)).await;
    let done = get_job_json(&emu, &job_id).await;
    let output_url = done["result"]["output_url"][0]
        .as_str()
        .expect("url")
        .to_owned();
    emu.set_knobs(Knobs {
        p_truncate: 1.0,
        ..Knobs::default()
    });
    let response = client().get(&output_url).send().await.expect("headers");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.content_length().expect("length") > 0);
    assert!(response.bytes().await.is_err());
    let counters = emu.counters();
    assert_eq!((counters.downloads, counters.faults_injected), (0, 1));
}

#[tokio::test]
async fn a_cdn_error_answers_5xx() {
    let emu = Emulator::start(Knobs {
        p_cdn_error: 1.0,
        ..Knobs::default()
    })
    .await
    .expect("started");
    let job_id = new_job(&emu, sample_jpeg(14)).await;
    let done = get_job_json(&emu, &job_id).await;
    let output_url = done["result"]["output_url"][0].as_str().expect("url");
    let status = client()
        .get(output_url)
        .send()
        .await
        .expect("answer")
        .status();
    assert!(status.is_server_error(), "{status}");
}

/// What each of `n` sequential get-jobs answered: status and whether the body was JSON.
async fn fault_sequence(seed: u64, n: usize) -> Vec<(u16, bool)> {
    let emu = Emulator::start(Knobs {
        p_http_500: 0.3,
        p_http_429: 0.3,
        p_garbage: 0.2,
        seed,
        ..Knobs::default()
    })
    .await
    .expect("started");
    let mut seen = Vec::new();
    for _ in 0..n {
        let response = get_job(&emu, "unknown").await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        seen.push((status, serde_json::from_str::<Value>(&text).is_ok()));
    }
    seen
}

#[tokio::test]
async fn the_same_seed_reproduces_the_same_faults() {
    let first = fault_sequence(77, 30).await;
    assert_eq!(first, fault_sequence(77, 30).await);
    assert!(first.iter().any(|(status, _)| *status == 500));
    assert!(first.iter().any(|(status, _)| *status == 429));
    assert!(first.iter().any(|(status, json)| *status == 200 && !json));
    assert!(first.iter().any(|(status, json)| *status == 200 && *json));
    assert_ne!(first, fault_sequence(78, 30).await);
}

#[tokio::test]
async fn a_429_fault_carries_retry_after() {
    let emu = Emulator::start(Knobs {
        p_http_429: 1.0,
        retry_after_secs: 2,
        ..Knobs::default()
    })
    .await
    .expect("started");
    let response = get_job(&emu, "x").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2");
}

#[test]
fn dropping_a_spawned_emulator_closes_its_ports() {
    let emu = Emulator::spawn(Knobs::default()).expect("spawned");
    let api = emu.api_url().trim_start_matches("http://").to_owned();
    let cdn = emu.cdn_url().trim_start_matches("http://").to_owned();
    assert_ne!(api, cdn);
    std::net::TcpStream::connect(&api).expect("api listening");
    drop(emu);
    assert!(std::net::TcpStream::connect(&api).is_err());
    assert!(std::net::TcpStream::connect(&cdn).is_err());
}

#[tokio::test]
async fn dropping_the_emulator_closes_idle_keep_alive_connections() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let client = client();
    let url = format!("{}{GET_JOB}x", emu.api_url());
    client.get(&url).send().await.expect("first answer");
    drop(emu);
    assert!(client.get(&url).send().await.is_err());
}

// Hostile modes.

async fn done_result(knobs: Knobs) -> (Emulator, String, Value) {
    let emu = Emulator::start(knobs).await.expect("started");
    let job_id = new_job(&emu, sample_jpeg(20)).await;
    let body = get_job_json(&emu, &job_id).await;
    assert_eq!(body["code"], 100000);
    (emu, job_id, body["result"].clone())
}

fn hostile(hostile: Hostile) -> Knobs {
    Knobs {
        hostile: Some(hostile),
        ..Knobs::default()
    }
}

#[tokio::test]
async fn traversal_output_urls_still_lead_to_the_jobs_output() {
    for mode in [
        Hostile::TraversalOutputUrl,
        Hostile::EncodedTraversalOutputUrl,
    ] {
        let (emu, _, result) = done_result(hostile(mode)).await;
        let url = result["output_url"][0].as_str().expect("url");
        assert!(url.contains("passwd.jpg"), "{url}");
        let jpeg = client()
            .get(url)
            .send()
            .await
            .expect("cdn")
            .bytes()
            .await
            .expect("body");
        assert_eq!(
            source_sha256(&jpeg),
            Some(sha_hex(&sample_jpeg(20))),
            "{mode:?}"
        );
        drop(emu);
    }
}

#[tokio::test]
async fn empty_missing_and_file_output_urls() {
    let (_emu, _, empty) = done_result(hostile(Hostile::EmptyOutputUrl)).await;
    assert_eq!(empty["output_url"], serde_json::json!([]));
    let (_emu, _, missing) = done_result(hostile(Hostile::MissingOutputUrl)).await;
    assert!(missing.get("output_url").is_none());
    let (_emu, _, file) = done_result(hostile(Hostile::FileOutputUrl)).await;
    assert_eq!(file["output_url"][0], "file:///etc/passwd");
}

#[tokio::test]
async fn redirect_modes_answer_302_to_another_scheme() {
    for (mode, location) in [
        (Hostile::RedirectToFile, "file:///etc/passwd"),
        (Hostile::RedirectToOtherScheme, "ftp://127.0.0.1/x.jpg"),
    ] {
        let (_emu, _, result) = done_result(hostile(mode)).await;
        let url = result["output_url"][0].as_str().expect("url");
        let response = client().get(url).send().await.expect("cdn");
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], location);
    }
}

#[tokio::test]
async fn not_an_image_output_serves_text_as_jpeg() {
    let (_emu, _, result) = done_result(hostile(Hostile::NotAnImageOutput)).await;
    let url = result["output_url"][0].as_str().expect("url");
    let response = client().get(url).send().await.expect("cdn");
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let bytes = response.bytes().await.expect("body");
    assert!(image::guess_format(&bytes).is_err());
}

#[tokio::test]
async fn never_done_stays_in_progress() {
    let emu = Emulator::start(hostile(Hostile::NeverDone))
        .await
        .expect("started");
    let job_id = new_job(&emu, sample_jpeg(21)).await;
    for _ in 0..3 {
        assert_eq!(get_job_json(&emu, &job_id).await["code"], 300006);
    }
}

#[tokio::test]
async fn html_error_page_answers_200_text_html() {
    let emu = Emulator::start(hostile(Hostile::HtmlErrorPage200))
        .await
        .expect("started");
    let response = create_job(&emu, sample_jpeg(22)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    assert!(response.text().await.expect("body").starts_with("<html>"));
    assert_eq!(emu.counters().create_jobs, 0);
}

#[tokio::test]
async fn huge_json_announces_50_mib() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let job_id = new_job(&emu, sample_jpeg(23)).await;
    emu.set_knobs(hostile(Hostile::HugeJson));
    let response = get_job(&emu, &job_id).await;
    assert_eq!(
        response.content_length(),
        Some(faults::HUGE_JSON_BYTES as u64)
    );
}

#[tokio::test]
async fn huge_json_is_valid_json_of_the_announced_size() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let job_id = new_job(&emu, sample_jpeg(24)).await;
    emu.set_knobs(hostile(Hostile::HugeJson));
    let bytes = get_job(&emu, &job_id).await.bytes().await.expect("body");
    assert_eq!(bytes.len(), faults::HUGE_JSON_BYTES);
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(body["code"], 300006);
}

#[tokio::test]
async fn endless_body_keeps_coming_without_a_length() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let job_id = new_job(&emu, sample_jpeg(25)).await;
    emu.set_knobs(hostile(Hostile::EndlessBody));
    let mut response = get_job(&emu, &job_id).await;
    assert_eq!(response.content_length(), None);
    let mut received = 0;
    while received < 4 * 1024 * 1024 {
        received += response.chunk().await.expect("chunk").expect("more").len();
    }
}

#[tokio::test]
async fn slow_drip_sends_the_first_byte_at_once() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    let job_id = new_job(&emu, sample_jpeg(26)).await;
    emu.set_knobs(hostile(Hostile::SlowDrip));
    let mut response = get_job(&emu, &job_id).await;
    assert!(response.content_length().expect("length") > 1);
    let first = response.chunk().await.expect("chunk").expect("a byte");
    assert_eq!(&first[..], b"{");
}

// What a wide-area network adds: latency, one shared uplink; and no stall behind delayed ACKs.

fn uplink(bytes_per_sec: u64) -> Knobs {
    Knobs {
        uplink_bytes_per_sec: NonZeroU64::new(bytes_per_sec),
        ..Knobs::default()
    }
}

/// A JPEG (by its magic bytes, all the emulator checks) of exactly `size` bytes.
fn jpeg_of_size(seed: u64, size: usize) -> Vec<u8> {
    let mut bytes = sample_jpeg(seed);
    bytes.resize(size.max(bytes.len()), 0);
    bytes
}

/// Fails unless at least `least` has passed since `sent` (a lower bound only: never how soon).
fn assert_not_before(sent: Instant, least: Duration, what: &str) {
    let took = sent.elapsed();
    assert!(
        took >= least,
        "{what} answered after {took:?}, before {least:?}"
    );
}

/// Waits until `condition` holds for the counters, failing after 10 s.
async fn until_counters(emu: &Emulator, condition: impl Fn(&Counters) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition(&emu.counters()) {
        assert!(Instant::now() < deadline, "counters: {:?}", emu.counters());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn every_api_reply_comes_no_earlier_than_the_latency() {
    let latency = Duration::from_millis(300);
    let emu = Emulator::start(Knobs {
        latency,
        ..Knobs::default()
    })
    .await
    .expect("started");

    let sent = Instant::now();
    let body: Value = create_job(&emu, sample_jpeg(40))
        .await
        .json()
        .await
        .expect("json");
    assert_not_before(sent, latency, "create-job");
    let job_id = body["result"]["job_id"].as_str().expect("job id");

    let sent = Instant::now();
    assert_eq!(get_job_json(&emu, job_id).await["code"], 100000);
    assert_not_before(sent, latency, "get-job");
}

#[tokio::test]
async fn a_cdn_reply_comes_no_earlier_than_the_latency() {
    let latency = Duration::from_millis(300);
    let emu = Emulator::start(Knobs {
        latency,
        ..Knobs::default()
    })
    .await
    .expect("started");
    let job_id = new_job(&emu, sample_jpeg(41)).await;
    let done = get_job_json(&emu, &job_id).await;
    let output_url = done["result"]["output_url"][0].as_str().expect("url");

    let sent = Instant::now();
    let response = client().get(output_url).send().await.expect("cdn");
    assert_eq!(response.status(), StatusCode::OK);
    assert_not_before(sent, latency, "the download");
}

#[tokio::test]
async fn an_upload_of_n_bytes_takes_at_least_n_over_the_uplink_rate() {
    let emu = Emulator::start(uplink(100_000)).await.expect("started");
    let sent = Instant::now();
    let response = create_job(&emu, jpeg_of_size(42, 40_000)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_not_before(
        sent,
        Duration::from_millis(400),
        "40,000 bytes at 100,000 B/s",
    );
}

#[tokio::test]
async fn the_uplink_is_shared_by_every_connection() {
    let emu = Emulator::start(uplink(100_000)).await.expect("started");
    let sent = Instant::now();
    // Each call builds its own client, hence its own connection.
    let (a, b) = tokio::join!(
        create_job(&emu, jpeg_of_size(43, 20_000)),
        create_job(&emu, jpeg_of_size(44, 20_000))
    );
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    assert_not_before(
        sent,
        Duration::from_millis(400),
        "2 × 20,000 bytes at 100,000 B/s",
    );
}

#[tokio::test]
async fn a_throttled_upload_arrives_whole() {
    let emu = Emulator::start(uplink(2_000_000)).await.expect("started");
    let bytes = jpeg_of_size(45, 100_000);
    new_job(&emu, bytes.clone()).await;
    let uploads = emu.uploads();
    assert_eq!(uploads[0].size, 100_000);
    assert_eq!(uploads[0].sha256, sha_hex(&bytes));
}

#[tokio::test]
async fn create_job_requests_are_counted_open_from_head_to_reply() {
    let emu = Emulator::start(Knobs::default()).await.expect("started");
    // One create-job left half-sent on a raw connection...
    let addr = emu.api_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {CREATE_JOB} HTTP/1.1\r\nHost: x\r\nProduct-Serial: s\r\nProduct-Code: 067003\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n--XyZ\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    until_counters(&emu, |c| c.create_job_requests == 1).await;

    // ...while another one is sent whole.
    assert_eq!(
        create_job(&emu, sample_jpeg(46)).await.status(),
        StatusCode::OK
    );
    assert_eq!(emu.counters().max_create_jobs_open, 2);
}

#[tokio::test]
async fn the_time_create_jobs_were_open_includes_the_latency() {
    let latency = Duration::from_millis(200);
    let emu = Emulator::start(Knobs {
        latency,
        ..Knobs::default()
    })
    .await
    .expect("started");
    new_job(&emu, sample_jpeg(47)).await;
    new_job(&emu, sample_jpeg(48)).await;
    let counters = emu.counters();
    assert!(counters.create_job_time >= 2 * latency, "{counters:?}");
    assert_eq!(counters.max_create_jobs_open, 1);
}

#[tokio::test]
async fn every_accepted_socket_has_tcp_nodelay_set() {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bound");
    let addr = listener.local_addr().expect("address");
    // The listener type both of the emulator's origins accept through.
    let mut controlled = ControlledListener::new(listener, Arc::new(ConnRegistry::default()));
    let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (accepted, _) = axum::serve::Listener::accept(&mut controlled).await;
    assert!(accepted.nodelay().expect("socket option read"));
}
