//! The config file: where it is, reading it, and its values as text for the settings' parsers.
//!
//! Error messages name the file and the line, and never quote a line: it could hold the token.

use std::path::{Path, PathBuf};

use super::environment::Environment;
use super::precedence::HEADERS_KEY;
use super::values::check_header;
use super::{ConfigError, Flags, Source};

/// The config file, as located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub source: Source,
    /// False when the default file does not exist (then it contributes nothing).
    pub loaded: bool,
}

/// Locates the config file: `--config` > `ERASER_CONFIG` > `<config dir>/eraser/config.toml`.
pub fn config_path(flags: &Flags, env: &Environment) -> Result<(PathBuf, Source), ConfigError> {
    if let Some(p) = &flags.config {
        return Ok((p.clone(), Source::Flag));
    }
    if let Some(p) = env.var_os("ERASER_CONFIG") {
        return Ok((PathBuf::from(p), Source::Env("ERASER_CONFIG")));
    }
    let dir = env.config_dir.as_ref().ok_or(ConfigError::NoConfigDir)?;
    Ok((dir.join("eraser").join("config.toml"), Source::Default))
}

/// The values of the config file (none when the default file does not exist).
#[derive(Debug)]
pub struct FileValues {
    path: PathBuf,
    table: toml::Table,
}

impl FileValues {
    /// Reads and parses the file at `file.path`; a missing file is an error only when it was
    /// named (`--config`, `ERASER_CONFIG`). Returns the values and whether the file was there.
    pub fn load(path: &Path, source: Source) -> Result<(Self, bool), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && source == Source::Default => None,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let loaded = text.is_some();
        let table = match &text {
            Some(text) => parse(path, text)?,
            None => toml::Table::new(),
        };
        let values = Self {
            path: path.to_path_buf(),
            table,
        };
        Ok((values, loaded))
    }

    /// Where a value from the file came from, for messages.
    pub fn origin(&self) -> String {
        format!("config file {}", self.path.display())
    }

    /// True when the file has `key` (even empty).
    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// The value at `key` as text for its parser: strings as they are, numbers and booleans
    /// written out; `None` when absent or an empty string.
    pub fn text(&self, key: &str) -> Result<Option<String>, String> {
        use toml::Value;
        Ok(match self.table.get(key) {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Integer(n)) => Some(n.to_string()),
            // Debug writes 1e-300 as such, where Display writes 300 digits.
            Some(Value::Float(f)) => Some(format!("{f:?}")),
            Some(Value::Boolean(b)) => Some(b.to_string()),
            Some(Value::Datetime(d)) => Some(d.to_string()),
            Some(Value::Array(_)) => return Err("expected one value, not a list".into()),
            Some(Value::Table(_)) => return Err("expected one value, not a table".into()),
        })
    }

    /// The `[headers]` table: `Name = "value"` lines.
    pub fn headers(&self) -> Result<Vec<(String, String)>, String> {
        let Some(value) = self.table.get(HEADERS_KEY) else {
            return Ok(Vec::new());
        };
        let table = value
            .as_table()
            .ok_or("expected a table of `Name = \"value\"` lines")?;
        let mut headers = table
            .iter()
            .map(|(name, value)| {
                let value = value
                    .as_str()
                    .ok_or_else(|| format!("the value of header {name} must be a string"))?;
                check_header(name, value)?;
                Ok((name.clone(), value.to_string()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        headers.sort();
        Ok(headers)
    }

    /// The first key of the file that is not in `known`.
    pub fn unknown_key<'k>(&'k self, known: &[&str]) -> Option<&'k str> {
        self.table
            .keys()
            .map(String::as_str)
            .find(|k| !known.contains(k))
    }

    /// A path from the file: `~/` is the home directory; relative paths are relative to the
    /// file's own folder (so the file means the same wherever eraser is started).
    pub fn relative_path(&self, value: &Path, home: Option<&Path>) -> PathBuf {
        if let (Ok(rest), Some(home)) = (value.strip_prefix("~"), home) {
            return home.join(rest);
        }
        if value.is_absolute() {
            return value.to_path_buf();
        }
        self.path
            .parent()
            .map_or_else(|| value.to_path_buf(), |dir| dir.join(value))
    }
}

/// Parses the file's TOML. Messages give toml's message and the line number only.
fn parse(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let message = match line {
            Some(line) => format!("line {line}: {}", e.message()),
            None => e.message().to_string(),
        };
        ConfigError::Malformed {
            path: path.to_path_buf(),
            message,
        }
    })
}

/// The warning for a token file that others can read (unix permissions).
#[cfg(unix)]
pub fn open_permissions_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "{} holds a token and is readable by other users; run: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
pub fn open_permissions_warning(_path: &Path) -> Option<String> {
    None
}
