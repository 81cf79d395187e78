//! Decoding one image file: any format `image` reads, every mode (grayscale, RGBA, 16-bit,
//! palette) converted to 8-bit RGB (alpha dropped), then resized by a [`Resize`] rule. A JPEG
//! that is shrunk a lot is decoded at reduced scale ([`decode_jpeg_shrinking`]), 3× faster on
//! photos (README, "Photo collections"). The error is a sentence for the user, naming what is
//! wrong with the file.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::Resize;

/// Reads one image file as 8-bit RGB, resized by `resize`: `(h, w, pixels)`.
/// The error is the reason, for [`super::DataError::BadImage`] or the skipped list.
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
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        if let Some(shrunk) = decode_jpeg_shrinking(bytes, resize) {
            return Ok(shrunk);
        }
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

/// A JPEG that `resize` shrinks at least 2× decoded at 1/2, 1/4 or 1/8 scale in the DCT
/// domain (jpeg-decoder's `scale`: the inverse DCT computes only the low frequencies, so
/// much less is decoded, and what is left is an average, not an alias), then resized to the
/// exact target with the triangle filter. None when it does not apply or anything fails:
/// the caller then decodes at full size, and reports any error from there.
fn decode_jpeg_shrinking(bytes: &[u8], resize: Resize) -> Option<(usize, usize, Vec<u8>)> {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    catch_unwind(AssertUnwindSafe(|| d.read_info()))
        .ok()?
        .ok()?;
    let info = d.info()?;
    let (h, w) = (info.height as usize, info.width as usize);
    let (th, tw) = resize.target(h, w);
    if th * 2 > h || tw * 2 > w {
        return None;
    }
    let format = info.pixel_format;
    if !matches!(
        format,
        jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8
    ) {
        return None;
    }
    d.scale(
        tw.min(u16::MAX as usize) as u16,
        th.min(u16::MAX as usize) as u16,
    )
    .ok()?;
    let px = catch_unwind(AssertUnwindSafe(|| d.decode())).ok()?.ok()?;
    let out = d.info()?;
    let (sh, sw) = (out.height as usize, out.width as usize);
    let rgb = match format {
        jpeg_decoder::PixelFormat::L8 => px.iter().flat_map(|&v| [v, v, v]).collect(),
        _ => px,
    };
    if rgb.len() != sh * sw * 3 || sh < th || sw < tw {
        return None;
    }
    let img = image::RgbImage::from_raw(sw as u32, sh as u32, rgb)?;
    let img = image::imageops::resize(
        &img,
        tw as u32,
        th as u32,
        image::imageops::FilterType::Triangle,
    );
    Some((th, tw, img.into_raw()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth 640x480 JPEG (a photo-like gradient).
    fn photo() -> Vec<u8> {
        let img = image::RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x / 3) as u8, (y / 2) as u8, ((x + y) / 5) as u8])
        });
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
            .unwrap();
        bytes
    }

    #[test]
    fn a_jpeg_decoded_at_reduced_scale_matches_full_decoding_and_resizing() {
        let bytes = photo();
        let resize = Resize::ShorterSide(60);
        let (h, w, fast) = decode_jpeg_shrinking(&bytes, resize).expect("8x smaller: applies");
        assert_eq!((h, w), (60, 80));
        // the reference: full decode, then the triangle filter
        let full = image::load_from_memory(&bytes).unwrap().into_rgb8();
        let (_, _, slow) = resize.apply(full.into_raw(), 480, 640);
        let worst = fast
            .iter()
            .zip(&slow)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(worst <= 12, "largest difference {worst}");
        assert_eq!(decode_bytes(&bytes, resize).unwrap(), (h, w, fast));
        // shrinking less than 2x decodes at full size
        assert!(decode_jpeg_shrinking(&bytes, Resize::ShorterSide(300)).is_none());
        assert!(decode_jpeg_shrinking(&bytes, Resize::Keep).is_none());
    }
}
