//! Any bytes as a file's head: detection never panics, a detected format's magic bytes are
//! there, and only the first 12 bytes matter.
#![no_main]

use eraser_api::ImageFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|head: &[u8]| {
    let Some(format) = ImageFormat::detect(head) else {
        return;
    };
    let magic = match format {
        ImageFormat::Jpeg => head.starts_with(b"\xFF\xD8\xFF"),
        ImageFormat::Png => head.starts_with(b"\x89PNG\r\n\x1a\n"),
        ImageFormat::Webp => head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP"),
    };
    assert!(magic, "{format:?} detected without its magic bytes");
    assert_eq!(
        ImageFormat::detect(&head[..head.len().min(12)]),
        Some(format)
    );
});
