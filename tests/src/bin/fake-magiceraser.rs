//! `fake-magiceraser`: the MagicEraser emulator as a program, for trying eraser offline.
//!
//! Parses the knobs, starts the API and CDN listeners on 127.0.0.1, prints one line
//! `fake-magiceraser listening api=http://127.0.0.1:PORT cdn=http://127.0.0.1:PORT`, then serves
//! until Ctrl-C or SIGTERM (exit 0). Exit 1 when a port cannot be bound.

use std::io::Write;
use std::num::NonZeroU64;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use eraser_tests::emulator::{Emulator, Hostile, Knobs};

/// A local emulator of the MagicEraser service (API and CDN on two ports of 127.0.0.1), with
/// seeded fault injection.
#[derive(Debug, Parser)]
#[command(name = "fake-magiceraser", version)]
struct Args {
    /// Port of the API origin (0 = any free port).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Port of the CDN origin (0 = any free port).
    #[arg(long, default_value_t = 0)]
    cdn_port: u16,
    /// Milliseconds a job stays in progress (get-job answers 300006 until then).
    #[arg(long, default_value_t = 0)]
    processing_ms: u64,
    /// Probability an API request gets HTTP 500.
    #[arg(long = "p-500", default_value_t = 0.0, value_parser = probability)]
    p_500: f64,
    /// Probability an API request gets HTTP 429 with Retry-After.
    #[arg(long = "p-429", default_value_t = 0.0, value_parser = probability)]
    p_429: f64,
    /// Seconds in the Retry-After header of a 429.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Probability an API connection is closed without a response.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    p_drop: f64,
    /// Probability a create-job creates its job, then closes the connection without answering.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    p_lose_reply: f64,
    /// Probability of HTTP 200 with a non-JSON body.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    p_garbage: f64,
    /// Probability a job ends failed (with --job-fail-code) instead of done.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    p_job_fail: f64,
    /// Code of a failed job.
    #[arg(long, default_value_t = 300_010)]
    job_fail_code: i64,
    /// Probability a CDN download answers 500 or 503.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    p_cdn_error: f64,
    /// Probability a CDN download is cut short.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    p_truncate: f64,
    /// Jobs in processing above which create-job answers 429.
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Refuse every create-job with this code (e.g. 300002, insufficient credits).
    #[arg(long, allow_negative_numbers = true)]
    refuse_code: Option<i64>,
    /// Zero bytes appended after each output JPEG (results as large as real photos).
    #[arg(long, default_value_t = 0)]
    output_padding: usize,
    /// One hostile behaviour.
    #[arg(long, value_enum)]
    hostile: Option<Hostile>,
    /// Delay before every reply of the API and the CDN, e.g. 150ms or 1s (a network's round
    /// trip).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Bytes per second that all create-job bodies together pass at (one uplink shared by every
    /// upload), e.g. 4MB (4,000,000), 512KiB or 250000 [default: unlimited].
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = bytes_per_sec)]
    uplink: Option<NonZeroU64>,
    /// Seed of every random decision, so a failure reproduces.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Args {
    fn knobs(&self) -> Knobs {
        Knobs {
            processing_time: Duration::from_millis(self.processing_ms),
            p_http_500: self.p_500,
            p_http_429: self.p_429,
            retry_after_secs: self.retry_after,
            p_drop: self.p_drop,
            p_lose_reply: self.p_lose_reply,
            p_garbage: self.p_garbage,
            p_job_fail: self.p_job_fail,
            job_fail_code: self.job_fail_code,
            p_cdn_error: self.p_cdn_error,
            p_truncate: self.p_truncate,
            max_in_flight: self.max_in_flight,
            refuse_code: self.refuse_code,
            output_padding: self.output_padding,
            hostile: self.hostile,
            latency: self.latency,
            uplink_bytes_per_sec: self.uplink,
            seed: self.seed,
        }
    }
}

