//! Decoding one image file: any format `image` reads, every mode (grayscale, RGBA, 16-bit,
//! palette) converted to 8-bit RGB (alpha dropped), then resized by a [`Resize`] rule. A JPEG
//! that is shrunk a lot is decoded at reduced scale ([`decode_jpeg_shrinking`]), 3× faster on
//! photos (the guide, "Photo collections"). The EXIF Orientation tag (all eight values) is applied,
//! so a portrait phone photo stored sideways is read upright. The error is a sentence for the
//! user, naming what is wrong with the file.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use image::metadata::Orientation;
use image::ImageDecoder;

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
    let (h, w, px) = decode_unoriented(bytes, resize)?;
    // Every resize rule treats height and width alike (`target(w, h)` is `target(h, w)`
    // swapped), so resizing before turning gives the same image as turning first.
    Ok(oriented(h, w, px, orientation(bytes)))
}

/// The EXIF orientation of an encoded image (JPEG, PNG, TIFF, WebP); none when it has no such
/// tag or it cannot be read.
pub fn orientation(bytes: &[u8]) -> Orientation {
    let read = || {
        let reader = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .ok()?;
        reader.into_decoder().ok()?.orientation().ok()
    };
    catch_unwind(AssertUnwindSafe(read))
        .ok()
        .flatten()
        .unwrap_or(Orientation::NoTransforms)
}

/// `(h, w, pixels)` turned and flipped by `o`: `(h', w', pixels')`.
fn oriented(h: usize, w: usize, px: Vec<u8>, o: Orientation) -> (usize, usize, Vec<u8>) {
    if o == Orientation::NoTransforms {
        return (h, w, px);
    }
    let rgb = image::RgbImage::from_raw(w as u32, h as u32, px).expect("[h, w, 3] pixels");
    let mut img = image::DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(o);
    let rgb = img.into_rgb8();
    (rgb.height() as usize, rgb.width() as usize, rgb.into_raw())
}

/// Decodes as stored, without applying the EXIF orientation.
fn decode_unoriented(bytes: &[u8], resize: Resize) -> Result<(usize, usize, Vec<u8>), String> {
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

/// Whether a JPEG's image data is followed by its end-of-image marker `FF D9`. The decoder
/// fills a file cut inside its entropy-coded data with grey and reports nothing; such a file
/// has a start-of-scan marker `FF DA` and no `FF D9` after it (inside scan data every `FF` is
/// followed by `00` or a restart marker, so `FF D9` cannot occur there by chance). The first
/// scan is found by walking the marker segments from the start, so an EXIF thumbnail (a JPEG
/// inside a segment) and bytes after the end (a camera's trailer holding `FF DA`) are not
/// mistaken for it; headers that cannot be walked fall back to the last `FF DA` in the file.
pub fn jpeg_has_end(bytes: &[u8]) -> bool {
    let marker = |m: u8| move |w: &[u8]| w == [0xFF, m];
    let sos = first_scan(bytes).or_else(|| bytes.windows(2).rposition(marker(0xDA)));
    match sos {
        Some(sos) => bytes[sos..].windows(2).any(marker(0xD9)),
        None => false,
    }
}

/// The offset of the first start-of-scan marker, walking the segments after start-of-image;
/// None when the headers end or break before one.
fn first_scan(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    loop {
        if *bytes.get(i)? != 0xFF {
            return None;
        }
        while *bytes.get(i + 1)? == 0xFF {
            i += 1; // fill bytes
        }
        match bytes[i + 1] {
            0xDA => return Some(i),
            0xD9 => return None,
            0x01 | 0xD0..=0xD7 => i += 2, // markers without a length
            _ => {
                let len = u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]) as usize;
                i += 2 + len;
            }
        }
    }
}

/// Decoded images of a list of items, in the list's order, bad files left out.
pub(crate) struct Decoded {
    pub store: super::ImageStore,
    /// For each image of `store`, the index of its item.
    pub kept: Vec<usize>,
    /// "rel: reason" for each bad file (with `skip_bad`).
    pub skipped: Vec<String>,
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

