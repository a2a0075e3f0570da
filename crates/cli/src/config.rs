//! Effective configuration: flags > environment (`ERASER_*`) > TOML config file > defaults.
//!
//! The resolver reads the environment through [`Environment`] (a lookup closure plus the platform
//! directories) so tests can give it a map instead of mutating the process environment.
//! The token is held as [`eraser_api::Token`]: neither `Debug` nor `config show` ever print it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use eraser_api::Token;
use serde::Deserialize;

use crate::cli::{check_header, format_duration, parse_duration};

/// Default jobs in flight (`-j`).
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default `--job-timeout`.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// The keys a config file may hold.
const FILE_KEYS: [&str; 8] = [
    "api_base",
    "ledger",
    "token",
    "product_serial",
    "product_code",
    "concurrency",
    "job_timeout",
    "headers",
];

/// Why the configuration cannot be used; always an exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The message names the file; the io error follows in the chain.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is malformed: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    #[error("config file {}: unknown key `{key}` (known keys: {})", path.display(), FILE_KEYS.join(", "))]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {}: `{key}`: {message}", path.display())]
    InvalidFileValue {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{origin}: {message}")]
    InvalidValue { origin: String, message: String },
    #[error("no config directory on this system: pass --config FILE or set ERASER_CONFIG")]
    NoConfigDir,
    #[error(
        "no data or home directory to keep the ledger in: pass --ledger FILE or set ERASER_LEDGER"
    )]
    NoLedgerPlace,
}

/// Where a value came from, for `eraser config show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    /// The named environment variable.
    Env(&'static str),
    File,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("flag"),
            Self::Env(name) => write!(f, "env {name}"),
            Self::File => f.write_str("file"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// A value together with its [`Source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }
}

/// An extra API header. `Debug` hides the value: headers often carry credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtraHeader {
    pub name: String,
    pub value: String,
    pub source: Source,
}

impl ExtraHeader {
    /// True for names that usually carry credentials; their values are never printed.
    pub fn is_sensitive(&self) -> bool {
        is_sensitive_header(&self.name)
    }
}

/// True for header names that usually carry credentials (`Authorization`, `X-Api-Key`, cookies…).
pub fn is_sensitive_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "auth", "token", "key", "secret", "cookie", "password", "session",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

impl fmt::Debug for ExtraHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtraHeader")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// The config file, as located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub source: Source,
    /// False when the default file does not exist (then it contributes nothing).
    pub loaded: bool,
}

/// Values given on the command line (the top of the precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub ledger: Option<PathBuf>,
    pub api_base: Option<String>,
    pub product_serial: Option<String>,
    pub product_code: Option<String>,
    pub concurrency: Option<usize>,
    pub job_timeout: Option<Duration>,
    pub headers: Vec<(String, String)>,
}

/// Looks an environment variable up by name.
type VarLookup = Box<dyn Fn(&str) -> Option<OsString> + Send + Sync>;

/// The process environment as the resolver sees it.
pub struct Environment {
    vars: VarLookup,
    pub config_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub home_dir: Option<PathBuf>,
}

impl Environment {
    /// The real environment and platform directories.
    pub fn process() -> Self {
        Self {
            vars: Box::new(|name: &str| std::env::var_os(name)),
            config_dir: dirs::config_dir(),
            data_dir: dirs::data_dir(),
            home_dir: dirs::home_dir(),
        }
    }

    /// An environment from a lookup closure and explicit directories (for tests).
    #[cfg(test)]
    pub fn with_vars(
        vars: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static,
        config_dir: Option<PathBuf>,
        data_dir: Option<PathBuf>,
        home_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            vars: Box::new(vars),
            config_dir,
            data_dir,
            home_dir,
        }
    }

    /// A variable's value; set-but-empty counts as unset.
    fn var_os(&self, name: &str) -> Option<OsString> {
        (self.vars)(name).filter(|v| !v.is_empty())
    }

    fn var(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        self.var_os(name)
            .map(|v| {
                v.into_string().map_err(|_| ConfigError::InvalidValue {
                    origin: format!("environment variable {name}"),
                    message: "not valid UTF-8".into(),
                })
            })
            .transpose()
    }
}

