//! Effective configuration: flags > environment (`ERASER_*`) > TOML config file > defaults.
//!
//! Every setting is declared once in [`settings`] (file key, variable, flag, parser, range)
//! and looked up through the one precedence of [`precedence`], so each has all four forms and
//! `eraser config show` names the source of each value. The environment is read through
//! [`Environment`] so tests can give it a map instead of changing the process environment.
//! The token is held as [`eraser_api::Token`]: neither `Debug` nor `config show` print it.

mod environment;
mod file;
mod precedence;
pub mod settings;
mod show;
pub mod values;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use eraser_api::Token;
use eraser_store::Location;

pub use self::environment::Environment;
pub use self::file::{ConfigFile, config_path};
use self::file::{FileValues, open_permissions_warning};
pub use self::precedence::Setting;
use self::precedence::{HEADERS_KEY, Layers, Shown};
use self::settings::*;
use crate::cli::SettingFlags;

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
    #[error("config file {}: unknown key `{key}` (known keys: {known})", path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    /// A setting's value from the environment or the file is malformed or out of range.
    /// (Flags are checked by clap with the same parsers.)
    #[error("invalid {key} in {origin}: {message}")]
    Invalid {
        key: &'static str,
        origin: String,
        message: String,
    },
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

/// Values given on the command line (the top of the precedence).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--config`: which file is the config file.
    pub config: Option<PathBuf>,
    /// `--ledger`, global to every command.
    pub ledger: Option<Location>,
    /// The settings of `eraser run` (and `eraser config show`).
    pub settings: SettingFlags,
}

/// The effective configuration of one invocation.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: ConfigFile,
    pub api_base: Sourced<String>,
    pub ledger: Sourced<Location>,
    pub token: Option<Sourced<Token>>,
    /// `None`: the ledger's own serial (generated once per ledger) is used.
    pub product_serial: Option<Sourced<String>>,
    pub product_code: Sourced<String>,
    pub concurrency: Sourced<usize>,
    pub upload_concurrency: Sourced<usize>,
    pub download_concurrency: Sourced<usize>,
    /// 0: one per core.
    pub hash_threads: Sourced<usize>,
    /// `None`: no cap on requests per second.
    pub rate: Option<Sourced<f64>>,
    pub job_timeout: Sourced<Duration>,
    pub outage_timeout: Sourced<Duration>,
    pub lease: Sourced<Duration>,
    pub max_attempts: Sourced<u32>,
    pub max_upload_bytes: Sourced<u64>,
    pub follow: Sourced<bool>,
    pub link: Sourced<bool>,
    pub anonymous: Sourced<bool>,
    /// File headers first, then env, then flag headers; each replaces a lower one of its name.
    pub headers: Vec<ExtraHeader>,
    /// Problems worth telling the user that do not stop the run (an open token file).
    pub warnings: Vec<String>,
    /// The lines of `config show`, one per setting, in this order.
    shown: Vec<Shown>,
}

