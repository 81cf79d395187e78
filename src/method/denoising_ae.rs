//! Denoising autoencoder (Vincent et al. 2008/2010, JMLR 11): corrupt the input, encode it,
//! decode, and reconstruct the clean input; "a good representation is one that can be obtained
//! robustly from a corrupted input and that will be useful for recovering the corresponding
//! clean input" (§3.1).
//! ```text
//! x̃ = x ⊙ (1 − m) + ε     m ~ Bernoulli(mask_fraction) per pixel (all channels; masking
//!                          noise, the pixel set to the data mean), ε ~ N(0, noise_std²)
//! x̂ = g(f(x̃))             f the encoder's feature map, g a conv (ResNet) or patch (ViT) decoder
//! L = mean (x̂ − x)²       over every pixel and channel
//! ```
//! Corruptions come from `(seed, step, index)`, in the views' normalised space.

use super::self_prediction::PICTURE_STEP;
use super::self_prediction::{check_crop_min_scale, pixel_noise, pixel_views, EncoderDecoder};
use super::MethodPlan;
use super::StepOutput;
use super::{unit_interval, BuildContext, Method, MethodSection, MethodSpec, StepContext};
use crate::augment::{ViewRecipe, Views};
use crate::backbone::Backbone;
use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::{nn, Tensor};

/// `[method.denoising_ae]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenoisingAeConfig {
    /// Fraction of pixels hidden (masking noise). Default 0.5.
    pub mask_fraction: f32,
    /// Std of the additive Gaussian noise, in normalised units (about 0.25 of the pixel range
    /// per unit). Default 0.5.
    pub noise_std: f32,
    /// Smallest crop area. Default 0.2.
    pub crop_min_scale: f32,
}

impl Default for DenoisingAeConfig {
    fn default() -> Self {
        DenoisingAeConfig {
            mask_fraction: 0.5,
            noise_std: 0.5,
            crop_min_scale: 0.2,
        }
    }
}

impl MethodSection for DenoisingAeConfig {
    const NAME: &'static str = "denoising_ae";
    const SUMMARY: &'static str =
        "self-prediction: reconstruct the clean image from a masked, noisy one";
}

impl MethodSpec for DenoisingAeConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the reconstruction loss.
            data_parallel: true,
            similarity_matrix: false,
            // SGD at 0.1 (as the pretext tasks; the guide).
            default_lr: Some(0.1),
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        unit_interval(
            "method.denoising_ae.mask_fraction",
            self.mask_fraction as f64,
        )?;
        if !(self.noise_std.is_finite() && self.noise_std >= 0.0) {
            return Err(format!(
                "method.denoising_ae.noise_std is {}: it must be ≥ 0",
                self.noise_std
            )
            .into());
        }
        check_crop_min_scale("denoising_ae", self.crop_min_scale)
    }

    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        pixel_views(recipes, self.crop_min_scale)
    }

    /// `backbone.*`, `decoder.*`.
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(DenoisingAe {
            net: EncoderDecoder::new(vs, ctx)?,
            cfg: self.clone(),
            seed: ctx.seed,
        }))
    }
}

pub struct DenoisingAe {
    net: EncoderDecoder,
    cfg: DenoisingAeConfig,
    seed: u64,
}

impl DenoisingAe {
    /// x̃ of `x` [K, 3, S, S] under the corruption of `step`.
    fn corrupt(&self, x: &Tensor, step: u64) -> Tensor {
        let (k, s) = (x.size()[0], x.size()[2]);
        let (m, eps) = pixel_noise(
            k,
            s,
            self.cfg.mask_fraction,
            self.cfg.noise_std,
            self.seed,
            step,
        );
        let on = |t: &Tensor| crate::device::to_device(t, x.device());
        x * (1.0 - on(&m)) + on(&eps)
    }
}

impl Method for DenoisingAe {
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let x = views[0].contiguous();
        let (recon, h) = self.net.forward(&self.corrupt(&x, ctx.step), true);
        let loss = crate::dist::global_mean(&(recon - &x).square().mean(tch::Kind::Float));
        let h = h.detach();
        Ok(StepOutput {
            loss,
            embeddings: h.shallow_clone(),
            embeddings_b: h,
            metrics: Vec::new(),
        })
    }

    fn encoder(&self) -> &Backbone {
        &self.net.backbone
    }

    fn reconstruct(&self, x: &Tensor) -> Option<(Tensor, Tensor)> {
        tch::no_grad(|| {
            let noisy = self.corrupt(&x.contiguous(), PICTURE_STEP);
            let (recon, _) = self.net.forward(&noisy, false);
            Some((noisy, recon))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, tiny_context, tiny_views};
    use tch::Device;

    #[test]
    fn a_few_steps_lower_the_reconstruction_error_and_corruption_is_reproducible() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = DenoisingAeConfig::default();
        let mut m = spec.build(&vs, &tiny_context()).unwrap();
        assert!(vs.variables().contains_key("decoder.up0.conv.weight"));
        let views = vec![tiny_views(8, 3)[0].shallow_clone()];
        let mut opt = crate::optim::Sgd::new(&vs, 0.9, 0.0);
        let first = m
            .step(&views, None, &at(0, 1))
            .unwrap()
            .loss
            .double_value(&[]);
        for s in 0..20 {
            let out = m.step(&views, None, &at(s, 20)).unwrap();
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.05);
        }
        let last = m
            .step(&views, None, &at(0, 1))
            .unwrap()
            .loss
            .double_value(&[]);
        assert!(last < first * 0.9, "loss {first} → {last}"); // iid noise images: a floor well above 0
        let (a, r) = m.reconstruct(&views[0]).unwrap();
        let (b, _) = m.reconstruct(&views[0]).unwrap();
        assert!(a.equal(&b));
        assert_eq!(r.size(), views[0].size());
    }
}
