//! Every setting, one entry each: its config file key, its environment variable, its flag,
//! the parser that reads it (with the range it accepts) and how `config show` writes it.
//! `Config::resolve` looks each up through [`super::precedence`] with its default.
//!
//! The ranges keep every value one the run can use: above them a semaphore, a thread pool or
//! a `Duration` would panic or exhaust the machine; below them the run could not progress.

use std::ops::RangeInclusive;
use std::time::Duration;

use eraser_api::Token;
use eraser_store::Location;

use super::precedence::Setting;
use super::show;
use super::values;

/// `-j`: jobs in flight at the service.
pub const CONCURRENCY_RANGE: RangeInclusive<u64> = 1..=1024;
/// Create-job requests, and result downloads, in flight at once.
pub const TRANSFERS_RANGE: RangeInclusive<u64> = 1..=256;
/// Hashing threads; 0 is one per core.
pub const HASH_THREADS_RANGE: RangeInclusive<u64> = 0..=256;
/// API requests per second.
pub const RATE_RANGE: RangeInclusive<f64> = 0.001..=10_000.0;
/// `--job-timeout` and `--outage-timeout`.
pub const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(30 * 86_400);
/// `--lease`: long enough for a few heartbeats (one every 5 s at most) to be lost, short
/// enough that a dead machine's claims come back within a minute and a half.
pub const LEASE_RANGE: RangeInclusive<Duration> = Duration::from_secs(10)..=Duration::from_secs(90);
/// Attempts per image within a run.
pub const MAX_ATTEMPTS_RANGE: RangeInclusive<u64> = 1..=100;
/// The largest input uploaded, in bytes.
pub const MAX_UPLOAD_BYTES_RANGE: RangeInclusive<u64> = 1..=4 << 30;

pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;
pub const DEFAULT_DOWNLOAD_CONCURRENCY: usize = 4;
pub const DEFAULT_HASH_THREADS: usize = 0;
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_OUTAGE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_LEASE: Duration = eraser_store::DEFAULT_LEASE;

pub static API_BASE: Setting<String> = Setting {
    key: "api_base",
    env: "ERASER_API_BASE",
    flag: Some("--api-base"),
    parse: values::api_base,
    show: show::text,
};

pub static LEDGER: Setting<Location> = Setting {
    key: "ledger",
    env: "ERASER_LEDGER",
    flag: Some("--ledger"),
    parse: values::ledger,
    // A file's path, or the URL with its password masked.
    show: |location| show::text(&location.to_string()),
};

pub static TOKEN: Setting<Token> = Setting {
    key: "token",
    env: "ERASER_TOKEN",
    flag: None,
    parse: values::token,
    show: |_| show::text("<set>"),
};

pub static PRODUCT_SERIAL: Setting<String> = Setting {
    key: "product_serial",
    env: "ERASER_PRODUCT_SERIAL",
    flag: Some("--product-serial"),
    parse: values::one_line,
    show: show::text,
};

pub static PRODUCT_CODE: Setting<String> = Setting {
    key: "product_code",
    env: "ERASER_PRODUCT_CODE",
    flag: Some("--product-code"),
    parse: values::one_line,
    show: show::text,
};

pub static CONCURRENCY: Setting<usize> = Setting {
    key: "concurrency",
    env: "ERASER_CONCURRENCY",
    flag: Some("--concurrency"),
    parse: |raw| values::whole(raw, CONCURRENCY_RANGE),
    show: show::plain,
};

pub static UPLOAD_CONCURRENCY: Setting<usize> = Setting {
    key: "upload_concurrency",
    env: "ERASER_UPLOAD_CONCURRENCY",
    flag: Some("--upload-concurrency"),
    parse: |raw| values::whole(raw, TRANSFERS_RANGE),
    show: show::plain,
};

pub static DOWNLOAD_CONCURRENCY: Setting<usize> = Setting {
    key: "download_concurrency",
    env: "ERASER_DOWNLOAD_CONCURRENCY",
    flag: Some("--download-concurrency"),
    parse: |raw| values::whole(raw, TRANSFERS_RANGE),
    show: show::plain,
};

pub static HASH_THREADS: Setting<usize> = Setting {
    key: "hash_threads",
    env: "ERASER_HASH_THREADS",
    flag: Some("--hash-threads"),
    parse: |raw| values::whole(raw, HASH_THREADS_RANGE),
    show: show::plain,
};

pub static RATE: Setting<f64> = Setting {
    key: "rate",
    env: "ERASER_RATE",
    flag: Some("--rate"),
    parse: |raw| values::number(raw, RATE_RANGE),
    show: show::plain,
};

