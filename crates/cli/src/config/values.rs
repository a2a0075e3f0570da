//! How each kind of setting value is read and checked: whole numbers and rates in a range,
//! durations, byte sizes, switches, one-line text, the API base, the ledger, extra headers.
//!
//! A flag, an environment variable and a config-file value go through the same parser, so a
//! value is checked the same way whatever its source. Every parser takes any text (or bytes)
//! and returns a value in its range or a message saying why not and what is accepted; none
//! panics.

use std::ffi::OsStr;

use eraser_store::Location;
use std::num::IntErrorKind;
use std::ops::RangeInclusive;
use std::time::Duration;

use eraser_api::Token;

/// The longest part of a refused value quoted back in a message.
const QUOTED_CHARS: usize = 40;

/// `text` in quotes for a message, cut short when long (an env var can hold anything).
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// The text of a value; settings are text, so bytes that are not UTF-8 are refused.
fn utf8(raw: &OsStr) -> Result<&str, String> {
    raw.to_str().ok_or_else(|| "not valid UTF-8".to_string())
}

/// How a range reads in messages and `--help`: `1 to 256`.
pub fn span<T: std::fmt::Display>(range: &RangeInclusive<T>) -> String {
    format!("{} to {}", range.start(), range.end())
}

/// A whole number in `range`, converted to the setting's type.
pub fn whole<T: TryFrom<u64>>(raw: &OsStr, range: RangeInclusive<u64>) -> Result<T, String> {
    let text = utf8(raw)?.trim();
    let out_of_range = || format!("{} is out of range: must be {}", quote(text), span(&range));
    let n = match text.parse::<i128>() {
        Ok(n) => u64::try_from(n).map_err(|_| out_of_range())?,
        Err(e)
            if matches!(
                e.kind(),
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow
            ) =>
        {
            return Err(out_of_range());
        }
        Err(_) if text.is_empty() => {
            return Err(format!("no number given: must be {}", span(&range)));
        }
        Err(_) => return Err(format!("{} is not a whole number", quote(text))),
    };
    if !range.contains(&n) {
        return Err(out_of_range());
    }
    T::try_from(n).map_err(|_| out_of_range())
}

/// A finite number in `range` (a rate per second).
pub fn number(raw: &OsStr, range: RangeInclusive<f64>) -> Result<f64, String> {
    let text = utf8(raw)?.trim();
    let n: f64 = text
        .parse()
        .map_err(|_| format!("{} is not a number", quote(text)))?;
    if n.is_finite() && range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{} is out of range: must be {}",
            quote(text),
            span(&range)
        ))
    }
}

/// A duration (see [`parse_duration`]) in `range`.
pub fn duration(raw: &OsStr, range: RangeInclusive<Duration>) -> Result<Duration, String> {
    let d = parse_duration(utf8(raw)?)?;
    if range.contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "{} is out of range: must be {} to {}",
            format_duration(d),
            format_duration(*range.start()),
            format_duration(*range.end())
        ))
    }
}

/// Reads a duration the way humantime does (`500ms`, `90s`, `10m`, `1h30m`, `1h 30m`, `1.5h`,
/// `2days`), or a plain number of seconds (`90`, `0.25`). A number and its unit are written
/// together: `5 m` is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let bad = |why: &dyn std::fmt::Display| {
        format!(
            "{} is not a duration ({why}; examples: 500ms, 90s, 10m, 1h30m, 90)",
            quote(text)
        )
    };
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| bad(&e));
    }
    let mut previous = ' ';
    for c in t.chars() {
        if c.is_whitespace() && (previous.is_ascii_digit() || previous == '.') {
            return Err(bad(&"a space inside a number or before its unit"));
        }
        previous = c;
    }
    humantime::parse_duration(t).map_err(|e| bad(&e))
}

/// A duration as humantime writes it (`10m`, `1m 30s`, `1s 500ms`); [`parse_duration`] reads
/// it back.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A byte size in `range`: `1048576`, `50MB` (10^6), `50MiB` or `50M` (2^20), likewise K and G.
pub fn size(raw: &OsStr, range: RangeInclusive<u64>) -> Result<u64, String> {
    let text = utf8(raw)?.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {} (examples: 1048576, 50MB, 20MiB; units KB, MB, GB, KiB, MiB, GiB)",
                quote(text)
            ));
        }
    };
    let out_of_range = || {
        format!(
            "size {} is out of range: must be {} to {} bytes",
            quote(text),
            range.start(),
            range.end()
        )
    };
    let n = match digits.parse::<u64>() {
        Ok(n) => n,
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => return Err(out_of_range()),
        Err(_) => {
            return Err(format!(
                "invalid size {} (examples: 1048576, 50MB, 20MiB)",
                quote(text)
            ));
        }
    };
    n.checked_mul(scale)
        .filter(|n| range.contains(n))
        .ok_or_else(out_of_range)
}

