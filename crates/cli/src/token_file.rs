//! `eraser config set-token`: puts the API token into the config file, readable by its owner
//! only (mode 0600, folder 0700), keeping every other key and comment of the file.
//!
//! The file is replaced atomically (temp file in the same folder, fsync, rename), so a crash
//! leaves either the old file or the new one, and the token never sits in a file others can read.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

/// Why the token could not be saved. Messages name the file, never the token.
#[derive(Debug, thiserror::Error)]
pub enum SaveTokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token contains whitespace or control characters")]
    Malformed,
    #[error("config file {} is not valid TOML ({message}); fix or remove it first", path.display())]
    BadFile { path: PathBuf, message: String },
    #[error("cannot write config file {}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Checks a token as typed or piped: surrounding whitespace (a trailing newline) is dropped.
pub fn clean_token(raw: &str) -> Result<&str, SaveTokenError> {
    let token = raw.trim();
    if token.is_empty() {
        return Err(SaveTokenError::Empty);
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SaveTokenError::Malformed);
    }
    Ok(token)
}

/// Sets `token = "<token>"` in the config file at `path`, creating it (and its folder) if
/// missing. The result is always mode 0600, whatever the old file's mode was.
pub fn save_token(path: &Path, token: &str) -> Result<(), SaveTokenError> {
    let write_err = |source: io::Error| SaveTokenError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(write_err(e)),
    };
    // toml_edit's messages quote the offending line, which may hold a token: keep only where.
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| SaveTokenError::BadFile {
                path: path.to_path_buf(),
                message: e.span().map_or_else(
                    || "cannot parse".to_owned(),
                    |span| {
                        let line = text[..span.start.min(text.len())].lines().count().max(1);
                        format!("line {line}")
                    },
                ),
            })?;
    doc["token"] = toml_edit::value(token);

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(write_err)?;
    // The staged file is created readable by its owner only (0600), and replaces the old one.
    eraser_api::atomic::write(path, doc.to_string().as_bytes()).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_config_file_is_created_with_mode_0600_in_a_0700_folder() {
        let td = tempfile::tempdir().expect("tempdir");
        let path = td.path().join("eraser").join("config.toml");

        save_token(&path, "tok-123").expect("save");

        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("folder")), 0o700);
        let table: toml::Table =
            toml::from_str(&fs::read_to_string(&path).expect("read")).expect("valid toml");
        assert_eq!(table["token"].as_str(), Some("tok-123"));
    }

    #[test]
    fn an_open_config_file_becomes_0600_and_keeps_its_other_keys_and_comments() {
        let td = tempfile::tempdir().expect("tempdir");
        let path = td.path().join("config.toml");
        fs::write(&path, "# my settings\nconcurrency = 16\ntoken = \"old\"\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");

        save_token(&path, "new-token").expect("save");

        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(mode(&path), 0o600);
        assert!(text.contains("# my settings"), "{text}");
        assert!(text.contains("concurrency = 16"), "{text}");
        assert!(
            text.contains("token = \"new-token\"") && !text.contains("old"),
            "{text}"
        );
    }

    #[test]
    fn a_malformed_config_file_is_left_untouched_and_its_lines_are_not_quoted() {
        let td = tempfile::tempdir().expect("tempdir");
        let path = td.path().join("config.toml");
        let before = "token = \"secret-in-a-broken-line\n";
        fs::write(&path, before).expect("write");

        let err = save_token(&path, "t").expect_err("malformed");

        assert!(
            !err.to_string().contains("secret-in-a-broken-line"),
            "{err}"
        );
        assert!(err.to_string().contains("config.toml"), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("read"), before);
    }

    #[test]
    fn tokens_are_trimmed_and_blank_or_spaced_ones_refused() {
        assert_eq!(clean_token("  abc\n").expect("clean"), "abc");
        assert!(matches!(clean_token("\n"), Err(SaveTokenError::Empty)));
        assert!(matches!(clean_token("a b"), Err(SaveTokenError::Malformed)));
    }
}
