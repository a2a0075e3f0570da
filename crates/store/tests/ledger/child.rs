//! Child mode: the parent runs this binary again with `--exact child::entry` and these
//! variables set; the child reports on stdout with lines starting with [`PREFIX`].

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use eraser_store::{Ledger, Location, RunId};

use crate::support::{batch, input, record};

pub const ROLE: &str = "ERASER_STORE_TEST_CHILD";
/// The ledger's location, as `Location::parse` reads it.
pub const LEDGER: &str = "ERASER_STORE_TEST_LEDGER";
pub const RUN: &str = "ERASER_STORE_TEST_RUN";
pub const FIRST: &str = "ERASER_STORE_TEST_FIRST";
pub const PREFIX: &str = "<<report>> ";

/// A child never outlives a parent that forgot it by more than this.
const LIFETIME: Duration = Duration::from_secs(60);

#[test]
fn entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let location = Location::parse(&std::env::var_os(LEDGER).unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let ledger = Ledger::open(&location).await.unwrap();
        match role.as_str() {
            "claim" => claim_until_empty(&ledger).await,
            "hold" => claim_and_hold(&ledger).await,
            "record" => record_forever(&ledger).await,
            other => panic!("unknown child role {other}"),
        }
    });
}

fn report(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{PREFIX}{line}").unwrap();
    out.flush().unwrap();
}

fn var_i64(name: &str) -> i64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// Waits for the parent's "go", then claims for the given run, 10 at a time, until none is left.
async fn claim_until_empty(ledger: &Ledger) {
    let run = RunId(var_i64(RUN));
    report("ready");
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).unwrap();
    loop {
        let claims = ledger.claim_for_upload(run, 10).await.unwrap();
        if claims.is_empty() {
            break;
        }
        for claim in claims {
            report(format_args!("claimed {}", claim.sha256));
        }
        // Stand in for the upload: SQLite's lock is not fair, a tight loop would starve the other.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    report("done");
}

/// Registers a run, records and claims 50 images, then stays alive beating its heartbeat.
async fn claim_and_hold(ledger: &Ledger) {
    let run = ledger
        .begin_run("child hold", std::path::Path::new("/out"))
        .await
        .unwrap();
    let first = u64::try_from(var_i64(FIRST)).unwrap();
    record(ledger, run, first, 50).await;
    let claims = ledger.claim_for_upload(run, 100).await.unwrap();
    report(format_args!("claimed {}", claims.len()));
    let start = Instant::now();
    while start.elapsed() < LIFETIME {
        ledger.heartbeat(run).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records batches of 2,000 new inputs back to back, reporting each committed batch.
async fn record_forever(ledger: &Ledger) {
    let run = ledger
        .begin_run("child record", std::path::Path::new("/out"))
        .await
        .unwrap();
    let scan = ledger.begin_scan(run).await.unwrap();
    let base = u64::from(std::process::id()) << 32;
    let root = format!("/in/{base}");
    let start = Instant::now();
    let mut k = 0u64;
    while start.elapsed() < LIFETIME {
        let inputs: Vec<_> = (0..2000)
            .map(|i| {
                let n = base + k * 2000 + i;
                input(format!("{root}/batch {k}/img-{i}.jpg"), n)
            })
            .collect();
        scan.record(&batch(&root, inputs)).await.unwrap();
        report(format_args!("batch {k}"));
        k += 1;
    }
}
