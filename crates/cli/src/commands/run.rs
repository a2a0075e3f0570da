//! `eraser run`: turns flags and configuration into `pipeline::Options`, runs the pipeline and
//! prints its summary (JSON on stdout with `--json`, the aligned block on stderr otherwise).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use eraser_api::Client;
use eraser_store::{Ledger, Location, OpenOptions};

use super::{flags, print_warnings, say, stdout};
use crate::cli::{GlobalArgs, RunArgs};
use crate::config::{Config, Environment};
use crate::exit::{LedgerUnavailable, Status, UsageError};
use crate::pipeline::{self, Feedback, InputSource, Options, Outcome, RunEnd};

/// Runs the batch and reports how it ended.
pub async fn run(global: &GlobalArgs, args: RunArgs, env: &Environment) -> anyhow::Result<Status> {
    let cfg = Config::resolve(&flags(global, Some(&args.settings)), env)?;
    print_warnings(&cfg, global.quiet);
    let inputs = input_source(&args.inputs, args.null)?;
    check_out(&args.out)?;

    let ledger = open_or_create(&cfg, cfg.lease.value).await?;
    let serial = match &cfg.product_serial {
        Some(serial) => serial.value.clone(),
        None => ledger
            .product_serial()
            .await
            .context("cannot read the ledger's product serial")?,
    };
    let feedback = Feedback::new(cfg.concurrency.value);
    let client = build_client(&cfg, serial, &feedback)?;
    let opts = Options {
        inputs,
        out: args.out,
        concurrency: cfg.concurrency.value,
        upload_concurrency: cfg.upload_concurrency.value,
        download_concurrency: cfg.download_concurrency.value,
        hash_threads: cfg.hash_threads.value,
        rate: cfg.rate.map(|rate| rate.value),
        job_timeout: cfg.job_timeout.value,
        outage_timeout: cfg.outage_timeout.value,
        follow: cfg.follow.value,
        link: cfg.link.value,
        overwrite: args.overwrite,
        retry_failed: args.retry_failed,
        dry_run: args.dry_run,
        anonymous_names: cfg.anonymous.value,
        max_attempts: cfg.max_attempts.value,
        max_upload_bytes: client.max_upload_bytes(),
        unrecorded_dir: env.unrecorded_jobs_dir(),
        progress: !global.quiet,
        command_line: recorded_command_line(std::env::args_os()),
    };
    let outcome = pipeline::run(&ledger, &client, &opts, &feedback).await?;
    ledger.close().await;
    report(&outcome, args.json, global.quiet)?;
    Ok(match outcome.end {
        RunEnd::Complete => Status::Done,
        RunEnd::SomeFailed | RunEnd::OutUnwritable { .. } => Status::SomeFailed,
        RunEnd::Refused { .. } | RunEnd::Unavailable { .. } => Status::Refused,
        RunEnd::Interrupted(signal) => Status::Interrupted(signal),
    })
}

/// `-` alone reads paths from stdin; otherwise the INPUTs are paths. `-0` needs `-`.
fn input_source(inputs: &[PathBuf], nul: bool) -> Result<InputSource, UsageError> {
    let dashes = inputs.iter().filter(|p| p.as_os_str() == "-").count();
    match (dashes, inputs.len()) {
        (1, 1) => Ok(InputSource::Stdin { nul }),
        (0, _) if nul => Err(UsageError(
            "-0/--null is for paths read from stdin: give `-` as the INPUT".into(),
        )),
        (0, _) => Ok(InputSource::Paths(inputs.to_vec())),
        _ => Err(UsageError(
            "`-` (paths from stdin) must be the only INPUT".into(),
        )),
    }
}

/// OUT may be missing (it is created) or a folder, never an existing file.
fn check_out(out: &Path) -> Result<(), UsageError> {
    match std::fs::metadata(out) {
        Ok(meta) if !meta.is_dir() => Err(UsageError(format!(
            "--out {} exists and is not a folder",
            out.display()
        ))),
        _ => Ok(()),
    }
}

