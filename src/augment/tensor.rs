//! Views as libtorch tensors: the loader's NHWC buffers without a copy, and deterministic
//! evaluation views of a whole image store in batches (frozen features, memory banks).

use super::{eval_batch, ViewRecipe};
use crate::data::ImageStore;
use tch::Tensor;

/// A batch of NHWC f32 views [B, S, S, 3] as an NCHW tensor [B, 3, S, S]; with `channels_last`
/// the strides stay NHWC (no copy beyond the one into libtorch), else it is made contiguous.
pub fn nhwc_to_tensor(buf: &[f32], batch: usize, size: usize, channels_last: bool) -> Tensor {
    let t = Tensor::from_slice(&buf[..batch * size * size * 3]).view([
        batch as i64,
        size as i64,
        size as i64,
        3,
    ]);
    let t = t.permute([0, 3, 1, 2]); // [B, 3, S, S], channels-last strides
    if channels_last {
        t
    } else {
        t.contiguous()
    }
}

/// `f` of every image of `images` in order, in batches of `batch_size` evaluation views
/// ([`ViewRecipe::apply_eval`]) [B, 3, S, S]: the outputs' rows, one tensor per batch.
///
/// With `same_size`, the last batch is filled up with the first images so that `f` always sees
/// `batch_size` images (BatchNorm in training mode then normalises over batches of one size);
/// the filler rows are dropped from its output.
pub fn map_eval_batches(
    images: &ImageStore,
    recipe: &ViewRecipe,
    batch_size: usize,
    channels_last: bool,
    same_size: bool,
    mut f: impl FnMut(&Tensor) -> Tensor,
) -> Vec<Tensor> {
    let (n, s) = (images.len(), recipe.out_size);
    let b = batch_size.max(1);
    let mut buf = vec![0f32; b * s * s * 3];
    let mut out = Vec::new();
    for start in (0..n).step_by(b) {
        let rows = b.min(n - start);
        let len = if same_size { b } else { rows };
        let idx: Vec<usize> = (start..start + len).map(|i| i % n).collect();
        let view = &mut buf[..len * s * s * 3];
        eval_batch(images, &idx, recipe, view);
        images.release();
        let x = nhwc_to_tensor(view, len, s, channels_last);
        out.push(f(&x).narrow(0, 0, rows as i64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn batches_cover_every_image_once_and_fill_up_when_asked() {
        let images =
            ImageStore::uniform(4, 4, (0..5 * 4 * 4 * 3).map(|i| (i % 251) as u8).collect());
        let recipe = ViewRecipe::eval(4);
        let mut seen = Vec::new();
        let parts = map_eval_batches(&images, &recipe, 2, false, true, |x| {
            seen.push(x.size()[0]);
            x.flatten(1, -1)
                .mean_dim([1i64].as_slice(), false, Kind::Float)
        });
        assert_eq!(seen, [2, 2, 2], "the last batch is filled up to 2");
        let rows: Vec<i64> = parts.iter().map(|p| p.size()[0]).collect();
        assert_eq!(rows, [2, 2, 1]);
        let plain = map_eval_batches(&images, &recipe, 2, true, false, |x| {
            x.flatten(1, -1)
                .mean_dim([1i64].as_slice(), false, Kind::Float)
        });
        let (a, b) = (Tensor::cat(&parts, 0), Tensor::cat(&plain, 0));
        assert!((a - b).abs().max().double_value(&[]) < 1e-6);
    }
}