impl Config {
    /// Resolves every setting by precedence: flag > environment > file > default.
    pub fn resolve(flags: &Flags, env: &Environment) -> Result<Self, ConfigError> {
        let (path, file_source) = config_path(flags, env)?;
        let (file, loaded) = FileValues::load(&path, file_source)?;
        let mut warnings = Vec::new();
        if file.has(TOKEN.key) {
            warnings.extend(open_permissions_warning(&path));
        }
        let f = &flags.settings;
        let mut layers = Layers::new(env, &file);

        let api_base = layers.or_default(
            &API_BASE,
            f.api_base.clone(),
            eraser_api::DEFAULT_BASE_URL.to_string(),
        )?;
        let ledger = match layers.pick(&LEDGER, flags.ledger.clone())? {
            Some(Sourced {
                value: Location::File(path),
                source: Source::File,
            }) => Sourced::new(
                Location::File(file.relative_path(&path, env.home_dir.as_deref())),
                Source::File,
            ),
            Some(given) => given,
            None => Sourced::new(Location::File(env.default_ledger()?), Source::Default),
        };
        layers.note(&LEDGER, &ledger);
        let token = layers.secret(&TOKEN)?;
        let product_serial = layers.optional(
            &PRODUCT_SERIAL,
            f.product_serial.clone(),
            "the one generated for the ledger is used",
        )?;
        let product_code = layers.or_default(
            &PRODUCT_CODE,
            f.product_code.clone(),
            eraser_api::DEFAULT_PRODUCT_CODE.to_string(),
        )?;
        let concurrency = layers.or_default(&CONCURRENCY, f.concurrency, DEFAULT_CONCURRENCY)?;
        let upload_concurrency = layers.or_default(
            &UPLOAD_CONCURRENCY,
            f.upload_concurrency,
            DEFAULT_UPLOAD_CONCURRENCY,
        )?;
        let download_concurrency = layers.or_default(
            &DOWNLOAD_CONCURRENCY,
            f.download_concurrency,
            DEFAULT_DOWNLOAD_CONCURRENCY,
        )?;
        let hash_threads =
            layers.or_default(&HASH_THREADS, f.hash_threads, DEFAULT_HASH_THREADS)?;
        let rate = layers.optional(&RATE, f.rate, "no cap on requests per second")?;
        let job_timeout = layers.or_default(&JOB_TIMEOUT, f.job_timeout, DEFAULT_JOB_TIMEOUT)?;
        let outage_timeout =
            layers.or_default(&OUTAGE_TIMEOUT, f.outage_timeout, DEFAULT_OUTAGE_TIMEOUT)?;
        let lease = layers.or_default(&LEASE, f.lease, DEFAULT_LEASE)?;
        let max_attempts =
            layers.or_default(&MAX_ATTEMPTS, f.max_attempts, DEFAULT_MAX_ATTEMPTS)?;
        let max_upload_bytes = layers.or_default(
            &MAX_UPLOAD_BYTES,
            f.max_upload_bytes,
            eraser_api::DEFAULT_MAX_UPLOAD_BYTES,
        )?;
        let follow = layers.or_default(&FOLLOW, f.follow(), false)?;
        let link = layers.or_default(&LINK, f.link(), false)?;
        let anonymous = layers.or_default(&ANONYMOUS, f.anonymous(), false)?;
        let headers = layers.headers(&f.headers)?;

        let shown = layers.into_shown();
        let known: Vec<&str> = shown
            .iter()
            .map(|line| line.key)
            .chain([HEADERS_KEY])
            .collect();
        if let Some(key) = file.unknown_key(&known) {
            return Err(ConfigError::UnknownKey {
                path,
                key: key.to_string(),
                known: known.join(", "),
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
            upload_concurrency,
            download_concurrency,
            hash_threads,
            rate,
            job_timeout,
            outage_timeout,
            lease,
            max_attempts,
            max_upload_bytes,
            follow,
            link,
            anonymous,
            headers,
            warnings,
            shown,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsString;

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

    /// Flags giving these settings (no `--config`, no `--ledger`).
    fn flags(settings: SettingFlags) -> Flags {
        Flags {
            settings,
            ..Flags::default()
        }
    }

    fn resolve(over: &Flags, env: &Environment) -> Config {
        Config::resolve(over, env).expect("config resolves")
    }

    #[test]
    fn defaults_apply_without_file_env_or_flags() {
        let fx = Fixture::new();
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
        assert_eq!(
            cfg.api_base,
            Sourced::new(eraser_api::DEFAULT_BASE_URL.to_string(), Source::Default)
        );
        assert_eq!(
            cfg.ledger.value,
            Location::file(fx.dir.path().join("data/eraser/ledger.db"))
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
        let cfg = resolve(&Flags::default(), &env);
        assert_eq!(
            cfg.ledger.value,
            Location::file(fx.dir.path().join("home/.local/share/eraser/ledger.db"))
        );
    }

    #[test]
    fn file_beats_default() {
        let fx = Fixture::new();
        fx.write_config(
            "api_base = \"http://127.0.0.1:9/\"\nconcurrency = 3\njob_timeout = \"90s\"\n",
        );
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
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
        let cfg = resolve(&Flags::default(), &env);
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
        let over = Flags {
            ledger: Some(Location::file("/flag.db")),
            settings: SettingFlags {
                api_base: Some("http://127.0.0.1:11".into()),
                concurrency: Some(5),
                ..SettingFlags::default()
            },
            ..Flags::default()
        };
        let cfg = resolve(&over, &env);
        assert_eq!(
            cfg.api_base,
            Sourced::new("http://127.0.0.1:11".to_string(), Source::Flag)
        );
        assert_eq!(
            cfg.ledger,
            Sourced::new(Location::file("/flag.db"), Source::Flag)
        );
        assert_eq!(cfg.concurrency, Sourced::new(5, Source::Flag));
    }

    #[test]
    fn env_ledger_beats_file_ledger() {
        let fx = Fixture::new();
        fx.write_config("ledger = \"/file.db\"\n");
        let cfg = resolve(&Flags::default(), &fx.env(&[("ERASER_LEDGER", "/env.db")]));
        assert_eq!(
            cfg.ledger,
            Sourced::new(Location::file("/env.db"), Source::Env("ERASER_LEDGER"))
        );
    }

    #[test]
    fn relative_file_ledger_is_relative_to_the_config_file() {
        let fx = Fixture::new();
        let path = fx.write_config("ledger = \"my.db\"\n");
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
        assert_eq!(
            cfg.ledger.value,
            Location::file(path.with_file_name("my.db"))
        );
    }

    #[test]
    fn tilde_in_file_ledger_is_the_home_directory() {
        let fx = Fixture::new();
        fx.write_config("ledger = \"~/l/x.db\"\n");
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
        assert_eq!(
            cfg.ledger.value,
            Location::file(fx.dir.path().join("home/l/x.db"))
        );
    }

    #[test]
    fn env_token_beats_file_token() {
        let fx = Fixture::new();
        fx.write_config("token = \"from-file\"\n");
        let cfg = resolve(&Flags::default(), &fx.env(&[("ERASER_TOKEN", "from-env")]));
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
        let cfg = resolve(&Flags::default(), &fx.env(&[("ERASER_PRODUCT_SERIAL", "")]));
        assert_eq!(
            cfg.product_serial,
            Some(Sourced::new("file-serial".to_string(), Source::File))
        );
    }

    #[test]
    fn flag_header_replaces_file_header_of_the_same_name() {
        let fx = Fixture::new();
        fx.write_config("[headers]\nX-One = \"file\"\nX-Two = \"file\"\n");
        let over = flags(SettingFlags {
            headers: vec![("x-one".into(), "flag".into())],
            ..SettingFlags::default()
        });
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
        let over = Flags {
            config: Some("/from/flag.toml".into()),
            ..Flags::default()
        };
        assert_eq!(
            config_path(&over, &env).ok(),
            Some(("/from/flag.toml".into(), Source::Flag))
        );
        assert_eq!(
            config_path(&Flags::default(), &env).ok(),
            Some(("/from/env.toml".into(), Source::Env("ERASER_CONFIG")))
        );
    }

    #[test]
    fn missing_explicit_config_file_is_an_error() {
        let fx = Fixture::new();
        let over = Flags {
            config: Some(fx.dir.path().join("nope.toml")),
            ..Flags::default()
        };
        let err = Config::resolve(&over, &fx.env(&[])).expect_err("must fail");
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nope.toml"));
    }

    #[test]
    fn unknown_key_error_names_file_and_key() {
        let fx = Fixture::new();
        let path = fx.write_config("api_base = \"http://127.0.0.1:9\"\nconcurency = 3\n");
        let err = Config::resolve(&Flags::default(), &fx.env(&[])).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("concurency"), "{msg}");
    }

    #[test]
    fn malformed_file_error_names_the_file_and_line() {
        let fx = Fixture::new();
        let path = fx.write_config("api_base = \"http://127.0.0.1:9\"\nconcurrency = = 3\n");
        let msg = Config::resolve(&Flags::default(), &fx.env(&[]))
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn malformed_token_line_is_not_quoted_in_the_error() {
        let fx = Fixture::new();
        fx.write_config(&format!("token = \"{SECRET}\n"));
        let msg = Config::resolve(&Flags::default(), &fx.env(&[]))
            .expect_err("must fail")
            .to_string();
        assert!(!msg.contains(SECRET), "{msg}");
    }

    #[test]
    fn wrongly_typed_value_names_the_key() {
        let fx = Fixture::new();
        fx.write_config("concurrency = 0\n");
        let msg = Config::resolve(&Flags::default(), &fx.env(&[]))
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("concurrency"), "{msg}");
    }

    #[test]
    fn non_http_api_base_is_refused_naming_its_origin() {
        let fx = Fixture::new();
        let env = fx.env(&[("ERASER_API_BASE", "file:///etc")]);
        let msg = Config::resolve(&Flags::default(), &env)
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("ERASER_API_BASE"), "{msg}");
    }

    #[test]
    fn token_is_not_in_debug_output() {
        let fx = Fixture::new();
        let cfg = resolve(&Flags::default(), &fx.env(&[("ERASER_TOKEN", SECRET)]));
        assert!(cfg.token.is_some());
        assert!(!format!("{cfg:?}").contains(SECRET));
        assert!(!format!("{cfg:#?}").contains(SECRET));
    }

    #[test]
    fn token_is_not_in_config_show_output() {
        let fx = Fixture::new();
        fx.write_config(&format!("token = \"{SECRET}\"\n"));
        let shown = resolve(&Flags::default(), &fx.env(&[])).to_toml();
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("token = \"<set>\"  # file"), "{shown}");
    }

    #[test]
    fn unset_token_shows_as_unset() {
        let fx = Fixture::new();
        let shown = resolve(&Flags::default(), &fx.env(&[])).to_toml();
        assert!(shown.contains("token = \"<unset>\""), "{shown}");
    }

    #[test]
    fn credential_header_values_are_hidden() {
        let fx = Fixture::new();
        let over = flags(SettingFlags {
            headers: vec![("Authorization".into(), SECRET.into())],
            ..SettingFlags::default()
        });
        let cfg = resolve(&over, &fx.env(&[]));
        assert!(!cfg.to_toml().contains(SECRET));
        assert!(!format!("{cfg:?}").contains(SECRET));
    }

    #[test]
    fn config_show_names_each_source_and_is_valid_toml() {
        let fx = Fixture::new();
        fx.write_config("concurrency = 4\n[headers]\n\"X.Odd\" = \"v\"\n");
        let env = fx.env(&[("ERASER_LEDGER", "/env.db")]);
        let over = flags(SettingFlags {
            api_base: Some("http://127.0.0.1:1".into()),
            ..SettingFlags::default()
        });
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
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
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
        assert!(resolve(&Flags::default(), &fx.env(&[])).warnings.is_empty());
    }

    /// A valid value of every setting, as text.
    const SAMPLES: [(&str, &str); 18] = [
        ("api_base", "http://127.0.0.1:7"),
        ("ledger", "/x/l.db"),
        ("token", "tok-1"),
        ("product_serial", "serial-1"),
        ("product_code", "123"),
        ("concurrency", "5"),
        ("upload_concurrency", "3"),
        ("download_concurrency", "6"),
        ("hash_threads", "2"),
        ("rate", "2.5"),
        ("job_timeout", "90s"),
        ("outage_timeout", "1m"),
        ("lease", "30s"),
        ("max_attempts", "4"),
        ("max_upload_bytes", "1MiB"),
        ("follow", "true"),
        ("link", "true"),
        ("anonymous", "true"),
    ];

    /// The `config show` comment of each setting.
    fn sources(cfg: &Config) -> Vec<(&'static str, String)> {
        cfg.shown
            .iter()
            .map(|line| (line.key, line.comment.clone()))
            .collect()
    }

    #[test]
    fn every_setting_is_shown_once_in_the_order_of_the_table() {
        let fx = Fixture::new();
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
        let keys: Vec<&str> = cfg.shown.iter().map(|line| line.key).collect();
        let table: Vec<&str> = settings::names().iter().map(|n| n.0).collect();
        assert_eq!(keys, table);
        assert_eq!(SAMPLES.map(|s| s.0).to_vec(), table);
    }

    #[test]
    fn every_setting_can_come_from_the_file() {
        let fx = Fixture::new();
        let text: String = SAMPLES
            .iter()
            .map(|(key, value)| format!("{key} = {value:?}\n"))
            .collect();
        fx.write_config(&text);
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
        for (key, source) in sources(&cfg) {
            assert_eq!(source, "file", "{key}");
        }
    }

    #[test]
    fn every_setting_can_come_from_its_variable_over_the_file() {
        let fx = Fixture::new();
        fx.write_config("concurrency = 3\nfollow = false\n");
        let vars: Vec<(String, &str)> = settings::names()
            .iter()
            .zip(SAMPLES)
            .map(|((_, env, _), (_, value))| (env.to_string(), value))
            .collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let cfg = resolve(&Flags::default(), &fx.env(&vars));
        for ((key, source), (_, env, _)) in sources(&cfg).into_iter().zip(settings::names()) {
            assert_eq!(source, format!("env {env}"), "{key}");
        }
        assert_eq!(cfg.concurrency.value, 5);
        assert!(cfg.follow.value);
    }

    #[test]
    fn every_setting_but_the_token_can_come_from_its_flag_over_the_variable() {
        let fx = Fixture::new();
        let mut args = vec!["eraser", "config", "show"];
        let mut vars = Vec::new();
        for ((_, env, flag), (key, value)) in settings::names().into_iter().zip(SAMPLES) {
            vars.push((env, if value == "true" { "false" } else { value }));
            let Some(flag) = flag else { continue };
            args.push(flag);
            if !matches!(key, "follow" | "link" | "anonymous") {
                args.push(value);
            }
        }
        let cli =
            <crate::cli::Cli as clap::Parser>::try_parse_from(args).expect("every flag parses");
        let crate::cli::Command::Config {
            cmd: crate::cli::ConfigCmd::Show { settings },
        } = cli.command
        else {
            unreachable!("parsed as config show")
        };
        let over = Flags {
            ledger: cli.global.ledger,
            settings: *settings,
            ..Flags::default()
        };
        let cfg = resolve(&over, &fx.env(&vars));
        for (key, source) in sources(&cfg) {
            let expected = if key == "token" {
                "env ERASER_TOKEN"
            } else {
                "flag"
            };
            assert_eq!(source, expected, "{key}");
        }
        assert!(cfg.anonymous.value && cfg.link.value && cfg.follow.value);
    }

    #[test]
    fn file_values_may_be_toml_numbers_and_booleans() {
        let fx = Fixture::new();
        fx.write_config("rate = 0.5\nmax_attempts = 7\nlink = true\njob_timeout = 90\n");
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
        assert_eq!(cfg.rate.map(|r| r.value), Some(0.5));
        assert_eq!(cfg.max_attempts.value, 7);
        assert!(cfg.link.value);
        assert_eq!(cfg.job_timeout.value, Duration::from_secs(90));
    }

    #[test]
    fn the_outage_timeout_is_two_minutes_unless_given() {
        let fx = Fixture::new();
        let cfg = resolve(&Flags::default(), &fx.env(&[]));
        assert_eq!(cfg.outage_timeout.value, Duration::from_secs(120));
        let cfg = resolve(
            &Flags::default(),
            &fx.env(&[("ERASER_OUTAGE_TIMEOUT", "1h")]),
        );
        assert_eq!(cfg.outage_timeout.value, Duration::from_secs(3600));
    }

    #[test]
    fn job_timeout_of_zero_is_refused() {
        let fx = Fixture::new();
        let err = Config::resolve(&Flags::default(), &fx.env(&[("ERASER_JOB_TIMEOUT", "0s")]))
            .expect_err("zero");
        assert!(err.to_string().contains("ERASER_JOB_TIMEOUT"), "{err}");
    }

    #[test]
    fn a_variable_out_of_range_names_the_setting_the_variable_and_the_range() {
        let fx = Fixture::new();
        for (env, value, range) in [
            (
                "ERASER_UPLOAD_CONCURRENCY",
                "9223372036854775807",
                "1 to 256",
            ),
            ("ERASER_RATE", "1e-300", "0.001 to 10000"),
            ("ERASER_HASH_THREADS", "4294967296", "0 to 256"),
            ("ERASER_CONCURRENCY", "-1", "1 to 1024"),
        ] {
            let err = Config::resolve(&Flags::default(), &fx.env(&[(env, value)]))
                .expect_err(env)
                .to_string();
            let key = env.trim_start_matches("ERASER_").to_ascii_lowercase();
            assert!(err.contains(&key), "{err}");
            assert!(err.contains(env) && err.contains(range), "{err}");
        }
    }

    #[test]
    fn a_file_value_out_of_range_names_the_setting_the_file_and_the_range() {
        let fx = Fixture::new();
        let path = fx.write_config("download_concurrency = 9223372036854775807\n");
        let err = Config::resolve(&Flags::default(), &fx.env(&[]))
            .expect_err("out of range")
            .to_string();
        assert!(err.contains("download_concurrency"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("1 to 256"), "{err}");
    }

    #[test]
    fn a_list_where_one_value_belongs_is_refused_naming_the_key() {
        let fx = Fixture::new();
        fx.write_config("concurrency = [1, 2]\n");
        let err = Config::resolve(&Flags::default(), &fx.env(&[]))
            .expect_err("a list")
            .to_string();
        assert!(
            err.contains("concurrency") && err.contains("not a list"),
            "{err}"
        );
    }

    #[test]
    fn env_headers_replace_file_headers_and_yield_to_flag_headers() {
        let fx = Fixture::new();
        fx.write_config("[headers]\nX-One = \"file\"\nX-Two = \"file\"\n");
        let env = fx.env(&[("ERASER_HEADERS", "X-Two: env\nX-Three: env")]);
        let over = flags(SettingFlags {
            headers: vec![("X-Three".into(), "flag".into())],
            ..SettingFlags::default()
        });
        let cfg = resolve(&over, &env);
        let got: Vec<(&str, &str)> = cfg
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [("X-One", "file"), ("X-Two", "env"), ("X-Three", "flag")]
        );
        assert_eq!(cfg.headers[1].source, Source::Env("ERASER_HEADERS"));
    }
}
