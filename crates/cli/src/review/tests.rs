//! The review as a whole: [`write`] over real image files in a temporary folder.

use std::ffi::OsStr;
use std::fs;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::ImageFormat;

use super::fixtures::{self, done, done_entries, failed, image, names_in, read_page};
use super::*;

fn options(out: &Path) -> Options {
    Options {
        threads: NonZeroUsize::new(2).expect("2"),
        ..Options::new(out)
    }
}

fn quiet(_: usize, _: usize) {}

fn write_quietly(entries: &[Entry], options: &Options) -> Written {
    write(entries, options, &quiet).expect("the review is written")
}

/// Reviews `entries` into `dir/review` with the test options: that folder and what was written.
fn review(dir: &Path, entries: &[Entry]) -> (PathBuf, Written) {
    let out = dir.join("review");
    let written = write_quietly(entries, &options(&out));
    (out, written)
}

/// The first page of a review of `entries` into `dir/review`.
fn first_page(dir: &Path, entries: &[Entry]) -> String {
    let (out, _) = review(dir, entries);
    read_page(out.join("index.html"))
}

/// Where the thumbnail of content `sha256` is in the review folder `out`.
fn thumb_of(out: &Path, sha256: &str) -> PathBuf {
    out.join(THUMBS_DIR).join(format!("{sha256}.jpg"))
}

#[test]
fn entries_past_the_page_size_go_on_numbered_pages_linked_to_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 5);
    let out = dir.path().join("review");
    let written = write_quietly(
        &entries,
        &Options {
            page_size: NonZeroUsize::new(2).expect("2"),
            ..options(&out)
        },
    );
    assert_eq!(
        written.pages,
        [
            out.join("index.html"),
            out.join("page-2.html"),
            out.join("page-3.html")
        ]
    );
    let first = read_page(out.join("index.html"));
    assert!(
        first.contains("href=\"page-2.html\" rel=\"next\""),
        "{first}"
    );
    assert!(
        first.contains("href=\"page-3.html\" rel=\"last\""),
        "{first}"
    );
    assert!(first.contains("id=\"entry-0\"") && first.contains("id=\"entry-1\""));
    assert!(!first.contains("id=\"entry-2\""));
    let second = read_page(out.join("page-2.html"));
    assert!(
        second.contains("href=\"index.html\" rel=\"prev\""),
        "{second}"
    );
    assert!(
        second.contains("href=\"page-3.html\" rel=\"next\""),
        "{second}"
    );
    assert!(second.contains("images 3–4"), "{second}");
    let last = read_page(out.join("page-3.html"));
    assert!(last.contains("id=\"entry-4\""));
    assert!(last.contains("<span class=\"off\">Next ›</span>"), "{last}");
}

#[test]
fn a_page_size_of_one_hundred_is_the_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(Options::new(dir.path()).page_size.get(), 100);
}

#[test]
fn a_review_with_entries_that_fit_one_page_writes_no_page_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 2);
    let (out, written) = review(dir.path(), &entries);
    assert_eq!(written.pages, [out.join("index.html")]);
    assert!(!read_page(out.join("index.html")).contains("<nav"));
}

#[test]
fn a_shorter_review_removes_the_pages_it_no_longer_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 5);
    let out = dir.path().join("review");
    let by_two = Options {
        page_size: NonZeroUsize::new(2).expect("2"),
        ..options(&out)
    };
    write_quietly(&entries, &by_two);
    fs::write(out.join("notes.html"), "mine").expect("a file of the user's");
    write_quietly(&entries[..3], &by_two);
    assert_eq!(
        names_in(&out),
        ["index.html", "notes.html", "page-2.html", "thumbs"]
    );
}

#[test]
fn an_empty_review_writes_one_page_saying_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("review");
    let written = write_quietly(&[], &options(&out));
    assert_eq!(written.pages, [out.join("index.html")]);
    let page = read_page(out.join("index.html"));
    assert!(page.contains("0 images."), "{page}");
    assert!(page.contains("No images to show."), "{page}");
}

#[test]
fn thumbnails_are_named_by_the_content_hash_of_input_and_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 1);
    let (out, written) = review(dir.path(), &entries);
    assert_eq!(written.thumbnails_made, 2);
    let input_hash = &entries[0].sha256;
    let result_hash = entries[0].result.as_ref().and_then(|r| r.sha256.clone());
    let mut expected = vec![
        format!("{input_hash}.jpg"),
        format!("{}.jpg", result_hash.expect("a result hash")),
    ];
    expected.sort();
    assert_eq!(names_in(&out.join(THUMBS_DIR)), expected);
    let page = read_page(out.join("index.html"));
    assert!(
        page.contains(&format!("src=\"thumbs/{input_hash}.jpg\"")),
        "{page}"
    );
}

