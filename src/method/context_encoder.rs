//! Context encoder (Pathak et al. 2016, arXiv:1604.07379): hide a region of the image and
//! in-paint it from its context, with a reconstruction loss and an adversarial loss from a
//! discriminator trained in the same step (§3.2, Eq. 1–3):
//! ```text
//! x̃ = x ⊙ (1 − M)                       M: the hole [K, 1, S, S], centre or random square
//! x̂ = G(x̃) = g(f(x̃)),  c = x ⊙ (1 − M) + x̂ ⊙ M   the completed image
//! L_rec = Σ M ⊙ (x̂ − x)² / (3 Σ M)        mean squared error inside the hole
//! L_adv = BCE(D(c), 1)                    the generator fools the discriminator
//! L = λ_rec L_rec + λ_adv L_adv           (λ_rec 0.999, λ_adv 0.001, the paper's)
//! L_D = ½ [BCE(D(x), 1) + BCE(D(sg(c)), 0)]
//! ```
//! D (`disc.*`, three 4×4 stride-2 convolutions with LeakyReLU 0.2, mean pool, linear) is
//! trained by its own AdamW (Adam β (0.5, 0.999), DCGAN's) in `after_step`, once the
//! trainer's update has succeeded; its moments live in the store as `disc_opt.*`, so
//! checkpoints hold them. A non-finite L_D stops the step before any update.

use super::self_prediction::PICTURE_STEP;
use super::self_prediction::{check_crop_min_scale, pixel_views, square_hole, EncoderDecoder};
use super::StepFault;
use super::{positive, unit_interval, BuildContext, Method, MethodSection, MethodSpec};
use super::{MethodPlan, ParamPlan};
use super::{StepContext, StepOutput};
use crate::augment::{ViewRecipe, Views};
use crate::backbone::Backbone;
use crate::error::SettingError;
use crate::optim::{AdamW, Param};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn::{self, Module};
use tch::{Kind, Reduction, Tensor};

/// Where the hole is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// The central square (the paper's main setting).
    Center,
    /// A square anywhere ("random block", §3.3).
    Random,
}

/// `[method.context_encoder]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextEncoderConfig {
    /// "center" or "random". Default "random" (on 32 px a fixed centre teaches the encoder
    /// one place; the guide).
    pub region: Region,
    /// Side of the square hole as a fraction of the view's. Default 0.5 (the paper's 64 of
    /// 128 px).
    pub region_fraction: f64,
    /// λ_rec. Default 0.999.
    pub lambda_rec: f64,
    /// λ_adv. Default 0.001.
    pub lambda_adv: f64,
    /// The discriminator's learning rate (constant). Default 2e-4 (DCGAN's).
    pub disc_lr: f64,
    /// Smallest crop area. Default 0.2.
    pub crop_min_scale: f32,
}

impl Default for ContextEncoderConfig {
    fn default() -> Self {
        ContextEncoderConfig {
            region: Region::Random,
            region_fraction: 0.5,
            lambda_rec: 0.999,
            lambda_adv: 0.001,
            disc_lr: 2e-4,
            crop_min_scale: 0.2,
        }
    }
}

impl MethodSection for ContextEncoderConfig {
    const NAME: &'static str = "context_encoder";
    const SUMMARY: &'static str =
        "self-prediction: in-paint a hidden square, reconstruction + adversarial loss";
}

/// The discriminator's variables and its optimiser's state.
const DISC: &str = "disc";
const DISC_OPT: &str = "disc_opt";

