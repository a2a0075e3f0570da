use std::time::Duration;

use eraser_store::Ledger;
use rstest::rstest;

use crate::support::{Backend, ChildProcess, fresh};

const BATCH: u64 = 2000;

#[rstest]
#[tokio::test]
async fn a_process_killed_mid_batch_leaves_a_sound_consistent_ledger(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    t.ledger.close().await;

    // Kill at a few different moments of the next batch.
    for delay_ms in [0, 3, 7] {
        let mut child = ChildProcess::spawn("record", &t.location, &[]);
        child.wait_for("batch 2");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill();

        let ledger = Ledger::open_existing(&t.location).await.unwrap();
        let report = ledger.check_consistency().await.unwrap();
        assert!(
            report.is_ok(),
            "after a kill {delay_ms} ms into a batch: {report:?}"
        );
        let inputs = ledger.input_counts().await.unwrap().total;
        assert_eq!(
            inputs % BATCH,
            0,
            "a batch was recorded in part: {inputs} inputs"
        );
        assert_eq!(
            report.counts_table.total, inputs,
            "every input of this test holds its own image"
        );
        ledger.close().await;
    }
}
