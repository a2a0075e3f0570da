use eraser_store::{ImageStatus, Ledger};
use rstest::rstest;

use crate::support::{Backend, fresh, image_in, place, spoil_processing_estimate};

#[rstest]
#[tokio::test]
async fn reopening_keeps_the_data(#[values(Backend::Sqlite, Backend::Postgres)] backend: Backend) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (_, sha) = image_in(&t.ledger, 1, ImageStatus::Done).await;
    t.ledger.close().await;

    let again = Ledger::open_existing(&t.location).await.unwrap();

    assert_eq!(
        again.image(&sha).await.unwrap().unwrap().status,
        ImageStatus::Done
    );
}

#[rstest]
#[tokio::test]
async fn the_ledger_says_where_it_lives(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };

    assert_eq!(t.ledger.location(), &t.location);
}

#[rstest]
#[tokio::test]
async fn the_product_serial_is_a_uuid_v4_generated_once_and_stable_across_reopen(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let first = t.ledger.product_serial().await.unwrap();
    assert_eq!(t.ledger.product_serial().await.unwrap(), first);
    let uuid = uuid::Uuid::parse_str(&first).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    t.ledger.close().await;

    let again = Ledger::open(&t.location).await.unwrap();

    assert_eq!(again.product_serial().await.unwrap(), first);
}

#[rstest]
#[tokio::test]
async fn concurrent_opens_of_a_fresh_ledger_agree_on_one_product_serial(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(place) = place(backend).await else {
        return;
    };

    let opens = (0..4).map(|_| {
        let location = place.location.clone();
        tokio::spawn(async move {
            let ledger = Ledger::open(&location).await.unwrap();
            ledger.product_serial().await.unwrap()
        })
    });
    let serials: Vec<String> = futures_util::future::try_join_all(opens).await.unwrap();

    assert!(serials.iter().all(|s| *s == serials[0]), "{serials:?}");
}

#[rstest]
#[tokio::test]
async fn the_processing_estimate_is_kept_for_the_next_run_and_a_bad_value_is_ignored(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    assert_eq!(t.ledger.processing_estimate().await.unwrap(), None);

    t.ledger.set_processing_estimate(7.25).await.unwrap();
    t.ledger.set_processing_estimate(8.5).await.unwrap();
    assert_eq!(t.ledger.processing_estimate().await.unwrap(), Some(8.5));
    assert!(t.ledger.set_processing_estimate(f64::NAN).await.is_err());

    spoil_processing_estimate(&t).await;
    assert_eq!(t.ledger.processing_estimate().await.unwrap(), None);
}