/// The effective configuration of one invocation.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: ConfigFile,
    pub api_base: Sourced<String>,
    pub ledger: Sourced<PathBuf>,
    pub token: Option<Sourced<Token>>,
    /// `None`: the ledger's own serial (generated once per ledger) is used.
    pub product_serial: Option<Sourced<String>>,
    pub product_code: Sourced<String>,
    pub concurrency: Sourced<usize>,
    pub job_timeout: Sourced<Duration>,
    /// File headers first, then flag headers; a flag header replaces a file header of the same name.
    pub headers: Vec<ExtraHeader>,
    /// Problems worth telling the user that do not stop the run (an open token file).
    pub warnings: Vec<String>,
}

/// What the TOML file may contain.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileValues {
    api_base: Option<String>,
    ledger: Option<PathBuf>,
    token: Option<String>,
    product_serial: Option<String>,
    product_code: Option<String>,
    concurrency: Option<i64>,
    job_timeout: Option<FileDuration>,
    headers: Option<BTreeMap<String, String>>,
}

/// `job_timeout` in the file: `"10m"` or a number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileDuration {
    Seconds(i64),
    Text(String),
}

/// Locates the config file: `--config` > `ERASER_CONFIG` > `<config dir>/eraser/config.toml`.
pub fn config_path(over: &Overrides, env: &Environment) -> Result<(PathBuf, Source), ConfigError> {
    if let Some(p) = &over.config {
        return Ok((p.clone(), Source::Flag));
    }
    if let Some(p) = env.var_os("ERASER_CONFIG") {
        return Ok((PathBuf::from(p), Source::Env("ERASER_CONFIG")));
    }
    let dir = env.config_dir.as_ref().ok_or(ConfigError::NoConfigDir)?;
    Ok((dir.join("eraser").join("config.toml"), Source::Default))
}

