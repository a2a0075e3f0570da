//! The command line, declared with clap derive: the help text is the doc comments below.
//!
//! Settings, which also come from the environment or the config file (`--ledger`, `-j`,
//! `--job-timeout`, …), are `Option`s here, parsed by the setting's own parser from
//! `config::settings`: `config` applies the precedence flag > environment > file > default, so
//! clap fills in no default and reads no environment.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use eraser_store::{ImageStatus, RejectKind};

use crate::config::Setting;
use crate::config::settings;
use crate::config::values::parse_header;

/// Remove watermarks from large image collections through the MagicEraser API.
///
/// Every image is remembered in a ledger by content hash: runs can be killed and rerun at any
/// moment, and identical images are paid for once.
#[derive(Debug, Parser)]
#[command(
    name = "eraser",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print errors only: no progress, no summary, no warnings.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to colour the output on stderr.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, value_name = "WHEN")]
    pub color: ColorChoice,
    /// The ledger: a file, or a PostgreSQL database several machines share
    /// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`) [default: one file per user in the data
    /// directory] [env: ERASER_LEDGER].
    #[arg(long, global = true, value_name = "FILE|URL", value_parser = flag(&settings::LEDGER))]
    pub ledger: Option<eraser_store::Location>,
    /// The config file [env: ERASER_CONFIG] [default: eraser/config.toml in the config directory].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// When to use ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and NO_COLOR is not set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Remove watermarks from images: files, folders (recursive) or `-` for paths on stdin.
    Run(Box<RunArgs>),
    /// Inspect and repair the ledger.
    Ledger {
        #[command(subcommand)]
        cmd: LedgerCmd,
    },
    /// Show where the configuration comes from.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// `eraser run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Image files or folders; `-` reads paths from stdin, one per line.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Paths on stdin are NUL-separated (with `-`, e.g. after `find -print0`).
    #[arg(short = '0', long = "null")]
    pub null: bool,
    /// Folder the results go to; mirrors each input's path below its INPUT folder.
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace files at output paths that eraser did not write.
    #[arg(long)]
    pub overwrite: bool,
    /// Try the images that failed in earlier runs again (a job that outlived --job-timeout is
    /// polled again, not uploaded again).
    #[arg(long)]
    pub retry_failed: bool,
    /// Scan and report what would be uploaded; upload nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingFlags,
}