/// Opens the ledger, creating it (a file and its folder) when missing.
async fn open_or_create(cfg: &Config, lease: Duration) -> Result<Ledger, LedgerUnavailable> {
    let location = &cfg.ledger.value;
    let unavailable = |cause: Box<dyn std::error::Error + Send + Sync>| LedgerUnavailable {
        ledger: location.to_string(),
        cause,
    };
    if let Some(dir) = location
        .as_file()
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            unavailable(format!("cannot create the ledger's folder {}: {e}", dir.display()).into())
        })?;
    }
    // A database that cannot be reached mid-run is waited for as long as the service would be.
    OpenOptions::new()
        .lease(lease)
        .wait_for_database(cfg.outage_timeout.value)
        .open(location)
        .await
        .map_err(|e| unavailable(Box::new(e)))
}

/// The API client for this configuration, reporting its retries to the pipeline's `feedback`;
/// a client that cannot be built is a config error.
fn build_client(cfg: &Config, serial: String, feedback: &Feedback) -> anyhow::Result<Client> {
    let mut builder = Client::builder()
        .on_retry(feedback.retry_observer())
        .throttled_uploads_to_caller(true)
        .base_url(cfg.api_base.value.clone())
        .product_serial(serial)
        .product_code(cfg.product_code.value.clone())
        .token(cfg.token.as_ref().map(|t| t.value.clone()));
    for h in &cfg.headers {
        builder = builder.header(h.name.clone(), h.value.clone());
    }
    builder
        .max_upload_bytes(cfg.max_upload_bytes.value)
        .build()
        .map_err(|e| {
            anyhow::Error::new(e).context(UsageError(format!(
                "cannot set up the API client for {}",
                cfg.api_base.value
            )))
        })
}

/// Prints the summary: one JSON object on stdout with `--json` (the Summary's fields plus
/// `"end"`), else the aligned block on stderr unless `--quiet`; then how the run ended.
fn report(outcome: &Outcome, json: bool, quiet: bool) -> anyhow::Result<()> {
    if json {
        let text = summary_json(outcome)?;
        let mut out = stdout();
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .context("writing the summary to stdout")?;
    } else if !quiet {
        say(outcome.summary.render().trim_end());
    }
    match &outcome.end {
        RunEnd::Refused { code, message } => say(&format!(
            "error: the service refuses work (code {code}: {message}); submitting stopped, \
             the images not tried stay new"
        )),
        RunEnd::Unavailable { message } => say(&format!(
            "error: the service cannot be reached ({message}); submitting stopped, the images \
             not tried stay new and the jobs already accepted are polled by the next run"
        )),
        RunEnd::OutUnwritable { message } => say(&format!(
            "error: OUT cannot take results ({message}); submitting stopped, the images not \
             tried stay new and the finished results wait at the service for the next run"
        )),
        RunEnd::Interrupted(signal) if !quiet => say(&format!(
            "interrupted ({}): rerun the same command to resume",
            signal.name()
        )),
        _ => {}
    }
    Ok(())
}

/// The `--json` summary: the Summary's fields, `"end"` (`complete`, `some_failed`, `refused`,
/// `unavailable`, `out_unwritable`, `interrupted`: [`RunEnd::name`]) and, when refused,
/// `"refused": {"code", "message"}`.
fn summary_json(outcome: &Outcome) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(&outcome.summary).context("encoding the summary")?;
    if let Some(map) = value.as_object_mut() {
        map.insert("end".into(), outcome.end.name().into());
        if let RunEnd::Refused { code, message } = &outcome.end {
            map.insert(
                "refused".into(),
                serde_json::json!({ "code": code, "message": message }),
            );
        }
    }
    serde_json::to_string(&value).context("encoding the summary")
}