impl MethodSpec for ContextEncoderConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: global means of the generator and discriminator losses; the discriminator's gradients are summed over the ranks before its own update.
            data_parallel: true,
            similarity_matrix: false,
            default_lr: Some(0.1),
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        let s = "method.context_encoder";
        unit_interval(&format!("{s}.region_fraction"), self.region_fraction)?;
        positive(&format!("{s}.region_fraction"), self.region_fraction)?;
        unit_interval(&format!("{s}.lambda_rec"), self.lambda_rec)?;
        unit_interval(&format!("{s}.lambda_adv"), self.lambda_adv)?;
        positive(&format!("{s}.disc_lr"), self.disc_lr)?;
        check_crop_min_scale("context_encoder", self.crop_min_scale)
    }

    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        pixel_views(recipes, self.crop_min_scale)
    }

    /// `backbone.*`, `decoder.*`, `disc.*`, `disc_opt.*`.
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        let net = EncoderDecoder::new(vs, ctx)?;
        let disc = discriminator(&(vs.root() / DISC));
        let params: Vec<Param> = crate::optim::trainable_by_name(vs)
            .into_iter()
            .filter(|(n, _)| n.starts_with("disc."))
            .map(|(n, t)| Param::scheduled(n, t))
            .collect();
        let o = vs.root() / DISC_OPT;
        let steps = o.zeros_no_train("step", &[1]);
        let opt = AdamW::with_state(
            params,
            (0.5, 0.999),
            0.0,
            |name, p| o.zeros_no_train(&name.replace('.', "_"), &p.size()),
            steps,
        );
        Ok(Box::new(ContextEncoder {
            net,
            disc,
            opt,
            pending: None,
            cfg: self.clone(),
            seed: ctx.seed,
        }))
    }
}

/// `[N, 3, S, S]` → logits [N, 1]: 4×4/2 convolutions 3 → 32 → 64 → 128 with LeakyReLU 0.2,
/// mean over positions, linear.
fn discriminator(p: &nn::Path) -> nn::Sequential {
    let c = nn::ConvConfig {
        stride: 2,
        padding: 1,
        ..Default::default()
    };
    let mut s = nn::seq();
    for (i, (a, b)) in [(3, 32), (32, 64), (64, 128)].into_iter().enumerate() {
        s = s
            .add(nn::conv2d(p / format!("conv{i}"), a, b, 4, c))
            .add_fn(|x| x.maximum(&(x * 0.2))); // LeakyReLU 0.2
    }
    s.add_fn(|x| x.mean_dim([2, 3].as_slice(), false, None))
        .add(nn::linear(p / "out", 128, 1, Default::default()))
}

pub struct ContextEncoder {
    net: EncoderDecoder,
    disc: nn::Sequential,
    opt: AdamW,
    /// L_D of the last step, updated in `after_step`.
    pending: Option<Tensor>,
    cfg: ContextEncoderConfig,
    seed: u64,
}

impl ContextEncoder {
    /// `(x̃, M)` of `x` at `step`.
    fn hide(&self, x: &Tensor, step: u64) -> (Tensor, Tensor) {
        let (k, s) = (x.size()[0], x.size()[2]);
        let random = self.cfg.region == Region::Random;
        let m = square_hole(k, s, self.cfg.region_fraction, random, self.seed, step);
        let m = crate::device::to_device(&m, x.device());
        (x * (1.0 - &m), m)
    }
}

fn bce(logits: &Tensor, target: f64) -> Tensor {
    logits.binary_cross_entropy_with_logits::<Tensor>(
        &logits.full_like(target),
        None,
        None,
        Reduction::Mean,
    )
}

