use std::path::Path;

use eraser_store::{ImageStatus, InputCounts, RunProgress, StatusCounts};
use futures_util::TryStreamExt;
use rstest::rstest;

use crate::support::{
    Backend, age_heartbeat, done_record, failure, fresh, image_in, input, record, record_in,
    record_inputs, set_run_host, sha,
};

#[rstest]
#[tokio::test]
async fn status_counts_equal_a_recount_after_a_mix_of_transitions(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let shas = record(l, run, 0, 40).await;
    let claims = l.claim_for_upload(run, 30).await.unwrap();
    for (i, c) in claims.iter().enumerate() {
        match i % 6 {
            0 => l.release_claim(run, &c.sha256).await.unwrap(),
            1 => l.mark_failed(run, &c.sha256, &failure(1)).await.unwrap(),
            2 => l
                .mark_processing(run, &c.sha256, &format!("job-{i}"))
                .await
                .unwrap(),
            3 => {
                l.mark_processing(run, &c.sha256, &format!("job-{i}"))
                    .await
                    .unwrap();
                l.mark_done(&c.sha256, &done_record(1)).await.unwrap();
            }
            _ => {}
        }
    }
    l.requeue(Some(&shas[..3])).await.unwrap();

    let report = l.check_consistency().await.unwrap();

    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.counts_table.total, 40);
    assert_eq!(l.status_counts().await.unwrap(), report.recount);
}

#[rstest]
#[tokio::test]
async fn run_progress_counts_the_runs_distinct_images_by_status_and_its_inputs(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let other = l.begin_run("other", Path::new("/out")).await.unwrap();
    record_inputs(l, other, "/other", vec![input("/other/other.jpg", 9)]).await;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(
        l,
        run,
        "/in",
        vec![
            input("/in/a.jpg", 1),
            input("/in/a copy.jpg", 1),
            input("/in/b.jpg", 2),
        ],
    )
    .await;
    let claims = l.claim_for_upload(run, 1).await.unwrap();
    l.mark_processing(run, &claims[0].sha256, "j")
        .await
        .unwrap();
    l.mark_done(&claims[0].sha256, &done_record(1))
        .await
        .unwrap();
    let placed = l.run_inputs_of_image(run, &claims[0].sha256).await.unwrap();
    l.set_input_output(run, &placed[0].path, Path::new("/out/x.jpg"))
        .await
        .unwrap();

    let progress = l.run_progress(run).await.unwrap();

    let images = StatusCounts {
        total: 2,
        new: 1,
        done: 1,
        ..StatusCounts::default()
    };
    assert_eq!(progress, RunProgress { images, inputs: 3 });
    let inputs = l.run_inputs(run, None, 10).await.unwrap();
    let written = inputs.iter().filter(|s| s.input.output_path.is_some());
    assert_eq!(written.count(), 1, "one input placed");
}

#[rstest]
#[tokio::test]
async fn run_inputs_pages_every_input_of_the_run_with_its_image_state(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let other = l.begin_run("other", Path::new("/out")).await.unwrap();
    record_inputs(l, other, "/other", vec![input("/other/0-other.jpg", 9)]).await;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record(l, run, 0, 5).await;
    let failed = l.claim_for_upload(run, 1).await.unwrap();
    l.mark_failed(run, &failed[0].sha256, &failure(7))
        .await
        .unwrap();

    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = l.run_inputs(run, after.as_deref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.input.path.clone());
        all.extend(page);
    }

    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].input.path < w[1].input.path));
    let failed_row = all
        .iter()
        .find(|s| s.input.sha256 == failed[0].sha256)
        .unwrap();
    assert_eq!(
        (failed_row.status, failed_row.error_code),
        (ImageStatus::Failed, Some(7))
    );
}

