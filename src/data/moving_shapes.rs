//! A built-in set of short sequences that needs no download, for temporal-order learning: one
//! shape (disk, ring, square, triangle or cross: the first five classes of [`super::synthetic`])
//! moving in a straight line across the frame (start and end at least 0.4 of it apart) and
//! turning, over `frames` frames. Each sequence
//! is one *filmstrip* image, its frames side by side (`frames · size` wide, `size` high), with
//! the shape as its class. Everything but the shape varies: path, speed, turn, size, colours,
//! gradient, noise. `selfsup make-data moving-shapes` writes the set as an image folder.

use super::synthetic::{paint, Look, Pattern, CLASS_NAMES};
use super::{Dataset, ImageStore, Splits};
use crate::rng::Rng;
use rayon::prelude::*;

/// The shape classes (the first five of the synthetic set).
pub const CLASSES: usize = 5;

/// One filmstrip of `class`: [size, frames · size, 3] u8.
pub fn filmstrip(class: u32, frames: usize, size: usize, rng: &mut Rng) -> Vec<u8> {
    let mut pattern = Pattern::new(class, rng);
    let look = Look::new(rng);
    // smaller than in still images, so that there is room to move
    pattern.radius = rng.range(0.12, 0.2);
    let margin = pattern.radius + 0.04;
    let mut point = || {
        (
            rng.range(margin, 1.0 - margin),
            rng.range(margin, 1.0 - margin),
        )
    };
    // start and end at least 0.4 of the frame apart, so that each step moves the shape
    let (mut start, mut end) = (point(), point());
    for _ in 0..64 {
        if (end.0 - start.0).hypot(end.1 - start.1) >= 0.4 {
            break;
        }
        (start, end) = (point(), point());
    }
    // turning 0.3 to 0.6 rad a frame, either way: for all but the disk and the ring, the
    // orientation tells the order too
    let turn = rng.range(0.3, 0.6) * if rng.bernoulli(0.5) { 1.0 } else { -1.0 };
    let angle = pattern.angle;
    let shots: Vec<Vec<u8>> = (0..frames)
        .map(|f| {
            let t = f as f32 / (frames - 1).max(1) as f32;
            pattern.centre = (
                start.0 + t * (end.0 - start.0),
                start.1 + t * (end.1 - start.1),
            );
            pattern.angle = angle + turn * f as f32;
            paint(&pattern, &look, size, rng)
        })
        .collect();
    let row = size * 3;
    let mut out = Vec::with_capacity(frames * size * size * 3);
    for y in 0..size {
        for shot in &shots {
            out.extend_from_slice(&shot[y * row..(y + 1) * row]);
        }
    }
    out
}

/// `train_per_class` and `test_per_class` filmstrips of each class (`test_per_class` 0: no test
/// split), deterministic in `seed`. Image `i` of a split has class `i % 5`.
pub fn generate(
    train_per_class: usize,
    test_per_class: usize,
    frames: usize,
    size: usize,
    seed: u64,
) -> Splits {
    let split = |name: &str, stream: u64, n: usize| {
        let images: Vec<Vec<u8>> = (0..n)
            .into_par_iter()
            .map(|i| {
                filmstrip(
                    (i % CLASSES) as u32,
                    frames,
                    size,
                    &mut Rng::for_sample(seed, stream, i as u64, 7),
                )
            })
            .collect();
        Dataset {
            images: ImageStore::uniform(size, frames * size, images.concat()),
            labels: Some((0..n).map(|i| (i % CLASSES) as u32).collect()),
            class_names: CLASS_NAMES[..CLASSES]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            names: (0..n).map(|i| format!("{name}[{i}]")).collect(),
            skipped: Vec::new(),
            captions: None,
            left_out: Default::default(),
        }
    };
    Splits {
        train: split("train", 0, train_per_class * CLASSES),
        test: (test_per_class > 0).then(|| split("test", 1, test_per_class * CLASSES)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filmstrips_move_and_the_sets_are_reproducible() {
        let s = generate(2, 1, 5, 16, 3);
        assert_eq!(s.train.len(), 10);
        assert_eq!(s.train.images.uniform_size(), Some((16, 80)));
        assert_eq!(s.test.as_ref().unwrap().len(), 5);
        assert_eq!(
            s.train.class_names,
            ["disk", "ring", "square", "triangle", "cross"]
        );
        assert_eq!(
            s.train.images.concat_pixels(),
            generate(2, 1, 5, 16, 3).train.images.concat_pixels()
        );
        // the first and last frames differ far more than pixel noise: the shape moved
        let img = s.train.images.image(0).pixels;
        let frame = |f: usize| -> Vec<f32> {
            (0..16)
                .flat_map(|y| {
                    img[(y * 80 + f * 16) * 3..(y * 80 + f * 16 + 16) * 3]
                        .iter()
                        .map(|&v| v as f32)
                })
                .collect()
        };
        let diff = |a: &[f32], b: &[f32]| {
            a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
        };
        assert!(
            diff(&frame(0), &frame(4)) > 8.0,
            "{}",
            diff(&frame(0), &frame(4))
        );
    }
}
