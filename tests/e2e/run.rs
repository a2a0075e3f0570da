//! Output layout of `eraser run`: OUT mirrors each input below its INPUT folder, with the stem
//! kept and the result's extension (`.jpg`); shared stems keep the whole name; a file INPUT
//! lands directly in OUT.

use std::path::{Path, PathBuf};

use eraser_tests::emulator::Knobs;

use crate::util::{
    Expected, Format, TestDir, assert_each_uploaded_once, assert_outputs_exactly, emulator, image,
    num, sha256_hex,
};

/// Writes `inputs/<rel>` with an image of `format` and expects `<out_rel>` made from it.
fn input(
    td: &TestDir,
    expected: &mut Expected,
    rel: &str,
    format: Format,
    seed: u64,
    out_rel: &str,
) {
    let bytes = image(format, seed);
    td.write(Path::new("inputs").join(rel), &bytes);
    expected.insert(PathBuf::from(out_rel), sha256_hex(&bytes));
}

#[test]
fn nested_folders_of_mixed_formats_give_one_valid_output_per_input_at_the_mirrored_path() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    input(&td, &mut expected, "top.jpg", Format::Jpeg, 1, "top.jpg");
    input(&td, &mut expected, "a/one.png", Format::Png, 2, "a/one.jpg");
    input(
        &td,
        &mut expected,
        "a/two.webp",
        Format::Webp,
        3,
        "a/two.jpg",
    );
    input(
        &td,
        &mut expected,
        "a/b/three.jpeg",
        Format::Jpeg,
        4,
        "a/b/three.jpg",
    );
    input(
        &td,
        &mut expected,
        "a/b/c/four.png",
        Format::Png,
        5,
        "a/b/c/four.jpg",
    );
    input(
        &td,
        &mut expected,
        "a/b/c/five.webp",
        Format::Webp,
        6,
        "a/b/c/five.jpg",
    );
    input(
        &td,
        &mut expected,
        "z/y/x/w/six.PNG",
        Format::Png,
        7,
        "z/y/x/w/six.jpg",
    );

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &["-j", "8"])
        .expect_code(0)
        .json();

    assert_outputs_exactly(&td.out(), &expected);
    assert_each_uploaded_once(&emu.counters(), expected.values());
    assert_eq!(num(&summary, "/inputs"), 7);
    assert_eq!(num(&summary, "/outputs_done"), 7);
}

#[test]
fn inputs_sharing_a_stem_in_one_folder_keep_their_whole_name() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    input(
        &td,
        &mut expected,
        "p/a.png",
        Format::Png,
        11,
        "p/a.png.jpg",
    );
    input(
        &td,
        &mut expected,
        "p/a.webp",
        Format::Webp,
        12,
        "p/a.webp.jpg",
    );
    input(&td, &mut expected, "p/b.jpg", Format::Jpeg, 13, "p/b.jpg");

    td.run(&emu, &[&td.inputs()], &td.out(), &[]).expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn a_file_input_lands_in_out_under_its_stem() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let bytes = image(Format::Png, 21);
    let file = td.write("inputs/deep/er/photo.png", &bytes);
    let expected = Expected::from([(PathBuf::from("photo.jpg"), sha256_hex(&bytes))]);

    td.run(&emu, &[&file], &td.out(), &[]).expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
}

#[test]
fn non_image_files_in_a_folder_are_skipped_without_failing_the_run() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    input(&td, &mut expected, "pic.png", Format::Png, 31, "pic.jpg");
    td.write("inputs/notes.txt", b"not an image at all");
    td.write("inputs/fake.jpg", b"text dressed as a jpeg");

    let summary = td
        .run(&emu, &[&td.inputs()], &td.out(), &[])
        .expect_code(0)
        .json();

    assert_outputs_exactly(&td.out(), &expected);
    assert_eq!(num(&summary, "/skipped"), 2);
    assert_eq!(emu.counters().create_job_requests, 1);
}

#[test]
fn out_inside_the_input_folder_is_never_scanned() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    input(&td, &mut expected, "a.png", Format::Png, 41, "a.jpg");
    input(
        &td,
        &mut expected,
        "sub/b.webp",
        Format::Webp,
        42,
        "sub/b.jpg",
    );
    let out = td.inputs().join("results");

    td.run(&emu, &[&td.inputs()], &out, &[]).expect_code(0);
    let summary = td
        .run(&emu, &[&td.inputs()], &out, &[])
        .expect_code(0)
        .json();

    assert_outputs_exactly(&out, &expected);
    assert_eq!(num(&summary, "/inputs"), 2, "outputs were taken as inputs");
    assert_each_uploaded_once(&emu.counters(), expected.values());
}