/// The settings of a run. Each is also an environment variable `ERASER_<NAME>` and a config
/// file key `<name>` (e.g. `--upload-concurrency`, `ERASER_UPLOAD_CONCURRENCY`,
/// `upload_concurrency = 4`); a flag wins over the variable, the variable over the file.
/// `Option`s, so that `config.rs` can tell a flag given from a flag absent: clap fills in no
/// default and reads no environment.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Settings (flag > env ERASER_<NAME> > config file <name> > default)")]
pub struct SettingFlags {
    /// Jobs in flight at the service (uploaded, not yet finished), 1 to 1024 [default: 8]
    /// [env: ERASER_CONCURRENCY].
    #[arg(short = 'j', long, value_name = "N", value_parser = flag(&settings::CONCURRENCY))]
    pub concurrency: Option<usize>,
    /// create-job requests in flight at once, 1 to 256 [default: 2]
    /// [env: ERASER_UPLOAD_CONCURRENCY].
    #[arg(long, value_name = "N", value_parser = flag(&settings::UPLOAD_CONCURRENCY))]
    pub upload_concurrency: Option<usize>,
    /// Result downloads in flight at once, 1 to 256 [default: 4]
    /// [env: ERASER_DOWNLOAD_CONCURRENCY].
    #[arg(long, value_name = "N", value_parser = flag(&settings::DOWNLOAD_CONCURRENCY))]
    pub download_concurrency: Option<usize>,
    /// Threads hashing files, 0 to 256; 0 is one per core [default: 0]
    /// [env: ERASER_HASH_THREADS].
    #[arg(long, value_name = "N", value_parser = flag(&settings::HASH_THREADS))]
    pub hash_threads: Option<usize>,
    /// Cap on API requests per second, 0.001 to 10000 [default: no cap] [env: ERASER_RATE].
    #[arg(long, value_name = "PER_SECOND", value_parser = flag(&settings::RATE))]
    pub rate: Option<f64>,
    /// A job unfinished after this fails (retryable); a job resumed from an earlier run gets the
    /// whole timeout again in this one. 90s, 10m, 1h30m, 500ms or seconds, 1ms to 30days
    /// [default: 10m] [env: ERASER_JOB_TIMEOUT].
    #[arg(long, value_name = "DURATION", value_parser = flag(&settings::JOB_TIMEOUT))]
    pub job_timeout: Option<Duration>,
    /// A service that cannot be reached, or that refuses every upload while holding none of
    /// the run's jobs, or a ledger database that cannot be reached, for this long ends the run
    /// (exit 3; nothing is lost, rerun later). 1ms to 30days [default: 2m]
    /// [env: ERASER_OUTAGE_TIMEOUT].
    #[arg(long, value_name = "DURATION", value_parser = flag(&settings::OUTAGE_TIMEOUT))]
    pub outage_timeout: Option<Duration>,
    /// A run on another machine sharing the ledger that goes this long without a heartbeat is
    /// presumed dead, and its claimed images are taken over (jobs it submitted are polled,
    /// not uploaded again). Use the same lease on every machine. 10s to 1m 30s [default: 1m]
    /// [env: ERASER_LEASE].
    #[arg(long, value_name = "DURATION", value_parser = flag(&settings::LEASE))]
    pub lease: Option<Duration>,
    /// Attempts per image within a run for failures that may pass on retry, 1 to 100
    /// [default: 3] [env: ERASER_MAX_ATTEMPTS].
    #[arg(long, value_name = "N", value_parser = flag(&settings::MAX_ATTEMPTS))]
    pub max_attempts: Option<u32>,
    /// Largest input file uploaded: bytes, or with KB/MB/GB or KiB/MiB/GiB, 1 to 4294967296
    /// bytes [default: 50MiB] [env: ERASER_MAX_UPLOAD_BYTES].
    #[arg(long, value_name = "SIZE", value_parser = flag(&settings::MAX_UPLOAD_BYTES))]
    pub max_upload_bytes: Option<u64>,
    /// Follow symlinked folders (symlinked files are always followed; loops are detected)
    /// [env: ERASER_FOLLOW].
    #[arg(long, overrides_with = "no_follow")]
    pub follow: bool,
    /// Do not follow symlinked folders (the default).
    #[arg(long, overrides_with = "follow")]
    pub no_follow: bool,
    /// Hard-link outputs of duplicate inputs instead of copying them [env: ERASER_LINK].
    #[arg(long, overrides_with = "no_link")]
    pub link: bool,
    /// Copy outputs of duplicate inputs (the default).
    #[arg(long, overrides_with = "link")]
    pub no_link: bool,
    /// Upload files as `<sha256>.<ext>` instead of their own names [env: ERASER_ANONYMOUS].
    #[arg(long, overrides_with = "no_anonymous")]
    pub anonymous: bool,
    /// Upload files under their own names (the default).
    #[arg(long, overrides_with = "anonymous")]
    pub no_anonymous: bool,
    /// The API origin [default: https://api.magiceraser.org] [env: ERASER_API_BASE].
    #[arg(long, value_name = "URL", value_parser = flag(&settings::API_BASE))]
    pub api_base: Option<String>,
    /// The product serial sent to the service [default: one generated per ledger]
    /// [env: ERASER_PRODUCT_SERIAL].
    #[arg(long, value_name = "SERIAL", value_parser = flag(&settings::PRODUCT_SERIAL))]
    pub product_serial: Option<String>,
    /// The product code sent to the service [default: 067003] [env: ERASER_PRODUCT_CODE].
    #[arg(long, value_name = "CODE", value_parser = flag(&settings::PRODUCT_CODE))]
    pub product_code: Option<String>,
    /// An extra header on every API call (not on downloads); repeatable. Replaces a header of
    /// the same name from ERASER_HEADERS (one `Name: value` per line) or the file's [headers].
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
}

impl SettingFlags {
    /// `--follow` / `--no-follow`, whichever came last; `None` when neither was given.
    pub fn follow(&self) -> Option<bool> {
        switch(self.follow, self.no_follow)
    }

    /// `--link` / `--no-link`.
    pub fn link(&self) -> Option<bool> {
        switch(self.link, self.no_link)
    }

    /// `--anonymous` / `--no-anonymous`.
    pub fn anonymous(&self) -> Option<bool> {
        switch(self.anonymous, self.no_anonymous)
    }
}

/// A switch given as a pair of flags (clap keeps only the last of the two).
fn switch(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// The clap parser of a setting's flag: the setting's own parser, the one its environment
/// variable and its file key go through too.
fn flag<T: Clone + Send + Sync + 'static>(
    setting: &'static Setting<T>,
) -> impl TypedValueParser<Value = T> {
    OsStringValueParser::new().try_map(move |raw| (setting.parse)(&raw))
}

