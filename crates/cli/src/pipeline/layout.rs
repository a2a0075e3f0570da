//! Where a result goes: OUT mirrors each input's path relative to its INPUT folder.
//!
//! The rule, deterministic and independent of scan order:
//! - `OUT/<dirs of the relative path>/<stem>.<ext>`, where `ext` is the result's real format
//!   (`jpg` for the service's JPEG);
//! - when another file in the same input folder shares the stem (`a.png` beside `a.webp`),
//!   the whole input name is kept: `a.png.jpg`, `a.webp.jpg`;
//! - when the ledger already gave that output path to another input (two INPUT folders mapping
//!   into one OUT), the stem takes the first 8 hex digits of the content hash: `a-1f2e3d4c.jpg`.
//!
//! An input keeps the output path the ledger recorded for it, so reruns never move outputs.
//! Only `Normal` path components are accepted: a result path can never leave OUT.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

/// The output path for an input at `rel` (relative to its INPUT folder), or `None` when `rel`
/// is not a plain relative path (absolute, `..`, empty) and so could escape OUT.
pub fn output_path(out: &Path, rel: &Path, stem_shared: bool, ext: &str) -> Option<PathBuf> {
    let name = output_name(rel.file_name()?, stem_shared, None, ext);
    join_inside(out, rel.parent()?, &name)
}

/// The fallback used when [`output_path`] is already taken by another input.
pub fn disambiguated_path(
    out: &Path,
    rel: &Path,
    stem_shared: bool,
    sha_prefix: &str,
    ext: &str,
) -> Option<PathBuf> {
    let name = output_name(rel.file_name()?, stem_shared, Some(sha_prefix), ext);
    join_inside(out, rel.parent()?, &name)
}

/// The same path with the extension of the result's real format.
pub fn with_format_extension(path: &Path, ext: &str) -> PathBuf {
    path.with_extension(ext)
}

fn output_name(file_name: &OsStr, stem_shared: bool, tag: Option<&str>, ext: &str) -> OsString {
    let base: &OsStr = if stem_shared {
        file_name
    } else {
        Path::new(file_name).file_stem().unwrap_or(file_name)
    };
    let mut name = base.to_os_string();
    if let Some(tag) = tag {
        name.push("-");
        name.push(tag);
    }
    name.push(".");
    name.push(ext);
    name
}

fn join_inside(out: &Path, dirs: &Path, name: &OsStr) -> Option<PathBuf> {
    let mut path = out.to_path_buf();
    for part in dirs.components() {
        match part {
            Component::Normal(p) => path.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    let name_path = Path::new(name);
    match name_path.components().next() {
        Some(Component::Normal(_)) if name_path.components().count() == 1 => path.push(name),
        _ => return None,
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_relative_path_with_result_extension() {
        let p = output_path(Path::new("/out"), Path::new("a/b/photo.png"), false, "jpg");
        assert_eq!(p, Some(PathBuf::from("/out/a/b/photo.jpg")));
    }

    #[test]
    fn shared_stem_keeps_whole_name() {
        let p = output_path(Path::new("/out"), Path::new("x/a.webp"), true, "jpg");
        assert_eq!(p, Some(PathBuf::from("/out/x/a.webp.jpg")));
    }

    #[test]
    fn disambiguation_tags_the_stem_with_the_hash() {
        let p = disambiguated_path(
            Path::new("/out"),
            Path::new("a.png"),
            false,
            "1f2e3d4c",
            "jpg",
        );
        assert_eq!(p, Some(PathBuf::from("/out/a-1f2e3d4c.jpg")));
    }

    #[test]
    fn parent_components_are_refused() {
        assert_eq!(
            output_path(Path::new("/out"), Path::new("../etc/passwd"), false, "jpg"),
            None
        );
        assert_eq!(
            output_path(Path::new("/out"), Path::new("/etc/passwd"), false, "jpg"),
            None
        );
        assert_eq!(
            output_path(Path::new("/out"), Path::new(""), false, "jpg"),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn no_output_escapes_out(parts in proptest::collection::vec("[a-z.]{0,4}|\\.\\.|/", 0..6), shared: bool) {
            let rel: PathBuf = parts.iter().collect();
            let out = Path::new("/out");
            if let Some(p) = output_path(out, &rel, shared, "jpg") {
                proptest::prop_assert!(p.starts_with(out));
                proptest::prop_assert!(p.components().all(|c| !matches!(c, Component::ParentDir)));
                proptest::prop_assert!(p != out);
            }
        }
    }
}
