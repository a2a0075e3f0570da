//! Thumbnails for the review page: 480 px JPEGs made in parallel, kept in `thumbs/` under the
//! content hash so a second review of the same images makes none. A file that cannot be read
//! or decoded gets a placeholder with a note instead; it never stops the page.

use std::fmt;
use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Rgb, RgbImage};
use sha2::{Digest, Sha256};

use super::Error;
use eraser_api::atomic::write as write_atomically;

/// Longest side of a thumbnail, in pixels.
pub(crate) const THUMB_SIDE: u32 = 480;
const JPEG_QUALITY: u8 = 80;
/// Decoded pixels above this are not decoded for a thumbnail (a 16-bit RGBA image of about
/// 67 megapixels); such a file gets a placeholder rather than eat the memory of the machine.
const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// A file to show small: where it is and the sha256 the ledger holds for its content, if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Source {
    pub path: PathBuf,
    pub sha256: Option<String>,
}

/// Width and height of an image as it is displayed (EXIF orientation applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub width: u32,
    pub height: u32,
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} × {}", self.width, self.height)
    }
}

/// How a file is shown on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Picture {
    Thumbnail(Thumbnail),
    /// No thumbnail: `note` says why; `dims` when the header could still be read.
    Placeholder {
        dims: Option<Dims>,
        note: String,
    },
}

/// A thumbnail in the thumbs folder, and the image it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Thumbnail {
    /// `<sha256>.jpg`, in the thumbs folder.
    pub file_name: String,
    /// The thumbnail's own size.
    pub size: Dims,
    /// The full image's size.
    pub image: Dims,
    /// Made by this review (false: found in the cache).
    pub made: bool,
}

/// Shows every source, on up to `threads` threads, reporting (files done, total) to `progress`
/// after each. Only a thumbnail that cannot be written is an error (the folder is unusable);
/// everything about a source file itself becomes a placeholder.
pub(crate) fn show_all(
    sources: &[Source],
    thumbs_dir: &Path,
    threads: NonZeroUsize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Picture>, Error> {
    let total = sources.len();
    progress(0, total);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let worker = || {
        let mut shown = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(source) = sources.get(i) else { break };
            let picture = show_guarded(source, thumbs_dir);
            if picture.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            shown.push((i, picture));
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        }
        shown
    };
    let workers = threads.get().min(total).max(1);
    let mut shown: Vec<(usize, Result<Picture, Error>)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(worker)).collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    shown.sort_by_key(|(i, _)| *i);
    shown.into_iter().map(|(_, picture)| picture).collect()
}

/// [`show`], with a panic in an image decoder turned into a placeholder.
fn show_guarded(source: &Source, thumbs_dir: &Path) -> Result<Picture, Error> {
    catch_unwind(AssertUnwindSafe(|| show(source, thumbs_dir))).unwrap_or_else(|_| {
        Ok(Picture::Placeholder {
            dims: None,
            note: "the image decoder failed on this file".into(),
        })
    })
}

fn show(source: &Source, thumbs_dir: &Path) -> Result<Picture, Error> {
    let key = match cache_key(source) {
        Ok(key) => key,
        Err(note) => return Ok(Picture::Placeholder { dims: None, note }),
    };
    let (decoder, orientation, dims) = match open_image(&source.path) {
        Ok(opened) => opened,
        Err(Unreadable { dims, note }) => return Ok(Picture::Placeholder { dims, note }),
    };
    let file_name = format!("{key}.jpg");
    let thumb_path = thumbs_dir.join(&file_name);
    if let Ok((width, height)) = image::image_dimensions(&thumb_path) {
        return Ok(Picture::Thumbnail(Thumbnail {
            file_name,
            size: Dims { width, height },
            image: dims,
            made: false,
        }));
    }
    let made = decode(decoder, orientation, dims).and_then(|pixels| {
        thumbnail_jpeg(pixels).map_err(|note| Unreadable {
            dims: Some(dims),
            note,
        })
    });
    let (jpeg, size) = match made {
        Ok(made) => made,
        Err(Unreadable { dims, note }) => return Ok(Picture::Placeholder { dims, note }),
    };
    write_atomically(&thumb_path, &jpeg).map_err(|error| Error::Write {
        path: thumb_path.clone(),
        error,
    })?;
    Ok(Picture::Thumbnail(Thumbnail {
        file_name,
        size,
        image: dims,
        made: true,
    }))
}

