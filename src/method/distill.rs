//! Distillation from a teacher you bring (LightlyTrain's default method; the idea of
//! Hinton et al. 2015 applied to features, as in "knowledge distillation for self-supervised
//! representations"): a frozen, pretrained encoder — any model exported to TorchScript that
//! maps normalised images [N, 3, S, S] to features [N, D_t] — gives targets, and the student
//! (any selfsup backbone) plus a projection learns to reproduce them on the user's unlabelled
//! images.
//! ```text
//! t = teacher(x)              [K, D_t]   eval mode, no gradient (or the cached t of x's eval view)
//! p = g(f(x))                 [K, D_t]   student backbone f, projection g (Linear → BN → ReLU → Linear)
//! L = 1 − mean_k cos(p_k, t_k)       (loss = "cosine", the default)
//! L = mean over k, d of (p_kd − t_kd / s)²,  s = √(mean t²)   (loss = "mse": the teacher's
//!                                        features scaled to unit RMS over the batch, so that
//!                                        one learning rate suits teachers of any scale)
//! ```
//! The teacher file: `selfsup export --format torchscript` of a selfsup run, or any timm /
//! torchvision model through `scripts/export-teacher.py` (which wraps it to take selfsup's
//! normalised views and resizes them to the teacher's input size). It is read when training
//! starts (and again on resume: keep the file); evaluation and exports need only the student.
//!
//! `cache = true`: each image's teacher features are computed once, on its fixed evaluation
//! view, the first time the image is drawn, and kept (in the checkpoint) for later epochs; the
//! student still sees the augmented view. Cheaper per step after the first epoch, but the
//! targets no longer follow the augmentation (a weaker signal per step).

use super::{BuildContext, Method, MethodPlan, MethodSection, MethodSpec, StepContext};
use super::{StepOutput, Targets, ViewPlan};
use crate::augment::{eval_batch, nhwc_to_tensor, ViewRecipe, Views};
use crate::backbone::Backbone;
use crate::data::ImageStore;
use crate::error::SettingError;
use crate::head::Mlp;
use crate::loss::negative_cosine;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn::{self, ModuleT};
use tch::{CModule, Kind, Tensor};

/// How the student's projection is compared with the teacher's features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistillLoss {
    /// `1 − cos`: the direction of the features (their scale is free).
    Cosine,
    /// Mean squared error to the teacher's features scaled to unit RMS over the batch.
    Mse,
}

/// `[method.distill]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// The teacher: a TorchScript file (`--teacher FILE`). No default.
    pub teacher: String,
    /// "cosine" or "mse". Default "cosine".
    pub loss: DistillLoss,
    /// Compute each image's teacher features once, on its evaluation view. Default false.
    pub cache: bool,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            teacher: String::new(),
            loss: DistillLoss::Cosine,
            cache: false,
        }
    }
}

impl MethodSection for DistillConfig {
    const NAME: &'static str = "distill";
    const SUMMARY: &'static str =
        "distillation: the student learns a frozen TorchScript teacher's features (--teacher FILE)";
    const RUN_FILES: &'static [&'static str] = &[SHAPES_FILE];
}

/// The run file that keeps the teacher's feature dimension and the cache's size, so that a
/// run is rebuilt (zero-shot evaluation, which reads every variable) without its teacher.
const SHAPES_FILE: &str = "distill_shapes.json";

/// What [`SHAPES_FILE`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Shapes {
    /// D_t, the teacher's feature dimension.
    teacher_dim: i64,
    /// N, the rows of the feature cache; None without one.
    cached_images: Option<i64>,
}

impl MethodSpec for DistillConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // one view per image: the student's and (uncached) the teacher's
            targets: match self.cache {
                true => Targets::ImageIndices,
                false => Targets::Nothing,
            },
            views: ViewPlan::default(),
            similarity_matrix: false,
            // Data-parallel without the cache (a per-image loss, a frozen teacher); each rank
            // would fill its own cache.
            data_parallel: !self.cache,
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        if self.teacher.is_empty() {
            return Err(SettingError::Other(
                "method distill needs a teacher: pass --teacher FILE, a TorchScript encoder \
                 (`selfsup export --format torchscript` of a run, or scripts/export-teacher.py \
                 for a timm or torchvision model)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// One view per image: the first recipe's.
    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        let r = recipes.into_iter().next().ok_or("no view recipe")?;
        Ok(vec![Arc::new(r)])
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(Distill::new(vs, ctx, self)?))
    }
}

/// The teacher, loaded, with its feature dimension checked on a probe batch.
struct Teacher {
    module: CModule,
    dim: i64,
}

