//! Image bytes: format sniffing of uploads, the output JPEG that carries its input's sha256, and
//! small sample images for tests and benches.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageResult};

/// Side of every generated image, in pixels.
const SIDE: u32 = 16;
/// Start of the JPEG comment the emulator writes into its outputs.
const SOURCE_PREFIX: &[u8] = b"eraser-emulator source-sha256=";
/// Start of the JPEG comment of sample images (not a source marker, on purpose).
const SAMPLE_PREFIX: &str = "eraser-emulator sample seed=";

/// An upload format the service accepts, recognised by magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Jpeg,
    Png,
    Webp,
}

impl Format {
    /// The format of `bytes` by their magic bytes, whatever the file name says.
    pub(crate) fn sniff(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(Format::Webp)
        } else {
            None
        }
    }

    pub(crate) fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
        }
    }
}

/// The output JPEG of a job: a 16x16 picture whose colours come from the input's sha256, with a
/// comment segment `eraser-emulator source-sha256=<hex>` right after SOI.
pub(crate) fn output_jpeg(sha256_hex: &str) -> ImageResult<Vec<u8>> {
    let seed = sha256_hex
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    let jpeg = encode_jpeg(&pattern(seed))?;
    let mut comment = SOURCE_PREFIX.to_vec();
    comment.extend_from_slice(sha256_hex.as_bytes());
    Ok(with_comment(&jpeg, &comment))
}

/// Reads back the input sha256 that the emulator embedded in an output JPEG (None if absent).
///
/// Walks the JPEG's marker segments up to the image data and returns the 64 lower-case hex
/// characters of the first `eraser-emulator source-sha256=` comment. Never panics on bad bytes.
pub fn source_sha256(output_jpeg: &[u8]) -> Option<String> {
    if !output_jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut pos = 2;
    loop {
        if *output_jpeg.get(pos)? != 0xFF {
            return None;
        }
        // Markers may be preceded by any number of 0xFF fill bytes.
        while *output_jpeg.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        let marker = *output_jpeg.get(pos + 1)?;
        match marker {
            // Start of scan or end of image: no more header segments.
            0xDA | 0xD9 => return None,
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        let len_bytes = output_jpeg.get(pos + 2..pos + 4)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 {
            return None;
        }
        let data = output_jpeg.get(pos + 4..pos + 2 + len)?;
        if marker == 0xFE
            && let Some(hex) = data.strip_prefix(SOURCE_PREFIX)
        {
            let is_sha = hex.len() == 64
                && hex
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
            return is_sha.then(|| String::from_utf8_lossy(hex).into_owned());
        }
        pos += 2 + len;
    }
}

/// A tiny, really decodable JPEG, distinct for every `seed` (colours and pattern from the seed,
/// and the seed itself in a comment segment, so even colour collisions give distinct bytes).
pub fn sample_jpeg(seed: u64) -> Vec<u8> {
    let jpeg = encode_jpeg(&sample_pixels(seed)).expect(INFALLIBLE);
    with_comment(&jpeg, format!("{SAMPLE_PREFIX}{seed}").as_bytes())
}

/// A tiny, really decodable PNG, distinct for every `seed` (its first pixels hold the seed).
pub fn sample_png(seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&sample_pixels(seed), SIDE, SIDE, ExtendedColorType::Rgb8)
        .expect(INFALLIBLE);
    out
}

/// A tiny, really decodable lossless WEBP, distinct for every `seed` (its first pixels hold the
/// seed).
pub fn sample_webp(seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .encode(&sample_pixels(seed), SIDE, SIDE, ExtendedColorType::Rgb8)
        .expect(INFALLIBLE);
    out
}

/// Why the sample encoders cannot fail: a fixed 16x16 RGB buffer of the right length, written
/// into a `Vec`, is within every encoder's limits (the unit tests decode each format).
const INFALLIBLE: &str = "encoding a fixed 16x16 RGB buffer into memory cannot fail";

fn encode_jpeg(rgb: &[u8]) -> ImageResult<Vec<u8>> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).encode(rgb, SIDE, SIDE, ExtendedColorType::Rgb8)?;
    Ok(out)
}

