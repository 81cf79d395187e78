//! Fine-tuning evaluation: the pretrained encoder and a linear classifier trained end to end
//! on the labeled training split, then top-1 on the test split. Masked-image models are judged
//! this way (MAE §4: their frozen features are weak by design, their fine-tuned ones strong).
//! ```text
//! for each step: B labeled images → crop (scale crop_min_scale..1) + flip → f → Linear(D, C)
//!                → cross-entropy → AdamW (β 0.9, 0.999), warm-up 10 % + cosine
//! ```
//! The same call on a randomly initialised encoder (`selfsup finetune --random-init`) is the
//! baseline at the same steps. Layer-wise learning-rate decay is not implemented.

use super::FrozenEncoder;
use crate::augment::{augment_batch, map_eval_batches, nhwc_to_tensor, ViewRecipe};
use crate::data::Dataset;
use crate::device::to_device;
use crate::loss::cross_entropy;
use crate::optim::{warmup_cosine, AdamW};
use crate::rng::Rng;
use anyhow::bail;
use tch::nn::{self, ModuleT, VarStore};
use tch::{Kind, Tensor};

/// How long and how fast to fine-tune.
#[derive(Clone, Debug)]
pub struct FinetuneConfig {
    /// Passes over the training split (fractions allowed).
    pub epochs: f64,
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    pub weight_decay: f64,
    /// Smallest crop area of the training augmentation.
    pub crop_min_scale: f32,
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            epochs: 1.0,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 0.05,
            crop_min_scale: 0.35,
            seed: 0,
        }
    }
}

/// What a fine-tuning measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FinetuneReport {
    pub test_top1: f64,
    pub steps: u64,
    /// Training accuracy over the last tenth of the steps.
    pub train_top1_end: f64,
    pub seconds: f64,
}

/// Fine-tunes `encoder` (its variables in `vs`, which gains the classifier `finetune_head.*`)
/// on `train`, scores `test`. `progress` is called every few steps with (step, total, loss).
pub fn finetune(
    vs: &VarStore,
    encoder: FrozenEncoder,
    train: &Dataset,
    test: &Dataset,
    cfg: &FinetuneConfig,
    mut progress: impl FnMut(u64, u64, f64),
) -> anyhow::Result<FinetuneReport> {
    let start = std::time::Instant::now();
    let (Some(ytr), Some(yte)) = (&train.labels, &test.labels) else {
        bail!("fine-tuning needs labels on both splits: use a folder of class sub-folders with train/ and test/ (or IDX / CIFAR files)");
    };
    if !(cfg.epochs.is_finite() && cfg.epochs > 0.0) {
        bail!(
            "--epochs is {}: it must be > 0 (fractions allowed)",
            cfg.epochs
        );
    }
    let n = train.len();
    let b = cfg.batch_size.clamp(1, n.max(1));
    let per_epoch = (n / b).max(1) as u64;
    let total = ((cfg.epochs * per_epoch as f64).round() as u64).max(1);
    let classes = train.num_classes().max(test.num_classes()) as i64;
    let net = encoder.net;
    let head = nn::linear(
        vs.root() / "finetune_head",
        net.out_dim(),
        classes,
        Default::default(),
    );
    let mut opt = AdamW::new(vs, (0.9, 0.999), cfg.weight_decay);
    let side = encoder.input_side;
    let mut recipe = ViewRecipe::eval(side);
    recipe.crop_scale = (cfg.crop_min_scale, 1.0);
    recipe.crop_ratio = (3.0 / 4.0, 4.0 / 3.0);
    recipe.flip_p = 0.5;
    let mut buf = vec![0f32; b * side * side * 3];
    let warmup = total / 10;
    let mut order = Vec::new();
    let mut recent = Vec::new();
    for step in 0..total {
        let epoch = step / per_epoch;
        if step % per_epoch == 0 {
            order = Rng::for_sample(cfg.seed, epoch, 0, 0x66_74).permutation(n);
        }
        let at = (step % per_epoch) as usize * b;
        let idx = &order[at..at + b];
        augment_batch(&train.images, idx, &recipe, cfg.seed, epoch, 0, &mut buf);
        let dev = vs.device();
        let x = to_device(&nhwc_to_tensor(&buf, b, side, encoder.channels_last), dev);
        let y = Tensor::from_slice(&idx.iter().map(|&i| ytr[i] as i64).collect::<Vec<_>>())
            .to_device(dev);
        if step == 0 {
            // damaged weights (a run stopped by a non-finite loss) are not a learning-rate matter
            let f = tch::no_grad(|| net.forward_t(&x, false)).to_device(tch::Device::Cpu);
            super::ensure_finite(&f, "the first training batch")?;
        }
        let logits = net.forward_t(&x, true).apply(&head);
        let (loss, acc) = cross_entropy(&logits, &y).map_err(anyhow::Error::msg)?;
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            bail!(
                "fine-tuning: the loss became {l} at step {step}: lower --lr (now {})",
                cfg.lr
            );
        }
        opt.zero_grad();
        loss.backward();
        opt.step(warmup_cosine(step, total, warmup, cfg.lr, 0.0));
        if step >= total - (total / 10).max(1) {
            recent.push(acc);
        }
        if step % 20 == 0 || step + 1 == total {
            progress(step + 1, total, l);
        }
    }
    let eval = ViewRecipe::eval(side);
    let hits = tch::no_grad(|| {
        map_eval_batches(
            &test.images,
            &eval,
            256,
            encoder.channels_last,
            false,
            |x| {
                net.forward_t(&to_device(x, vs.device()), false)
                    .apply(&head)
                    .argmax(1, false)
                    .to_device(tch::Device::Cpu)
            },
        )
    });
    let pred = Tensor::cat(&hits, 0);
    let want = Tensor::from_slice(&yte.iter().map(|&c| c as i64).collect::<Vec<_>>());
    let top1 = pred
        .eq_tensor(&want)
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    Ok(FinetuneReport {
        test_top1: top1,
        steps: total,
        train_top1_end: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}