pub static JOB_TIMEOUT: Setting<Duration> = Setting {
    key: "job_timeout",
    env: "ERASER_JOB_TIMEOUT",
    flag: Some("--job-timeout"),
    parse: |raw| values::duration(raw, TIMEOUT_RANGE),
    show: show::duration,
};

pub static OUTAGE_TIMEOUT: Setting<Duration> = Setting {
    key: "outage_timeout",
    env: "ERASER_OUTAGE_TIMEOUT",
    flag: Some("--outage-timeout"),
    parse: |raw| values::duration(raw, TIMEOUT_RANGE),
    show: show::duration,
};

pub static LEASE: Setting<Duration> = Setting {
    key: "lease",
    env: "ERASER_LEASE",
    flag: Some("--lease"),
    parse: |raw| values::duration(raw, LEASE_RANGE),
    show: show::duration,
};

pub static MAX_ATTEMPTS: Setting<u32> = Setting {
    key: "max_attempts",
    env: "ERASER_MAX_ATTEMPTS",
    flag: Some("--max-attempts"),
    parse: |raw| values::whole(raw, MAX_ATTEMPTS_RANGE),
    show: show::plain,
};

pub static MAX_UPLOAD_BYTES: Setting<u64> = Setting {
    key: "max_upload_bytes",
    env: "ERASER_MAX_UPLOAD_BYTES",
    flag: Some("--max-upload-bytes"),
    parse: |raw| values::size(raw, MAX_UPLOAD_BYTES_RANGE),
    show: show::plain,
};

pub static FOLLOW: Setting<bool> = Setting {
    key: "follow",
    env: "ERASER_FOLLOW",
    flag: Some("--follow"),
    parse: values::switch,
    show: show::plain,
};

pub static LINK: Setting<bool> = Setting {
    key: "link",
    env: "ERASER_LINK",
    flag: Some("--link"),
    parse: values::switch,
    show: show::plain,
};

pub static ANONYMOUS: Setting<bool> = Setting {
    key: "anonymous",
    env: "ERASER_ANONYMOUS",
    flag: Some("--anonymous"),
    parse: values::switch,
    show: show::plain,
};

