//! Pictures made of the images themselves: thumbnails, nearest-neighbour grids (a query, then
//! its neighbours with their cosine similarity, framed green when of the query's class and red
//! when not), and the 2-D map with thumbnails at their places.

use super::charts::{class_colour, label};
use crate::data::ImageStore;
use image::{imageops, Rgb, RgbImage};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const GREY: Rgb<u8> = Rgb([170, 170, 170]);
const GREEN: Rgb<u8> = Rgb([40, 160, 60]);
const RED: Rgb<u8> = Rgb([210, 40, 40]);

/// The centred square of image `i`, `side` pixels wide: an image upscaled by a whole factor
/// keeps its pixels sharp (nearest), any other resize is bilinear.
pub fn thumbnail(images: &ImageStore, i: usize, side: u32) -> RgbImage {
    let im = images.image(i);
    let full = RgbImage::from_raw(im.width as u32, im.height as u32, im.pixels.to_vec())
        .expect("an image of the store holds h·w·3 bytes");
    let s = full.width().min(full.height());
    let square =
        imageops::crop_imm(&full, (full.width() - s) / 2, (full.height() - s) / 2, s, s).to_image();
    let filter = match side.is_multiple_of(s) {
        true => imageops::FilterType::Nearest,
        false => imageops::FilterType::Triangle,
    };
    imageops::resize(&square, side, side, filter)
}

/// `frame` pixels of `colour` around `img`.
fn framed(img: &RgbImage, colour: Rgb<u8>, frame: u32) -> RgbImage {
    let mut out = RgbImage::from_pixel(img.width() + 2 * frame, img.height() + 2 * frame, colour);
    imageops::replace(&mut out, img, frame as i64, frame as i64);
    out
}

/// One row of a neighbour grid.
pub struct GridRow {
    pub query: RgbImage,
    /// Each neighbour, its similarity, and whether it has the query's class (None: unknown).
    pub neighbours: Vec<(RgbImage, f32, Option<bool>)>,
}

/// A grid of rows: the query in a grey frame, a gap, then its neighbours left to right, each
/// with its cosine similarity written under it. Thumbnails are `side` pixels.
pub fn neighbour_grid(rows: &[GridRow], side: u32) -> anyhow::Result<RgbImage> {
    let (frame, gap, caption) = (3u32, 6u32, 16u32);
    let cell = side + 2 * frame + gap;
    let cols = rows.iter().map(|r| r.neighbours.len()).max().unwrap_or(0) as u32;
    let (w, h) = (
        gap + cell * (cols + 1) + 2 * gap,
        gap + (cell + caption) * rows.len().max(1) as u32,
    );
    let mut out = RgbImage::from_pixel(w, h, WHITE);
    for (r, row) in rows.iter().enumerate() {
        let y = gap + r as u32 * (cell + caption);
        imageops::replace(
            &mut out,
            &framed(&row.query, GREY, frame),
            gap as i64,
            y as i64,
        );
        for (j, (img, sim, same)) in row.neighbours.iter().enumerate() {
            let x = gap + cell * (j as u32 + 1) + 2 * gap;
            let colour = match same {
                Some(true) => GREEN,
                Some(false) => RED,
                None => GREY,
            };
            imageops::replace(&mut out, &framed(img, colour, frame), x as i64, y as i64);
            let text = format!("{sim:.3}");
            label(
                &mut out,
                &text,
                (x as i32 + 2, (y + side + 2 * frame + 1) as i32),
                12,
            )?;
        }
        label(
            &mut out,
            "query",
            (gap as i32 + 2, (y + side + 2 * frame + 1) as i32),
            12,
        )?;
    }
    Ok(out)
}

/// Pairs of images side by side, `per_row` pairs a row, each pair's similarity under it
/// (near-duplicates).
pub fn pair_grid(
    pairs: &[(RgbImage, RgbImage, f32)],
    side: u32,
    per_row: usize,
) -> anyhow::Result<RgbImage> {
    let (frame, gap, caption) = (3u32, 14u32, 16u32);
    let per_row = per_row.clamp(1, pairs.len().max(1));
    let cell_w = 2 * (side + 2 * frame) + 2 + gap;
    let cell_h = side + 2 * frame + caption + 6;
    let rows = pairs.len().div_ceil(per_row).max(1) as u32;
    let mut out = RgbImage::from_pixel(gap + cell_w * per_row as u32, gap + cell_h * rows, WHITE);
    for (k, (a, b, sim)) in pairs.iter().enumerate() {
        let x = gap + cell_w * (k % per_row) as u32;
        let y = gap / 2 + cell_h * (k / per_row) as u32;
        imageops::replace(&mut out, &framed(a, GREY, frame), x as i64, y as i64);
        imageops::replace(
            &mut out,
            &framed(b, GREY, frame),
            (x + side + 2 * frame + 2) as i64,
            y as i64,
        );
        label(
            &mut out,
            &format!("{sim:.4}"),
            (x as i32 + 2, (y + side + 2 * frame + 1) as i32),
            12,
        )?;
    }
    Ok(out)
}