#[test]
fn a_second_review_of_the_same_entries_makes_no_thumbnail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 3);
    let (out, first) = review(dir.path(), &entries);
    assert_eq!((first.thumbnails_made, first.thumbnails_cached), (6, 0));
    let before = fs::read(out.join("index.html")).expect("page");
    let second = write_quietly(&entries, &options(&out));
    assert_eq!((second.thumbnails_made, second.thumbnails_cached), (0, 6));
    assert_eq!(fs::read(out.join("index.html")).expect("page"), before);
}

#[test]
fn the_same_content_under_two_names_makes_one_thumbnail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = done_entries(dir.path(), 1);
    let copy = dir.path().join("copy.png");
    fs::copy(&entries[0].input, &copy).expect("copy");
    entries.push(Entry {
        input: copy,
        ..entries[0].clone()
    });
    let written = write_quietly(&entries, &options(&dir.path().join("review")));
    assert_eq!(written.thumbnails_made, 2);
}

#[test]
fn a_large_image_gets_a_thumbnail_480_pixels_on_its_longest_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("tall.png");
    let result = dir.path().join("tall-out.jpg");
    image(&input, 500, 1000, ImageFormat::Png, 1);
    image(&result, 500, 1000, ImageFormat::Jpeg, 2);
    let entry = done(&input, &result);
    let (out, _) = review(dir.path(), std::slice::from_ref(&entry));
    let thumb = thumb_of(&out, &entry.sha256);
    assert_eq!(image::image_dimensions(&thumb).expect("a JPEG"), (240, 480));
    let page = read_page(out.join("index.html"));
    assert!(page.contains("width=\"240\" height=\"480\""), "{page}");
    assert!(page.contains("Original · "), "{page}");
    assert!(page.contains(" · 500 × 1000</figcaption>"), "{page}");
}

#[test]
fn a_small_image_is_not_enlarged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 1);
    let (out, _) = review(dir.path(), &entries);
    let thumb = thumb_of(&out, &entries[0].sha256);
    assert_eq!(image::image_dimensions(&thumb).expect("a JPEG"), (40, 30));
}

#[test]
fn an_image_turned_by_exif_is_shown_and_measured_as_it_is_displayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("portrait.jpg");
    fixtures::turned_jpeg(&input, 40, 20);
    let entry = done(&input, &input);
    let (out, _) = review(dir.path(), std::slice::from_ref(&entry));
    let thumb = thumb_of(&out, &entry.sha256);
    assert_eq!(image::image_dimensions(&thumb).expect("a JPEG"), (20, 40));
    let page = read_page(out.join("index.html"));
    assert!(page.contains(" · 20 × 40</figcaption>"), "{page}");
}

#[test]
fn a_transparent_image_gets_a_thumbnail_over_white() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("clear.png");
    fixtures::transparent_png(&input, 8, 8);
    let entry = done(&input, &input);
    let (out, _) = review(dir.path(), std::slice::from_ref(&entry));
    let thumb = thumb_of(&out, &entry.sha256);
    let pixel = *image::open(&thumb)
        .expect("a JPEG")
        .to_rgb8()
        .get_pixel(4, 4);
    assert!(pixel.0.iter().all(|c| *c > 240), "{pixel:?}");
}

#[test]
fn an_undecodable_file_gets_a_placeholder_and_a_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = done_entries(dir.path(), 1);
    let broken = dir.path().join("broken.jpg");
    fs::write(&broken, b"\xff\xd8\xff\xe0 not really a JPEG").expect("write");
    entries.push(done(&broken, &entries[0].input.clone()));
    let (out, written) = review(dir.path(), &entries);
    assert_eq!(written.notes.len(), 1, "{:?}", written.notes);
    assert_eq!(
        written.notes[0].path,
        fs::canonicalize(&broken).expect("path")
    );
    let page = read_page(out.join("index.html"));
    assert!(
        page.contains("<span class=\"placeholder\">No thumbnail: "),
        "{page}"
    );
    assert!(
        page.contains("id=\"entry-1\""),
        "the broken entry has its card"
    );
    assert!(!thumb_of(&out, &entries[1].sha256).exists());
}

#[test]
fn a_missing_result_file_gets_a_placeholder_and_a_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = done_entries(dir.path(), 1);
    let result = entries[0].result.clone().expect("a result");
    fs::remove_file(&result.path).expect("remove");
    entries[0].result = Some(result);
    let written = write_quietly(&entries, &options(&dir.path().join("review")));
    assert_eq!(written.thumbnails_made, 1);
    assert_eq!(written.notes.len(), 1);
    assert!(
        written.notes[0].reason.contains("cannot read"),
        "{:?}",
        written.notes
    );
}

