//! Throughput figures (`selfsup bench`), measured the way `../shared/bench/torch_simclr_step.py`
//! measures PyTorch's: the median over timed steps after warm-up steps, same inputs every step.
//!
//! - training step: `2B` views `[2B, 3, S, S]` (random, fixed; plus the small multi-crop views
//!   when configured) → the trainer's [`sgd_step`] (views/s counts the `2B` large views);
//! - forward: the encoder alone in eval mode without gradients, on the same `2B` views;
//! - augmentation: two SimCLR views of `B` stored images (decoding happens once, at load);
//! - end to end: the real training loop's pieces (background loader + step + SGD) on a dataset.

use crate::augment::augment_batch;
use crate::config::TrainConfig;
use crate::data::{Dataset, ImageStore};
use crate::eval::features::nhwc_to_tensor;
use crate::method::Targets;
use crate::optim::Sgd;
use crate::train::{build_model, loader_data, sgd_step, view_recipe, view_recipes, Loader};
use std::time::Instant;
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

/// Figures of one training-step measurement.
#[derive(Debug, Clone)]
pub struct StepFigures {
    /// `2B / median step seconds`.
    pub train_views_per_s: f64,
    /// `2B / median forward seconds` (encoder, eval mode, no gradients).
    pub forward_views_per_s: f64,
    pub step_s: f64,
    pub loss_first: f64,
    pub loss_last: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// Random normal views `[B, 3, S, S]`, laid out as the loader's batches are (NHWC memory).
fn random_views(batch: usize, size: usize, channels_last: bool) -> Tensor {
    let nhwc = Tensor::randn(
        [batch as i64, size as i64, size as i64, 3],
        (Kind::Float, Device::Cpu),
    );
    let buf: Vec<f32> = Vec::try_from(nhwc.flatten(0, -1)).expect("f32 tensor");
    nhwc_to_tensor(&buf, batch, size, channels_last)
}

/// Times the method's training step at batch `batch` (`2·batch` views) on `size`² inputs.
pub fn time_train_step(
    cfg: &TrainConfig,
    batch: usize,
    size: usize,
    warm: usize,
    steps: usize,
) -> anyhow::Result<StepFigures> {
    anyhow::ensure!(steps >= 1, "bench needs at least one timed step");
    let model = build_model(cfg)?;
    let mut opt = Sgd::new(&model.vs, cfg.optim.momentum, cfg.optim.weight_decay);
    let views: Vec<Tensor> = view_recipes(cfg, size)
        .iter()
        .map(|r| random_views(batch, r.out_size, cfg.model.uses_channels_last()))
        .collect();
    let indices = Tensor::arange(batch as i64, (Kind::Int64, Device::Cpu));
    let classes = indices.remainder(10);
    let targets = match model.method.targets() {
        Targets::Nothing => None,
        Targets::ClassLabels => Some(&classes),
        Targets::ImageIndices => {
            // a bank of random 8-px images (its width does not depend on their size), at
            // least one per cluster
            let n = batch.max(cfg.method.prototypes);
            let mut rng = crate::rng::Rng::new(cfg.train.seed);
            let images = ImageStore {
                height: 8,
                width: 8,
                pixels: (0..n * 8 * 8 * 3).map(|_| rng.below(256) as u8).collect(),
            };
            model.method.prepare(&images, 0, (n / batch) as u64)?;
            Some(&indices)
        }
    };
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    let total = (warm + steps) as u64;
    for i in 0..total {
        let t = Instant::now();
        let done = sgd_step(&model, &mut opt, &views, targets, cfg.optim.lr, (i, total))?;
        losses.push(done.loss);
        if i >= warm as u64 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let x = Tensor::cat(&views[..2], 0);
    let mut fwd = Vec::new();
    tch::no_grad(|| {
        for _ in 0..3 {
            let t = Instant::now();
            let _ = model.method.encoder().forward_t(&x, false);
            fwd.push(t.elapsed().as_secs_f64());
        }
    });
    let step_s = median(times);
    Ok(StepFigures {
        train_views_per_s: 2.0 * batch as f64 / step_s,
        forward_views_per_s: 2.0 * batch as f64 / median(fwd),
        step_s,
        loss_first: losses[0],
        loss_last: *losses.last().unwrap(),
    })
}

/// Images per second turned into two augmented views (median of `reps` batches of `batch`).
pub fn time_augmentation(cfg: &TrainConfig, images: &ImageStore, batch: usize, reps: usize) -> f64 {
    let size = crate::train::input_size(images.height, images.width);
    let recipe = view_recipe(cfg, size);
    let b = batch.min(images.len());
    let mut out = vec![0f32; b * size * size * 3];
    let times = (0..reps.max(1))
        .map(|r| {
            let idx: Vec<usize> = (0..b).map(|k| (r * b + k) % images.len()).collect();
            let t = Instant::now();
            for view in 0..2 {
                augment_batch(
                    &images.pixels,
                    images.height,
                    images.width,
                    &idx,
                    &recipe,
                    cfg.train.seed,
                    r as u64,
                    view,
                    &mut out,
                );
            }
            t.elapsed().as_secs_f64()
        })
        .collect();
    b as f64 / median(times)
}

/// Figures of the end-to-end measurement.
#[derive(Debug, Clone)]
pub struct EndToEnd {
    /// Images per second over the timed steps (each image gives two views).
    pub images_per_s: f64,
    /// Mean seconds per step the trainer waited for the loader.
    pub wait_s: f64,
}

/// The training loop (loader thread + step + SGD) for `warm + steps` steps on `train`.
pub fn time_end_to_end(
    cfg: &TrainConfig,
    train: &Dataset,
    warm: usize,
    steps: usize,
) -> anyhow::Result<EndToEnd> {
    let b = cfg.train.batch_size;
    anyhow::ensure!(
        train.len() >= b,
        "the data has {} images, fewer than the batch size {b}",
        train.len()
    );
    let model = build_model(cfg)?;
    let mut opt = Sgd::new(&model.vs, cfg.optim.momentum, cfg.optim.weight_decay);
    let size = crate::train::input_size(train.images.height, train.images.width);
    let total = (warm + steps) as u64;
    let data = loader_data(train, model.method.as_ref())?;
    model
        .method
        .prepare(&data.images, 0, (train.len() / b) as u64)?;
    let mut loader = Loader::spawn(
        data,
        view_recipes(cfg, size),
        b,
        cfg.train.seed,
        0,
        total,
        cfg.train.prefetch,
    );
    let mut t0 = Instant::now();
    let mut wait = 0.0;
    for s in 0..total {
        if s == warm as u64 {
            t0 = Instant::now();
            wait = 0.0;
        }
        let w = Instant::now();
        let batch = loader
            .next()
            .ok_or_else(|| anyhow::anyhow!("the loader stopped early"))?;
        wait += w.elapsed().as_secs_f64();
        let (views, targets) = batch.to_tensors(cfg.model.uses_channels_last());
        sgd_step(
            &model,
            &mut opt,
            &views,
            targets.as_ref(),
            cfg.optim.lr,
            (s, total),
        )?;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(EndToEnd {
        images_per_s: (steps * b) as f64 / secs,
        wait_s: wait / steps.max(1) as f64,
    })
}

/// A memory figure of this process in MiB from Linux `/proc/self/status` (`"VmHWM"`: peak
/// resident, `"VmRSS"`: resident now), if known.
pub fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn a_tiny_step_timing_reports_positive_finite_figures() {
        let mut cfg = TrainConfig::default();
        cfg.model.width = 0.125;
        cfg.model.projection_dim = 16;
        let f = time_train_step(&cfg, 4, 16, 1, 2).unwrap();
        assert!(f.train_views_per_s.is_finite() && f.train_views_per_s > 0.0);
        assert!(f.forward_views_per_s > f.train_views_per_s * 0.5);
        assert!(f.loss_first.is_finite() && f.loss_last.is_finite());
        assert!(peak_rss_mib().unwrap() > 1.0);
    }
}
