//! Where a ledger lives: a SQLite file (the default) or a PostgreSQL database that several
//! machines share. The database URL may hold a password: it is shown masked everywhere.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// A ledger's location.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file on this machine.
    File(PathBuf),
    /// A PostgreSQL database (`postgres://` or `postgresql://` URL, libpq conventions).
    Postgres(PostgresUrl),
}

impl Location {
    /// A SQLite file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// `postgres://…` or `postgresql://…` is a database; anything else is a file path.
    pub fn parse(text: &OsStr) -> Result<Self, String> {
        match text.to_str() {
            Some(url) if PostgresUrl::is_url(url) => PostgresUrl::parse(url).map(Self::Postgres),
            _ => Ok(Self::File(PathBuf::from(text))),
        }
    }

    /// The file of a SQLite ledger.
    pub fn as_file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

/// The location as shown to people: the file's path, or the URL with its password masked.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => fmt::Display::fmt(url, f),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

/// A PostgreSQL URL. `Debug` and `Display` mask its password; [`PostgresUrl::expose`] is the
/// one way to the raw text, for connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    raw: String,
    masked: String,
}

impl PostgresUrl {
    fn is_url(text: &str) -> bool {
        let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    /// Checks the URL's shape; errors never quote the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text)
            .map_err(|e| format!("the PostgreSQL URL does not parse ({e})"))?;
        let mut masked = url.clone();
        if url.password().is_some() {
            // Only fails for URLs that cannot have a password, and this one has one.
            let _ = masked.set_password(Some("****"));
        }
        // libpq also takes the password as a parameter.
        if url.query_pairs().any(|(k, _)| k == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "****".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            masked.query_pairs_mut().clear().extend_pairs(pairs);
        }
        Ok(Self {
            raw: text.to_owned(),
            masked: masked.to_string(),
        })
    }

    /// The URL as given, password included: for the connection only, never for people.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({})", self.masked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_a_database_and_anything_else_a_file() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5432/db",
            "POSTGRES://h/db",
        ] {
            assert!(matches!(
                Location::parse(OsStr::new(url)),
                Ok(Location::Postgres(_))
            ));
        }
        for path in [
            "ledger.db",
            "/var/lib/eraser.db",
            "postgres.db",
            "./postgres://x",
        ] {
            assert!(matches!(
                Location::parse(OsStr::new(path)),
                Ok(Location::File(_))
            ));
        }
    }

    #[test]
    fn the_password_is_masked_in_display_and_debug() {
        let loc =
            Location::parse(OsStr::new("postgres://eraser:s3cret@db.local:5432/archive")).unwrap();
        for shown in [loc.to_string(), format!("{loc:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("eraser:****@db.local:5432/archive"),
                "{shown}"
            );
        }
        let Location::Postgres(url) = loc else {
            unreachable!()
        };
        assert!(url.expose().contains("s3cret"));
    }

    #[test]
    fn a_password_given_as_a_parameter_is_masked_too() {
        let loc = Location::parse(OsStr::new(
            "postgres://db/archive?sslmode=require&password=s3cret",
        ))
        .unwrap();
        let shown = loc.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
    }

    #[test]
    fn a_malformed_url_is_refused_without_quoting_it() {
        let err = Location::parse(OsStr::new("postgres://u:s3cret@[bad")).unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
