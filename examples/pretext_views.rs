//! A picture of what the pretext methods train on, drawn with their own view code: for each
//! of a few training images, the image, its four rotations (RotNet), the centre patch with the
//! neighbour its label names put back in its cell (relative position), and the 9 jigsaw tiles
//! as the encoder sees them (shuffled, each normalised) next to them put back by the inverse
//! permutation.
//!
//!     cargo run --release --example pretext_views -- data/cifar10 docs/src/images/pretext_views.png
//!
//! Without a data folder it draws the built-in synthetic shapes.

use selfsup::augment::grid::{CENTRE, GRID, NEIGHBOURS};
use selfsup::augment::{ViewRecipe, Views, CIFAR10_MEAN, CIFAR10_STD};
use selfsup::config::TrainConfig;
use selfsup::method::jigsaw::JigsawConfig;
use selfsup::method::relative_patch::RelativePatchConfig;
use selfsup::method::rotation::RotationConfig;
use selfsup::method::MethodSpec;
use selfsup::rng::Rng;

const ROWS: usize = 6;
const PAD: u32 = 6;

/// Normalised f32 [s, s, 3] → u8 RGB, undoing the recipe's normalisation.
fn denormalise(px: &[f32], s: usize) -> image::RgbImage {
    image::RgbImage::from_fn(s as u32, s as u32, |x, y| {
        let at = (y as usize * s + x as usize) * 3;
        image::Rgb(std::array::from_fn(|c| {
            ((px[at + c] * CIFAR10_STD[c] + CIFAR10_MEAN[c]) * 255.0).clamp(0.0, 255.0) as u8
        }))
    })
}

/// A per-tile normalised f32 [s, s, 3] tile → u8 RGB, stretched to its own min–max.
fn stretch(px: &[f32], s: usize) -> image::RgbImage {
    let (lo, hi) = px
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    image::RgbImage::from_fn(s as u32, s as u32, |x, y| {
        let at = (y as usize * s + x as usize) * 3;
        image::Rgb(std::array::from_fn(|c| {
            ((px[at + c] - lo) / (hi - lo).max(1e-6) * 255.0) as u8
        }))
    })
}

/// `tiles` placed on a 3×3 grid, `cell_of[i]` the cell of tile i, 2 px apart.
fn on_grid(tiles: &[image::RgbImage], cell_of: &[usize]) -> image::RgbImage {
    let s = tiles[0].width() + 2;
    let mut out =
        image::RgbImage::from_pixel(s * GRID as u32, s * GRID as u32, image::Rgb([255; 3]));
    for (t, &cell) in tiles.iter().zip(cell_of) {
        let (x, y) = ((cell % GRID) as u32 * s, (cell / GRID) as u32 * s);
        image::imageops::overlay(&mut out, t, x as i64, y as i64);
    }
    out
}

fn views_of(spec: &dyn MethodSpec, size: usize) -> std::sync::Arc<dyn Views> {
    spec.render_views(vec![ViewRecipe::simclr(size)])
        .expect("default settings")
        .remove(0)
}

fn render(v: &dyn Views, src: &[u8], h: usize, w: usize, index: u64) -> (Vec<f32>, Vec<i64>) {
    let shape = v.shape();
    let mut out = vec![0f32; shape.floats()];
    let mut labels = vec![0i64; shape.labels];
    v.render(
        src,
        h,
        w,
        &mut Rng::for_sample(0, 0, index, 0),
        &mut out,
        &mut labels,
    );
    (out, labels)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (data, out) = match args.as_slice() {
        [data, out] => (Some(data.into()), out.clone()),
        [out] => (None, out.clone()),
        _ => anyhow::bail!("usage: pretext_views [DATA] OUT.png"),
    };
    let mut cfg = TrainConfig::default();
    cfg.data.path = data;
    cfg.data.limit = Some(100);
    let splits = selfsup::train::load_data(&cfg)?;
    let images = &splits.train.images;
    let size = cfg.crop_size(images);
    let rotation = views_of(&RotationConfig::default(), size);
    let patches = views_of(&RelativePatchConfig::default(), size);
    let jigsaw_spec = JigsawConfig::default();
    let jigsaw = views_of(&jigsaw_spec, size);
    let set = selfsup::augment::jigsaw::PermutationSet::shared(
        jigsaw_spec.permutations,
        jigsaw_spec.permutation_seed,
    )
    .map_err(anyhow::Error::msg)?;

    let mut rows = Vec::new();
    for k in 0..ROWS.min(images.len()) {
        let i = k * images.len() / ROWS; // spread over the classes
        let im = images.image(i);
        let (h, w) = (im.height, im.width);
        let mut pieces =
            vec![image::RgbImage::from_raw(w as u32, h as u32, im.pixels.to_vec()).unwrap()];
        let (rot, _) = render(rotation.as_ref(), im.pixels, h, w, i as u64);
        let r = rotation.shape().side;
        pieces.extend(rot.chunks(r * r * 3).map(|c| denormalise(c, r)));
        let (pair, label) = render(patches.as_ref(), im.pixels, h, w, i as u64);
        let p = patches.shape().side;
        let pair: Vec<_> = pair.chunks(p * p * 3).map(|c| denormalise(c, p)).collect();
        pieces.push(on_grid(&pair, &[CENTRE, NEIGHBOURS[label[0] as usize]]));
        let (tiles, label) = render(jigsaw.as_ref(), im.pixels, h, w, i as u64);
        let t = jigsaw.shape().side;
        let tiles: Vec<_> = tiles.chunks(t * t * 3).map(|c| stretch(c, t)).collect();
        pieces.push(on_grid(&tiles, &[0, 1, 2, 3, 4, 5, 6, 7, 8]));
        let perm: Vec<usize> = set.perms[label[0] as usize]
            .iter()
            .map(|&c| c as usize)
            .collect();
        pieces.push(on_grid(&tiles, &perm));
        rows.push(pieces);
    }
    // every piece scaled to the height of the tallest, nearest neighbour
    let tall = rows
        .iter()
        .flatten()
        .map(|p| p.height())
        .max()
        .unwrap_or(1)
        .max(96);
    let scaled: Vec<Vec<image::RgbImage>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|p| {
                    let f = tall as f64 / p.height() as f64;
                    let w = (p.width() as f64 * f).round() as u32;
                    image::imageops::resize(p, w, tall, image::imageops::FilterType::Nearest)
                })
                .collect()
        })
        .collect();
    let width = scaled[0].iter().map(|p| p.width() + PAD).sum::<u32>() + PAD;
    let height = (tall + PAD) * scaled.len() as u32 + PAD;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255; 3]));
    for (r, row) in scaled.iter().enumerate() {
        let mut x = PAD;
        for p in row {
            image::imageops::overlay(
                &mut canvas,
                p,
                x as i64,
                (PAD + r as u32 * (tall + PAD)) as i64,
            );
            x += p.width() + PAD;
        }
    }
    canvas.save(&out)?;
    println!(
        "{out}: {} images; per row: the image, its rotations by 0/90/180/270°, the centre patch and its \
         labelled neighbour, the 9 jigsaw tiles shuffled, then put back",
        scaled.len()
    );
    Ok(())
}
