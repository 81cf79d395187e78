//! Pictures of what a self-prediction method reconstructs, written beside the checkpoints: for
//! a fixed set of images (8 spread over the test split, else the training split), three
//! rows — the input as the encoder saw it (masked, noisy, with a hole), the reconstruction,
//! the original — as `RUN/reconstructions/step_NNNNNNN.png` and `latest.png`.

use crate::augment::{map_eval_batches, ViewRecipe};
use crate::checkpoint::write_atomic;
use crate::data::ImageStore;
use crate::method::Method;
use std::path::Path;
use tch::Device;
use tch::{Kind, Tensor};

/// Pixels per image side in the picture: small views are enlarged (nearest) to at least this.
const MIN_SIDE: i64 = 64;
const GAP: i64 = 2;

/// The images a run pictures, as the eval transform gives them.
pub struct Pictures {
    /// [n, 3, S, S], normalised.
    x: Tensor,
    recipe: ViewRecipe,
}

impl Pictures {
    /// `n` images spread evenly over `images` (folders are sorted by class, so the first `n`
    /// would often be one class) at the training resolution `side`.
    pub fn new(images: &ImageStore, side: usize, n: usize) -> Self {
        let len = images.len();
        let n = n.min(len);
        let idx: Vec<usize> = (0..n).map(|i| i * len / n.max(1)).collect();
        let subset = images.subset(&idx);
        let recipe = ViewRecipe::eval(side);
        let parts = map_eval_batches(&subset, &recipe, n.max(1), false, false, |x| x.copy());
        Pictures {
            x: Tensor::cat(&parts, 0),
            recipe,
        }
    }

    /// Writes the grid of `method`'s reconstructions as `dir/step_<step>.png` and
    /// `dir/latest.png`; false (nothing written) when the method does not reconstruct.
    pub fn write(&self, method: &dyn Method, dir: &Path, step: u64) -> anyhow::Result<bool> {
        let x = crate::device::to_device(&self.x, method.encoder().device());
        let Some((shown, recon)) = method.reconstruct(&x) else {
            return Ok(false);
        };
        let (shown, recon) = (shown.to_device(Device::Cpu), recon.to_device(Device::Cpu));
        let png = grid_png(&[&shown, &recon, &self.x], &self.recipe)?;
        std::fs::create_dir_all(dir)?;
        write_atomic(&dir.join(format!("step_{step:07}.png")), &png)?;
        write_atomic(&dir.join("latest.png"), &png)?;
        Ok(true)
    }
}

/// Rows of images [n, 3, S, S] in `recipe`'s normalised space → one PNG, a row per tensor.
pub fn grid_png(rows: &[&Tensor], recipe: &ViewRecipe) -> anyhow::Result<Vec<u8>> {
    let (n, s) = (rows[0].size()[0], rows[0].size()[2]);
    let scale = (MIN_SIDE + s - 1) / s;
    let cell = s * scale;
    let (w, h) = (
        n * (cell + GAP) + GAP,
        rows.len() as i64 * (cell + GAP) + GAP,
    );
    let mean = Tensor::from_slice(&recipe.mean).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&recipe.std).view([1, 3, 1, 1]);
    let mut img = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([255, 255, 255]));
    for (r, t) in rows.iter().enumerate() {
        let px = (t.to_kind(Kind::Float) * &std + &mean)
            .clamp(0.0, 1.0)
            .multiply_scalar(255.0)
            .round()
            .to_kind(Kind::Uint8)
            .permute([0, 2, 3, 1])
            .contiguous(); // [n, S, S, 3]
        let bytes = Vec::<u8>::try_from(px.flatten(0, -1))?;
        for i in 0..n {
            for y in 0..cell {
                for x in 0..cell {
                    let o = (((i * s + y / scale) * s + x / scale) * 3) as usize;
                    let (gx, gy) = (
                        GAP + i * (cell + GAP) + x,
                        GAP + r as i64 * (cell + GAP) + y,
                    );
                    img.put_pixel(
                        gx as u32,
                        gy as u32,
                        image::Rgb([bytes[o], bytes[o + 1], bytes[o + 2]]),
                    );
                }
            }
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_has_a_row_per_tensor_and_the_original_colours() {
        let recipe = ViewRecipe::eval(8);
        // an all-red image in normalised space
        let red = Tensor::from_slice(&[1.0f32, 0.0, 0.0])
            .view([1, 3, 1, 1])
            .expand([2, 3, 8, 8], false);
        let mean = Tensor::from_slice(&recipe.mean).view([1, 3, 1, 1]);
        let std = Tensor::from_slice(&recipe.std).view([1, 3, 1, 1]);
        let x = (red - mean) / std;
        let png = grid_png(&[&x, &x, &x], &recipe).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        // 2 images of 8 px enlarged 8× to 64, 2 px gaps
        assert_eq!((img.width(), img.height()), (2 * 66 + 2, 3 * 66 + 2));
        assert_eq!(img.get_pixel(10, 10).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
    }
}