impl Teacher {
    /// Loads `path` on `device` in eval mode and runs it on two zero images of `side` px.
    fn load(path: &str, device: tch::Device, side: i64) -> anyhow::Result<Self> {
        let what = format!("the teacher {path} (method.distill.teacher)");
        anyhow::ensure!(
            std::path::Path::new(path).is_file(),
            "{what} does not exist: pass --teacher FILE, a TorchScript encoder"
        );
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            anyhow::anyhow!(
                "{what} is not a TorchScript module libtorch can load ({}): export one with \
                 `selfsup export --format torchscript` or scripts/export-teacher.py",
                first_line(&e.to_string())
            )
        })?;
        module.set_eval();
        let probe = Tensor::zeros([2, 3, side, side], (Kind::Float, device));
        let out = tch::no_grad(|| module.forward_ts(&[probe])).map_err(|e| {
            anyhow::anyhow!(
                "{what} does not take this run's views [N, 3, {side}, {side}] ({}): export it for \
                 {side}-px inputs (scripts/export-teacher.py --input-size {side}) or train at its \
                 size (--crop-size)",
                first_line(&e.to_string())
            )
        })?;
        match out.size().as_slice() {
            [2, d] if *d >= 1 => Ok(Teacher { module, dim: *d }),
            shape => anyhow::bail!(
                "{what} maps [2, 3, {side}, {side}] images to {shape:?}: a teacher must give one \
                 feature vector per image, [N, D] (pool or flatten its output when exporting it)"
            ),
        }
    }

    /// Features of normalised views [n, 3, S, S] → [n, D_t] (fp32, no gradient).
    fn features(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        let advice = "a teacher made for one input size needs every view at that size (no \
                      data.progressive_size, no --preset fast-cpu; --crop-size its size)";
        let what = "the teacher (method.distill.teacher)";
        let t = tch::no_grad(|| self.module.forward_ts(&[x.shallow_clone()])).map_err(|e| {
            let e = e.to_string();
            anyhow::anyhow!(
                "{what} fails on views {:?} ({}): {advice}",
                x.size(),
                first_line(&e)
            )
        })?;
        let want = [x.size()[0], self.dim];
        anyhow::ensure!(
            t.size() == want,
            "{what} maps views {:?} to {:?}, not {want:?}: {advice}",
            x.size(),
            t.size()
        );
        Ok(t.to_kind(Kind::Float).detach())
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Teacher features of each image's evaluation view, filled as images are first drawn:
/// `bank` [N, D_t] and `filled` \[N\] (1 once computed) in the store, so checkpoints keep them.
struct Cache {
    bank: Tensor,
    filled: Tensor,
    images: Arc<ImageStore>,
    view: ViewRecipe,
}

pub struct Distill {
    pub backbone: Backbone,
    pub projection: Mlp,
    /// None where nothing trains (evaluation rebuilds only the student).
    teacher: Option<Teacher>,
    cache: Option<Cache>,
    loss: DistillLoss,
    channels_last: bool,
    shapes: Shapes,
}

impl Distill {
    /// Student `backbone.*`, `projection.*` (to the teacher's dimension; hidden
    /// `model.projection_hidden`, default the teacher's dimension); the teacher is loaded only
    /// when training (`ctx.images` given). Without a teacher the projection is sized from
    /// `model.projection_dim` and restored from the checkpoint.
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: &DistillConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let backbone = ctx.backbone(&p)?;
        let side = ctx.input_side as i64;
        let teacher = match &ctx.images {
            Some(_) => Some(Teacher::load(&cfg.teacher, p.device(), side)?),
            None => None,
        };
        let shapes = match (&teacher, &ctx.restore_from) {
            (Some(t), _) => Shapes {
                teacher_dim: t.dim,
                cached_images: ctx
                    .images
                    .as_ref()
                    .filter(|_| cfg.cache)
                    .map(|i| i.len() as i64),
            },
            (None, Some(dir)) => {
                let path = dir.join(SHAPES_FILE);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "cannot read {}: a distill run keeps its teacher's shapes there",
                        path.display()
                    )
                })?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is damaged", path.display()))?
            }
            (None, None) => Shapes {
                teacher_dim: ctx.projection_dim,
                cached_images: None,
            },
        };
        let dt = shapes.teacher_dim;
        let d = backbone.out_dim();
        let projection = Mlp::simclr_projection(&(&p / "projection"), d, ctx.hidden_or(dt), dt)
            .map_err(anyhow::Error::msg)?;
        let bank = shapes.cached_images.map(|n| {
            (
                p.zeros_no_train("teacher_bank", &[n, dt]),
                p.zeros_no_train("teacher_filled", &[n]),
            )
        });
        let cache = match (bank, &ctx.images) {
            (Some((bank, filled)), Some(images)) => Some(Cache {
                bank,
                filled,
                images: images.clone(),
                view: ViewRecipe::eval(ctx.input_side),
            }),
            _ => None,
        };
        Ok(Distill {
            backbone,
            projection,
            teacher,
            cache,
            shapes,
            loss: cfg.loss,
            channels_last: ctx.channels_last,
        })
    }

    /// The teacher's targets for the batch: of `x` itself, or from the cache for images
    /// `idx` \[K\] (filling the rows not yet computed from their evaluation views).
    fn targets(&self, x: &Tensor, idx: Option<&Tensor>) -> anyhow::Result<Tensor> {
        let teacher = self.teacher.as_ref().ok_or_else(|| {
            anyhow::anyhow!("method distill was built without its teacher (nothing to train)")
        })?;
        let (Some(cache), Some(idx)) = (&self.cache, idx) else {
            return teacher.features(x);
        };
        let idx = idx.to_device(cache.bank.device());
        let have: Vec<f32> = Vec::try_from(cache.filled.index_select(0, &idx))?;
        let ids: Vec<i64> = Vec::try_from(&idx)?;
        let missing: Vec<usize> = ids
            .iter()
            .zip(&have)
            .filter(|(_, h)| **h == 0.0)
            .map(|(i, _)| *i as usize)
            .collect();
        if !missing.is_empty() {
            let s = cache.view.out_size;
            let mut buf = vec![0f32; missing.len() * s * s * 3];
            eval_batch(&cache.images, &missing, &cache.view, &mut buf);
            let views = nhwc_to_tensor(&buf, missing.len(), s, self.channels_last)
                .to_device(cache.bank.device());
            let feats = teacher.features(&views)?; // [m, D_t]
            let rows = Tensor::from_slice(&missing.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(cache.bank.device());
            tch::no_grad(|| {
                let _ = cache.bank.shallow_clone().index_copy_(0, &rows, &feats);
                let _ = cache.filled.shallow_clone().index_fill_(0, &rows, 1.0);
            });
        }
        Ok(cache.bank.index_select(0, &idx))
    }
}

