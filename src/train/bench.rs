//! Throughput figures (`selfsup bench`), measured the way `../shared/bench/torch_simclr_step.py`
//! measures PyTorch's: the median over timed steps after warm-up steps, same inputs every step.
//!
//! - training step: `2B` views `[2B, 3, S, S]` (random, fixed; plus the small multi-crop views
//!   when configured; a pretext task's crops and zero labels) → the training loop
//!   ([`Trainer::run`]) (views/s counts the encoder inputs of the first two views: the `2B`
//!   large views, or the `C·B` crops of a pretext task);
//! - forward: the encoder alone in eval mode without gradients, on the same inputs;
//! - augmentation: two SimCLR views of `B` stored images (decoding happens once, at load);
//! - end to end: the real training loop's pieces (background loader + step + SGD) on a dataset.

use crate::augment::{augment_batch, nhwc_to_tensor};
use crate::config::TrainConfig;
use crate::data::{Dataset, ImageStore};
use crate::method::Targets;
use crate::train::trainer::{median, LoaderBatches, SameBatch, Timing};
use crate::train::{
    build_model, loader_data, method_views, view_recipe, Batch, Loader, LoaderData, LoaderSpec,
    Schedule, Trainer,
};
use std::sync::Arc;
use std::time::Instant;
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

