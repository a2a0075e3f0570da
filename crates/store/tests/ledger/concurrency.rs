use std::collections::HashMap;
use std::time::Duration;

use eraser_store::{ImageStatus, Ledger, RunId, Sha256};
use rstest::rstest;

use crate::child::{FIRST, RUN};
use crate::support::{Backend, ChildProcess, fresh, record_with};

/// Records `n` images for one run and returns the run.
async fn recorded(ledger: &Ledger, n: u64) -> RunId {
    let run = ledger
        .begin_run("test", std::path::Path::new("/out"))
        .await
        .unwrap();
    let scan = ledger.begin_scan(run).await.unwrap();
    for first in (0..n).step_by(500) {
        record_with(&scan, "/in", first, 500.min(n - first)).await;
    }
    run
}

/// Claims for `run` in small batches until nothing is left.
async fn claim_all(ledger: Ledger, run: RunId) -> Vec<Sha256> {
    let mut claimed = Vec::new();
    loop {
        let claims = ledger.claim_for_upload(run, 7).await.unwrap();
        if claims.is_empty() {
            return claimed;
        }
        claimed.extend(claims.into_iter().map(|c| c.sha256));
        // Stand in for the upload: SQLite's lock is not fair, a tight loop would starve the other.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn assert_each_claimed_once(claims: impl IntoIterator<Item = Sha256>, expected: usize) {
    let mut seen: HashMap<Sha256, u32> = HashMap::new();
    for sha in claims {
        *seen.entry(sha).or_default() += 1;
    }
    assert_eq!(seen.len(), expected, "not every image was claimed");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "claimed more than once: {twice:?}");
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_ledger_racing_to_claim_claim_each_image_exactly_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = recorded(&t.ledger, 1000).await;
    let other = t.another_handle().await;

    let (a, b) = tokio::join!(
        tokio::spawn(claim_all(t.ledger.clone(), run)),
        tokio::spawn(claim_all(other, run))
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    assert!(
        !a.is_empty() && !b.is_empty(),
        "no race happened: {} vs {}",
        a.len(),
        b.len()
    );
    assert_each_claimed_once(a.into_iter().chain(b), 1000);
    assert_eq!(t.ledger.status_counts().await.unwrap().uploading, 1000);
}

#[rstest]
#[tokio::test]
async fn two_processes_racing_to_claim_claim_each_image_exactly_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = recorded(&t.ledger, 1000).await;
    let env = [(RUN, run.0.to_string())];
    let mut children = [
        ChildProcess::spawn("claim", &t.location, &env),
        ChildProcess::spawn("claim", &t.location, &env),
    ];
    for child in &mut children {
        child.wait_for("ready");
    }
    for child in &mut children {
        child.go();
    }

    let mut per_child = Vec::new();
    for child in &mut children {
        let mut claimed = Vec::new();
        loop {
            match child.next_report().as_deref() {
                Some("done") => break,
                Some(line) => claimed.push(
                    line.strip_prefix("claimed ")
                        .unwrap()
                        .parse::<Sha256>()
                        .unwrap(),
                ),
                None => panic!("child exited without finishing"),
            }
        }
        child.finish();
        per_child.push(claimed);
    }

    assert_each_claimed_once(per_child.concat(), 1000);
    assert_eq!(t.ledger.status_counts().await.unwrap().uploading, 1000);
}

#[rstest]
#[tokio::test]
async fn recover_leaves_a_live_processs_claims_alone_and_takes_them_once_it_is_killed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let mut child = ChildProcess::spawn("hold", &t.location, &[(FIRST, "0".into())]);
    assert_eq!(child.wait_for("claimed"), "50");

    assert_eq!(t.ledger.recover().await.unwrap(), 0);
    assert_eq!(t.ledger.status_counts().await.unwrap().uploading, 50);

    child.kill();
    assert_eq!(t.ledger.recover().await.unwrap(), 50);
    let counts = t.ledger.status_counts().await.unwrap();
    assert_eq!((counts.uploading, counts.new), (0, 50));
    let row = t
        .ledger
        .list_images(Some(ImageStatus::New), None, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(row.repeat_uploads, 1);
}
