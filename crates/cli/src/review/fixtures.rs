//! Real image files and entries for the review's tests.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use sha2::{Digest, Sha256};

use super::{Entry, ResultFile, Status};

/// A `width` × `height` picture, a gradient `seed` makes distinct, saved at `path` in `format`.
pub(crate) fn image(path: &Path, width: u32, height: u32, format: ImageFormat, seed: u8) {
    let pixels = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, seed])
    });
    pixels
        .save_with_format(path, format)
        .expect("save the test image");
}

/// A `width` × `height` JPEG whose EXIF says to show it turned 90° clockwise.
pub(crate) fn turned_jpeg(path: &Path, width: u32, height: u32) {
    // A big-endian TIFF block with one IFD entry: orientation (0x0112), SHORT, 1 value, 6.
    let exif: Vec<u8> = [
        &b"MM\0\x2a\0\0\0\x08"[..],
        &[0, 1],
        &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0],
        &[0, 0, 0, 0],
    ]
    .concat();
    let mut jpeg = Vec::new();
    let mut encoder = JpegEncoder::new(&mut jpeg);
    encoder.set_exif_metadata(exif).expect("JPEG takes EXIF");
    RgbImage::from_pixel(width, height, Rgb([90, 120, 150]))
        .write_with_encoder(encoder)
        .expect("encode the test image");
    fs::write(path, jpeg).expect("write the test image");
}

/// A fully transparent PNG.
pub(crate) fn transparent_png(path: &Path, width: u32, height: u32) {
    RgbaImage::from_pixel(width, height, Rgba([0, 0, 0, 0]))
        .save_with_format(path, ImageFormat::Png)
        .expect("save the test image");
}

pub(crate) fn sha256_of(path: &Path) -> String {
    eraser_store::Sha256(Sha256::digest(fs::read(path).expect("read the test file")).into())
        .to_string()
}

/// A done entry for `input` and `result` (both existing files), hashes and sizes from the files.
pub(crate) fn done(input: &Path, result: &Path) -> Entry {
    Entry {
        result: Some(ResultFile {
            path: result.to_path_buf(),
            size: size_of(result),
            sha256: Some(sha256_of(result)),
        }),
        job_id: Some("job-1".into()),
        ..entry(input, Status::Done)
    }
}

/// A failed entry for an existing `input`.
pub(crate) fn failed(input: &Path, reason: &str) -> Entry {
    entry(
        input,
        Status::Failed {
            reason: reason.into(),
        },
    )
}

fn entry(input: &Path, status: Status) -> Entry {
    Entry {
        input: input.to_path_buf(),
        sha256: sha256_of(input),
        input_size: size_of(input),
        status,
        result: None,
        job_id: None,
        time: Utc
            .with_ymd_and_hms(2025, 3, 4, 5, 6, 7)
            .single()
            .expect("a time"),
        run: Some(7),
    }
}

fn size_of(path: &Path) -> u64 {
    fs::metadata(path).expect("stat the test file").len()
}

/// Names of the files in `dir`, sorted.
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `count` distinct done entries in `dir` (PNG inputs, JPEG results).
pub(crate) fn done_entries(dir: &Path, count: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| {
            let input = dir.join(format!("in-{i}.png"));
            let result = dir.join(format!("out-{i}.jpg"));
            image(&input, 40 + i as u32, 30, ImageFormat::Png, i as u8);
            image(&result, 40 + i as u32, 30, ImageFormat::Jpeg, i as u8);
            done(&input, &result)
        })
        .collect()
}

/// The text of a written page.
pub(crate) fn read_page(path: PathBuf) -> String {
    fs::read_to_string(&path).expect("read the page")
}
