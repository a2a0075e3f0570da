use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eraser_api::{Client, ClientBuilder, JobDone, JobId, JobState, RetryEvent, RetryPolicy};
use eraser_tests::emulator::{Emulator, Knobs};
use sha2::{Digest, Sha256};

/// The serial of the captured request.
pub const SERIAL: &str = "d92a85a2-7f15-40d0-975d-518d1610eb71";

/// Starts an emulator in the test's runtime.
pub async fn emulator(knobs: Knobs) -> Arc<Emulator> {
    Arc::new(Emulator::start(knobs).await.expect("emulator starts"))
}

/// Quick retries: up to 8 attempts, millisecond backoff, `Retry-After` up to 2 s honoured.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_secs(2),
        max_elapsed: Duration::from_secs(20),
    }
}

/// A client for `emulator` with the capture's serial and quick retries.
pub fn client(emulator: &Emulator) -> ClientBuilder {
    Client::builder()
        .base_url(emulator.api_url())
        .product_serial(SERIAL)
        .retry(fast_retry())
        .request_timeout(Duration::from_secs(5))
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_input(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write input");
    path
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Every retry event the client reports, in order.
#[derive(Clone, Default)]
pub struct Retries(Arc<Mutex<Vec<RetryEvent>>>);

impl Retries {
    pub fn events(&self) -> Vec<RetryEvent> {
        self.0.lock().unwrap().clone()
    }
}

/// An observer recording each retry into `retries` and, on the first one, replacing the
/// emulator's knobs with `after` (so "fails once, then recovers" needs no luck with the RNG).
pub fn record_and_heal(
    retries: &Retries,
    emulator: &Arc<Emulator>,
    after: Knobs,
) -> Arc<dyn Fn(&RetryEvent) + Send + Sync> {
    let retries = retries.clone();
    let emulator = Arc::clone(emulator);
    Arc::new(move |event: &RetryEvent| {
        let mut events = retries.0.lock().unwrap();
        if events.is_empty() {
            emulator.set_knobs(after.clone());
        }
        events.push(event.clone());
    })
}

/// Polls until the job is done (the emulator's default processing time is zero).
pub async fn wait_done(client: &Client, id: &JobId) -> JobDone {
    for _ in 0..200 {
        match client.get_job(id).await.expect("get-job") {
            JobState::Done(done) => return done,
            JobState::InProgress => tokio::time::sleep(Duration::from_millis(10)).await,
            JobState::Failed { code, message } => panic!("job failed: {code} {message}"),
        }
    }
    panic!("job {id} not done after 200 polls");
}

/// Names in `dir`, sorted.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
