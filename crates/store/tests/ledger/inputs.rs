use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use eraser_store::{Error, ErrorKind, FoundInput, ImageStatus, Lookup, ScanBatch};
use futures_util::TryStreamExt;
use rstest::rstest;

use crate::support::{
    Backend, MTIME, claimed_paths, fresh, input, record, record_in, record_inputs, seen, sha,
};

fn awkward_paths() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/in/with spaces/holiday photo.jpg"),
        PathBuf::from("/in/ünïcödé/東京 タワー.png"),
        PathBuf::from(OsStr::from_bytes(b"/in/latin1-\xe9t\xe9/\xff\xfe raw.webp")),
    ]
}

#[rstest]
#[tokio::test]
async fn paths_with_spaces_unicode_and_non_utf8_bytes_round_trip(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let paths = awkward_paths();
    let inputs: Vec<_> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| input(p.clone(), i as u64))
        .collect();
    let scan = t.ledger.begin_scan(run).await.unwrap();

    scan.record(&crate::support::batch("/in", inputs.clone()))
        .await
        .unwrap();

    for (record, path) in inputs.iter().zip(&paths) {
        let row = t.ledger.input(path).await.unwrap().expect("recorded input");
        assert_eq!(&row.path, path);
        assert_eq!(row.planned_output.as_ref(), Some(&record.planned_output));
        t.ledger
            .set_input_output(run, path, &record.planned_output)
            .await
            .unwrap();
        assert_eq!(
            t.ledger
                .input(path)
                .await
                .unwrap()
                .unwrap()
                .output_path
                .as_ref(),
            Some(&record.planned_output)
        );
    }
    let stamps: Vec<_> = inputs
        .iter()
        .map(|r| (r.path.as_path(), r.size, r.mtime_ns))
        .collect();
    let known = scan.look_up(&stamps).await.unwrap();
    assert!(known.iter().all(|k| *k != Lookup::Changed), "{known:?}");
    let listed: Vec<_> = t
        .ledger
        .run_inputs(run, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.input.path)
        .collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    assert_eq!(listed, sorted);
    let exported: Vec<_> = t
        .ledger
        .export_inputs()
        .map_ok(|s| s.input.path)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(exported, sorted);
    let mut expected = paths.clone();
    expected.sort();
    assert_eq!(claimed_paths(&t.ledger, run, 10).await, expected);
}

#[rstest]
#[tokio::test]
async fn a_file_with_the_same_path_size_and_mtime_is_not_changed_and_any_other_is(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(
        &t.ledger,
        run,
        "/in",
        vec![input("/in/a.jpg", 1), input("/in/b.jpg", 2)],
    )
    .await;
    let scan = t.ledger.begin_scan(run).await.unwrap();

    let answer = scan
        .look_up(&[
            (Path::new("/in/b.jpg"), 1002, MTIME),
            (Path::new("/in/missing.jpg"), 1002, MTIME),
            (Path::new("/in/a.jpg"), 1001, MTIME + 1),
            (Path::new("/in/a.jpg"), 999, MTIME),
            (Path::new("/in/a.jpg"), 1001, MTIME),
        ])
        .await
        .unwrap();

    assert_eq!(answer[0], Lookup::Current, "present and planned in /out");
    assert_eq!(answer[1..4], [Lookup::Changed; 3]);
    assert_eq!(answer[4], Lookup::Current);
    assert!(scan.look_up(&[]).await.unwrap().is_empty());
}

#[rstest]
#[tokio::test]
async fn an_unchanged_input_is_current_only_for_an_out_it_is_planned_in(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let first = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let scan = t.ledger.begin_scan(first).await.unwrap();
    scan.record(&crate::support::batch("/in", vec![input("/in/a.jpg", 1)]))
        .await
        .unwrap();
    scan.complete().await.unwrap();
    let stamp = [(Path::new("/in/a.jpg"), 1001, MTIME)];
    let same_out = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let elsewhere = t
        .ledger
        .begin_run("test", Path::new("/other-out"))
        .await
        .unwrap();

    let here = t.ledger.begin_scan(same_out).await.unwrap();
    let there = t.ledger.begin_scan(elsewhere).await.unwrap();

    assert_eq!(here.look_up(&stamp).await.unwrap(), [Lookup::Current]);
    assert_eq!(
        there.look_up(&stamp).await.unwrap(),
        [Lookup::Unchanged],
        "no plan in /other-out yet"
    );
}