#[test]
fn a_result_of_unknown_hash_is_hashed_for_its_thumbnail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = done_entries(dir.path(), 1);
    let result = entries[0].result.as_mut().expect("a result");
    result.sha256 = None;
    let hash = fixtures::sha256_of(&result.path);
    let (out, _) = review(dir.path(), &entries);
    assert!(thumb_of(&out, &hash).is_file());
}

#[test]
fn a_hash_that_is_not_hex_never_becomes_a_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = done_entries(dir.path(), 1);
    let real = fixtures::sha256_of(&entries[0].input);
    entries[0].sha256 = "../../escape".into();
    let (out, _) = review(dir.path(), &entries);
    assert!(thumb_of(&out, &real).is_file());
    assert!(!dir.path().join("escape.jpg").exists());
}

#[test]
fn progress_counts_every_file_up_to_the_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 3);
    let seen = Mutex::new(Vec::new());
    let record = |done: usize, total: usize| seen.lock().expect("lock").push((done, total));
    write(&entries, &options(&dir.path().join("review")), &record).expect("written");
    let mut seen = seen.into_inner().expect("lock");
    seen.sort();
    assert_eq!(seen, (0..=6).map(|d| (d, 6)).collect::<Vec<_>>());
}

#[test]
fn failed_images_are_listed_with_their_reason_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("a.png");
    image(&input, 10, 10, ImageFormat::Png, 0);
    let entries = [failed(&input, "refused: <script>alert(1)</script> & more")];
    let (out, written) = review(dir.path(), &entries);
    assert_eq!(written.thumbnails_made, 0);
    let page = read_page(out.join("index.html"));
    assert!(page.contains("<h2>Failed</h2>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
}

#[test]
fn unfinished_images_are_listed_with_their_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("a.png");
    image(&input, 10, 10, ImageFormat::Png, 0);
    let entries = [Entry {
        status: Status::Other {
            status: "processing".into(),
        },
        job_id: Some("j-42".into()),
        ..failed(&input, "")
    }];
    let page = first_page(dir.path(), &entries);
    assert!(page.contains("<h2>Not finished</h2>"), "{page}");
    assert!(
        page.contains("<span class=\"reason\">processing</span>"),
        "{page}"
    );
    assert!(page.contains("job <code>j-42</code>"), "{page}");
}

#[test]
fn the_header_gives_the_counts_and_the_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = done_entries(dir.path(), 2);
    entries.push(failed(&entries[0].input.clone(), "no credits"));
    let out = dir.path().join("review");
    let filtered = Options {
        filters: vec!["status done".into(), "run 12 <last>".into()],
        ..options(&out)
    };
    write_quietly(&entries, &filtered);
    let page = read_page(out.join("index.html"));
    assert!(page.contains("3 images: 2 done, 1 failed."), "{page}");
    assert!(
        page.contains("Filter: status done, run 12 &lt;last&gt;."),
        "{page}"
    );
}

#[test]
fn a_card_gives_job_id_time_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 1);
    let page = first_page(dir.path(), &entries);
    assert!(page.contains("job <code>job-1</code>"), "{page}");
    assert!(
        page.contains("<time datetime=\"2025-03-04T05:06:07Z\">2025-03-04 05:06:07 UTC</time>"),
        "{page}"
    );
    assert!(page.contains(" · run 7"), "{page}");
}

#[test]
fn a_file_with_an_odd_name_is_linked_by_the_url_of_its_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir
        .path()
        .join(OsStr::from_bytes(b"in #1 %?\"'\xc3\xa9\xff.png"));
    image(&input, 12, 12, ImageFormat::Png, 3);
    let entry = done(&input, &input);
    let page = first_page(dir.path(), std::slice::from_ref(&entry));
    let href = links::file_url(&fs::canonicalize(&input).expect("path"));
    assert!(
        href.ends_with("/in%20%231%20%25%3F%22%27%C3%A9%FF.png"),
        "{href}"
    );
    assert!(page.contains(&format!("href=\"{href}\"")), "{page}");
    assert!(page.contains("in #1 %?&quot;&#39;é\u{FFFD}.png"), "{page}");
}

#[test]
fn an_output_folder_that_cannot_be_made_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("review");
    fs::write(&blocker, "a file where the folder should be").expect("write");
    let err = write(&[], &options(&blocker), &quiet).expect_err("not a folder");
    assert!(matches!(err, Error::CreateFolder { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&blocker.join("thumbs").display().to_string()),
        "{err}"
    );
}

#[test]
fn the_page_works_offline_and_in_dark_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = done_entries(dir.path(), 1);
    let page = first_page(dir.path(), &entries);
    assert!(page.contains("prefers-color-scheme: dark"));
    assert!(page.contains("name=\"viewport\""));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    assert!(
        !page.contains("<script") && !page.contains("<link"),
        "{page}"
    );
}
