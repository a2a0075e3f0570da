//! Links from a review page to files: relative inside the page's folder, `file://` URLs
//! elsewhere. Every byte of the path outside the URL-safe set is percent-encoded from the OS's
//! raw bytes, so spaces, `#`, `?`, `%`, quotes, unicode and non-UTF-8 names reach the right file.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

/// What stays as it is in a path segment: RFC 3986's unreserved characters. Everything else,
/// `/` inside a name included (it cannot occur), is `%XX`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The absolute form of `path` a link should name: symlinks resolved when the file exists (a
/// URL resolves `..` by text, the OS by following links), made absolute by text otherwise.
pub(crate) fn locate(path: &Path) -> PathBuf {
    fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The link from a page in `page_dir` to `target`, both absolute (see [`locate`]): a relative
/// URL when `target` is inside `page_dir`, so the folder can be moved whole; a `file://` URL
/// otherwise.
pub(crate) fn link(page_dir: &Path, target: &Path) -> String {
    match target.strip_prefix(page_dir) {
        Ok(inside)
            if !inside.as_os_str().is_empty()
                && inside
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))) =>
        {
            let segments: Vec<String> = inside.components().map(encode_component).collect();
            segments.join("/")
        }
        _ => file_url(target),
    }
}

/// `file://` URL of an absolute path.
pub(crate) fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for component in path.components() {
        if let Component::Normal(_) | Component::ParentDir = component {
            url.push('/');
            url.push_str(&encode_component(component));
        }
    }
    if url == "file://" {
        url.push('/');
    }
    url
}

fn encode_component(component: Component<'_>) -> String {
    percent_encode(component.as_os_str().as_bytes(), SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use proptest::prelude::*;
    use url::Url;

    use super::*;

    /// A file name of arbitrary bytes: anything but `/` and NUL, and not `.` or `..`.
    fn name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 1..12)
            .prop_map(|bytes| {
                bytes
                    .into_iter()
                    .filter(|b| *b != b'/')
                    .collect::<Vec<u8>>()
            })
            .prop_filter("a real file name", |n| {
                !n.is_empty() && n.as_slice() != b"." && n.as_slice() != b".."
            })
    }

    fn path_of(names: &[Vec<u8>]) -> PathBuf {
        let mut path = PathBuf::from("/");
        for n in names {
            path.push(OsStr::from_bytes(n));
        }
        path
    }

    proptest! {
        #[test]
        fn a_file_url_decodes_back_to_the_same_path_bytes(names in proptest::collection::vec(name(), 1..5)) {
            let path = path_of(&names);
            let url = file_url(&path);
            let decoded = percent_encoding::percent_decode_str(url.strip_prefix("file://").unwrap())
                .collect::<Vec<u8>>();
            prop_assert_eq!(decoded.as_slice(), path.as_os_str().as_bytes());
            let parsed = Url::parse(&url).expect("a valid URL");
            prop_assert_eq!(parsed.to_file_path().expect("a file path"), path);
        }

        #[test]
        fn a_relative_link_resolves_against_the_page_folder_to_the_same_path(
            dir in proptest::collection::vec(name(), 1..3),
            inside in proptest::collection::vec(name(), 1..3),
        ) {
            let page_dir = path_of(&dir);
            let target = page_dir.join(path_of(&inside).strip_prefix("/").unwrap());
            let href = link(&page_dir, &target);
            prop_assert!(!href.starts_with("file:"), "{href} is not relative");
            let base = Url::from_directory_path(&page_dir).expect("a directory URL");
            let resolved = base.join(&href).expect("a resolvable link");
            prop_assert_eq!(resolved.to_file_path().expect("a file path"), target);
        }

        #[test]
        fn a_link_holds_only_unreserved_characters_slashes_and_escapes(names in proptest::collection::vec(name(), 1..4)) {
            let url = file_url(&path_of(&names));
            let rest = url.strip_prefix("file://").unwrap();
            prop_assert!(
                rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b)),
                "{rest}"
            );
        }
    }

    #[test]
    fn odd_characters_are_percent_encoded_from_their_bytes() {
        let path = Path::new(OsStr::from_bytes(b"/in put/#1?%\"'<\xc3\xa9\xff.jpg"));
        assert_eq!(
            file_url(path),
            "file:///in%20put/%231%3F%25%22%27%3C%C3%A9%FF.jpg"
        );
    }

    #[test]
    fn a_file_outside_the_page_folder_gets_a_file_url() {
        assert_eq!(
            link(Path::new("/review"), Path::new("/photos/a b.jpg")),
            "file:///photos/a%20b.jpg"
        );
    }

    #[test]
    fn a_file_inside_the_page_folder_gets_a_relative_link() {
        assert_eq!(
            link(Path::new("/review"), Path::new("/review/thumbs/x y.jpg")),
            "thumbs/x%20y.jpg"
        );
    }

    #[test]
    fn a_name_that_looks_like_a_scheme_is_not_read_as_one() {
        let href = link(
            Path::new("/review"),
            Path::new("/review/javascript:alert(1)"),
        );
        assert_eq!(href, "javascript%3Aalert%281%29");
    }
}