/// The distillation loss of projections `p` and teacher features `t`:
/// `1 − mean_k cos(p_k, t_k)` (cosine) or `mean (p − t/s)²`, `s = √(mean t²)` (mse).
/// # Shapes
/// `p`, `t`: [K, D_t] → scalar
pub fn distill_loss(p: &Tensor, t: &Tensor, loss: DistillLoss) -> anyhow::Result<Tensor> {
    crate::loss::check_pair("projection", p, "teacher features", t, 1)?;
    Ok(match loss {
        DistillLoss::Cosine => negative_cosine(p, t)? + 1.0,
        DistillLoss::Mse => {
            let rms = t
                .square()
                .mean(Kind::Float)
                .sqrt()
                .clamp_min(1e-12)
                .detach();
            (p - t / rms).square().mean(Kind::Float)
        }
    })
}

impl Method for Distill {
    fn step(
        &mut self,
        views: &[Tensor],
        targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let x = &views[0]; // [K, 3, S, S]
        let t = self.targets(x, targets)?; // [K, D_t]
        let p = self
            .projection
            .forward_t(&self.backbone.forward_t(x, true), true); // [K, D_t]
        let loss = crate::dist::global_mean(&distill_loss(&p, &t, self.loss)?);
        Ok(StepOutput {
            loss,
            embeddings: p.detach(),
            embeddings_b: t,
            metrics: Vec::new(),
        })
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }

    fn run_files(&self) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
        Ok(vec![(SHAPES_FILE, serde_json::to_vec(&self.shapes)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::rows;

    #[test]
    fn the_losses_by_hand() {
        let t = rows(&[&[3.0, 4.0], &[0.0, 2.0]]);
        let p = rows(&[&[6.0, 8.0], &[1.0, 0.0]]);
        // cosines 1 and 0: 1 − ½
        let c = distill_loss(&p, &t, DistillLoss::Cosine)
            .unwrap()
            .double_value(&[]);
        assert!((c - 0.5).abs() < 1e-9, "{c}");
        // s = √(29 / 4); mean of the squared differences to t / s
        let s = (29.0f64 / 4.0).sqrt();
        let want = [(6.0, 3.0), (8.0, 4.0), (1.0, 0.0), (0.0, 2.0)]
            .iter()
            .map(|(p, t): &(f64, f64)| (p - t / s).powi(2))
            .sum::<f64>()
            / 4.0;
        let m = distill_loss(&p, &t, DistillLoss::Mse)
            .unwrap()
            .double_value(&[]);
        assert!((m - want).abs() < 1e-5, "{m} vs {want}");
        assert!(distill_loss(&p, &t.narrow(1, 0, 1), DistillLoss::Mse).is_err());
    }
}
