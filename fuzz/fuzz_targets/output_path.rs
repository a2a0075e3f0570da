//! Any bytes as an input's relative path (the first byte picks the flags): a result path, plain
//! or disambiguated, is always strictly inside OUT — no `..`, never OUT itself.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use eraser::pipeline::layout::{disambiguated_path, output_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rel)) = data.split_first() else {
        return;
    };
    let stem_shared = flags & 1 == 1;
    let out = if flags & 2 == 0 {
        Path::new("/out")
    } else {
        Path::new("out")
    };
    let rel = PathBuf::from(OsString::from_vec(rel.to_vec()));
    let plain = output_path(out, &rel, stem_shared, "jpg");
    let tagged = disambiguated_path(out, &rel, stem_shared, "1f2e3d4c", "jpg");
    for p in [plain, tagged].into_iter().flatten() {
        assert!(p.starts_with(out), "{p:?} outside {out:?} for {rel:?}");
        assert!(
            p.components().all(|c| c != Component::ParentDir),
            "{p:?} has a .. for {rel:?}"
        );
        assert!(p != out, "OUT itself for {rel:?}");
        assert!(
            p.parent().is_some_and(|parent| parent.starts_with(out)),
            "parent of {p:?} outside {out:?}"
        );
    }
});