#[rstest]
#[tokio::test]
async fn an_input_recorded_only_by_a_run_into_another_out_is_not_current(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let first = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let walk = t.ledger.begin_scan(first).await.unwrap();
    walk.record(&crate::support::batch("/in", Vec::new()))
        .await
        .unwrap();
    walk.complete().await.unwrap();
    let elsewhere = t
        .ledger
        .begin_run("test", Path::new("/other-out"))
        .await
        .unwrap();
    record_inputs(&t.ledger, elsewhere, "/in", vec![input("/in/late.jpg", 1)]).await;
    let again = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();

    let known = t
        .ledger
        .begin_scan(again)
        .await
        .unwrap()
        .look_up(&[(Path::new("/in/late.jpg"), 1001, MTIME)])
        .await
        .unwrap();

    assert_eq!(known, [Lookup::Unchanged], "it has no plan in /out");
}

#[rstest]
#[tokio::test]
async fn inputs_with_the_same_content_share_one_image(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();

    record_inputs(
        &t.ledger,
        run,
        "/in",
        vec![input("/in/a.jpg", 5), input("/in/copy of a.jpg", 5)],
    )
    .await;

    assert_eq!(t.ledger.status_counts().await.unwrap().total, 1);
    let inputs = t.ledger.inputs_of_image(&sha(5)).await.unwrap();
    let paths: Vec<_> = inputs.iter().map(|i| i.path.to_str().unwrap()).collect();
    assert_eq!(paths, ["/in/a.jpg", "/in/copy of a.jpg"]);
}