/// Inserts a COM segment right after SOI (the text is cut to the segment's 65533-byte limit).
fn with_comment(jpeg: &[u8], text: &[u8]) -> Vec<u8> {
    let text = &text[..text.len().min(usize::from(u16::MAX) - 2)];
    let len = u16::try_from(text.len() + 2).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(jpeg.len() + text.len() + 4);
    out.extend_from_slice(jpeg.get(..2).unwrap_or_default());
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text);
    out.extend_from_slice(jpeg.get(2..).unwrap_or_default());
    out
}

/// Sample pixels: the seed's 8 bytes in the first row (exact in lossless formats), then the
/// pattern derived from it.
fn sample_pixels(seed: u64) -> Vec<u8> {
    let mut pixels = pattern(seed);
    for (i, byte) in seed.to_le_bytes().iter().enumerate() {
        pixels[i * 3] = *byte;
    }
    pixels
}

/// 16x16 RGB: a background colour and a 4x4 grid of lit cells, all taken from `seed`.
fn pattern(seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let background = [rng.u8(..), rng.u8(..), rng.u8(..)];
    let foreground = background.map(|c| c ^ 0xA5);
    let cells = rng.u16(..);
    let mut pixels = Vec::with_capacity((SIDE * SIDE * 3) as usize);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let cell = (y / 4) * 4 + x / 4;
            let lit = cells & (1 << cell) != 0;
            pixels.extend_from_slice(if lit { &foreground } else { &background });
        }
    }
    pixels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> image::DynamicImage {
        image::load_from_memory(bytes).expect("decodable image")
    }

    #[test]
    fn output_jpeg_decodes_and_carries_the_source_sha() {
        let sha = "ab".repeat(32);
        let jpeg = output_jpeg(&sha).expect("encoded");
        assert_eq!(decode(&jpeg).width(), SIDE);
        assert_eq!(source_sha256(&jpeg), Some(sha));
    }

    #[test]
    fn outputs_of_different_inputs_differ() {
        let a = output_jpeg(&"0".repeat(64)).expect("encoded");
        let b = output_jpeg(&"1".repeat(64)).expect("encoded");
        assert_ne!(a, b);
    }

    #[test]
    fn source_sha256_is_none_for_images_without_the_marker() {
        assert_eq!(source_sha256(&sample_jpeg(7)), None);
        assert_eq!(source_sha256(&sample_png(7)), None);
    }

    #[test]
    fn source_sha256_survives_truncated_and_garbage_bytes() {
        let jpeg = output_jpeg(&"c".repeat(64)).expect("encoded");
        for cut in 0..40 {
            assert_eq!(source_sha256(&jpeg[..cut]), None, "cut at {cut}");
        }
        assert_eq!(source_sha256(b"\xFF\xD8\xFF\xFE\x00\x00"), None);
        assert_eq!(source_sha256(b"\xFF\xD8\xFF\xFF\xFF"), None);
        assert_eq!(source_sha256(b"not a jpeg"), None);
    }

    #[test]
    fn samples_decode_in_their_format() {
        for seed in [0, 1, u64::MAX] {
            assert_eq!(
                image::guess_format(&sample_jpeg(seed)).ok(),
                Some(image::ImageFormat::Jpeg)
            );
            assert_eq!(
                image::guess_format(&sample_png(seed)).ok(),
                Some(image::ImageFormat::Png)
            );
            assert_eq!(
                image::guess_format(&sample_webp(seed)).ok(),
                Some(image::ImageFormat::WebP)
            );
            assert_eq!(decode(&sample_jpeg(seed)).width(), SIDE);
            assert_eq!(decode(&sample_png(seed)).height(), SIDE);
            assert_eq!(decode(&sample_webp(seed)).width(), SIDE);
        }
    }

    #[test]
    fn samples_are_distinct_per_seed() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            assert!(seen.insert(sample_jpeg(seed)), "jpeg {seed}");
            assert!(seen.insert(sample_png(seed)), "png {seed}");
            assert!(seen.insert(sample_webp(seed)), "webp {seed}");
        }
    }

    #[test]
    fn sniff_recognises_the_three_formats_by_magic_bytes() {
        assert_eq!(Format::sniff(&sample_jpeg(1)), Some(Format::Jpeg));
        assert_eq!(Format::sniff(&sample_png(1)), Some(Format::Png));
        assert_eq!(Format::sniff(&sample_webp(1)), Some(Format::Webp));
        assert_eq!(Format::sniff(b"hello, I am text named .jpg"), None);
        assert_eq!(Format::sniff(b""), None);
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WAVE"), None);
    }
}
