//! The one precedence every setting goes through: flag > environment > config file > default.
//!
//! A [`Setting`] names a value in each source and says how its text is read; [`Layers`] looks
//! it up in that order, checks it with the setting's parser whatever the source, and notes
//! the value and its source for `eraser config show`.

use std::ffi::OsStr;

use super::environment::Environment;
use super::file::FileValues;
use super::values::header_lines;
use super::{ConfigError, ExtraHeader, Source, Sourced};

/// One setting: its names in each source, how its text is read and how `config show` writes it.
pub struct Setting<T: 'static> {
    /// The config file key, snake_case.
    pub key: &'static str,
    /// The environment variable: `ERASER_` and the key in capitals.
    pub env: &'static str,
    /// The flag (the token has none: it never goes on a command line).
    pub flag: Option<&'static str>,
    /// Reads the text of a flag, a variable or a file value; refuses what is out of range.
    pub parse: fn(&OsStr) -> Result<T, String>,
    /// The value as a TOML value.
    pub show: fn(&T) -> String,
}

/// The extra headers: a list merged by name (a header replaces one of the same name from a
/// lower source), not one value.
pub const HEADERS_KEY: &str = "headers";
/// `ERASER_HEADERS`: one `Name: value` per line.
pub const HEADERS_ENV: &str = "ERASER_HEADERS";

/// A line of `eraser config show`: `key = value  # comment`, or `# key: comment` when unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub key: &'static str,
    pub value: Option<String>,
    pub comment: String,
}

/// The sources below the flags, with the `config show` lines of the settings looked up so far.
pub struct Layers<'a> {
    env: &'a Environment,
    file: &'a FileValues,
    shown: Vec<Shown>,
}

impl<'a> Layers<'a> {
    pub fn new(env: &'a Environment, file: &'a FileValues) -> Self {
        Self {
            env,
            file,
            shown: Vec::new(),
        }
    }

    /// The value from the highest source that has one: the flag, the environment, the file.
    /// An empty variable or file string counts as unset. Nothing is noted for `config show`.
    pub fn pick<T>(
        &self,
        setting: &Setting<T>,
        flag: Option<T>,
    ) -> Result<Option<Sourced<T>>, ConfigError> {
        if let Some(value) = flag {
            return Ok(Some(Sourced::new(value, Source::Flag)));
        }
        if let Some(raw) = self.env.var_os(setting.env) {
            let value = (setting.parse)(&raw).map_err(|message| ConfigError::Invalid {
                key: setting.key,
                origin: format!("environment variable {}", setting.env),
                message,
            })?;
            return Ok(Some(Sourced::new(value, Source::Env(setting.env))));
        }
        let invalid = |message| ConfigError::Invalid {
            key: setting.key,
            origin: self.file.origin(),
            message,
        };
        match self.file.text(setting.key).map_err(invalid)? {
            Some(text) => {
                let value = (setting.parse)(OsStr::new(&text)).map_err(invalid)?;
                Ok(Some(Sourced::new(value, Source::File)))
            }
            None => Ok(None),
        }
    }

    /// [`Layers::pick`], else `default`; noted for `config show`.
    pub fn or_default<T>(
        &mut self,
        setting: &Setting<T>,
        flag: Option<T>,
        default: T,
    ) -> Result<Sourced<T>, ConfigError> {
        let value = self
            .pick(setting, flag)?
            .unwrap_or(Sourced::new(default, Source::Default));
        self.note(setting, &value);
        Ok(value)
    }

    /// [`Layers::pick`], noted for `config show`; `when_unset` says what happens without it.
    pub fn optional<T>(
        &mut self,
        setting: &Setting<T>,
        flag: Option<T>,
        when_unset: &str,
    ) -> Result<Option<Sourced<T>>, ConfigError> {
        let value = self.pick(setting, flag)?;
        match &value {
            Some(value) => self.note(setting, value),
            None => self.shown.push(Shown {
                key: setting.key,
                value: None,
                comment: format!("not set; {when_unset}"),
            }),
        }
        Ok(value)
    }

    /// A secret (the token): environment or file only, never a flag; `config show` says
    /// whether it is set, never what it is.
    pub fn secret<T>(&mut self, setting: &Setting<T>) -> Result<Option<Sourced<T>>, ConfigError> {
        let value = self.pick(setting, None)?;
        self.shown.push(match &value {
            Some(value) => Shown {
                key: setting.key,
                value: Some((setting.show)(&value.value)),
                comment: value.source.to_string(),
            },
            None => Shown {
                key: setting.key,
                value: Some("\"<unset>\"".into()),
                comment: "not set".into(),
            },
        });
        Ok(value)
    }

    /// Notes `value` as the setting's line of `config show`.
    pub fn note<T>(&mut self, setting: &Setting<T>, value: &Sourced<T>) {
        self.shown.push(Shown {
            key: setting.key,
            value: Some((setting.show)(&value.value)),
            comment: value.source.to_string(),
        });
    }

    /// The extra headers of every source, merged by name: the file's, then the environment's,
    /// then the flags'; each replaces a header of the same name (any case) from a lower source.
    pub fn headers(&self, flags: &[(String, String)]) -> Result<Vec<ExtraHeader>, ConfigError> {
        let mut headers = Vec::new();
        let file = self
            .file
            .headers()
            .map_err(|message| ConfigError::Invalid {
                key: HEADERS_KEY,
                origin: self.file.origin(),
                message,
            })?;
        merge(&mut headers, file, Source::File);
        if let Some(raw) = self.env.var_os(HEADERS_ENV) {
            let env = header_lines(&raw).map_err(|message| ConfigError::Invalid {
                key: HEADERS_KEY,
                origin: format!("environment variable {HEADERS_ENV}"),
                message,
            })?;
            merge(&mut headers, env, Source::Env(HEADERS_ENV));
        }
        merge(&mut headers, flags.to_vec(), Source::Flag);
        Ok(headers)
    }

    /// The `config show` lines, in the order the settings were looked up.
    pub fn into_shown(self) -> Vec<Shown> {
        self.shown
    }
}

/// Adds the headers of one source, replacing those of the same name from lower sources.
fn merge(headers: &mut Vec<ExtraHeader>, layer: Vec<(String, String)>, source: Source) {
    for (name, value) in layer {
        headers.retain(|h| h.source == source || !h.name.eq_ignore_ascii_case(&name));
        headers.push(ExtraHeader {
            name,
            value,
            source,
        });
    }
}