#[rstest]
#[tokio::test]
async fn a_rescan_keeps_the_planned_output_recorded_first_and_moves_last_run(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let first = t
        .ledger
        .begin_run("first", Path::new("/out"))
        .await
        .unwrap();
    record_inputs(&t.ledger, first, "/in", vec![input("/in/a.jpg", 1)]).await;
    let second = t
        .ledger
        .begin_run("second", Path::new("/out"))
        .await
        .unwrap();
    let again = FoundInput {
        planned_output: PathBuf::from("/elsewhere/a.jpg"),
        ..input("/in/a.jpg", 1)
    };

    record_inputs(&t.ledger, second, "/in", vec![again]).await;

    let row = t
        .ledger
        .input(Path::new("/in/a.jpg"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.planned_output.as_deref(),
        Some(Path::new("/out/in/a.jpg"))
    );
    assert_eq!(row.last_run, Some(second));
}

#[rstest]
#[tokio::test]
async fn an_unchanged_file_keeps_its_output_path(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(&t.ledger, run, "/in", vec![input("/in/a.jpg", 1)]).await;
    t.ledger
        .set_input_output(run, Path::new("/in/a.jpg"), Path::new("/out/in/a.jpg"))
        .await
        .unwrap();

    record_inputs(&t.ledger, run, "/in", vec![input("/in/a.jpg", 1)]).await;

    let row = t
        .ledger
        .input(Path::new("/in/a.jpg"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.output_path.as_deref(), Some(Path::new("/out/in/a.jpg")));
}

#[rstest]
#[tokio::test]
async fn an_edited_file_points_at_its_new_content_and_loses_its_output_but_not_its_plan(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(&t.ledger, run, "/in", vec![input("/in/a.jpg", 1)]).await;
    t.ledger
        .set_input_output(run, Path::new("/in/a.jpg"), Path::new("/out/in/a.jpg"))
        .await
        .unwrap();
    let mut edited = input("/in/a.jpg", 2);
    edited.mtime_ns += 1;

    record_inputs(&t.ledger, run, "/in", vec![edited]).await;

    let row = t
        .ledger
        .input(Path::new("/in/a.jpg"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.sha256, row.size, row.output_path),
        (sha(2), 1002, None)
    );
    assert_eq!(
        row.planned_output.as_deref(),
        Some(Path::new("/out/in/a.jpg"))
    );
    assert_eq!(
        t.ledger.image(&sha(2)).await.unwrap().unwrap().status,
        ImageStatus::New
    );
}

#[rstest]
#[tokio::test]
async fn planned_output_owners_name_the_input_that_planned_each_output(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(
        &t.ledger,
        run,
        "/in",
        vec![input("/in/a.jpg", 1), input("/in/c.jpg", 2)],
    )
    .await;
    let scan = t.ledger.begin_scan(run).await.unwrap();

    let owners = scan
        .planned_output_owners(&[
            PathBuf::from("/out/in/a.jpg"),
            PathBuf::from("/out/in/b.jpg"),
            PathBuf::from("/out/in/c.jpg"),
        ])
        .await
        .unwrap();

    assert_eq!(owners.len(), 2, "{owners:?}");
    assert_eq!(owners[Path::new("/out/in/a.jpg")], Path::new("/in/a.jpg"));
    assert_eq!(owners[Path::new("/out/in/c.jpg")], Path::new("/in/c.jpg"));
}

#[rstest]
#[tokio::test]
async fn an_unchanged_input_seen_by_a_new_run_joins_it_and_keeps_its_plan(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let first = t.ledger.begin_run("a", Path::new("/out")).await.unwrap();
    record_inputs(&t.ledger, first, "/in", vec![input("/in/a.jpg", 1)]).await;
    t.ledger.finish_run(first, "complete", "{}").await.unwrap();
    let second = t.ledger.begin_run("b", Path::new("/out")).await.unwrap();
    let elsewhere = FoundInput {
        planned_output: PathBuf::from("/out/elsewhere.jpg"),
        ..seen("/in/a.jpg", 1)
    };

    record_inputs(&t.ledger, second, "/in", vec![elsewhere]).await;

    assert_eq!(t.ledger.run_progress(second).await.unwrap().inputs, 1);
    let row = t
        .ledger
        .input(Path::new("/in/a.jpg"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_run, Some(second));
    let of_run = t.ledger.run_inputs_of_image(second, &sha(1)).await.unwrap();
    assert_eq!(
        of_run[0].planned_output.as_deref(),
        Some(Path::new("/out/in/a.jpg")),
        "the first plan wins"
    );
    assert_eq!(t.ledger.status_counts().await.unwrap().total, 1);
}

#[rstest]
#[tokio::test]
async fn clear_input_output_forgets_the_written_output(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(&t.ledger, run, "/in", vec![input("/in/a.jpg", 1)]).await;
    t.ledger
        .set_input_output(run, Path::new("/in/a.jpg"), Path::new("/out/in/a.jpg"))
        .await
        .unwrap();

    t.ledger
        .clear_input_output(Path::new("/in/a.jpg"))
        .await
        .unwrap();

    assert_eq!(
        t.ledger
            .input(Path::new("/in/a.jpg"))
            .await
            .unwrap()
            .unwrap()
            .output_path,
        None
    );
}

#[rstest]
#[tokio::test]
async fn setting_the_output_of_an_unknown_input_is_refused(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();

    let err = t
        .ledger
        .set_input_output(run, Path::new("/in/ghost.jpg"), Path::new("/out/x.jpg"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::UnknownInput { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Bug);
}

#[rstest]
#[tokio::test]
async fn an_empty_batch_records_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("test", Path::new("/out")).await.unwrap();
    let scan = t.ledger.begin_scan(run).await.unwrap();

    scan.record(&ScanBatch::default()).await.unwrap();

    assert_eq!(t.ledger.input_counts().await.unwrap().total, 0);
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 0);
}

#[rstest]
#[tokio::test]
async fn two_runs_over_the_same_paths_each_keep_their_own_inputs_and_outputs(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let a = t.ledger.begin_run("a", Path::new("/out-a")).await.unwrap();
    let b = t.ledger.begin_run("b", Path::new("/out-b")).await.unwrap();
    let in_a = FoundInput {
        planned_output: "/out-a/x.jpg".into(),
        ..input("/in/x.jpg", 1)
    };
    let in_b = FoundInput {
        planned_output: "/out-b/x.jpg".into(),
        ..input("/in/x.jpg", 1)
    };
    record_inputs(&t.ledger, a, "/in", vec![in_a]).await;
    record_inputs(&t.ledger, b, "/in", vec![in_b]).await;

    // Both runs still count the input as theirs (the later record took nothing from the first).
    assert_eq!(t.ledger.run_progress(a).await.unwrap().inputs, 1);
    assert_eq!(t.ledger.run_progress(b).await.unwrap().inputs, 1);
    let of_a = t.ledger.run_inputs_of_image(a, &sha(1)).await.unwrap();
    let of_b = t.ledger.run_inputs_of_image(b, &sha(1)).await.unwrap();
    assert_eq!(
        of_a[0].planned_output.as_deref(),
        Some(Path::new("/out-a/x.jpg"))
    );
    assert_eq!(
        of_b[0].planned_output.as_deref(),
        Some(Path::new("/out-b/x.jpg"))
    );

    t.ledger
        .set_input_output(a, Path::new("/in/x.jpg"), Path::new("/out-a/x.jpg"))
        .await
        .unwrap();
    let of_a = t.ledger.run_inputs_of_image(a, &sha(1)).await.unwrap();
    let of_b = t.ledger.run_inputs_of_image(b, &sha(1)).await.unwrap();
    assert_eq!(
        of_a[0].output_path.as_deref(),
        Some(Path::new("/out-a/x.jpg"))
    );
    assert_eq!(of_b[0].output_path, None, "nothing written in /out-b");
}

#[rstest]
#[tokio::test]
async fn a_run_finished_before_its_walk_completed_has_no_inputs_left(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("a", Path::new("/out")).await.unwrap();
    record(&t.ledger, run, 0, 3).await;
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 3);
    t.ledger.finish_run(run, "complete", "{}").await.unwrap();
    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 0);
    assert_eq!(t.ledger.input_counts().await.unwrap().total, 3);
}

#[rstest]
#[tokio::test]
async fn a_finished_run_of_many_inputs_leaves_another_runs_inputs(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let run = t.ledger.begin_run("a", Path::new("/out")).await.unwrap();
    let other = t.ledger.begin_run("b", Path::new("/out")).await.unwrap();
    let scan = t.ledger.begin_scan(run).await.unwrap();
    for first in (0..5_000).step_by(1_000) {
        crate::support::record_with(&scan, "/in", first, 1_000).await;
    }
    record_in(&t.ledger, other, "/other", 0, 10).await;

    t.ledger.finish_run(run, "complete", "{}").await.unwrap();

    assert_eq!(t.ledger.run_progress(run).await.unwrap().inputs, 0);
    assert_eq!(t.ledger.run_progress(other).await.unwrap().inputs, 10);
    assert_eq!(t.ledger.input_counts().await.unwrap().total, 5_010);
}

#[rstest]
#[tokio::test]
async fn a_finished_run_leaves_the_inputs_of_earlier_and_later_live_runs(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let earlier = t.ledger.begin_run("a", Path::new("/out")).await.unwrap();
    let finishing = t.ledger.begin_run("b", Path::new("/out")).await.unwrap();
    let later = t.ledger.begin_run("c", Path::new("/out")).await.unwrap();
    record(&t.ledger, earlier, 0, 2).await;
    record(&t.ledger, finishing, 0, 3).await;
    record(&t.ledger, later, 1, 4).await;

    t.ledger
        .finish_run(finishing, "complete", "{}")
        .await
        .unwrap();

    // Each live run's inputs are the five present under /in, its root.
    assert_eq!(t.ledger.run_progress(finishing).await.unwrap().inputs, 0);
    assert_eq!(t.ledger.run_progress(earlier).await.unwrap().inputs, 5);
    assert_eq!(t.ledger.run_progress(later).await.unwrap().inputs, 5);
}

#[rstest]
#[tokio::test]
async fn forget_unused_deletes_only_a_new_image_that_no_input_holds(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let Some(t) = fresh(backend).await else {
        return;
    };
    let l = &t.ledger;
    let run = l.begin_run("test", Path::new("/out")).await.unwrap();
    record_inputs(l, run, "/in", vec![input("/in/a.jpg", 1)]).await;
    record_inputs(l, run, "/in", vec![input("/in/a.jpg", 2)]).await;

    assert!(
        !l.forget_unused(&sha(2)).await.unwrap(),
        "held by /in/a.jpg"
    );
    assert!(l.forget_unused(&sha(1)).await.unwrap());
    assert!(l.image(&sha(1)).await.unwrap().is_none());
    assert_eq!(l.status_counts().await.unwrap().total, 1);
}
