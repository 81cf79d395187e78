//! Views of a whole batch, in parallel over the images (rayon).
//!
//! Sample `k` of the batch draws all its randomness from
//! ```text
//! Rng::for_sample(seed, epoch, indices[k], view)
//! ```
//! so a view depends only on (seed, epoch, image index, view number): never on the thread
//! count, the scheduling or the image's position in the batch.

use rayon::prelude::*;

use super::recipe::ViewRecipe;
use super::views::Views;
use crate::data::ImageStore;
use crate::rng::Rng;

/// Writes view number `view` of each image `indices[k]` of `images` (each of its own size)
/// to `out`, laid out [B, S, S, 3] f32 (NHWC, `B = indices.len()`, `S = recipe.out_size`),
/// normalised. The recipe is assumed valid ([`ViewRecipe::validate`]).
///
/// Panics if an index is out of range or `out` is not `B·S·S·3` floats long.
pub fn augment_batch(
    images: &ImageStore,
    indices: &[usize],
    recipe: &ViewRecipe,
    seed: u64,
    epoch: u64,
    view: u64,
    out: &mut [f32],
) {
    render_batch(images, indices, recipe, (seed, epoch, view), out, &mut []);
}

/// Writes view number `view` of `views` for each image `indices[k]`: `out` [B, crops, S, S, 3]
/// f32 and `labels` [B, labels] (see [`ViewShape`](super::ViewShape)); `at` is `(seed, epoch, view)`. The views
/// are assumed valid ([`Views::validate`]).
///
/// Panics if an index is out of range or a buffer has the wrong length.
pub fn render_batch(
    images: &ImageStore,
    indices: &[usize],
    views: &dyn Views,
    (seed, epoch, view): (u64, u64, u64),
    out: &mut [f32],
    labels: &mut [i64],
) {
    let shape = views.shape();
    check_shapes(images, indices, shape.side, shape.crops, out);
    assert_eq!(
        labels.len(),
        indices.len() * shape.labels,
        "label buffer length"
    );
    let label_len = shape.labels.max(1);
    let mut no_labels = vec![0i64; if shape.labels == 0 { indices.len() } else { 0 }];
    let labels = match shape.labels {
        0 => &mut no_labels[..],
        _ => labels,
    };
    out.par_chunks_mut(shape.floats())
        .zip(labels.par_chunks_mut(label_len))
        .zip(indices.par_iter())
        .for_each(|((dst, lab), &i)| {
            let mut rng = Rng::for_sample(seed, epoch, i as u64, view);
            let im = images.image(i);
            views.render(
                im.pixels,
                im.height,
                im.width,
                &mut rng,
                dst,
                &mut lab[..shape.labels],
            );
        });
}

/// Writes the deterministic evaluation view ([`ViewRecipe::apply_eval`]) of each image
/// `indices[k]` to `out`, [B, S, S, 3] f32 as [`augment_batch`].
pub fn eval_batch(images: &ImageStore, indices: &[usize], recipe: &ViewRecipe, out: &mut [f32]) {
    let view_len = check_shapes(images, indices, recipe.out_size, 1, out);
    out.par_chunks_mut(view_len)
        .zip(indices.par_iter())
        .for_each(|(dst, &i)| {
            let im = images.image(i);
            recipe.apply_eval(im.pixels, im.height, im.width, dst);
        });
}