/// The command line as recorded in the ledger: every `--header` value replaced by `<redacted>`
/// (headers may carry credentials), arguments with spaces or quotes single-quoted.
fn recorded_command_line(args: impl IntoIterator<Item = OsString>) -> String {
    let mut words = Vec::new();
    let mut next: Option<fn(&str) -> String> = None;
    for arg in args {
        let arg = arg.to_string_lossy().into_owned();
        let word = if let Some(redact) = next.take() {
            redact(&arg)
        } else if arg == "--header" {
            next = Some(redact_header);
            arg
        } else if arg == "--ledger" {
            next = Some(redact_ledger);
            arg
        } else if let Some(value) = arg.strip_prefix("--header=") {
            format!("--header={}", redact_header(value))
        } else if let Some(value) = arg.strip_prefix("--ledger=") {
            format!("--ledger={}", redact_ledger(value))
        } else {
            arg
        };
        words.push(shell_quote(&word));
    }
    words.join(" ")
}

/// A ledger URL with its password masked (a file path as it is).
fn redact_ledger(value: &str) -> String {
    match Location::parse(value.as_ref()) {
        Ok(location) => location.to_string(),
        Err(_) => "<redacted>".into(),
    }
}

fn redact_header(header: &str) -> String {
    match header.split_once(':') {
        Some((name, _)) => format!("{}: <redacted>", name.trim()),
        None => "<redacted>".into(),
    }
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Summary;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_lone_dash_reads_stdin() {
        let src = input_source(&["-".into()], true);
        assert!(matches!(src, Ok(InputSource::Stdin { nul: true })));
    }

    #[test]
    fn dash_mixed_with_paths_is_a_usage_error() {
        assert!(input_source(&["-".into(), "a".into()], false).is_err());
    }

    #[test]
    fn null_without_dash_is_a_usage_error() {
        assert!(input_source(&["a".into()], true).is_err());
    }

    #[test]
    fn paths_are_passed_on_in_order() {
        let src = input_source(&["b".into(), "a".into()], false);
        assert!(
            matches!(src, Ok(InputSource::Paths(p)) if p == [PathBuf::from("b"), PathBuf::from("a")])
        );
    }

    #[test]
    fn out_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        assert!(check_out(&file).is_err());
        assert!(check_out(dir.path()).is_ok());
        assert!(check_out(&dir.path().join("new")).is_ok());
    }

    #[test]
    fn header_values_are_not_recorded() {
        let line = recorded_command_line(os(&[
            "eraser",
            "run",
            "--header",
            "Authorization: Bearer s3cret",
            "--header=X-Key:s3cret",
            "in",
        ]));
        assert!(!line.contains("s3cret"), "{line}");
        assert_eq!(
            line,
            "eraser run --header 'Authorization: <redacted>' '--header=X-Key: <redacted>' in"
        );
    }

    #[test]
    fn a_ledger_password_is_not_recorded() {
        let line = recorded_command_line(os(&[
            "eraser",
            "--ledger",
            "postgres://u:s3cret@db/archive",
            "run",
            "--ledger=postgresql://u:s3cret@db/archive",
            "in",
        ]));
        assert!(!line.contains("s3cret"), "{line}");
        assert!(line.contains("postgres://u:****@db/archive"), "{line}");
    }

    #[test]
    fn arguments_with_spaces_are_quoted() {
        assert_eq!(
            recorded_command_line(os(&["a b", "it's"])),
            r"'a b' 'it'\''s'"
        );
    }

    #[test]
    fn json_summary_carries_the_end() {
        let outcome = Outcome {
            end: RunEnd::Refused {
                code: 300010,
                message: "no credits".into(),
            },
            summary: Summary::default(),
        };
        let value: serde_json::Value =
            serde_json::from_str(&summary_json(&outcome).expect("json")).expect("valid json");
        assert_eq!(value["end"], "refused");
        assert_eq!(value["refused"]["code"], 300010);
        assert!(value.get("uploads").is_some());
    }
}
