//! Secrets: the API token, from `ERASER_TOKEN` or the config file, reaches the service as
//! `Authorization` and nowhere else — not stdout, not stderr at any verbosity (`-v` to `-vvv`,
//! `RUST_LOG=trace`), not on failure paths, not in the ledger's bytes, not in `config show`.
//! A config file holding a token that other users can read draws a warning.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use eraser_tests::emulator::{Emulator, Hostile, Knobs, codes};

use crate::util::{
    Expected, FinishExt, Finished, PROCESS_TIMEOUT, Running, TestDir, emulator, write_unique,
};

/// The planted token.
const TOKEN: &str = "tok-SECRET-1234";
/// Its distinctive middle: a token cut or partly masked must not show this either.
const TOKEN_CORE: &str = "SECRET-1234";

/// The verbosities every leak check runs at: extra flags and `RUST_LOG`.
const VERBOSITIES: [(&[&str], Option<&str>); 4] = [
    (&["-v"], None),
    (&["-vv"], None),
    (&["-vvv"], None),
    (&[], Some("trace")),
];

/// Where the token comes from.
#[derive(Debug, Clone, Copy)]
enum TokenFrom {
    Env,
    /// A config file with mode 0600.
    File,
}

/// Writes `<root>/token.toml` holding the token with `mode`; returns its path.
fn token_file(td: &TestDir, mode: u32) -> PathBuf {
    let path = td.write("token.toml", format!("token = \"{TOKEN}\"\n").as_bytes());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .expect("set the config file's mode");
    path
}

/// Gives `cmd` the token from `from`.
fn plant(cmd: &mut Command, td: &TestDir, from: TokenFrom) {
    match from {
        TokenFrom::Env => {
            cmd.env("ERASER_TOKEN", TOKEN);
        }
        TokenFrom::File => {
            cmd.env("ERASER_CONFIG", token_file(td, 0o600));
        }
    }
}

/// Panics when `haystack` (named `what`) holds the token or its core.
fn assert_clean(what: &str, haystack: &[u8]) {
    for needle in [TOKEN, TOKEN_CORE] {
        let found = haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes());
        assert!(!found, "the token appears in {what}");
    }
}

/// Asserts the run's stdout, stderr and ledger files hold no trace of the token.
fn assert_run_clean(td: &TestDir, finished: &Finished, label: &str) {
    assert_clean(&format!("stdout ({label})"), finished.stdout.as_bytes());
    assert_clean(&format!("stderr ({label})"), finished.stderr.as_bytes());
    for suffix in ["", "-wal", "-shm"] {
        let mut name = td.ledger().into_os_string();
        name.push(suffix);
        if let Ok(bytes) = std::fs::read(&name) {
            assert_clean(&format!("{} ({label})", Path::new(&name).display()), &bytes);
        }
    }
}

/// Asserts the emulator got the token as `Authorization` on some API request (so the checks
/// above are not vacuous).
fn assert_service_got_the_token(emu: &Emulator) {
    let sent = emu.counters().api_headers.iter().any(|headers| {
        headers
            .iter()
            .any(|(name, value)| name == "authorization" && value.contains(TOKEN))
    });
    assert!(
        sent,
        "the service never received the token as Authorization"
    );
}

/// Runs `eraser run` over `images` images at every verbosity (at once, each with its own tree
/// and ledger) against `knobs`, the token coming `from`; checks nothing leaked, and that the
/// service received the token. Returns the runs' exit codes.
fn runs_leak_nothing(
    knobs: Knobs,
    images: u64,
    from: TokenFrom,
    extra: &[&str],
) -> Vec<Option<i32>> {
    let emu = emulator(knobs);
    let mut started = Vec::new();
    for (i, (flags, rust_log)) in VERBOSITIES.iter().enumerate() {
        let td = TestDir::new();
        write_unique(&td, "s", 900 + 10 * i as u64, images, &mut Expected::new());
        let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), extra);
        cmd.args(*flags);
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        plant(&mut cmd, &td, from);
        let label = format!("{flags:?} RUST_LOG={rust_log:?}");
        started.push((td, label, Running::start(&mut cmd)));
    }
    let mut codes = Vec::new();
    for (td, label, running) in started {
        let finished = running.wait(PROCESS_TIMEOUT);
        assert!(
            !finished.stderr.contains("panicked"),
            "eraser panicked ({label}):\n{}",
            finished.stderr
        );
        assert_run_clean(&td, &finished, &label);
        codes.push(finished.code);
    }
    assert_service_got_the_token(&emu);
    codes
}

// --- runs at every verbosity --------------------------------------------------------------------

#[test]
fn a_successful_run_never_shows_the_env_token_at_any_verbosity() {
    let codes = runs_leak_nothing(Knobs::default(), 2, TokenFrom::Env, &[]);

    assert!(codes.iter().all(|c| *c == Some(0)), "exit codes {codes:?}");
}