/// `eraser ledger …`.
#[derive(Debug, Clone, Subcommand)]
pub enum LedgerCmd {
    /// Images by status, inputs, jobs in flight, credits used, failures by code.
    Status {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Images, one per line (a table, or JSON lines with --json).
    List {
        /// Only images with this status.
        #[arg(long, value_name = "STATUS", value_parser = parse_status)]
        status: Option<ImageStatus>,
        /// JSON lines on stdout.
        #[arg(long)]
        json: bool,
        /// Stop after this many images.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// List the files runs found but did not use instead (`skipped`: not images inside
        /// folders; `error`: could not be used), by path; both kinds when no KIND is given.
        #[arg(
            long,
            value_name = "KIND",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "all",
            conflicts_with = "status"
        )]
        rejected: Option<Rejected>,
    },
    /// One image and its inputs, found by input path, sha256 or job id.
    Show {
        /// An input file path, a 64-digit sha256 or a job id.
        #[arg(value_name = "PATH|SHA256|JOB_ID")]
        key: String,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Put failed images back to `new` so the next run tries them again (a job that outlived
    /// --job-timeout goes back to `processing`: the next run polls it, no new upload).
    Retry {
        /// The images to retry (all failed images when none given).
        #[arg(value_name = "SHA256", required_if_eq("done", "true"))]
        shas: Vec<String>,
        /// Put these done images back to `new` instead: their result is lost and its URL no
        /// longer works. The next run uploads them again, and each costs a credit.
        #[arg(long)]
        done: bool,
    },
    /// Check that every done image's result and every recorded output are still in place.
    Verify {
        /// Clear broken records so the next `eraser run` makes the outputs again.
        #[arg(long)]
        repair: bool,
    },
    /// Every input with its image's state, streamed to stdout.
    Export {
        /// Output format.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: ExportFormat,
    },
}

/// Formats of `eraser ledger export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// `eraser config …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCmd {
    /// Print the config file's path (whether or not it exists).
    Path,
    /// Print the effective configuration as TOML, each value with its source (`flag`,
    /// `env ERASER_…`, `file`, `default`); takes the settings flags of `eraser run`.
    Show {
        #[command(flatten)]
        settings: Box<SettingFlags>,
    },
    /// Save the API token in the config file (created readable by you only, mode 0600).
    /// The token is read from stdin, never from the command line: paste it at the hidden
    /// prompt, or pipe it in (`printenv ERASER_TOKEN | eraser config set-token`).
    SetToken,
}

/// A duration as humantime writes it (`2m`, `1m 30s`), for messages outside the config.
pub fn format_duration(d: Duration) -> String {
    crate::config::values::format_duration(d)
}

fn parse_status(text: &str) -> Result<ImageStatus, String> {
    text.parse()
}

/// Which rejected files `ledger list --rejected` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rejected {
    /// Both kinds.
    All,
    /// Not images, found inside folders.
    Skipped,
    /// Files that could not be used.
    Error,
}

