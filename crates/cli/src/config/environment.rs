//! The process environment as the configuration sees it: variables through a lookup, and the
//! platform's folders. Tests give it a map instead of changing the process environment.

use std::ffi::OsString;
use std::path::PathBuf;

use super::ConfigError;

/// Looks an environment variable up by name.
type VarLookup = Box<dyn Fn(&str) -> Option<OsString> + Send + Sync>;

/// The environment variables and platform folders the configuration reads.
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
    pub fn var_os(&self, name: &str) -> Option<OsString> {
        (self.vars)(name).filter(|v| !v.is_empty())
    }

    /// `<data dir>/eraser/unrecorded`: job ids a run could not record in the ledger when they
    /// arrived, kept until a run can (see the pipeline's `unrecorded.rs`).
    pub fn unrecorded_jobs_dir(&self) -> Option<PathBuf> {
        let ledger = self.default_ledger().ok()?;
        Some(ledger.parent()?.join("unrecorded"))
    }

    /// `<data dir>/eraser/ledger.db`, else `~/.local/share/eraser/ledger.db`: one ledger per
    /// user so deduplication spans every batch.
    pub fn default_ledger(&self) -> Result<PathBuf, ConfigError> {
        let base = match (&self.data_dir, &self.home_dir) {
            (Some(data), _) => data.clone(),
            (None, Some(home)) => home.join(".local").join("share"),
            (None, None) => return Err(ConfigError::NoLedgerPlace),
        };
        Ok(base.join("eraser").join("ledger.db"))
    }
}