#[test]
fn a_refused_run_never_shows_the_env_token_at_any_verbosity() {
    let knobs = Knobs {
        refuse_code: Some(codes::INSUFFICIENT_CREDITS),
        ..Knobs::default()
    };

    // Three refusals in a row make the refusal systemic (exit 3).
    let codes = runs_leak_nothing(knobs, 4, TokenFrom::Env, &[]);

    assert!(codes.iter().all(|c| *c == Some(3)), "exit codes {codes:?}");
}

#[test]
fn a_run_against_html_error_pages_never_shows_the_env_token_at_any_verbosity() {
    let knobs = Knobs {
        hostile: Some(Hostile::HtmlErrorPage200),
        ..Knobs::default()
    };

    let codes = runs_leak_nothing(knobs, 2, TokenFrom::Env, &["--max-attempts", "1"]);

    assert!(codes.iter().all(|c| *c == Some(1)), "exit codes {codes:?}");
}

#[test]
fn failed_jobs_never_show_the_config_file_token_at_any_verbosity() {
    let knobs = Knobs {
        p_job_fail: 1.0,
        ..Knobs::default()
    };

    let codes = runs_leak_nothing(knobs, 2, TokenFrom::File, &[]);

    assert!(codes.iter().all(|c| *c == Some(1)), "exit codes {codes:?}");
}

// --- config show ----------------------------------------------------------------------------------

/// `eraser config show -vvv` with the token from `from`.
fn config_show(from: TokenFrom) -> (TestDir, Finished) {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let mut cmd = td.eraser(&emu);
    cmd.args(["config", "show", "-vvv"])
        .env("RUST_LOG", "trace");
    plant(&mut cmd, &td, from);
    let finished = cmd.finish().expect_code(0);
    (td, finished)
}

#[test]
fn config_show_does_not_print_the_env_token() {
    let (td, finished) = config_show(TokenFrom::Env);

    assert_run_clean(&td, &finished, "config show");
    assert!(finished.stdout.contains("token"), "{}", finished.stdout);
}

#[test]
fn config_show_does_not_print_the_config_file_token() {
    let (td, finished) = config_show(TokenFrom::File);

    assert_run_clean(&td, &finished, "config show");
    assert!(finished.stdout.contains("token"), "{}", finished.stdout);
}

// --- the config file's mode -----------------------------------------------------------------------

/// A run of one image with the token in a config file of `mode`; its stderr.
fn stderr_with_token_file_of_mode(mode: u32) -> (PathBuf, String) {
    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    write_unique(&td, "m", 950, 1, &mut Expected::new());
    let file = token_file(&td, mode);
    let mut cmd = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &[]);
    cmd.env("ERASER_CONFIG", &file);
    let finished = cmd.finish().expect_code(0);
    assert_service_got_the_token(&emu);
    (file, finished.stderr)
}

#[test]
fn a_config_file_holding_a_token_readable_by_others_draws_a_warning() {
    let (file, stderr) = stderr_with_token_file_of_mode(0o644);

    let warned = stderr
        .lines()
        .any(|l| l.contains("warning") && l.contains(&*file.to_string_lossy()));
    assert!(warned, "no warning naming {}:\n{stderr}", file.display());
}

#[test]
fn a_config_file_holding_a_token_with_mode_0600_draws_no_warning() {
    let (file, stderr) = stderr_with_token_file_of_mode(0o600);

    let warned = stderr
        .lines()
        .any(|l| l.contains("warning") && l.contains(&*file.to_string_lossy()));
    assert!(!warned, "a warning about {}:\n{stderr}", file.display());
}

#[test]
fn config_set_token_creates_a_0600_file_from_stdin_and_never_echoes_the_token() {
    use std::io::Write as _;
    use std::process::Stdio;

    let emu = emulator(Knobs::default());
    let td = TestDir::new();
    let file = td.root().join("cfg").join("eraser").join("config.toml");
    let mut cmd = td.eraser(&emu);
    cmd.args(["config", "set-token", "-vvv"])
        .env("ERASER_CONFIG", &file)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start eraser config set-token");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{TOKEN}\n").as_bytes())
        .expect("write the token");
    let output = child.wait_with_output().expect("wait");

    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_clean("stdout (config set-token)", &output.stdout);
    assert_clean("stderr (config set-token)", &output.stderr);
    let mode = std::fs::metadata(&file)
        .expect("config file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The saved token is the one the next run sends, with no warning about the file.
    write_unique(&td, "t", 960, 1, &mut Expected::new());
    let mut run = td.run_cmd(&emu, &[&td.inputs()], &td.out(), &[]);
    run.env("ERASER_CONFIG", &file);
    let finished = run.finish().expect_code(0);
    assert_service_got_the_token(&emu);
    assert!(!finished.stderr.contains("warning"), "{}", finished.stderr);
}