/// Checks the indices and the output buffer; returns the floats per image.
fn check_shapes(
    images: &ImageStore,
    indices: &[usize],
    out_size: usize,
    crops: usize,
    out: &[f32],
) -> usize {
    assert!(out_size > 0, "the view side must be at least 1");
    let n = images.len();
    if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
        panic!("image index {bad} is out of range for {n} images");
    }
    let view_len = crops * out_size * out_size * 3;
    let want = indices.len() * view_len;
    assert_eq!(
        out.len(),
        want,
        "output holds {} floats, but {} × {crops} views of {out_size}×{out_size}×3 need {want}",
        out.len(),
        indices.len()
    );
    view_len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: usize, h: usize, w: usize) -> ImageStore {
        let mut r = Rng::new(99);
        ImageStore::uniform(
            h,
            w,
            (0..n * h * w * 3).map(|_| r.below(256) as u8).collect(),
        )
    }

    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        let (n, h, w) = (12, 16, 16);
        let imgs = images(n, h, w);
        let idx: Vec<usize> = vec![3, 0, 11, 5, 5, 7, 1, 2, 9];
        let recipe = ViewRecipe {
            blur_p: 0.5,
            solarize_p: 0.2,
            ..ViewRecipe::simclr(12)
        };
        let run = |threads| {
            in_pool(threads, || {
                let mut out = vec![0.0; idx.len() * 12 * 12 * 3];
                augment_batch(&imgs, &idx, &recipe, 7, 2, 0, &mut out);
                out
            })
        };
        let one = run(1);
        assert_eq!(bits(&one), bits(&run(2)));
        assert_eq!(bits(&one), bits(&run(3)));
        // The same index twice in a batch gets the same view.
        let view_len = 12 * 12 * 3;
        assert_eq!(
            bits(&one[3 * view_len..4 * view_len]),
            bits(&one[4 * view_len..5 * view_len])
        );
    }

    #[test]
    fn views_and_epochs_differ() {
        let (n, h, w) = (4, 32, 32);
        let imgs = images(n, h, w);
        let idx = [0, 1, 2, 3];
        let recipe = ViewRecipe::simclr(32);
        let run = |epoch, view| {
            let mut out = vec![0.0; 4 * 32 * 32 * 3];
            augment_batch(&imgs, &idx, &recipe, 1, epoch, view, &mut out);
            out
        };
        let v0 = run(0, 0);
        for other in [run(0, 1), run(1, 0)] {
            for (a, b) in v0.chunks(32 * 32 * 3).zip(other.chunks(32 * 32 * 3)) {
                assert!(a.iter().zip(b).any(|(x, y)| (x - y).abs() > 0.1));
            }
        }
        assert_eq!(bits(&v0), bits(&run(0, 0)));
    }

    #[test]
    fn layout_is_nhwc_and_follows_indices() {
        // Image k is the constant colour (10k, 20k, 30k); the eval view of a constant image is
        // that colour everywhere, so out[b, y, x, c] must be image indices[b]'s channel c.
        // Each image of another size: the views must not depend on it.
        let mut b = crate::data::StoreBuilder::default();
        for k in 0..4u8 {
            let (h, w) = (6 + k as usize, 9 - k as usize);
            let px: Vec<u8> = (0..h * w).flat_map(|_| [10 * k, 20 * k, 30 * k]).collect();
            b.push(h, w, &px);
        }
        let imgs = b.finish();
        let recipe = ViewRecipe {
            mean: [0.0; 3],
            std: [1.0; 3],
            ..ViewRecipe::eval(4)
        };
        let idx = [2, 0, 3];
        let mut out = vec![0.0; 3 * 4 * 4 * 3];
        eval_batch(&imgs, &idx, &recipe, &mut out);
        let mut rand_out = vec![0.0; out.len()];
        augment_batch(
            &imgs,
            &idx,
            &ViewRecipe {
                mean: [0.0; 3],
                std: [1.0; 3],
                ..ViewRecipe::simclr(4)
            },
            0,
            0,
            0,
            &mut rand_out,
        );
        for (b, &k) in idx.iter().enumerate() {
            for y in 0..4 {
                for x in 0..4 {
                    for c in 0..3 {
                        let want = (10 * (c + 1) * k) as f32 / 255.0;
                        let at = ((b * 4 + y) * 4 + x) * 3 + c;
                        assert!((out[at] - want).abs() < 1e-6, "b {b} y {y} x {x} c {c}");
                    }
                }
            }
            // A random view of a constant image keeps it constant (up to the jitter's colour).
            let v = &rand_out[b * 48..(b + 1) * 48];
            assert!(v
                .chunks(3)
                .all(|px| px.iter().zip(&v[..3]).all(|(a, b)| (a - b).abs() < 1e-5)));
        }
    }

    #[test]
    #[should_panic(expected = "image index 5 is out of range for 2 images")]
    fn bad_index_panics_with_a_message() {
        let imgs = images(2, 4, 4);
        let mut out = vec![0.0; 4 * 4 * 3];
        augment_batch(&imgs, &[5], &ViewRecipe::simclr(4), 0, 0, 0, &mut out);
    }

    /// Two views of 256 CIFAR-sized images, the per-step cost of SimCLR's data pipeline.
    /// `cargo test --release --lib augment::batch -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing_two_views_of_256_cifar_images() {
        let (n, h, w) = (256, 32, 32);
        let imgs = images(n, h, w);
        let idx: Vec<usize> = (0..n).collect();
        let recipe = ViewRecipe::simclr(32);
        let mut out = vec![0.0; n * 32 * 32 * 3];
        let mut times = Vec::new();
        for epoch in 0..30 {
            let t = std::time::Instant::now();
            for view in 0..2 {
                augment_batch(&imgs, &idx, &recipe, 0, epoch, view, &mut out);
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "two views × 256 CIFAR images on {} threads: median {:.2} ms, min {:.2} ms",
            rayon::current_num_threads(),
            times[times.len() / 2],
            times[0]
        );
    }
}
