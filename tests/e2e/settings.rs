//! Settings: a flag beats its `ERASER_<NAME>` variable, which beats the config file's key,
//! which beats the default; `eraser config show` names each value's source; a value out of
//! range or malformed, from any source, is a usage error (exit 2) naming the setting and its
//! range, before anything is uploaded, never a panic or an abort.

use std::path::PathBuf;
use std::process::Command;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::util::{FinishExt as _, Finished, Format, TestDir, emulator, image};

/// A tree with one image in `inputs/`.
fn one_image(seed: u64) -> TestDir {
    let td = TestDir::new();
    td.write("inputs/a.png", &image(Format::Png, seed));
    td
}

/// Writes `text` as `<root>/config.toml` and returns its path.
fn config_file(td: &TestDir, text: &str) -> PathBuf {
    td.write("config.toml", text.as_bytes())
}

/// `eraser run inputs -o out --json <extra…>` with the config file at `config`.
fn run_with_config(td: &TestDir, emu: &Emulator, config: &PathBuf, extra: &[&str]) -> Finished {
    let mut cmd = td.run_cmd(emu, &[&td.inputs()], &td.out(), extra);
    cmd.env("ERASER_CONFIG", config);
    cmd.finish()
}

/// Exit 2, stderr naming each of `clues`, no panic, nothing sent to the service.
fn assert_refused_before_any_upload(finished: Finished, emu: &Emulator, clues: &[&str]) {
    assert!(
        !finished.stderr.contains("panicked"),
        "eraser panicked:\n{}",
        finished.stderr
    );
    let finished = finished.expect_code(2);
    for clue in clues {
        assert!(
            finished.stderr.contains(clue),
            "stderr does not say {clue:?}:\n{}",
            finished.stderr
        );
    }
    assert_eq!(emu.counters().create_job_requests, 0);
}

/// The value of `name` in the headers of every create-job request the emulator saw.
fn create_job_header(emu: &Emulator, name: &str) -> Vec<String> {
    emu.uploads()
        .iter()
        .map(|upload| {
            upload
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect()
}

// --- values out of range ----------------------------------------------------------------------

/// The values that once panicked (`Duration::from_secs_f64`, tokio's semaphore) or started
/// threads until the process aborted, with the setting's flag, variable and range.
const CRASHERS: [(&str, &str, &str, &str); 4] = [
    ("--rate", "ERASER_RATE", "1e-300", "0.001 to 10000"),
    (
        "--upload-concurrency",
        "ERASER_UPLOAD_CONCURRENCY",
        "9223372036854775807",
        "1 to 256",
    ),
    (
        "--download-concurrency",
        "ERASER_DOWNLOAD_CONCURRENCY",
        "9223372036854775807",
        "1 to 256",
    ),
    (
        "--hash-threads",
        "ERASER_HASH_THREADS",
        "4294967296",
        "0 to 256",
    ),
];

#[test]
fn a_flag_value_out_of_range_exits_2_naming_the_flag_and_its_range() {
    let emu = emulator(Knobs::default());
    let td = one_image(301);
    for (flag, _, value, range) in CRASHERS {
        let finished = td.run(&emu, &[&td.inputs()], &td.out(), &[flag, value]);

        assert_refused_before_any_upload(finished, &emu, &[flag, range]);
    }
}

#[test]
fn a_variable_out_of_range_exits_2_naming_the_variable_and_its_range() {
    let emu = emulator(Knobs::default());
    let td = one_image(302);
    for (_, env, value, range) in CRASHERS {
        let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &[]);
        cmd.env(env, value);

        assert_refused_before_any_upload(cmd.finish(), &emu, &[env, range]);
    }
}

#[test]
fn a_config_value_out_of_range_exits_2_naming_the_key_the_file_and_its_range() {
    let emu = emulator(Knobs::default());
    let td = one_image(303);
    for (_, env, value, range) in CRASHERS {
        let key = env.trim_start_matches("ERASER_").to_ascii_lowercase();
        let config = config_file(&td, &format!("{key} = {value}\n"));

        let finished = run_with_config(&td, &emu, &config, &[]);

        let file = config.display().to_string();
        assert_refused_before_any_upload(finished, &emu, &[&key, &file, range]);
    }
}

#[test]
fn a_malformed_duration_from_the_environment_exits_2_naming_the_variable() {
    let emu = emulator(Knobs::default());
    let td = one_image(304);
    let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &[]);
    cmd.env("ERASER_JOB_TIMEOUT", "ten minutes");

    assert_refused_before_any_upload(cmd.finish(), &emu, &["ERASER_JOB_TIMEOUT"]);
}