/// A probability: a number from 0 to 1.
fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{text}` is not a probability from 0 to 1")),
    }
}

/// A rate in bytes per second: a whole number with an optional unit, KB/MB/GB (powers of 1000)
/// or KiB/MiB/GiB (powers of 1024), and an optional `/s`.
fn bytes_per_sec(text: &str) -> Result<NonZeroU64, String> {
    let bad = |why: &str| format!("`{text}` is not a rate in bytes per second ({why})");
    let trimmed = text.trim();
    let amount = trimmed.strip_suffix("/s").unwrap_or(trimmed).trim_end();
    let split = amount
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(amount.len());
    let (digits, unit) = amount.split_at(split);
    let scale: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad("units are B, KB, MB, GB, KiB, MiB, GiB")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| bad("expected a whole number, e.g. 4MB"))?;
    let rate = n.checked_mul(scale).ok_or_else(|| bad("too large"))?;
    NonZeroU64::new(rate).ok_or_else(|| bad("must be above zero"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let emulator = match Emulator::start_on(args.port, args.cdn_port, args.knobs()).await {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!(
                "fake-magiceraser: cannot listen on 127.0.0.1 (api port {}, cdn port {}): {error}",
                args.port, args.cdn_port
            );
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not stop the service: the address is then simply not announced.
    let _ = writeln!(
        stdout,
        "fake-magiceraser listening api={} cdn={}",
        emulator.api_url(),
        emulator.cdn_url()
    );
    let _ = stdout.flush();
    drop(stdout);
    shutdown_signal().await;
    drop(emulator);
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_port_8787_and_no_faults() {
        let args = Args::try_parse_from(["fake-magiceraser"]).expect("parses");
        assert_eq!(args.port, 8787);
        assert_eq!(args.cdn_port, 0);
        let knobs = args.knobs();
        assert_eq!(knobs.p_http_500, 0.0);
        assert_eq!(knobs.retry_after_secs, 1);
        assert_eq!(knobs.job_fail_code, 300_010);
        assert_eq!(knobs.seed, 1);
        assert_eq!(knobs.hostile, None);
    }

    #[test]
    fn every_knob_has_a_flag() {
        let args = Args::try_parse_from([
            "fake-magiceraser",
            "--port=0",
            "--cdn-port=0",
            "--processing-ms=250",
            "--p-500=0.1",
            "--p-429=0.2",
            "--retry-after=3",
            "--p-drop=0.3",
            "--p-garbage=0.4",
            "--p-job-fail=0.5",
            "--job-fail-code=300011",
            "--p-cdn-error=0.6",
            "--p-truncate=0.7",
            "--max-in-flight=8",
            "--refuse-code=300002",
            "--hostile=encoded-traversal-output-url",
            "--latency=150ms",
            "--uplink=4MB",
            "--seed=99",
        ])
        .expect("parses");
        let knobs = args.knobs();
        assert_eq!(knobs.processing_time, Duration::from_millis(250));
        assert_eq!(
            (
                knobs.p_http_500,
                knobs.p_http_429,
                knobs.p_drop,
                knobs.p_garbage
            ),
            (0.1, 0.2, 0.3, 0.4)
        );
        assert_eq!(
            (knobs.p_job_fail, knobs.p_cdn_error, knobs.p_truncate),
            (0.5, 0.6, 0.7)
        );
        assert_eq!(knobs.retry_after_secs, 3);
        assert_eq!(knobs.job_fail_code, 300_011);
        assert_eq!(knobs.max_in_flight, Some(8));
        assert_eq!(knobs.refuse_code, Some(300_002));
        assert_eq!(knobs.hostile, Some(Hostile::EncodedTraversalOutputUrl));
        assert_eq!(knobs.latency, Duration::from_millis(150));
        assert_eq!(knobs.uplink_bytes_per_sec, NonZeroU64::new(4_000_000));
        assert_eq!(knobs.seed, 99);
    }

    #[test]
    fn by_default_replies_are_not_delayed_and_the_uplink_is_unlimited() {
        let knobs = Args::try_parse_from(["fake-magiceraser"])
            .expect("parses")
            .knobs();
        assert_eq!(knobs.latency, Duration::ZERO);
        assert_eq!(knobs.uplink_bytes_per_sec, None);
    }

    #[test]
    fn uplink_rates_take_decimal_and_binary_units() {
        let rate = |text| bytes_per_sec(text).map(NonZeroU64::get);
        assert_eq!(rate("250000"), Ok(250_000));
        assert_eq!(rate("4MB"), Ok(4_000_000));
        assert_eq!(rate("4 MB/s"), Ok(4_000_000));
        assert_eq!(rate("512KiB"), Ok(512 * 1024));
        assert_eq!(rate("1gib"), Ok(1 << 30));
    }

    #[test]
    fn a_zero_malformed_or_overflowing_uplink_is_refused_by_name() {
        for text in [
            "0",
            "0MB",
            "",
            "fast",
            "4XB",
            "-1MB",
            "1.5MB",
            "99999999999GB",
        ] {
            let error = bytes_per_sec(text).expect_err(text);
            assert!(error.contains(&format!("`{text}`")), "{error}");
        }
        assert!(Args::try_parse_from(["fake-magiceraser", "--uplink=0"]).is_err());
    }

    #[test]
    fn a_latency_without_a_unit_is_refused() {
        assert!(Args::try_parse_from(["fake-magiceraser", "--latency=150"]).is_err());
    }

    #[test]
    fn a_probability_above_one_is_refused() {
        assert!(Args::try_parse_from(["fake-magiceraser", "--p-500=1.5"]).is_err());
        assert!(Args::try_parse_from(["fake-magiceraser", "--p-drop=-0.1"]).is_err());
    }

    #[test]
    fn an_unknown_hostile_name_is_refused() {
        assert!(Args::try_parse_from(["fake-magiceraser", "--hostile=be-nice"]).is_err());
    }
}