impl Config {
    /// Resolves every setting by precedence: flag > environment > file > default.
    pub fn resolve(over: &Overrides, env: &Environment) -> Result<Self, ConfigError> {
        let (path, file_source) = config_path(over, env)?;
        let explicit = file_source != Source::Default;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let loaded = text.is_some();
        let file = match &text {
            Some(text) => parse_file(&path, text)?,
            None => FileValues::default(),
        };
        let mut warnings = Vec::new();
        if file.token.is_some() {
            warnings.extend(open_permissions_warning(&path));
        }
        let bad_file = |key: &str, message: String| ConfigError::InvalidFileValue {
            path: path.clone(),
            key: key.to_string(),
            message,
        };

        let api_base = pick(
            over.api_base.clone(),
            env.var("ERASER_API_BASE")?,
            "ERASER_API_BASE",
            file.api_base,
            eraser_api::DEFAULT_BASE_URL.to_string(),
        );
        let api_base = Sourced::new(
            check_api_base(&api_base.value).map_err(|message| match api_base.source {
                Source::File => bad_file("api_base", message),
                other => ConfigError::InvalidValue {
                    origin: origin(other, "--api-base"),
                    message,
                },
            })?,
            api_base.source,
        );

        let ledger = if let Some(p) = &over.ledger {
            Sourced::new(p.clone(), Source::Flag)
        } else if let Some(p) = env.var_os("ERASER_LEDGER") {
            Sourced::new(PathBuf::from(p), Source::Env("ERASER_LEDGER"))
        } else if let Some(p) = &file.ledger {
            Sourced::new(
                file_relative(&path, p, env.home_dir.as_deref()),
                Source::File,
            )
        } else {
            Sourced::new(default_ledger(env)?, Source::Default)
        };

        let token = match env.var("ERASER_TOKEN")? {
            Some(t) => Some(Sourced::new(Token::new(t), Source::Env("ERASER_TOKEN"))),
            None => file
                .token
                .filter(|t| !t.is_empty())
                .map(|t| Sourced::new(Token::new(t), Source::File)),
        };

        let product_serial = first_of(
            over.product_serial.clone(),
            env.var("ERASER_PRODUCT_SERIAL")?,
            "ERASER_PRODUCT_SERIAL",
            file.product_serial,
        );
        let product_code = pick(
            over.product_code.clone(),
            env.var("ERASER_PRODUCT_CODE")?,
            "ERASER_PRODUCT_CODE",
            file.product_code,
            eraser_api::DEFAULT_PRODUCT_CODE.to_string(),
        );

        let concurrency = match (over.concurrency, file.concurrency) {
            (Some(n), _) => Sourced::new(n, Source::Flag),
            (None, Some(n)) => match usize::try_from(n) {
                Ok(n) if n >= 1 => Sourced::new(n, Source::File),
                _ => {
                    return Err(bad_file(
                        "concurrency",
                        format!("{n} is not a count of at least 1"),
                    ));
                }
            },
            (None, None) => Sourced::new(DEFAULT_CONCURRENCY, Source::Default),
        };

        let job_timeout = match (over.job_timeout, file.job_timeout) {
            (Some(d), _) => Sourced::new(d, Source::Flag),
            (None, Some(d)) => {
                let parsed = match d {
                    FileDuration::Seconds(s) => u64::try_from(s)
                        .map(Duration::from_secs)
                        .map_err(|_| format!("{s} is not a duration")),
                    FileDuration::Text(t) => parse_duration(&t),
                };
                match parsed {
                    Ok(d) if !d.is_zero() => Sourced::new(d, Source::File),
                    Ok(_) => return Err(bad_file("job_timeout", "must be above zero".into())),
                    Err(message) => return Err(bad_file("job_timeout", message)),
                }
            }
            (None, None) => Sourced::new(DEFAULT_JOB_TIMEOUT, Source::Default),
        };

        let mut headers: Vec<ExtraHeader> = Vec::new();
        for (name, value) in file.headers.unwrap_or_default() {
            check_header(&name, &value).map_err(|m| bad_file("headers", m))?;
            headers.push(ExtraHeader {
                name,
                value,
                source: Source::File,
            });
        }
        for (name, value) in &over.headers {
            headers.retain(|h| h.source == Source::Flag || !h.name.eq_ignore_ascii_case(name));
            headers.push(ExtraHeader {
                name: name.clone(),
                value: value.clone(),
                source: Source::Flag,
            });
        }

        Ok(Self {
            file: ConfigFile {
                path,
                source: file_source,
                loaded,
            },
            api_base,
            ledger,
            token,
            product_serial,
            product_code,
            concurrency,
            job_timeout,
            headers,
            warnings,
        })
    }

    /// The effective configuration as TOML, each value commented with its source.
    /// The token shows as `<set>` or `<unset>`; credential-like header values as `<redacted>`.
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
        let line = |s: &mut String, key: &str, value: String, source: &dyn fmt::Display| {
            let _ = writeln!(s, "{key} = {value}  # {source}");
        };
        line(
            &mut s,
            "api_base",
            toml_string(&self.api_base.value),
            &self.api_base.source,
        );
        line(
            &mut s,
            "ledger",
            toml_string(&self.ledger.value.to_string_lossy()),
            &self.ledger.source,
        );
        match &self.token {
            Some(t) => line(&mut s, "token", toml_string("<set>"), &t.source),
            None => line(&mut s, "token", toml_string("<unset>"), &"not set"),
        }
        match &self.product_serial {
            Some(p) => line(&mut s, "product_serial", toml_string(&p.value), &p.source),
            None => {
                let _ = writeln!(
                    s,
                    "# product_serial: not set; the one generated for the ledger is used"
                );
            }
        }
        line(
            &mut s,
            "product_code",
            toml_string(&self.product_code.value),
            &self.product_code.source,
        );
        line(
            &mut s,
            "concurrency",
            self.concurrency.value.to_string(),
            &self.concurrency.source,
        );
        line(
            &mut s,
            "job_timeout",
            toml_string(&format_duration(self.job_timeout.value)),
            &self.job_timeout.source,
        );
        let _ = writeln!(s, "\n[headers]");
        for h in &self.headers {
            let value = if h.is_sensitive() {
                "<redacted>"
            } else {
                h.value.as_str()
            };
            line(&mut s, &toml_key(&h.name), toml_string(value), &h.source);
        }
        s
    }
}