/// The thumbnail's name: the sha256 given when it is one (64 hex digits, so it is a safe file
/// name), else the hash of the file's bytes.
fn cache_key(source: &Source) -> Result<String, String> {
    if let Some(hash) = source.sha256.as_deref().filter(|h| is_sha256(h)) {
        return Ok(hash.to_ascii_lowercase());
    }
    let hash = File::open(&source.path).and_then(|mut file| {
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher)?;
        Ok(eraser_store::Sha256(hasher.finalize().into()).to_string())
    });
    hash.map_err(|e| format!("cannot read this file: {e}"))
}

/// Whether `text` is a sha256 in hex (and so a safe file name).
pub(crate) fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a file has no thumbnail, and its size when the header told it.
struct Unreadable {
    dims: Option<Dims>,
    note: String,
}

/// Opens the image at `path` (its format found from its bytes) and reads its header: the
/// decoder, ready for the pixels, the EXIF orientation and the size as displayed.
fn open_image(path: &Path) -> Result<(impl ImageDecoder + use<>, Orientation, Dims), Unreadable> {
    let unreadable = |note: String| Unreadable { dims: None, note };
    let reader = ImageReader::open(path)
        .and_then(ImageReader::with_guessed_format)
        .map_err(|e| unreadable(format!("cannot read this file: {e}")))?;
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| unreadable(format!("not an image eraser can read: {e}")))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (width, height) = decoder.dimensions();
    let turned = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let dims = match turned {
        true => Dims {
            width: height,
            height: width,
        },
        false => Dims { width, height },
    };
    Ok((decoder, orientation, dims))
}

/// The pixels of an opened image, turned the way it is displayed.
fn decode(
    decoder: impl ImageDecoder,
    orientation: Orientation,
    dims: Dims,
) -> Result<DynamicImage, Unreadable> {
    let cannot = |note: String| Unreadable {
        dims: Some(dims),
        note,
    };
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(cannot(format!(
            "too large to make a thumbnail of ({dims} pixels)"
        )));
    }
    let mut pixels = DynamicImage::from_decoder(decoder)
        .map_err(|e| cannot(format!("cannot decode this image: {e}")))?;
    pixels.apply_orientation(orientation);
    Ok(pixels)
}

/// A JPEG of `image` no larger than [`THUMB_SIDE`] on its longest side (never enlarged), any
/// transparency laid over white; with its size.
fn thumbnail_jpeg(image: DynamicImage) -> Result<(Vec<u8>, Dims), String> {
    let small = if image.width().max(image.height()) > THUMB_SIDE {
        image.thumbnail(THUMB_SIDE, THUMB_SIDE)
    } else {
        image
    };
    let rgb = over_white(small);
    let mut jpeg = Vec::new();
    rgb.write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY))
        .map_err(|e| format!("cannot make a thumbnail: {e}"))?;
    let size = Dims {
        width: rgb.width(),
        height: rgb.height(),
    };
    Ok((jpeg, size))
}

/// RGB pixels of `image`, its transparent parts blended onto white (JPEG has no alpha).
fn over_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let mix = |c: u8| {
            let (c, a) = (u16::from(c), u16::from(a));
            // c * a + 255 * (255 - a) <= 255 * 255, so the quotient fits a u8.
            ((c * a + 255 * (255 - a)) / 255) as u8
        };
        Rgb([mix(r), mix(g), mix(b)])
    })
}