impl Method for ContextEncoder {
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let x = views[0].contiguous();
        let (hidden, m) = self.hide(&x, ctx.step);
        let (recon, h) = self.net.forward(&hidden, true);
        // data-parallel: each a global mean (the same hole size in every image: equal weights)
        let mean = crate::dist::global_mean;
        let rec = mean(
            &(((&recon - &x).square() * &m).sum(Kind::Float)
                / (m.sum(Kind::Float) * 3.0).clamp_min(1.0)),
        );
        let completed = &hidden + &recon * &m;
        let adv = mean(&bce(&self.disc.forward(&completed), 1.0));
        let d_loss = mean(
            &((bce(&self.disc.forward(&x), 1.0)
                + bce(&self.disc.forward(&completed.detach()), 0.0))
                * 0.5),
        );
        let d = d_loss.double_value(&[]);
        if !d.is_finite() {
            self.pending = None;
            return Err(StepFault::Part {
                what: "discriminator loss",
                value: d,
            }
            .into());
        }
        let (r, a) = (rec.detach(), adv.detach());
        self.pending = Some(d_loss.shallow_clone());
        let loss = rec * self.cfg.lambda_rec + adv * self.cfg.lambda_adv;
        let h = h.detach();
        Ok(StepOutput {
            loss,
            embeddings: h.shallow_clone(),
            embeddings_b: h,
            metrics: vec![
                ("reconstruction_loss", r),
                ("adversarial_loss", a),
                ("discriminator_loss", d_loss.detach()),
            ],
        })
    }

    /// The discriminator's update on the step's L_D (the generator's backward also left
    /// gradients in D; they are cleared first).
    fn after_step(&mut self, _ctx: &StepContext) {
        if let Some(d_loss) = self.pending.take() {
            self.opt.zero_grad();
            d_loss.backward();
            let params: Vec<Tensor> = self
                .opt
                .params()
                .iter()
                .map(|(_, p)| p.shallow_clone())
                .collect();
            crate::dist::all_reduce_gradients(&params); // data-parallel: summed over the ranks
            self.opt.step(self.cfg.disc_lr);
        }
    }

    /// D is trained by the method's own optimiser, in `after_step`.
    fn param_plan(&self) -> ParamPlan {
        ParamPlan {
            own_update: self
                .opt
                .params()
                .iter()
                .map(|(_, t)| t.shallow_clone())
                .collect(),
            ..Default::default()
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.net.backbone
    }

    fn reconstruct(&self, x: &Tensor) -> Option<(Tensor, Tensor)> {
        tch::no_grad(|| {
            let (hidden, m) = self.hide(&x.contiguous(), PICTURE_STEP);
            let (recon, _) = self.net.forward(&hidden, false);
            Some((hidden.shallow_clone(), &hidden + recon * m))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, tiny_context, tiny_views};
    use crate::optim::Sgd;
    use tch::Device;

    #[test]
    fn generator_and_discriminator_both_learn_in_one_step() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = ContextEncoderConfig {
            lambda_adv: 0.5,
            disc_lr: 1e-3,
            ..Default::default()
        };
        let mut m = spec.build(&vs, &tiny_context()).unwrap();
        let views = vec![tiny_views(8, 5)[0].shallow_clone()];
        let plan = m.param_plan();
        assert!(!plan.own_update.is_empty(), "the trainer leaves D alone");
        let mut opt = Sgd::planned(plan.params(&vs, 0.0), 0.9, 0.0);
        let w = |n: &str| vs.variables()[n].copy();
        let (d0, g0) = (w("disc.conv0.weight"), w("backbone.conv1.weight"));
        let mut first = None;
        let mut last = Vec::new();
        for s in 0..15 {
            let out = m.step(&views, None, &at(s, 15)).unwrap();
            let g = &out.metrics;
            assert_eq!(g[2].0, "discriminator_loss");
            let (rec, d) = (g[0].1.double_value(&[]), g[2].1.double_value(&[]));
            first.get_or_insert((rec, d));
            last = vec![rec, d];
            opt.zero_grad();
            out.loss.backward();
            assert!(
                vs.variables()["backbone.conv1.weight"]
                    .grad()
                    .abs()
                    .sum(Kind::Float)
                    .double_value(&[])
                    > 0.0
            );
            opt.step(0.05);
            m.after_step(&at(s, 15));
        }
        assert!(!w("disc.conv0.weight").equal(&d0), "D did not move");
        assert!(!w("backbone.conv1.weight").equal(&g0), "G did not move");
        let (rec0, d_first) = first.unwrap();
        assert!(last[0] < rec0, "reconstruction {rec0} → {}", last[0]);
        assert!(
            (last[1] - d_first).abs() > 1e-3,
            "D loss did not move: {d_first}"
        );
        // D's optimiser state is in the store: checkpoints hold it
        let v = vs.variables();
        assert!(v["disc_opt.step"].double_value(&[0]) == 15.0);
        assert!(v
            .keys()
            .any(|k| k.starts_with("disc_opt.exp_avg_sq_disc_conv0")));
    }

    #[test]
    fn a_non_finite_discriminator_loss_stops_the_step() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = ContextEncoderConfig::default()
            .build(&vs, &tiny_context())
            .unwrap();
        tch::no_grad(|| {
            let _ = vs.variables()["disc.out.bias"]
                .shallow_clone()
                .fill_(f64::NAN);
        });
        let views = vec![tiny_views(4, 1)[0].shallow_clone()];
        let e = m.step(&views, None, &at(0, 1)).err().unwrap();
        let f = e.downcast::<StepFault>().unwrap();
        assert!(
            f.to_string().contains("discriminator loss became NaN"),
            "{f}"
        );
    }
}