    /// `jpeg` with an APP1 Exif segment holding one tag, Orientation = `value`, inserted after
    /// its start-of-image marker (a little-endian TIFF header and one IFD entry, SHORT).
    fn with_exif_orientation(jpeg: &[u8], value: u16) -> Vec<u8> {
        let mut tiff = b"II*\0".to_vec();
        tiff.extend_from_slice(&8u32.to_le_bytes()); // the IFD right after the header
        tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_le_bytes()); // one value
        tiff.extend_from_slice(&value.to_le_bytes());
        tiff.extend_from_slice(&[0, 0]); // padding of the 4-byte value field
        tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    /// A 40x24 landscape picture with a distinct colour in each quadrant (JPEG keeps flat
    /// quadrants close to their colour).
    fn quadrants() -> image::RgbImage {
        image::RgbImage::from_fn(40, 24, |x, y| match (x < 20, y < 12) {
            (true, true) => image::Rgb([250, 0, 0]),
            (false, true) => image::Rgb([0, 250, 0]),
            (true, false) => image::Rgb([0, 0, 250]),
            (false, false) => image::Rgb([250, 250, 250]),
        })
    }

    #[test]
    fn every_exif_orientation_is_applied() {
        let img = quadrants();
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        // EXIF value → where the stored top-left quadrant (red) must end up after decoding,
        // and whether height and width swap (values 5–8 turn by 90°)
        let corner = |h: usize, w: usize, px: &[u8], (y, x): (usize, usize)| {
            let i = (y * w + x) * 3;
            assert!(y < h && x < w);
            [px[i], px[i + 1], px[i + 2]]
        };
        for value in 1..=8u16 {
            let bytes = with_exif_orientation(&jpeg, value);
            let (h, w, px) = decode_bytes(&bytes, Resize::Keep).unwrap();
            let o = Orientation::from_exif(value as u8).unwrap();
            let mut want = image::DynamicImage::ImageRgb8(img.clone());
            want.apply_orientation(o);
            let want = want.into_rgb8();
            assert_eq!(
                (h, w),
                (want.height() as usize, want.width() as usize),
                "value {value}"
            );
            assert_eq!((h, w) == (24, 40), value <= 4, "value {value}");
            // the four corners have the colours the turned original has there
            for at in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)] {
                let got = corner(h, w, &px, at);
                let exp = want.get_pixel(at.1 as u32, at.0 as u32).0;
                let far = got
                    .iter()
                    .zip(exp)
                    .any(|(a, b)| (*a as i32 - b as i32).abs() > 40);
                assert!(!far, "value {value} at {at:?}: {got:?} vs {exp:?}");
            }
            // the shrinking JPEG path and a resize rule agree on the turned shape
            let (h2, w2, _) = decode_bytes(&bytes, Resize::ShorterSide(12)).unwrap();
            assert_eq!((h2, w2).0 < (h2, w2).1, h < w, "value {value}");
        }
        // a rotated copy is no longer read as the same image as its upright original
        let upright = decode_bytes(&jpeg, Resize::Keep).unwrap();
        assert_ne!(
            decode_bytes(&with_exif_orientation(&jpeg, 6), Resize::Keep).unwrap(),
            upright
        );
        assert_eq!(
            decode_bytes(&with_exif_orientation(&jpeg, 1), Resize::Keep).unwrap(),
            upright
        );
    }

    #[test]
    fn a_complete_jpeg_with_trailing_bytes_holding_ff_da_is_read() {
        let jpeg = photo();
        // a trailer after the end-of-image marker (as some cameras write) holding FF DA
        let mut trailed = jpeg.clone();
        trailed.extend_from_slice(&[0x00, 0xFF, 0xDA, 0x12, 0x34, 0xFF, 0xDA, 0x00]);
        assert!(jpeg_has_end(&trailed));
        assert!(decode_bytes(&trailed, Resize::Keep).is_ok());
        // an EXIF thumbnail in front does not hide the main image's end either
        assert!(jpeg_has_end(&with_exif_orientation(&trailed, 1)));
        // cut inside the image data: still caught, trailer or not
        let sos = first_scan(&jpeg).unwrap();
        let cut = &jpeg[..sos + (jpeg.len() - sos) / 2];
        assert!(!jpeg_has_end(cut));
        let e = decode_bytes(cut, Resize::Keep).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
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