/// Flag > env > file > default for a string setting.
fn pick(
    flag: Option<String>,
    env: Option<String>,
    env_name: &'static str,
    file: Option<String>,
    default: String,
) -> Sourced<String> {
    first_of(flag, env, env_name, file).unwrap_or(Sourced::new(default, Source::Default))
}

/// Flag > env > file for a string setting without default.
fn first_of(
    flag: Option<String>,
    env: Option<String>,
    env_name: &'static str,
    file: Option<String>,
) -> Option<Sourced<String>> {
    flag.map(|v| Sourced::new(v, Source::Flag))
        .or_else(|| env.map(|v| Sourced::new(v, Source::Env(env_name))))
        .or_else(|| {
            file.filter(|v| !v.is_empty())
                .map(|v| Sourced::new(v, Source::File))
        })
}

/// Names a non-file source in an error message.
fn origin(source: Source, flag: &str) -> String {
    match source {
        Source::Env(name) => format!("environment variable {name}"),
        _ => flag.to_string(),
    }
}

/// Parses the file; unknown keys and type errors name the file. Messages never quote the
/// offending line (it could hold the token): only toml's message and the line number.
fn parse_file(path: &Path, text: &str) -> Result<FileValues, ConfigError> {
    let malformed = |e: toml::de::Error| {
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
    };
    let table: toml::Table = toml::from_str(text).map_err(malformed)?;
    if let Some(key) = table.keys().find(|k| !FILE_KEYS.contains(&k.as_str())) {
        return Err(ConfigError::UnknownKey {
            path: path.to_path_buf(),
            key: key.clone(),
        });
    }
    toml::from_str(text).map_err(malformed)
}

/// A path from the config file: `~/` is the home directory; relative paths are relative to the
/// file's own folder (so the file means the same wherever eraser is started).
fn file_relative(config: &Path, value: &Path, home: Option<&Path>) -> PathBuf {
    if let (Ok(rest), Some(home)) = (value.strip_prefix("~"), home) {
        return home.join(rest);
    }
    if value.is_absolute() {
        return value.to_path_buf();
    }
    config
        .parent()
        .map_or_else(|| value.to_path_buf(), |dir| dir.join(value))
}

/// `<data dir>/eraser/ledger.db`, else `~/.local/share/eraser/ledger.db`: one ledger per user so
/// deduplication spans every batch.
fn default_ledger(env: &Environment) -> Result<PathBuf, ConfigError> {
    let base = match (&env.data_dir, &env.home_dir) {
        (Some(data), _) => data.clone(),
        (None, Some(home)) => home.join(".local").join("share"),
        (None, None) => return Err(ConfigError::NoLedgerPlace),
    };
    Ok(base.join("eraser").join("ledger.db"))
}

/// An API base must be an http(s) URL; the trailing `/` is dropped.
fn check_api_base(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| format!("API base {url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.chars().any(char::is_whitespace) {
        return Err(format!("API base {url:?} has no valid host"));
    }
    Ok(trimmed.to_string())
}