#[rstest]
#[tokio::test]
async fn input_counts_count_inputs_by_their_images_outcome(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(
        l,
        run,
        "/in",
        vec![
            input("/in/a.jpg", 1),
            input("/in/a2.jpg", 1),
            input("/in/b.jpg", 2),
            input("/in/c.jpg", 3),
        ],
    )
    .await;
    for c in l.claim_for_upload(run, 10).await.unwrap() {
        if c.sha256 == sha(1) {
            l.mark_processing(run, &c.sha256, "j").await.unwrap();
            l.mark_done(&c.sha256, &done_record(1)).await.unwrap();
        } else if c.sha256 == sha(2) {
            l.mark_failed(run, &c.sha256, &failure(3)).await.unwrap();
        }
    }

    assert_eq!(
        l.input_counts().await.unwrap(),
        InputCounts {
            total: 4,
            done: 2,
            failed: 1,
            skipped: 0,
            rejected: 0,
        }
    );

    // An edited file moves to new content; a done image going back to new takes its inputs along.
    record_inputs(l, run, "/in", vec![input("/in/a2.jpg", 4)]).await;
    l.reset_done(&sha(1)).await.unwrap();
    assert_eq!(
        l.input_counts().await.unwrap(),
        InputCounts {
            total: 4,
            done: 0,
            failed: 1,
            skipped: 0,
            rejected: 0,
        }
    );
}

#[rstest]
#[tokio::test]
async fn new_copies_of_done_and_failed_content_count_in_the_counters_of_their_status(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let (_, done) = image_in(l, 1, ImageStatus::Done).await;
    let (_, failed) = image_in(l, 2, ImageStatus::Failed).await;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();

    // One batch: copies of the done and the failed content, new content twice, and the same
    // path named twice.
    record_inputs(
        l,
        run,
        "/in",
        vec![
            input("/in/copy-of-done.jpg", 1),
            input("/in/copy-of-done-again.jpg", 1),
            input("/in/copy-of-failed.jpg", 2),
            input("/in/new.jpg", 3),
            input("/in/new-twin.jpg", 3),
            input("/in/new-twin.jpg", 3),
        ],
    )
    .await;

    assert_eq!(
        l.input_counts().await.unwrap(),
        InputCounts {
            total: 7,
            done: 3,
            failed: 2,
            skipped: 0,
            rejected: 0,
        }
    );
    assert_eq!(l.status_counts().await.unwrap().new, 1);
    let report = l.check_consistency().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(l.inputs_of_image(&done).await.unwrap().len(), 3);
    assert_eq!(l.inputs_of_image(&failed).await.unwrap().len(), 2);
}

#[rstest]
#[tokio::test]
async fn failure_groups_group_failed_images_by_code_largest_first(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record(l, run, 0, 4).await;
    let claims = l.claim_for_upload(run, 4).await.unwrap();
    for (c, code) in claims.iter().zip([429, 500, 429, 429]) {
        l.mark_failed(run, &c.sha256, &failure(code)).await.unwrap();
    }

    let groups = l.failure_groups().await.unwrap();

    let got: Vec<_> = groups
        .iter()
        .map(|g| (g.code, g.count, g.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(429), 3, "service said 429"),
            (Some(500), 1, "service said 500")
        ]
    );
}

#[rstest]
#[tokio::test]
async fn credits_used_sum_the_done_images(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    image_in(&t.ledger, 1, ImageStatus::Done).await;
    image_in(&t.ledger, 2, ImageStatus::Done).await;
    image_in(&t.ledger, 3, ImageStatus::Processing).await;

    let credits = t.ledger.credits_used().await.unwrap();

    assert_eq!(
        (credits.p_credits, credits.s_credits, credits.need_credits),
        (2, 6, 0)
    );
}

#[rstest]
#[tokio::test]
async fn in_flight_lists_processing_jobs_oldest_first_up_to_the_limit(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (_, first) = image_in(&t.ledger, 1, ImageStatus::Processing).await;
    let (_, second) = image_in(&t.ledger, 2, ImageStatus::Processing).await;
    image_in(&t.ledger, 3, ImageStatus::Processing).await;
    image_in(&t.ledger, 4, ImageStatus::Uploading).await;

    let jobs = t.ledger.in_flight(2).await.unwrap();

    let got: Vec<_> = jobs.iter().map(|j| (j.sha256, j.job_id.as_str())).collect();
    assert_eq!(got, [(first, "job-1"), (second, "job-2")]);
}

