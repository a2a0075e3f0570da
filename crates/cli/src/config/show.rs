//! `eraser config show`: the effective configuration as TOML, each value with its source; and
//! how each kind of value is written as TOML.
//!
//! The token shows as `<set>` or `<unset>`; credential-like header values as `<redacted>`.

use std::fmt::{Display, Write as _};
use std::time::Duration;

use super::Config;
use super::values::format_duration;

impl Config {
    /// The effective configuration as TOML, each value commented with its source.
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        let state = if self.file.loaded {
            "loaded"
        } else {
            "not found"
        };
        let _ = writeln!(
            s,
            "# eraser configuration; precedence: flag > env > file > default"
        );
        let _ = writeln!(
            s,
            "# config file ({}): {} ({state})",
            self.file.source,
            self.file.path.display()
        );
        for line in &self.shown {
            let _ = match &line.value {
                Some(value) => writeln!(s, "{} = {value}  # {}", line.key, line.comment),
                None => writeln!(s, "# {}: {}", line.key, line.comment),
            };
        }
        let _ = writeln!(s, "\n[headers]");
        for h in &self.headers {
            let value = if h.is_sensitive() {
                "<redacted>"
            } else {
                h.value.as_str()
            };
            let _ = writeln!(s, "{} = {}  # {}", toml_key(&h.name), text(value), h.source);
        }
        s
    }
}

/// A number or switch as TOML writes it.
pub fn plain<T: Display>(value: &T) -> String {
    value.to_string()
}

/// A duration as a TOML string humantime reads back (`"10m"`, `"1m 30s"`).
pub fn duration(value: &Duration) -> String {
    text(&format_duration(*value))
}

/// A TOML basic string.
pub fn text<S: AsRef<str> + ?Sized>(value: &S) -> String {
    let value = value.as_ref();
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{:04X}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A TOML key: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare { key.to_string() } else { text(key) }
}