impl Rejected {
    /// The kind to filter on; `None` for both.
    pub fn kind(self) -> Option<RejectKind> {
        match self {
            Self::All => None,
            Self::Skipped => Some(RejectKind::Skipped),
            Self::Error => Some(RejectKind::Error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::span;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_requires_input_and_out() {
        assert!(Cli::try_parse_from(["eraser", "run", "-o", "out"]).is_err());
        assert!(Cli::try_parse_from(["eraser", "run", "in"]).is_err());
        assert!(Cli::try_parse_from(["eraser", "run", "in", "-o", "out"]).is_ok());
    }

    /// The settings flags of `eraser run in -o out <extra…>`.
    fn settings_of(extra: &[&str]) -> Result<SettingFlags, clap::Error> {
        let args = ["eraser", "run", "in", "-o", "out"].iter().chain(extra);
        match Cli::try_parse_from(args)?.command {
            Command::Run(run) => Ok(run.settings),
            _ => unreachable!("parsed as run"),
        }
    }

    #[test]
    fn a_setting_not_given_as_a_flag_is_left_to_the_config() {
        let settings = settings_of(&[]).expect("parses");
        assert_eq!(settings.outage_timeout, None);
        assert_eq!(settings.concurrency, None);
        assert_eq!(settings.follow(), None);
        assert_eq!(
            settings_of(&["--outage-timeout", "1h"])
                .expect("parses")
                .outage_timeout,
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn concurrency_of_zero_is_a_usage_error() {
        let err = Cli::try_parse_from(["eraser", "run", "in", "-o", "out", "-j", "0"]);
        assert!(err.is_err());
    }

    #[test]
    fn a_flag_out_of_range_is_a_usage_error_naming_the_flag_and_the_range() {
        for (flag, value, range) in [
            ("--rate", "1e-300", "0.001 to 10000"),
            ("--upload-concurrency", "9223372036854775807", "1 to 256"),
            ("--download-concurrency", "9223372036854775807", "1 to 256"),
            ("--hash-threads", "4294967296", "0 to 256"),
            ("--outage-timeout", "0", "1ms to 30days"),
            ("--lease", "5s", "10s to 1m 30s"),
            ("--job-timeout", "31days", "1ms to 30days"),
            ("--max-attempts", "101", "1 to 100"),
            ("--max-upload-bytes", "5GiB", "4294967296"),
        ] {
            let err = settings_of(&[flag, value]).expect_err(flag);
            assert_eq!(err.exit_code(), 2, "{flag}");
            let shown = err.to_string();
            assert!(shown.contains(flag) && shown.contains(range), "{shown}");
        }
    }

    #[test]
    fn the_last_of_a_switch_and_its_no_flag_wins() {
        let follow = |args: &[&str]| settings_of(args).expect("parses").follow();
        assert_eq!(follow(&["--follow"]), Some(true));
        assert_eq!(follow(&["--follow", "--no-follow"]), Some(false));
        assert_eq!(follow(&["--no-follow", "--follow"]), Some(true));
    }

    #[test]
    fn every_setting_flag_names_its_variable_in_the_help() {
        let mut cmd = Cli::command();
        cmd.build();
        let run = cmd.find_subcommand("run").expect("run").clone();
        for (_, env, flag) in settings::names() {
            let Some(flag) = flag else { continue };
            let long = flag.trim_start_matches("--");
            let arg = run
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap_or_else(|| panic!("no flag {flag}"));
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.contains(&format!("[env: {env}]")), "{flag}: {help}");
        }
    }

    #[test]
    fn every_range_is_in_its_flags_help() {
        let mut cmd = Cli::command();
        cmd.build();
        let run = cmd.find_subcommand("run").expect("run").clone();
        let help = |long: &str| {
            run.get_arguments()
                .find(|a| a.get_long() == Some(long))
                .and_then(|a| a.get_help().map(ToString::to_string))
                .unwrap_or_default()
        };
        let timeouts = format!(
            "{} to {}",
            format_duration(*settings::TIMEOUT_RANGE.start()),
            format_duration(*settings::TIMEOUT_RANGE.end())
        );
        for (long, range) in [
            ("concurrency", span(&settings::CONCURRENCY_RANGE)),
            ("upload-concurrency", span(&settings::TRANSFERS_RANGE)),
            ("download-concurrency", span(&settings::TRANSFERS_RANGE)),
            ("hash-threads", span(&settings::HASH_THREADS_RANGE)),
            ("rate", span(&settings::RATE_RANGE)),
            ("job-timeout", timeouts.clone()),
            ("outage-timeout", timeouts),
            (
                "lease",
                format!(
                    "{} to {}",
                    format_duration(*settings::LEASE_RANGE.start()),
                    format_duration(*settings::LEASE_RANGE.end())
                ),
            ),
            ("max-attempts", span(&settings::MAX_ATTEMPTS_RANGE)),
            ("max-upload-bytes", span(&settings::MAX_UPLOAD_BYTES_RANGE)),
        ] {
            assert!(
                help(long).contains(&range),
                "--{long}: {range} not in its help"
            );
        }
    }

    #[test]
    fn config_show_takes_the_settings_flags() {
        let cli = Cli::try_parse_from(["eraser", "config", "show", "-j", "4"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Config { cmd: ConfigCmd::Show { settings } } if settings.concurrency == Some(4)
        ));
    }

    #[test]
    fn globals_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["eraser", "ledger", "status", "-vv", "--ledger", "x.db"]);
        let cli = cli.map_err(|e| e.to_string());
        assert!(matches!(&cli, Ok(c) if c.global.verbose == 2 && c.global.ledger.is_some()));
    }

    #[test]
    fn there_is_no_token_flag() {
        assert!(Cli::try_parse_from(["eraser", "run", "in", "-o", "out", "--token", "t"]).is_err());
    }
}