/// The warning for a token file that others can read (unix permissions).
#[cfg(unix)]
fn open_permissions_warning(path: &Path) -> Option<String> {
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
fn open_permissions_warning(_path: &Path) -> Option<String> {
    None
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
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
    if bare {
        key.to_string()
    } else {
        toml_string(key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "tok-7f3a9c1e-planted-secret";

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("temp dir"),
            }
        }
        fn config_dir(&self) -> PathBuf {
            self.dir.path().join("config")
        }
        /// Writes `<config dir>/eraser/config.toml` and returns its path.
        fn write_config(&self, text: &str) -> PathBuf {
            let path = self.config_dir().join("eraser").join("config.toml");
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write config");
            path
        }
        fn env(&self, vars: &[(&str, &str)]) -> Environment {
            let map: HashMap<String, OsString> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            Environment::with_vars(
                move |name| map.get(name).cloned(),
                Some(self.config_dir()),
                Some(self.dir.path().join("data")),
                Some(self.dir.path().join("home")),
            )
        }
    }

    fn resolve(over: &Overrides, env: &Environment) -> Config {
        Config::resolve(over, env).expect("config resolves")
    }

    #[test]
    fn defaults_apply_without_file_env_or_flags() {
        let fx = Fixture::new();
        let cfg = resolve(&Overrides::default(), &fx.env(&[]));
        assert_eq!(
            cfg.api_base,
            Sourced::new(eraser_api::DEFAULT_BASE_URL.to_string(), Source::Default)
        );
        assert_eq!(
            cfg.ledger.value,
            fx.dir.path().join("data/eraser/ledger.db")
        );
        assert_eq!(
            cfg.concurrency,
            Sourced::new(DEFAULT_CONCURRENCY, Source::Default)
        );
        assert_eq!(cfg.job_timeout.value, DEFAULT_JOB_TIMEOUT);
        assert!(cfg.token.is_none() && cfg.product_serial.is_none() && !cfg.file.loaded);
    }

    #[test]
    fn ledger_falls_back_to_home_without_data_dir() {
        let fx = Fixture::new();
        let mut env = fx.env(&[]);
        env.data_dir = None;
        let cfg = resolve(&Overrides::default(), &env);
        assert_eq!(
            cfg.ledger.value,
            fx.dir.path().join("home/.local/share/eraser/ledger.db")
        );
    }

    #[test]
    fn file_beats_default() {
        let fx = Fixture::new();
        fx.write_config(
            "api_base = \"http://127.0.0.1:9/\"\nconcurrency = 3\njob_timeout = \"90s\"\n",
        );
        let cfg = resolve(&Overrides::default(), &fx.env(&[]));
        assert_eq!(
            cfg.api_base,
            Sourced::new("http://127.0.0.1:9".to_string(), Source::File)
        );
        assert_eq!(cfg.concurrency, Sourced::new(3, Source::File));
        assert_eq!(
            cfg.job_timeout,
            Sourced::new(Duration::from_secs(90), Source::File)
        );
        assert!(cfg.file.loaded);
    }

    #[test]
    fn env_beats_file() {
        let fx = Fixture::new();
        fx.write_config("api_base = \"http://127.0.0.1:9\"\nproduct_code = \"111\"\n");
        let env = fx.env(&[
            ("ERASER_API_BASE", "http://127.0.0.1:10"),
            ("ERASER_PRODUCT_CODE", "222"),
        ]);
        let cfg = resolve(&Overrides::default(), &env);
        assert_eq!(
            cfg.api_base,
            Sourced::new(
                "http://127.0.0.1:10".to_string(),
                Source::Env("ERASER_API_BASE")
            )
        );
        assert_eq!(cfg.product_code.value, "222");
    }

    #[test]
    fn flag_beats_env_and_file() {
        let fx = Fixture::new();
        fx.write_config(
            "api_base = \"http://127.0.0.1:9\"\nledger = \"/file.db\"\nconcurrency = 3\n",
        );
        let env = fx.env(&[
            ("ERASER_API_BASE", "http://127.0.0.1:10"),
            ("ERASER_LEDGER", "/env.db"),
        ]);
        let over = Overrides {
            api_base: Some("http://127.0.0.1:11".into()),
            ledger: Some("/flag.db".into()),
            concurrency: Some(5),
            ..Overrides::default()
        };
        let cfg = resolve(&over, &env);
        assert_eq!(
            cfg.api_base,
            Sourced::new("http://127.0.0.1:11".to_string(), Source::Flag)
        );
        assert_eq!(
            cfg.ledger,
            Sourced::new(PathBuf::from("/flag.db"), Source::Flag)
        );
        assert_eq!(cfg.concurrency, Sourced::new(5, Source::Flag));
    }

    #[test]
    fn env_ledger_beats_file_ledger() {
        let fx = Fixture::new();
        fx.write_config("ledger = \"/file.db\"\n");
        let cfg = resolve(
            &Overrides::default(),
            &fx.env(&[("ERASER_LEDGER", "/env.db")]),
        );
        assert_eq!(
            cfg.ledger,
            Sourced::new(PathBuf::from("/env.db"), Source::Env("ERASER_LEDGER"))
        );
    }

    #[test]
    fn relative_file_ledger_is_relative_to_the_config_file() {
        let fx = Fixture::new();
        let path = fx.write_config("ledger = \"my.db\"\n");
        let cfg = resolve(&Overrides::default(), &fx.env(&[]));
        assert_eq!(cfg.ledger.value, path.with_file_name("my.db"));
    }

    #[test]
    fn tilde_in_file_ledger_is_the_home_directory() {
        let fx = Fixture::new();
        fx.write_config("ledger = \"~/l/x.db\"\n");
        let cfg = resolve(&Overrides::default(), &fx.env(&[]));
        assert_eq!(cfg.ledger.value, fx.dir.path().join("home/l/x.db"));
    }

    #[test]
    fn env_token_beats_file_token() {
        let fx = Fixture::new();
        fx.write_config("token = \"from-file\"\n");
        let cfg = resolve(
            &Overrides::default(),
            &fx.env(&[("ERASER_TOKEN", "from-env")]),
        );
        assert_eq!(
            cfg.token,
            Some(Sourced::new(
                Token::new("from-env"),
                Source::Env("ERASER_TOKEN")
            ))
        );
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        let fx = Fixture::new();
        fx.write_config("product_serial = \"file-serial\"\n");
        let cfg = resolve(
            &Overrides::default(),
            &fx.env(&[("ERASER_PRODUCT_SERIAL", "")]),
        );
        assert_eq!(
            cfg.product_serial,
            Some(Sourced::new("file-serial".to_string(), Source::File))
        );
    }

    #[test]
    fn flag_header_replaces_file_header_of_the_same_name() {
        let fx = Fixture::new();
        fx.write_config("[headers]\nX-One = \"file\"\nX-Two = \"file\"\n");
        let over = Overrides {
            headers: vec![("x-one".into(), "flag".into())],
            ..Overrides::default()
        };
        let cfg = resolve(&over, &fx.env(&[]));
        let got: Vec<(&str, &str)> = cfg
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(got, [("X-Two", "file"), ("x-one", "flag")]);
    }

    #[test]
    fn config_flag_beats_config_env() {
        let fx = Fixture::new();
        let env = fx.env(&[("ERASER_CONFIG", "/from/env.toml")]);
        let over = Overrides {
            config: Some("/from/flag.toml".into()),
            ..Overrides::default()
        };
        assert_eq!(
            config_path(&over, &env).ok(),
            Some(("/from/flag.toml".into(), Source::Flag))
        );
        assert_eq!(
            config_path(&Overrides::default(), &env).ok(),
            Some(("/from/env.toml".into(), Source::Env("ERASER_CONFIG")))
        );
    }

    #[test]
    fn missing_explicit_config_file_is_an_error() {
        let fx = Fixture::new();
        let over = Overrides {
            config: Some(fx.dir.path().join("nope.toml")),
            ..Overrides::default()
        };
        let err = Config::resolve(&over, &fx.env(&[])).expect_err("must fail");
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nope.toml"));
    }

    #[test]
    fn unknown_key_error_names_file_and_key() {
        let fx = Fixture::new();
        let path = fx.write_config("api_base = \"http://127.0.0.1:9\"\nconcurency = 3\n");
        let err = Config::resolve(&Overrides::default(), &fx.env(&[])).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("concurency"), "{msg}");
    }

    #[test]
    fn malformed_file_error_names_the_file_and_line() {
        let fx = Fixture::new();
        let path = fx.write_config("api_base = \"http://127.0.0.1:9\"\nconcurrency = = 3\n");
        let msg = Config::resolve(&Overrides::default(), &fx.env(&[]))
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn malformed_token_line_is_not_quoted_in_the_error() {
        let fx = Fixture::new();
        fx.write_config(&format!("token = \"{SECRET}\n"));
        let msg = Config::resolve(&Overrides::default(), &fx.env(&[]))
            .expect_err("must fail")
            .to_string();
        assert!(!msg.contains(SECRET), "{msg}");
    }

    #[test]
    fn wrongly_typed_value_names_the_key() {
        let fx = Fixture::new();
        fx.write_config("concurrency = 0\n");
        let msg = Config::resolve(&Overrides::default(), &fx.env(&[]))
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("concurrency"), "{msg}");
    }

    #[test]
    fn non_http_api_base_is_refused_naming_its_origin() {
        let fx = Fixture::new();
        let env = fx.env(&[("ERASER_API_BASE", "file:///etc")]);
        let msg = Config::resolve(&Overrides::default(), &env)
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("ERASER_API_BASE"), "{msg}");
    }

    #[test]
    fn token_is_not_in_debug_output() {
        let fx = Fixture::new();
        let cfg = resolve(&Overrides::default(), &fx.env(&[("ERASER_TOKEN", SECRET)]));
        assert!(cfg.token.is_some());
        assert!(!format!("{cfg:?}").contains(SECRET));
        assert!(!format!("{cfg:#?}").contains(SECRET));
    }

    #[test]
    fn token_is_not_in_config_show_output() {
        let fx = Fixture::new();
        fx.write_config(&format!("token = \"{SECRET}\"\n"));
        let shown = resolve(&Overrides::default(), &fx.env(&[])).to_toml();
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("token = \"<set>\"  # file"), "{shown}");
    }

    #[test]
    fn unset_token_shows_as_unset() {
        let fx = Fixture::new();
        let shown = resolve(&Overrides::default(), &fx.env(&[])).to_toml();
        assert!(shown.contains("token = \"<unset>\""), "{shown}");
    }

    #[test]
    fn credential_header_values_are_hidden() {
        let fx = Fixture::new();
        let over = Overrides {
            headers: vec![("Authorization".into(), SECRET.into())],
            ..Overrides::default()
        };
        let cfg = resolve(&over, &fx.env(&[]));
        assert!(!cfg.to_toml().contains(SECRET));
        assert!(!format!("{cfg:?}").contains(SECRET));
    }

    #[test]
    fn config_show_names_each_source_and_is_valid_toml() {
        let fx = Fixture::new();
        fx.write_config("concurrency = 4\n[headers]\n\"X.Odd\" = \"v\"\n");
        let env = fx.env(&[("ERASER_LEDGER", "/env.db")]);
        let over = Overrides {
            api_base: Some("http://127.0.0.1:1".into()),
            ..Overrides::default()
        };
        let shown = resolve(&over, &env).to_toml();
        assert!(
            shown.contains("api_base = \"http://127.0.0.1:1\"  # flag"),
            "{shown}"
        );
        assert!(
            shown.contains("ledger = \"/env.db\"  # env ERASER_LEDGER"),
            "{shown}"
        );
        assert!(shown.contains("concurrency = 4  # file"), "{shown}");
        assert!(
            shown.contains("job_timeout = \"10m\"  # default"),
            "{shown}"
        );
        let table: toml::Table = toml::from_str(&shown).expect("config show prints TOML");
        assert!(table.contains_key("headers"));
    }

    #[cfg(unix)]
    #[test]
    fn token_file_readable_by_others_warns_with_chmod() {
        use std::os::unix::fs::PermissionsExt as _;
        let fx = Fixture::new();
        let path = fx.write_config("token = \"t\"\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let cfg = resolve(&Overrides::default(), &fx.env(&[]));
        assert_eq!(cfg.warnings.len(), 1);
        assert!(cfg.warnings[0].contains("chmod 600"), "{:?}", cfg.warnings);
    }

    #[cfg(unix)]
    #[test]
    fn private_token_file_does_not_warn() {
        use std::os::unix::fs::PermissionsExt as _;
        let fx = Fixture::new();
        let path = fx.write_config("token = \"t\"\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(
            resolve(&Overrides::default(), &fx.env(&[]))
                .warnings
                .is_empty()
        );
    }
}