/// Every setting's (key, variable, flag), for the checks that each has all its forms.
#[cfg(test)]
pub fn names() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    fn of<T>(s: &Setting<T>) -> (&'static str, &'static str, Option<&'static str>) {
        (s.key, s.env, s.flag)
    }
    vec![
        of(&API_BASE),
        of(&LEDGER),
        of(&TOKEN),
        of(&PRODUCT_SERIAL),
        of(&PRODUCT_CODE),
        of(&CONCURRENCY),
        of(&UPLOAD_CONCURRENCY),
        of(&DOWNLOAD_CONCURRENCY),
        of(&HASH_THREADS),
        of(&RATE),
        of(&JOB_TIMEOUT),
        of(&OUTAGE_TIMEOUT),
        of(&LEASE),
        of(&MAX_ATTEMPTS),
        of(&MAX_UPLOAD_BYTES),
        of(&FOLLOW),
        of(&LINK),
        of(&ANONYMOUS),
    ]
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use proptest::prelude::*;

    use super::*;
    use crate::config::values::{format_duration, parse_duration};

    /// Text a user, a script or a broken file might give: anything, numbers of every size and
    /// sign, numbers with units, and the known troublemakers.
    fn hostile_text() -> impl Strategy<Value = String> {
        let extremes = prop::sample::select(vec![
            "",
            " ",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "1e-300",
            "1e308",
            "1e309",
            "-0",
            "0",
            "0.0",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "-9223372036854775808",
            "4294967296",
            "340282366920938463463374607431768211456",
            "١٢٣",
            "５",
            "true",
            "yes",
            "\u{0}",
            "1\u{0}",
            "99999999999999999999y",
            "584942417355y",
            "18446744073709551615s",
            "18446744073709551615s 1ns",
            "1.5h",
            "0.0000000001s",
            "1ns",
            "999999us",
            "1e3",
            "+5",
            "--5",
            "5..",
            ".",
            "1.",
            ".5",
            "0x10",
            "1_000",
            "4GiB",
            "4294967297",
            "18446744073709551615GiB",
            "http://",
            "https://\u{0}",
            "\u{202e}8",
        ]);
        prop_oneof![
            any::<String>(),
            "[-+]?[0-9]{0,40}(\\.[0-9]{0,20})?([eE][-+]?[0-9]{1,5})?",
            "[-+]?[0-9]{1,25}(\\.[0-9]{1,12})? ?(ns|us|µs|ms|s|m|h|d|w|M|y|days|B|KB|KiB|MB|MiB|GB|GiB|k|x)?",
            "([0-9]{1,20}(\\.[0-9]{1,9})?(ns|ms|s|m|h|d|w|y) ?){1,6}",
            extremes.prop_map(str::to_string),
            any::<i128>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            any::<u64>().prop_map(|n| format!("{n}GiB")),
        ]
    }

    /// Runs `setting`'s parser on `raw`: it returns, and what it accepts passes `in_range`.
    fn check<T: std::fmt::Debug>(setting: &Setting<T>, raw: &OsStr, in_range: impl Fn(&T) -> bool) {
        if let Ok(value) = (setting.parse)(raw) {
            assert!(
                in_range(&value),
                "{} accepted {raw:?} as {value:?}, out of its range",
                setting.key
            );
        }
    }

    fn check_every_parser(raw: &OsStr) {
        let whole = |range: RangeInclusive<u64>| move |n: &usize| range.contains(&(*n as u64));
        check(&CONCURRENCY, raw, whole(CONCURRENCY_RANGE));
        check(&UPLOAD_CONCURRENCY, raw, whole(TRANSFERS_RANGE));
        check(&DOWNLOAD_CONCURRENCY, raw, whole(TRANSFERS_RANGE));
        check(&HASH_THREADS, raw, whole(HASH_THREADS_RANGE));
        check(&MAX_ATTEMPTS, raw, |n| {
            MAX_ATTEMPTS_RANGE.contains(&u64::from(*n))
        });
        check(&MAX_UPLOAD_BYTES, raw, |n| {
            MAX_UPLOAD_BYTES_RANGE.contains(n)
        });
        check(&RATE, raw, |r| r.is_finite() && RATE_RANGE.contains(r));
        check(&JOB_TIMEOUT, raw, |d| TIMEOUT_RANGE.contains(d));
        check(&OUTAGE_TIMEOUT, raw, |d| TIMEOUT_RANGE.contains(d));
        check(&LEASE, raw, |d| LEASE_RANGE.contains(d));
        check(&API_BASE, raw, |url| url.starts_with("http"));
        check(&PRODUCT_SERIAL, raw, |s| !s.chars().any(char::is_control));
        check(&PRODUCT_CODE, raw, |s| !s.chars().any(char::is_control));
        check(&FOLLOW, raw, |_| true);
        check(&LINK, raw, |_| true);
        check(&ANONYMOUS, raw, |_| true);
        check(&LEDGER, raw, |l| !l.to_string().is_empty());
        check(&TOKEN, raw, |_| true);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn no_parser_panics_and_each_accepts_only_values_in_its_range(text in hostile_text()) {
            check_every_parser(OsStr::new(&text));
        }

        #[cfg(unix)]
        #[test]
        fn no_parser_panics_on_bytes_that_are_not_utf8(bytes in any::<Vec<u8>>()) {
            use std::os::unix::ffi::OsStrExt as _;
            check_every_parser(OsStr::from_bytes(&bytes));
        }

        #[test]
        fn every_timeout_in_range_reads_back_from_how_it_is_shown(
            nanos in TIMEOUT_RANGE.start().as_nanos() as u64..=TIMEOUT_RANGE.end().as_nanos() as u64
        ) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn each_variable_is_eraser_and_the_key_in_capitals_and_each_flag_the_key_in_kebab_case() {
        for (key, env, flag) in names() {
            assert_eq!(env, format!("ERASER_{}", key.to_ascii_uppercase()));
            if let Some(flag) = flag {
                assert_eq!(flag, format!("--{}", key.replace('_', "-")));
            }
        }
    }

    #[test]
    fn the_ends_of_each_range_are_accepted_and_just_outside_refused() {
        let os = OsStr::new;
        assert!(
            (CONCURRENCY.parse)(os("1024")).is_ok() && (CONCURRENCY.parse)(os("1025")).is_err()
        );
        assert!((HASH_THREADS.parse)(os("0")).is_ok() && (HASH_THREADS.parse)(os("257")).is_err());
        assert!((RATE.parse)(os("0.001")).is_ok() && (RATE.parse)(os("0.0009")).is_err());
        assert!((JOB_TIMEOUT.parse)(os("30days")).is_ok());
        assert!((JOB_TIMEOUT.parse)(os("30days 1ns")).is_err());
        assert!(
            (OUTAGE_TIMEOUT.parse)(os("1ms")).is_ok()
                && (OUTAGE_TIMEOUT.parse)(os("999us")).is_err()
        );
        assert!((MAX_ATTEMPTS.parse)(os("100")).is_ok() && (MAX_ATTEMPTS.parse)(os("0")).is_err());
        assert!((MAX_UPLOAD_BYTES.parse)(os("4GiB")).is_ok());
        assert!((MAX_UPLOAD_BYTES.parse)(os("4294967297")).is_err());
    }
}