#[rstest]
#[tokio::test]
async fn run_in_flight_lists_only_the_runs_processing_images(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    image_in(l, 1, ImageStatus::Processing).await;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record_in(l, run, "/mine", 10, 2).await;
    let claims = l.claim_for_upload(run, 1).await.unwrap();
    l.mark_processing(run, &claims[0].sha256, "mine")
        .await
        .unwrap();

    let jobs = l.run_in_flight(run).await.unwrap();

    assert_eq!(
        jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
        ["mine"]
    );
}

#[rstest]
#[tokio::test]
async fn an_image_is_found_by_its_job_id(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let (_, sha) = image_in(&t.ledger, 1, ImageStatus::Processing).await;

    assert_eq!(
        t.ledger
            .image_by_job("job-1")
            .await
            .unwrap()
            .map(|r| r.sha256),
        Some(sha)
    );
    assert!(
        t.ledger
            .image_by_job("job-unknown")
            .await
            .unwrap()
            .is_none()
    );
}

#[rstest]
#[tokio::test]
async fn list_images_pages_by_sha256_optionally_within_one_status(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    let mut shas = record(l, run, 0, 5).await;
    shas.sort();
    let failed = l.claim_for_upload(run, 2).await.unwrap();
    for c in &failed {
        l.mark_failed(run, &c.sha256, &failure(1)).await.unwrap();
    }

    let page1 = l.list_images(None, None, 3).await.unwrap();
    let page2 = l
        .list_images(None, Some(&page1[2].sha256), 3)
        .await
        .unwrap();
    let only_failed = l
        .list_images(Some(ImageStatus::Failed), None, 10)
        .await
        .unwrap();

    let got: Vec<_> = page1.iter().chain(&page2).map(|r| r.sha256).collect();
    assert_eq!(got, shas);
    assert_eq!(only_failed.len(), 2);
    assert!(only_failed.iter().all(|r| r.status == ImageStatus::Failed));
}

#[rstest]
#[tokio::test]
async fn export_streams_every_image_and_every_input(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(
        l,
        run,
        "/in",
        vec![
            input("/in/a.jpg", 1),
            input("/in/b.jpg", 1),
            input("/in/c.jpg", 2),
        ],
    )
    .await;

    let images: Vec<_> = l.export_images().try_collect().await.unwrap();
    let inputs: Vec<_> = l.export_inputs().try_collect().await.unwrap();

    assert_eq!(images.len(), 2);
    assert_eq!(inputs.len(), 3);
    assert!(inputs.iter().all(|s| s.status == ImageStatus::New));
}

#[rstest]
#[tokio::test]
async fn hosts_tell_each_machines_runs_alive_jobs_in_flight_and_images_done(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let (here, _) = image_in(l, 1, ImageStatus::Processing).await;
    let (elsewhere, _) = image_in(l, 2, ImageStatus::Done).await;
    image_in(l, 3, ImageStatus::Done).await;
    set_run_host(&t, elsewhere, "aaa-nas").await;
    age_heartbeat(&t, elsewhere, 3600).await;
    l.finish_run(here, "complete", "{}").await.unwrap();

    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let hosts = l.hosts(since).await.unwrap();

    assert_eq!(hosts.len(), 2, "{hosts:?}");
    let nas = hosts.iter().find(|h| h.host == "aaa-nas").unwrap();
    let this = hosts.iter().find(|h| h.host != "aaa-nas").unwrap();
    assert_eq!((nas.runs_alive, nas.in_flight, nas.done_since), (0, 0, 1));
    // This host: the run of image 3 is alive, the finished one still has its job in flight.
    assert_eq!(
        (this.runs_alive, this.in_flight, this.done_since),
        (1, 1, 1)
    );

    let later = l
        .hosts(chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(later.iter().map(|h| h.done_since).sum::<u64>(), 0);
}
