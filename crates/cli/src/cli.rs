//! The command line, declared with clap derive: the help text is the doc comments below.
//!
//! Values that also come from the environment or the config file (`--ledger`, `--api-base`,
//! `-j`, `--job-timeout`, …) are `Option`s here: `config.rs` applies the precedence
//! flag > environment > file > default, so clap must not fill in defaults or read the environment.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use eraser_store::{ImageStatus, RejectKind};

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
    /// The ledger file [env: ERASER_LEDGER] [default: one per user in the data directory].
    #[arg(long, global = true, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
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
    /// Jobs in flight at the service (uploaded, not yet finished) [default: 8].
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_positive)]
    pub concurrency: Option<usize>,
    /// create-job requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_positive)]
    pub upload_concurrency: usize,
    /// Result downloads in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = parse_positive)]
    pub download_concurrency: usize,
    /// Threads hashing files (0 = one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub hash_threads: usize,
    /// Cap on API requests per second.
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// A job unfinished after this fails (retryable): 90s, 10m, 1h, 500ms or seconds [default: 10m].
    /// A job resumed from an earlier run gets the whole timeout again in this one.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub job_timeout: Option<Duration>,
    /// A service that cannot be reached, or that refuses every upload while holding none of
    /// the run's jobs, for this long ends the run (exit 3; nothing is lost, rerun later).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration_arg)]
    pub outage_timeout: Duration,
    /// Follow symlinked folders (symlinked files are always followed; loops are detected).
    #[arg(long)]
    pub follow: bool,
    /// Hard-link outputs of duplicate inputs instead of copying them.
    #[arg(long)]
    pub link: bool,
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
    /// Upload files as `<sha256>.<ext>` instead of their own names.
    #[arg(long)]
    pub anonymous: bool,
    /// Attempts per image within a run for failures that may pass on retry.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = parse_positive_u32)]
    pub max_attempts: u32,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// The API origin [env: ERASER_API_BASE] [default: https://api.magiceraser.org].
    #[arg(long, value_name = "URL")]
    pub api_base: Option<String>,
    /// The product serial sent to the service [env: ERASER_PRODUCT_SERIAL] [default: one generated per ledger].
    #[arg(long, value_name = "SERIAL")]
    pub product_serial: Option<String>,
    /// The product code sent to the service [env: ERASER_PRODUCT_CODE] [default: 067003].
    #[arg(long, value_name = "CODE")]
    pub product_code: Option<String>,
    /// An extra header on every API call (not on downloads); repeatable.
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Largest input file uploaded (bytes; KB/MB/GB and KiB/MiB/GiB suffixes accepted).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_upload_bytes: Option<u64>,
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
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ConfigCmd {
    /// Print the config file's path (whether or not it exists).
    Path,
    /// Print the effective configuration as TOML, each value with its source.
    Show,
    /// Save the API token in the config file (created readable by you only, mode 0600).
    /// The token is read from stdin, never from the command line: paste it at the hidden
    /// prompt, or pipe it in (`printenv ERASER_TOKEN | eraser config set-token`).
    SetToken,
}

/// Parses a duration: `500ms`, `90s`, `10m`, `1h`, combinations like `1h30m`, or plain seconds.
/// Fractions are accepted (`1.5h`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let bad = || format!("invalid duration {text:?} (examples: 500ms, 90s, 10m, 1h, 1h30m, 90)");
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total = Duration::try_from_secs_f64(value * scale)
            .ok()
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(total)
}

/// A duration that must be above zero (`--job-timeout`, `--outage-timeout`).
fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("the duration must be above zero".into()),
        d => Ok(d),
    }
}

/// Formats a duration the way [`parse_duration`] reads it back (`10m`, `90s`, `1500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// A count of at least 1.
fn parse_positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_positive_u32(text: &str) -> Result<u32, String> {
    parse_positive(text).and_then(|n| u32::try_from(n).map_err(|e| e.to_string()))
}

/// A request rate: a positive, finite number per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("must be a positive number of requests per second".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A byte size: `1048576`, `50MB` (10^6), `50MiB` (2^20), likewise K and G.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?} (examples: 1048576, 50MB, 20MiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use KB, MB, GB, KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// `Name: value` → (name, value). The name must be an HTTP token; the value one line.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| "expected 'Name: value'".to_string())?;
    let name = name.trim();
    let value = value.trim();
    check_header(name, value)?;
    Ok((name.to_string(), value.to_string()))
}

/// Checks an extra header's name and value (shared with the config file's `headers`).
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token_char) {
        return Err(format!("invalid header name {name:?}"));
    }
    if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return Err(format!("the value of header {name} must be one line"));
    }
    Ok(())
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
    use clap::CommandFactory;

    #[test]
    fn duration_units_are_read() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn duration_without_unit_is_seconds() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn duration_parts_add_up() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn duration_garbage_is_refused() {
        for bad in ["", "ten", "10x", "m", "10m5", "-5s", "1e400", "5 m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn job_timeout_of_zero_is_refused() {
        assert!(parse_duration_arg("0s").is_err());
    }

    #[test]
    fn formatted_durations_read_back() {
        for d in [600, 90, 3600, 7200]
            .map(Duration::from_secs)
            .into_iter()
            .chain([Duration::from_millis(1500)])
        {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert!(parse_size("2XB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn header_is_split_at_the_first_colon() {
        assert_eq!(
            parse_header("X-Trace:  a:b "),
            Ok(("X-Trace".to_string(), "a:b".to_string()))
        );
    }

    #[test]
    fn header_without_colon_or_with_bad_name_is_refused() {
        assert!(parse_header("NoColon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
        assert!(parse_header(": x").is_err());
    }

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

    fn outage_timeout_of(extra: &[&str]) -> Result<Duration, clap::Error> {
        let args = ["eraser", "run", "in", "-o", "out"].iter().chain(extra);
        match Cli::try_parse_from(args)?.command {
            Command::Run(run) => Ok(run.outage_timeout),
            _ => unreachable!("parsed as run"),
        }
    }

    #[test]
    fn the_outage_timeout_is_two_minutes_unless_given() {
        assert_eq!(outage_timeout_of(&[]).unwrap(), Duration::from_secs(120));
        assert_eq!(
            outage_timeout_of(&["--outage-timeout", "1h"]).unwrap(),
            Duration::from_secs(3600)
        );
        assert!(outage_timeout_of(&["--outage-timeout", "0"]).is_err());
    }

    #[test]
    fn concurrency_of_zero_is_a_usage_error() {
        let err = Cli::try_parse_from(["eraser", "run", "in", "-o", "out", "-j", "0"]);
        assert!(err.is_err());
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
