//! Showing the page: the desktop's own opener (`xdg-open` on Linux, `open` on macOS) opens it
//! in the user's browser.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;

/// The opener of this system, if eraser knows one.
const OPENER: Option<&str> = if cfg!(target_os = "macos") {
    Some("open")
} else if cfg!(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd"
)) {
    Some("xdg-open")
} else {
    None
};

/// Opens `page` with the desktop's opener and waits for the opener (not the browser) to
/// finish. Fails, naming the opener, when it is not on `PATH` or reports an error.
pub fn open(page: &Path) -> Result<(), Error> {
    let opener = OPENER.ok_or(Error::NoKnownOpener)?;
    open_with(opener, page, std::env::var_os("PATH").as_deref())
}

/// [`open`] with a given opener, looked for on a given `PATH`.
pub(super) fn open_with(
    opener: &'static str,
    page: &Path,
    search_path: Option<&OsStr>,
) -> Result<(), Error> {
    let program = find_program(opener, search_path).ok_or(Error::OpenerMissing { opener })?;
    let page = std::path::absolute(page).unwrap_or_else(|_| page.to_path_buf());
    let status = Command::new(program)
        .arg(page)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|error| Error::OpenerUnusable { opener, error })?;
    match status.success() {
        true => Ok(()),
        false => Err(Error::OpenerFailed { opener, status }),
    }
}

/// The first executable file called `name` in the folders of `search_path`.
fn find_program(name: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(search_path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A fake opener script in `dir` that writes the path it was given to `dir/opened`.
    fn fake_opener(dir: &Path, name: &str, exit: u8) {
        let script = dir.join(name);
        fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s' \"$1\" > \"$(dirname \"$0\")/opened\"\nexit {exit}\n"),
        )
        .expect("write the script");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn the_opener_is_run_with_the_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_opener(dir.path(), "xdg-open", 0);
        let page = dir.path().join("index.html");
        open_with("xdg-open", &page, Some(dir.path().as_os_str())).expect("opened");
        let opened = fs::read(dir.path().join("opened")).expect("the opener ran");
        assert_eq!(opened, page.as_os_str().as_encoded_bytes());
    }

    #[test]
    fn a_missing_opener_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = open_with(
            "xdg-open",
            Path::new("index.html"),
            Some(dir.path().as_os_str()),
        )
        .expect_err("no opener there");
        assert!(matches!(err, Error::OpenerMissing { opener: "xdg-open" }));
        assert_eq!(
            err.to_string(),
            "cannot open the page: `xdg-open` is not on PATH"
        );
    }

    #[test]
    fn a_file_that_is_not_executable_is_not_taken_for_the_opener() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("xdg-open"), "not a program").expect("write");
        let err = open_with(
            "xdg-open",
            Path::new("index.html"),
            Some(dir.path().as_os_str()),
        )
        .expect_err("not executable");
        assert!(matches!(err, Error::OpenerMissing { .. }), "{err}");
    }

    #[test]
    fn an_opener_that_fails_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_opener(dir.path(), "open", 3);
        let err = open_with(
            "open",
            Path::new("index.html"),
            Some(dir.path().as_os_str()),
        )
        .expect_err("the opener failed");
        assert!(
            matches!(err, Error::OpenerFailed { opener: "open", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("`open` failed"), "{err}");
    }
}