/// A switch: `true`/`false`, also `yes`/`no`, `on`/`off`, `1`/`0` (any case).
pub fn switch(raw: &OsStr) -> Result<bool, String> {
    let text = utf8(raw)?.trim();
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{} is not true or false", quote(text))),
    }
}

/// Text of one line, not empty: it is sent to the service in a header.
pub fn one_line(raw: &OsStr) -> Result<String, String> {
    let text = utf8(raw)?;
    if text.trim().is_empty() {
        return Err("empty".into());
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{} must be one line of text", quote(text)));
    }
    Ok(text.to_string())
}

/// The API token. Messages never show it, not even in part.
pub fn token(raw: &OsStr) -> Result<Token, String> {
    match raw.to_str() {
        Some(text) if !text.trim().is_empty() => Ok(Token::new(text)),
        Some(_) => Err("the token is empty".into()),
        None => Err("the token is not valid UTF-8".into()),
    }
}

/// The API origin: an http(s) URL with a host; a trailing `/` is dropped.
pub fn api_base(raw: &OsStr) -> Result<String, String> {
    let url = utf8(raw)?;
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| format!("API base {} is not an http:// or https:// URL", quote(url)))?;
    if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("API base {} has no valid host", quote(url)));
    }
    Ok(trimmed.to_string())
}

/// Where the ledger is: a `postgres://` (or `postgresql://`) URL, or a file path (any bytes,
/// as paths may be). A URL's password is never quoted back.
pub fn ledger(raw: &OsStr) -> Result<Location, String> {
    if raw.is_empty() {
        return Err("empty ledger path".into());
    }
    Location::parse(raw)
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

/// Headers one per line (`ERASER_HEADERS`): each line `Name: value`; blank lines are skipped.
pub fn header_lines(raw: &OsStr) -> Result<Vec<(String, String)>, String> {
    utf8(raw)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_header)
        .collect()
}

/// Checks an extra header's name and value.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token_char) {
        return Err(format!("invalid header name {}", quote(name)));
    }
    if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return Err(format!("the value of header {name} must be one line"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(text: &str) -> &OsStr {
        OsStr::new(text)
    }

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
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn duration_garbage_is_refused() {
        for bad in [
            "", "ten", "10x", "m", "10m5", "-5s", "1e400", "5 m", "1 0m", "NaN",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
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
    fn a_duration_outside_its_range_is_refused_naming_the_range() {
        let range = Duration::from_millis(1)..=Duration::from_secs(60);
        assert_eq!(
            duration(os("1m"), range.clone()),
            Ok(Duration::from_secs(60))
        );
        let err = duration(os("0s"), range.clone()).expect_err("zero");
        assert!(err.contains("1ms to 1m"), "{err}");
        assert!(duration(os("61s"), range).is_err());
    }

    #[test]
    fn a_whole_number_outside_its_range_is_refused_naming_the_range() {
        assert_eq!(whole::<usize>(os(" 256 "), 1..=256), Ok(256));
        for bad in [
            "0",
            "257",
            "-1",
            "9223372036854775807",
            "99999999999999999999999999999999999999999",
        ] {
            let err = whole::<usize>(os(bad), 1..=256).expect_err(bad);
            assert!(err.contains("1 to 256"), "{bad}: {err}");
        }
        assert!(whole::<usize>(os("4.0"), 1..=256).is_err());
        assert!(whole::<usize>(os(""), 1..=256).is_err());
    }

    #[test]
    fn a_rate_must_be_finite_and_in_range() {
        let range = 0.001..=10_000.0;
        assert_eq!(number(os("0.5"), range.clone()), Ok(0.5));
        for bad in ["1e-300", "0", "-1", "NaN", "inf", "10001", "fast"] {
            assert!(
                number(os(bad), range.clone()).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        let any = 1..=u64::MAX;
        assert_eq!(size(os("123"), any.clone()), Ok(123));
        assert_eq!(size(os("2MB"), any.clone()), Ok(2_000_000));
        assert_eq!(size(os("2MiB"), any.clone()), Ok(2 << 20));
        assert!(size(os("2XB"), any.clone()).is_err());
        assert!(size(os("99999999999GiB"), any).is_err());
        assert!(size(os("5GiB"), 1..=4 << 30).is_err());
    }

    #[test]
    fn switches_read_the_usual_words() {
        assert_eq!(switch(os("TRUE")), Ok(true));
        assert_eq!(switch(os("off")), Ok(false));
        assert!(switch(os("maybe")).is_err());
    }

    #[test]
    fn a_long_refused_value_is_quoted_only_in_part() {
        let long = "9".repeat(10_000);
        let err = whole::<usize>(os(&long), 1..=256).expect_err("too long");
        assert!(err.len() < 200, "{err}");
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
    fn header_lines_are_one_header_each() {
        assert_eq!(
            header_lines(os("X-A: 1\n\nX-B: two, three\n")),
            Ok(vec![
                ("X-A".to_string(), "1".to_string()),
                ("X-B".to_string(), "two, three".to_string())
            ])
        );
        assert!(header_lines(os("X-A 1")).is_err());
    }
}
