//! Decoding one image file: any format `image` reads, every mode (grayscale, RGBA, 16-bit,
//! palette) converted to 8-bit RGB (alpha dropped), then resized by a [`Resize`] rule. The
//! error is a sentence for the user, naming what is wrong with the file.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::Resize;

/// Reads one image file as 8-bit RGB, resized by `resize`: `(h, w, pixels)`.
/// The error is the reason, for [`DataError::BadImage`] or the skipped list.
pub fn decode_file(path: &Path, resize: Resize) -> Result<(usize, usize, Vec<u8>), String> {
    // A pipe or device would block or never end: only regular files are read.
    if let Ok(m) = std::fs::metadata(path) {
        if !m.is_file() {
            return Err(
                "it is not a regular file (a pipe, socket or device): selfsup reads image files only"
                    .into(),
            );
        }
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file ({e})"))?;
    decode_bytes(&bytes, resize)
}

/// Decodes an image held in memory; see [`decode_file`].
pub fn decode_bytes(bytes: &[u8], resize: Resize) -> Result<(usize, usize, Vec<u8>), String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the file ({e})"))?;
    if reader.format().is_none() {
        return Err("its contents are not in an image format selfsup reads (JPEG, PNG, BMP, GIF, TIFF, WebP)".into());
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_has_end(bytes) {
        return Err(
            "the JPEG is truncated: its image data ends before the end-of-image marker \
                    (the file was cut short, e.g. by an interrupted copy)"
                .into(),
        );
    }
    // Decoders are written for hostile input, but a crash in one must not take the whole run down.
    let decoded = catch_unwind(AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| "the image decoder crashed on this file".to_string())?
        .map_err(|e| format!("{e}"))?;
    let rgb = decoded.into_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(format!(
            "the image is {}x{} pixels",
            rgb.width(),
            rgb.height()
        ));
    }
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    Ok(resize.apply(rgb.into_raw(), h, w))
}

/// Whether a JPEG's last scan is followed by its end-of-image marker `FF D9`. The decoder
/// fills a file cut inside its entropy-coded data with grey and reports nothing; such a file
/// has a start-of-scan marker `FF DA` and no `FF D9` after it (inside scan data every `FF` is
/// followed by `00` or a restart marker, so `FF D9` cannot occur there by chance).
pub fn jpeg_has_end(bytes: &[u8]) -> bool {
    let marker = |m: u8| move |w: &[u8]| w == [0xFF, m];
    match bytes.windows(2).rposition(marker(0xDA)) {
        Some(sos) => bytes[sos..].windows(2).any(marker(0xD9)),
        None => false,
    }
}