// --- precedence -------------------------------------------------------------------------------

/// A run over one image with `product_code = "111"` in the config file, `env` set and `extra`
/// flags: the Product-Code its create-job carried.
fn product_code_sent(seed: u64, env: Option<&str>, extra: &[&str]) -> Vec<String> {
    let emu = emulator(Knobs::default());
    let td = one_image(seed);
    let config = config_file(&td, "product_code = \"111\"\n");
    let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), extra);
    cmd.env("ERASER_CONFIG", &config);
    if let Some(code) = env {
        cmd.env("ERASER_PRODUCT_CODE", code);
    }
    cmd.finish().expect_code(0);
    create_job_header(&emu, "product-code")
}

#[test]
fn a_setting_in_the_config_file_reaches_the_service() {
    assert_eq!(product_code_sent(311, None, &[]), ["111"]);
}

#[test]
fn a_variable_beats_the_config_file() {
    assert_eq!(product_code_sent(312, Some("222"), &[]), ["222"]);
}

#[test]
fn a_flag_beats_the_variable_and_the_config_file() {
    assert_eq!(
        product_code_sent(313, Some("222"), &["--product-code", "333"]),
        ["333"]
    );
}

#[test]
fn a_switch_from_the_environment_changes_the_run() {
    let emu = emulator(Knobs::default());
    let td = one_image(314);
    let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &[]);
    cmd.env("ERASER_ANONYMOUS", "true");

    cmd.finish().expect_code(0);

    let uploads = emu.uploads();
    let name = uploads[0].file_name.clone().unwrap_or_default();
    assert_eq!(name, format!("{}.png", uploads[0].sha256));
}

#[test]
fn headers_from_the_environment_reach_the_service_and_a_flag_replaces_one_of_the_same_name() {
    let emu = emulator(Knobs::default());
    let td = one_image(315);
    let mut cmd = td.run_cmd(
        &emu,
        &[&td.inputs()],
        &td.out(),
        &["--header", "X-Two: flag"],
    );
    cmd.env("ERASER_HEADERS", "X-One: env\nX-Two: env");

    cmd.finish().expect_code(0);

    assert_eq!(create_job_header(&emu, "x-one"), ["env"]);
    assert_eq!(create_job_header(&emu, "x-two"), ["flag"]);
}

// --- config show ------------------------------------------------------------------------------

/// `eraser config show <args…>` with the config file at `config` and `envs` set.
fn config_show(td: &TestDir, config: &PathBuf, envs: &[(&str, &str)], args: &[&str]) -> String {
    let emu = emulator(Knobs::default());
    let mut cmd: Command = td.eraser(&emu);
    cmd.env("ERASER_CONFIG", config).envs(envs.iter().copied());
    cmd.args(["config", "show"]).args(args);
    cmd.finish().expect_code(0).stdout
}

#[test]
fn config_show_names_the_source_of_each_value() {
    let td = TestDir::new();
    let config = config_file(&td, "concurrency = 3\njob_timeout = \"90s\"\n");

    let shown = config_show(
        &td,
        &config,
        &[
            ("ERASER_UPLOAD_CONCURRENCY", "5"),
            ("ERASER_JOB_TIMEOUT", "2m"),
        ],
        &["--rate", "2", "--no-follow"],
    );

    for line in [
        "concurrency = 3  # file",
        "upload_concurrency = 5  # env ERASER_UPLOAD_CONCURRENCY",
        "job_timeout = \"2m\"  # env ERASER_JOB_TIMEOUT",
        "rate = 2  # flag",
        "follow = false  # flag",
        "max_attempts = 3  # default",
        "outage_timeout = \"2m\"  # default",
    ] {
        assert!(shown.contains(line), "no line {line:?} in:\n{shown}");
    }
}
