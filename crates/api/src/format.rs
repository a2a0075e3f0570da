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
