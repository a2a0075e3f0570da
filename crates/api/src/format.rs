/// Image formats the service accepts, recognised by their bytes, never by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    /// Detects the format from the first bytes of a file (12 bytes are enough).
    pub fn detect(head: &[u8]) -> Option<Self> {
        if head.len() >= 3 && head[..3] == [0xFF, 0xD8, 0xFF] {
            Some(Self::Jpeg)
        } else if head.len() >= 8 && head[..8] == *b"\x89PNG\r\n\x1a\n" {
            Some(Self::Png)
        } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    /// MIME type for the multipart part.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    /// Canonical file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    /// Lower-case name stored in the ledger (`jpeg`, `png`, `webp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    /// Inverse of [`ImageFormat::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "jpeg" | "jpg" => Some(Self::Jpeg),
            "png" => Some(Self::Png),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn jpeg_png_and_webp_are_recognised_by_their_magic_bytes() {
        assert_eq!(
            ImageFormat::detect(b"\xFF\xD8\xFF\xE0\0\x10JFIF\0"),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::detect(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::detect(b"RIFF\x24\0\0\0WEBPVP8L"),
            Some(ImageFormat::Webp)
        );
    }

    #[test]
    fn other_bytes_are_not_images() {
        for head in [
            &b""[..],
            b"\xFF\xD8",
            b"\x89PNG\r\n",
            b"RIFF\x24\0\0\0WAVEfmt ",
            b"GIF89a\x01\0\x01\0\0\0",
            b"<html><body>",
            b"just some text",
        ] {
            assert_eq!(ImageFormat::detect(head), None, "{head:?}");
        }
    }

    #[test]
    fn mime_and_extension_match_the_format() {
        assert_eq!(
            (ImageFormat::Jpeg.mime(), ImageFormat::Jpeg.extension()),
            ("image/jpeg", "jpg")
        );
        assert_eq!(
            (ImageFormat::Png.mime(), ImageFormat::Png.extension()),
            ("image/png", "png")
        );
        assert_eq!(
            (ImageFormat::Webp.mime(), ImageFormat::Webp.extension()),
            ("image/webp", "webp")
        );
    }

    #[test]
    fn names_round_trip() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp] {
            assert_eq!(ImageFormat::from_name(format.as_str()), Some(format));
        }
        assert_eq!(ImageFormat::from_name("jpg"), Some(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::from_name("gif"), None);
    }

    /// Magic-byte templates: JPEG SOI, PNG signature, RIFF/WEBP with a zero size.
    const MAGICS: [&[u8]; 3] = [b"\xFF\xD8\xFF", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP"];

    /// Whether `head` carries the magic bytes of `format`.
    fn has_magic(head: &[u8], format: ImageFormat) -> bool {
        match format {
            ImageFormat::Jpeg => head.starts_with(b"\xFF\xD8\xFF"),
            ImageFormat::Png => head.starts_with(b"\x89PNG\r\n\x1a\n"),
            ImageFormat::Webp => head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP"),
        }
    }

    /// Heads near an image's: a magic template with a tail, maybe one byte changed, maybe cut
    /// short; or plain random bytes.
    fn near_image_heads() -> impl Strategy<Value = Vec<u8>> {
        let near = (
            0..MAGICS.len(),
            proptest::collection::vec(any::<u8>(), 0..20),
            any::<Option<(proptest::sample::Index, u8)>>(),
            0..40usize,
        )
            .prop_map(|(which, tail, change, cut)| {
                let mut head = MAGICS[which].to_vec();
                head.extend(tail);
                if let Some((at, byte)) = change {
                    let at = at.index(head.len());
                    head[at] = byte;
                }
                head.truncate(cut);
                head
            });
        prop_oneof![near, proptest::collection::vec(any::<u8>(), 0..40)]
    }

    proptest! {
        #[test]
        fn a_detected_format_implies_its_magic_bytes(head in near_image_heads()) {
            if let Some(format) = ImageFormat::detect(&head) {
                prop_assert!(has_magic(&head, format), "{format:?} detected in {head:?}");
            }
        }

        #[test]
        fn magic_bytes_are_detected_whatever_follows(
            which in 0..MAGICS.len(),
            tail in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut head = MAGICS[which].to_vec();
            head.extend(tail);
            let expected = [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp][which];
            prop_assert_eq!(ImageFormat::detect(&head), Some(expected));
        }

        #[test]
        fn detection_only_looks_at_the_first_twelve_bytes(head in proptest::collection::vec(any::<u8>(), 0..64)) {
            let cut = &head[..head.len().min(12)];
            prop_assert_eq!(ImageFormat::detect(&head), ImageFormat::detect(cut));
        }
    }
}