/// Figures of one training-step measurement.
#[derive(Debug, Clone)]
pub struct StepFigures {
    /// `2B / median step seconds` (`2B`: the encoder inputs of the first two views).
    pub train_views_per_s: f64,
    /// `2B / median forward seconds` (encoder, eval mode, no gradients).
    pub forward_views_per_s: f64,
    pub step_s: f64,
    pub loss_first: f64,
    pub loss_last: f64,
    /// The process's peak resident memory in MiB when the training steps are done (before the
    /// forward-pass timing, which runs the whole batch through the encoder at once).
    pub step_peak_rss_mib: Option<f64>,
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

/// Times the method's training step at batch `batch` (`2·batch` views) on `size`² inputs, at
/// the configured peak learning rate. `images` are the training images, for methods with a
/// per-image memory (the targets are then images `0..batch`); at least `batch` of them.
pub fn time_train_step(
    cfg: &TrainConfig,
    images: &Arc<ImageStore>,
    batch: usize,
    size: usize,
    warm: usize,
    steps: usize,
) -> anyhow::Result<StepFigures> {
    anyhow::ensure!(steps >= 1, "bench needs at least one timed step");
    anyhow::ensure!(
        images.len() >= batch,
        "the data has {} images, fewer than the batch size {batch}",
        images.len()
    );
    let mut model = build_model(cfg, Some(&LoaderData::images(images.clone())), None)?;
    let channels_last = cfg.model.uses_channels_last();
    let shapes: Vec<_> = method_views(&cfg.data, model.spec.as_ref(), size)?
        .iter()
        .map(|v| v.shape())
        .collect();
    let views: Vec<Tensor> = shapes
        .iter()
        .map(|v| random_views(batch * v.crops, v.side, channels_last))
        .collect();
    let indices = Tensor::arange(batch as i64, (Kind::Int64, Device::Cpu));
    let labels: i64 = shapes.iter().map(|v| v.labels as i64).sum();
    let targets = match model.spec.plan().targets {
        Targets::Nothing => None,
        Targets::ClassLabels => Some(indices.remainder(10)),
        Targets::ImageIndices => Some(indices),
        Targets::ViewLabels => Some(Tensor::zeros(
            [batch as i64, labels],
            (Kind::Int64, Device::Cpu),
        )),
    };
    let forward_views = views[0].size()[0] + views.get(1).map_or(0, |v| v.size()[0]);
    let total = (warm + steps) as u64;
    let schedule = Schedule::new(cfg, images.len())
        .constant(cfg.lr())
        .fitted(total);
    let mut timing = Timing::start();
    let device = model.vs.device();
    let on = |t: &Tensor| crate::device::to_device(t, device);
    let mut same = SameBatch(Batch {
        views: views.iter().map(on).collect(),
        targets: targets.as_ref().map(on),
        augment_s: 0.0,
    });
    Trainer::new(&mut model, cfg, schedule).run(0..total, &mut same, &mut timing)?;
    let step_peak_rss_mib = peak_rss_mib();
    // the forward pass's input made only now, so that the steps' peak does not count it
    let x = on(&Tensor::cat(&views[..views.len().min(2)], 0));
    let mut fwd = Vec::new();
    tch::no_grad(|| {
        for _ in 0..3 {
            let t = Instant::now();
            let _ = model.method.encoder().forward_t(&x, false);
            crate::device::synchronize(device);
            fwd.push(t.elapsed().as_secs_f64());
        }
    });
    let step_s = median(&timing.step_s[warm..]);
    Ok(StepFigures {
        train_views_per_s: forward_views as f64 / step_s,
        forward_views_per_s: forward_views as f64 / median(&fwd),
        step_s,
        loss_first: timing.losses[0],
        loss_last: *timing.losses.last().unwrap(),
        step_peak_rss_mib,
    })
}

/// Images per second turned into two augmented views (median of `reps` batches of `batch`).
pub fn time_augmentation(cfg: &TrainConfig, images: &ImageStore, batch: usize, reps: usize) -> f64 {
    let size = cfg.crop_size(images);
    let recipe = view_recipe(&cfg.data, size);
    let b = batch.min(images.len());
    let mut out = vec![0f32; b * size * size * 3];
    let times: Vec<f64> = (0..reps.max(1))
        .map(|r| {
            let idx: Vec<usize> = (0..b).map(|k| (r * b + k) % images.len()).collect();
            let t = Instant::now();
            for view in 0..2 {
                augment_batch(
                    images,
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
    b as f64 / median(&times)
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
    let spec = cfg.method.spec().map_err(anyhow::Error::msg)?;
    let data = loader_data(train, spec.as_ref())?;
    let mut model = build_model(cfg, Some(&data), None)?;
    let size = cfg.crop_size(&train.images);
    let total = (warm + steps) as u64;
    let schedule = Schedule::new(cfg, train.len())
        .constant(cfg.lr())
        .fitted(total);
    let loader = Loader::spawn(LoaderSpec {
        data,
        views: method_views(&cfg.data, spec.as_ref(), size)?,
        batch_size: b,
        steps_per_epoch: schedule.steps_per_epoch,
        seed: cfg.train.seed,
        steps: 0..total,
        prefetch: cfg.train.prefetch,
        shard: LoaderSpec::shard_of_this_rank(),
        early: None,
    });
    let mut batches = LoaderBatches {
        loader,
        channels_last: cfg.model.uses_channels_last(),
        device: model.vs.device(),
    };
    let mut timing = Timing::start();
    Trainer::new(&mut model, cfg, schedule).run(0..total, &mut batches, &mut timing)?;
    let secs: f64 = timing.step_s[warm..].iter().sum();
    Ok(EndToEnd {
        images_per_s: (steps * b) as f64 / secs,
        wait_s: timing.wait_s[warm..].iter().sum::<f64>() / steps.max(1) as f64,
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
    fn a_tiny_step_timing_reports_positive_finite_figures() {
        let mut cfg = TrainConfig::default();
        cfg.model.width = 0.125;
        cfg.model.projection_dim = 16;
        let images = Arc::new(ImageStore::uniform(16, 16, vec![128; 4 * 16 * 16 * 3]));
        let f = time_train_step(&cfg, &images, 4, 16, 1, 2).unwrap();
        assert!(f.train_views_per_s.is_finite() && f.train_views_per_s > 0.0);
        assert!(f.forward_views_per_s > f.train_views_per_s * 0.5);
        assert!(f.loss_first.is_finite() && f.loss_last.is_finite());
        assert!(peak_rss_mib().unwrap() > 1.0);
    }
}