#[test]
fn a_file_at_the_output_path_that_eraser_did_not_write_is_kept() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    input(&td, &mut expected, "mine.png", Format::Png, 51, "mine.jpg");
    input(
        &td,
        &mut expected,
        "other.png",
        Format::Png,
        52,
        "other.jpg",
    );
    let theirs = td.write("out/mine.jpg", b"the user's own file");

    td.run(&emu, &[&td.inputs()], &td.out(), &[]);

    assert_eq!(
        std::fs::read(&theirs).expect("the file is still there"),
        b"the user's own file"
    );
    expected.remove(Path::new("mine.jpg"));
    crate::util::assert_outputs_valid(&td.out(), &expected);
}

#[test]
fn overwrite_replaces_a_file_at_the_output_path_that_eraser_did_not_write() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    input(&td, &mut expected, "mine.png", Format::Png, 61, "mine.jpg");
    td.write("out/mine.jpg", b"the user's own file");

    td.run(&emu, &[&td.inputs()], &td.out(), &["--overwrite"])
        .expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
}

#[cfg(unix)]
#[test]
fn link_makes_the_outputs_of_duplicates_hard_links_of_one_file() {
    use std::os::unix::fs::MetadataExt as _;

    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut expected = Expected::new();
    input(
        &td,
        &mut expected,
        "a/one.png",
        Format::Png,
        71,
        "a/one.jpg",
    );
    input(
        &td,
        &mut expected,
        "b/same.png",
        Format::Png,
        71,
        "b/same.jpg",
    );

    td.run(&emu, &[&td.inputs()], &td.out(), &["--link"])
        .expect_code(0);

    assert_outputs_exactly(&td.out(), &expected);
    let inode = |rel: &str| {
        std::fs::metadata(td.out().join(rel))
            .expect("the output exists")
            .ino()
    };
    assert_eq!(inode("a/one.jpg"), inode("b/same.jpg"));
}

#[test]
fn a_usage_error_exits_2_without_touching_the_service() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    td.write("inputs/a.png", &image(Format::Png, 81));

    let finished = td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "0"]);

    finished.expect_code(2);
    assert_eq!(emu.counters().create_job_requests, 0);
}

#[test]
fn out_that_is_an_existing_file_exits_2() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    td.write("inputs/a.png", &image(Format::Png, 82));
    let file = td.write("not-a-folder", b"x");

    td.run(&emu, &[&td.inputs()], &file, &[]).expect_code(2);

    assert_eq!(emu.counters().create_job_requests, 0);
}

/// Asserts OUT holds exactly one valid output per input sha in `shas` (wherever it was put).
fn assert_one_output_per_image(out: &Path, shas: &[String]) {
    let made: Vec<String> = crate::util::files_below(out)
        .iter()
        .map(|rel| {
            let bytes = std::fs::read(out.join(rel)).expect("read an output");
            image::load_from_memory(&bytes).expect("the output decodes");
            eraser_tests::emulator::source_sha256(&bytes).expect("the output has a source")
        })
        .collect();
    let mut made_sorted = made.clone();
    made_sorted.sort();
    let mut wanted = shas.to_vec();
    wanted.sort();
    assert_eq!(made_sorted, wanted, "outputs by source sha256");
}

#[test]
fn paths_read_from_stdin_one_per_line_each_get_an_output() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let shas: Vec<String> = (0..3u64)
        .map(|i| {
            let bytes = image(Format::nth(i), 90 + i);
            td.write(format!("inputs/s{i}/pic{i}.img"), &bytes);
            sha256_hex(&bytes)
        })
        .collect();
    let mut cmd = td.eraser(&emu);
    cmd.args(["run", "-", "-o"]).arg(td.out()).arg("--json");
    let list = b"inputs/s0/pic0.img\ninputs/s1/pic1.img\ninputs/s2/pic2.img\n";

    crate::util::Running::start_with_stdin(&mut cmd, list)
        .wait(crate::util::PROCESS_TIMEOUT)
        .expect_code(0);

    assert_one_output_per_image(&td.out(), &shas);
}

#[test]
fn nul_separated_paths_from_stdin_with_dash_0_each_get_an_output() {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let shas: Vec<String> = (0..2u64)
        .map(|i| {
            let bytes = image(Format::nth(i), 95 + i);
            td.write(format!("inputs/odd name\n{i}.png"), &bytes);
            sha256_hex(&bytes)
        })
        .collect();
    let mut cmd = td.eraser(&emu);
    cmd.args(["run", "-0", "-", "-o"])
        .arg(td.out())
        .arg("--json");
    let list = b"inputs/odd name\n0.png\0inputs/odd name\n1.png\0";

    crate::util::Running::start_with_stdin(&mut cmd, list)
        .wait(crate::util::PROCESS_TIMEOUT)
        .expect_code(0);

    assert_one_output_per_image(&td.out(), &shas);
}