/// The 2-D map drawn with images: a thumbnail (framed in its class colour) at the place of each
/// point of `order` that does not overlap one already drawn, on a `size`-pixel square.
pub fn thumbnail_map(
    points: &[[f32; 2]],
    order: &[usize],
    thumbs: &dyn Fn(usize) -> RgbImage,
    classes: Option<&[usize]>,
    side: u32,
    size: u32,
) -> RgbImage {
    let mut out = RgbImage::from_pixel(size, size, WHITE);
    if points.is_empty() {
        return out;
    }
    let span = |k: usize| {
        let (lo, hi) = points
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| {
                (a.min(p[k]), b.max(p[k]))
            });
        (lo, (hi - lo).max(1e-6))
    };
    let ((x0, xs), (y0, ys)) = (span(0), span(1));
    let box_side = side + 4;
    let room = (size - box_side) as f32;
    // the boxes already drawn: a thumbnail goes only where it overlaps none
    let mut placed: Vec<(u32, u32)> = Vec::new();
    for &i in order {
        let px = ((points[i][0] - x0) / xs * room) as u32;
        let py = ((1.0 - (points[i][1] - y0) / ys) * room) as u32; // y grows upwards
        if placed
            .iter()
            .any(|&(x, y)| x.abs_diff(px) < box_side && y.abs_diff(py) < box_side)
        {
            continue;
        }
        placed.push((px, py));
        let colour = classes.map_or(GREY, |c| {
            let rgb = class_colour(c[i]);
            Rgb([rgb.0, rgb.1, rgb.2])
        });
        imageops::replace(
            &mut out,
            &framed(&thumbs(i), colour, 2),
            px as i64,
            py as i64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ImageStore {
        // two 4×2 images (h = 2, w = 4): the centred square of the first is columns 1..3
        let mut px = Vec::new();
        for k in 0..2u8 {
            for y in 0..2u8 {
                for x in 0..4u8 {
                    px.extend([10 * x + k, 10 * y, 100]);
                }
            }
        }
        ImageStore::uniform(2, 4, px)
    }

    #[test]
    fn thumbnail_is_the_centred_square_scaled_sharp() {
        let t = thumbnail(&store(), 0, 4);
        assert_eq!(t.dimensions(), (4, 4));
        // nearest ×2 of columns 1, 2 of the image
        assert_eq!(t.get_pixel(0, 0).0, [10, 0, 100]);
        assert_eq!(t.get_pixel(3, 3).0, [20, 10, 100]);
    }

    #[test]
    fn grid_frames_neighbours_by_class_and_map_never_overlaps() {
        let s = store();
        let row = GridRow {
            query: thumbnail(&s, 0, 16),
            neighbours: vec![
                (thumbnail(&s, 1, 16), 0.9, Some(true)),
                (thumbnail(&s, 1, 16), 0.5, Some(false)),
            ],
        };
        let pairs: Vec<_> = (0..3)
            .map(|_| (thumbnail(&s, 0, 16), thumbnail(&s, 1, 16), 0.99f32))
            .collect();
        let p = pair_grid(&pairs, 16, 2).unwrap();
        assert!(
            p.width() > 2 * 2 * 16 && p.height() > 2 * 16,
            "2 pairs a row, 2 rows"
        );
        let g = neighbour_grid(&[row], 16).unwrap();
        let has = |c: Rgb<u8>| g.pixels().any(|p| *p == c);
        assert!(has(GREEN) && has(RED) && has(GREY));
        // two points at the same place: one thumbnail drawn, the other skipped
        let pts = [[0.0f32, 0.0], [0.0, 0.0], [1.0, 1.0]];
        let thumbs = |i: usize| thumbnail(&s, i % 2, 8);
        let m = thumbnail_map(&pts, &[0, 1, 2], &thumbs, Some(&[0, 1, 2]), 8, 100);
        let colour = |c: usize| {
            let rgb = class_colour(c);
            Rgb([rgb.0, rgb.1, rgb.2])
        };
        assert!(m.pixels().any(|p| *p == colour(0)));
        assert!(!m.pixels().any(|p| *p == colour(1)));
        assert!(m.pixels().any(|p| *p == colour(2)));
    }
}
