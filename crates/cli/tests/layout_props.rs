//! The output-path mapping never leaves OUT, whatever bytes the input path holds (non-UTF-8,
//! `..`, `.`, absolute, empty), for both the mirrored path and its hash-tagged fallback.
//! The same properties as the `output_path` fuzz target, through the public API.
#![cfg(unix)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use eraser::pipeline::layout::{disambiguated_path, output_path};
use proptest::prelude::*;

/// Path bytes biased toward the dangerous ones: separators, dots, bytes that are not UTF-8.
fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => Just(b'/'),
        3 => Just(b'.'),
        2 => Just(b'a'),
        1 => Just(b' '),
        1 => Just(b'\n'),
        1 => Just(0xFF),
        1 => Just(0x80),
        1 => Just(0xC3),
        2 => any::<u8>().prop_filter("no NUL in paths", |b| *b != 0),
    ];
    proptest::collection::vec(byte, 0..24)
}

/// One plain path component: a non-empty name other than `.` and `..`, any bytes but `/`.
fn plain_component() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no separator or NUL", |b| *b != b'/' && *b != 0),
        1..10,
    )
    .prop_filter("not a dot component", |c| c != b"." && c != b"..")
}

/// The OUT folders tried: absolute, relative, and with awkward but legal names.
fn outs() -> impl Strategy<Value = PathBuf> {
    prop_oneof![
        Just(PathBuf::from("/out")),
        Just(PathBuf::from("out")),
        Just(PathBuf::from("/srv/my results/ü")),
        Just(PathBuf::from(OsString::from_vec(b"/tmp/\xFFout".to_vec()))),
    ]
}

/// What the fuzz target checks: inside OUT, no `..`, not OUT itself, parent at or under OUT.
fn stays_inside(out: &Path, p: &Path) -> Result<(), TestCaseError> {
    prop_assert!(p.starts_with(out), "{p:?} is not under {out:?}");
    prop_assert!(
        p.components().all(|c| c != Component::ParentDir),
        "{p:?} has a .. component"
    );
    prop_assert!(p != out, "{p:?} is OUT itself");
    let parent = p.parent();
    prop_assert!(
        parent.is_some_and(|parent| parent.starts_with(out)),
        "the parent of {p:?} is outside {out:?}"
    );
    Ok(())
}

proptest! {
    #[test]
    fn an_output_path_never_leaves_out(
        out in outs(),
        rel in path_bytes(),
        stem_shared: bool,
    ) {
        let rel = PathBuf::from(OsString::from_vec(rel));
        if let Some(p) = output_path(&out, &rel, stem_shared, "jpg") {
            stays_inside(&out, &p)?;
        }
    }

    #[test]
    fn a_disambiguated_path_never_leaves_out(
        out in outs(),
        rel in path_bytes(),
        stem_shared: bool,
        sha_prefix in prop_oneof![3 => "[0-9a-f]{8}", 1 => ".{0,6}"],
    ) {
        let rel = PathBuf::from(OsString::from_vec(rel));
        if let Some(p) = disambiguated_path(&out, &rel, stem_shared, &sha_prefix, "jpg") {
            stays_inside(&out, &p)?;
        }
    }

    #[test]
    fn a_plain_relative_path_is_mirrored_under_out(
        out in outs(),
        parts in proptest::collection::vec(plain_component(), 1..5),
        stem_shared: bool,
    ) {
        let rel: PathBuf = parts.into_iter().map(OsString::from_vec).collect();
        let p = output_path(&out, &rel, stem_shared, "jpg");
        prop_assert!(p.is_some(), "no output for {rel:?}");
        let p = p.unwrap_or_default();
        let expected_dir = out.join(rel.parent().unwrap_or(Path::new("")));
        prop_assert_eq!(p.parent(), Some(expected_dir.as_path()));
        prop_assert_eq!(p.extension(), Some("jpg".as_ref()));
    }
}
