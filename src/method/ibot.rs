//! Masked self-distillation: iBOT (Zhou et al. 2021, "iBOT: Image BERT Pre-Training with
//! Online Tokenizer", arXiv:2111.07832), with DINOv2's additions as settings (Oquab et al.
//! 2023, arXiv:2304.07193: Sinkhorn-Knopp centring, the KoLeo regulariser, half the images
//! masked). DINO's [CLS] loss across views, plus: the student sees its two large views with
//! block-wise masks (hidden patches replaced by a learned token inside the ViT), and each
//! hidden patch's output must match the EMA teacher's output for the same patch of the
//! unmasked view.
//! ```text
//! m_v = blockwise masks of the large views                       [2K, L]  (ratio U(0.1, 0.5))
//! student: [cls_v; p_v] = f(x_v with mask token under m_v)       every large view; small views
//!          unmasked, cls only; s = h(·) (DINO's head, shared by [CLS] and patches)
//! teacher: [cls'_v; p'_v] = f'(x_v), t = centre-and-sharpen(h'(·)) (centring c, c_p, or
//!          Sinkhorn-Knopp at τ_t), no gradient
//! L_cls   = DINO's cross-view loss of t(cls') against s(cls)
//! L_patch = 1/2K Σ_v Σ_{j ∈ m_v} (1/|m_v|) · (−Σ_p t(p'_vj)_p log softmax(s(p_vj)/τ_s)_p)
//! L = L_cls + patch_loss_weight · L_patch + koleo_weight · Σ_large views KoLeo(cls_v)
//! ```
//! Defaults are iBOT's, scaled to a CPU: 3000 prototypes (iBOT's 8192; DINO's default here),
//! every image masked at a ratio U(0.1, 0.5), τ_t 0.04 → 0.07 over 30 epochs, τ_s 0.1, teacher
//! momentum 0.996 → 1 (cosine), AdamW at 5e-4 (per 256 images), the head shared by [CLS] and patches (iBOT's `shared_head`,
//! DINOv2's `separate_head = false`). DINOv2: `--set method.centering="sinkhorn"
//! --set method.koleo_weight=0.1 --set method.mask_probability=0.5`. Difference: the patch
//! centre is the running mean of the teacher's outputs on the hidden patches (the head runs on
//! those only; iBOT centres with every patch).

use super::block_masks::blockwise;
use super::dino::DinoConfig;
use super::ema::Ema;
use super::sinkhorn::sinkhorn;
use super::swav::check_prototypes;
use super::{positive, unit_interval, BuildContext, Method, MethodSection, MethodSpec};
use super::{MethodPlan, ParamPlan, StepContext, StepOutput, ViewPlan};
use crate::backbone::{Backbone, Vit};
use crate::error::SettingError;
use crate::head::DinoHead;
use crate::loss::{check_positive, cross_view_loss, koleo, LossError};
use crate::optim::{cosine_schedule, OptimizerName};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// How the teacher's outputs are centred before the softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Centering {
    /// DINO's running centre: `softmax((t − c) / τ_t)`.
    Center,
    /// DINOv2's Sinkhorn-Knopp (3 iterations) on `t / τ_t`: an equipartition of the batch.
    Sinkhorn,
}

/// `[method.ibot]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IbotConfig {
    /// Output dimensions of the head. Default 3000.
    pub prototypes: usize,
    /// Student temperature τ_s. Default 0.1.
    pub prototype_temperature: f64,
    /// Teacher temperature τ_t after the warm-up. Default 0.07.
    pub teacher_temperature: f64,
    /// Teacher temperature at step 0. Default 0.04.
    pub teacher_temperature_start: f64,
    /// Epochs of the teacher-temperature warm-up. Default 30.
    pub teacher_warmup_epochs: f64,
    /// Momentum of the [CLS] and patch centres. Default 0.9.
    pub center_momentum: f64,
    /// Starting momentum of the EMA teacher; it rises to 1 by cosine. Default 0.996.
    pub ema_momentum: f64,
    /// Range of the fraction of a masked image's patches hidden. Default [0.1, 0.5].
    pub mask_ratio: (f64, f64),
    /// Probability that an image is masked at all (DINOv2: 0.5). Default 1.
    pub mask_probability: f64,
    /// Weight of the masked-patch loss. Default 1.
    pub patch_loss_weight: f64,
    /// "center" (DINO, iBOT) or "sinkhorn" (DINOv2). Default "center".
    pub centering: Centering,
    /// Weight of the KoLeo regulariser on the student's [CLS] features (DINOv2: 0.1). Default 0.
    pub koleo_weight: f64,
}

impl Default for IbotConfig {
    fn default() -> Self {
        let d = DinoConfig::default();
        IbotConfig {
            prototypes: d.prototypes,
            prototype_temperature: d.prototype_temperature,
            teacher_temperature: d.teacher_temperature,
            teacher_temperature_start: d.teacher_temperature_start,
            teacher_warmup_epochs: d.teacher_warmup_epochs,
            center_momentum: d.center_momentum,
            ema_momentum: 0.996,
            mask_ratio: (0.1, 0.5),
            mask_probability: 1.0,
            patch_loss_weight: 1.0,
            centering: Centering::Center,
            koleo_weight: 0.0,
        }
    }
}

impl IbotConfig {
    /// DINO's settings of the [CLS] part (its checks and teacher-temperature schedule).
    fn dino(&self) -> DinoConfig {
        DinoConfig {
            prototypes: self.prototypes,
            prototype_temperature: self.prototype_temperature,
            teacher_temperature: self.teacher_temperature,
            teacher_temperature_start: self.teacher_temperature_start,
            teacher_warmup_epochs: self.teacher_warmup_epochs,
            center_momentum: self.center_momentum,
            ema_momentum: self.ema_momentum,
        }
    }
}

impl MethodSection for IbotConfig {
    const NAME: &'static str = "ibot";
    const SUMMARY: &'static str =
        "masked self-distillation (iBOT; DINOv2's settings): DINO plus hidden patches matched to the teacher's (needs --backbone vit_*)";
}

impl MethodSpec for IbotConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel with running centres (global means, as DINO); Sinkhorn-Knopp would
            // need sums over every rank's batch, which this build does not gather.
            data_parallel: self.centering == Centering::Center,
            similarity_matrix: false,
            views: ViewPlan {
                asymmetric: true,
                multi_crop: true,
            },
            // iBOT's (and DINO's ViT) optimiser: AdamW at 5e-4 per 256 images
            default_optimizer: OptimizerName::Adamw,
            default_lr: Some(5e-4),
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        check_prototypes("ibot", self.prototypes)?;
        let dino = self.dino();
        dino.check().map_err(|e| {
            SettingError::Other(e.to_string().replace("method.dino.", "method.ibot."))
        })?;
        let (lo, hi) = self.mask_ratio;
        if !(lo > 0.0 && lo <= hi && hi < 1.0) {
            return Err(SettingError::out_of_range(
                "method.ibot.mask_ratio",
                format!("[{lo}, {hi}]"),
                "it must be [lo, hi] with 0 < lo ≤ hi < 1 (iBOT's is [0.1, 0.5])",
            ));
        }
        unit_interval("method.ibot.mask_probability", self.mask_probability)?;
        positive("method.ibot.patch_loss_weight", self.patch_loss_weight)?;
        match self.koleo_weight.is_finite() && self.koleo_weight >= 0.0 {
            true => Ok(()),
            false => Err(SettingError::out_of_range(
                "method.ibot.koleo_weight",
                self.koleo_weight,
                "it must be ≥ 0 (DINOv2's is 0.1)",
            )),
        }
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(Ibot::new(vs, ctx, self)?))
    }
}

/// iBOT's masked-patch distillation over the hidden patches of a batch of `images` views:
/// ```text
/// L = 1/images · Σ_j w_j · (−Σ_p t_jp · log softmax(s_j / τ)_p)
/// ```
/// with `w_j = 1 / (hidden patches of patch j's image)`: each masked image weighs the same,
/// an image without hidden patches adds 0.
/// # Shapes
/// `targets`, `scores`: [n, P]; `weights`: \[n\] → scalar
pub fn masked_patch_distillation(
    targets: &Tensor,
    scores: &Tensor,
    weights: &Tensor,
    images: i64,
    temperature: f64,
) -> Result<Tensor, LossError> {
    check_positive("temperature", temperature)?;
    crate::loss::check_shape("scores", scores, &targets.size())?;
    let ce = -(targets * (scores / temperature).log_softmax(1, Kind::Float)).sum_dim_intlist(
        [1i64].as_slice(),
        false,
        Kind::Float,
    ); // [n]
    Ok((ce * weights).sum(Kind::Float) / images.max(1) as f64)
}

pub struct Ibot {
    pub backbone: Backbone,
    pub head: DinoHead,
    target_backbone: Backbone,
    target_head: DinoHead,
    target: Ema,
    mask_token: Tensor,
    /// [1, P] running centres of the teacher's [CLS] and patch outputs (in the store).
    center: Tensor,
    patch_center: Tensor,
    cfg: IbotConfig,
    seed: u64,
}

impl Ibot {
    /// Student `backbone.*`, `head.*`, `mask_token`; teacher `target.*`; centres.
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: &IbotConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let e = anyhow::Error::msg;
        let backbone = ctx.backbone(&p)?;
        let d = backbone
            .as_vit()
            .context("method ibot needs a ViT encoder: pass --backbone vit_tiny (or vit_small)")?
            .config
            .dim;
        let (hidden, bottleneck, k) = (ctx.hidden_or(4 * d), ctx.projection_dim, cfg.prototypes);
        let head = DinoHead::new(&(&p / "head"), d, hidden, bottleneck, k as i64).map_err(e)?;
        let t = &p / "target";
        let target_backbone = ctx.backbone(&t)?;
        let target_head =
            DinoHead::new(&(&t / "head"), d, hidden, bottleneck, k as i64).map_err(e)?;
        let target = Ema::new(vs, "target.").map_err(e)?;
        let normal = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        Ok(Ibot {
            mask_token: p.var("mask_token", &[1, 1, d], normal),
            center: p.zeros_no_train("center", &[1, k as i64]),
            patch_center: p.zeros_no_train("patch_center", &[1, k as i64]),
            backbone,
            head,
            target_backbone,
            target_head,
            target,
            cfg: cfg.clone(),
            seed: ctx.seed,
        })
    }

    fn vit(b: &Backbone) -> &Vit {
        b.as_vit().expect("checked at build")
    }

    /// Teacher outputs [n, P] → soft targets (rows sum to 1) by the configured centring at
    /// τ_t; a running `centre` moves towards the outputs' (global) mean.
    fn soft_targets(&self, out: &Tensor, centre: &Tensor, tau: f64) -> Tensor {
        if self.cfg.centering == Centering::Sinkhorn {
            return sinkhorn(out, tau, 3);
        }
        let t = ((out - centre) / tau).softmax(1, Kind::Float);
        let mean =
            crate::dist::mean_over_ranks(&out.mean_dim([0i64].as_slice(), true, Kind::Float));
        let m = self.cfg.center_momentum;
        let _ = centre
            .shallow_clone()
            .g_mul_scalar_(m)
            .g_add_(&(mean * (1.0 - m)));
        t
    }
}

impl Method for Ibot {
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() >= 2,
            "iBOT takes 2 large views (and optional small ones)"
        );
        let (vit, tvit) = (Self::vit(&self.backbone), Self::vit(&self.target_backbone));
        let k = views[0].size()[0];
        let large = Tensor::cat(&views[..2], 0); // [2K, 3, S, S]
        let (l, depth) = (vit.config.patches(), vit.config.depth);
        let cfg = &self.cfg;
        let mask = blockwise(
            2 * k,
            vit.config.grid(),
            (cfg.mask_ratio, cfg.mask_probability),
            4,
            self.seed,
            ctx.step,
        );
        let mask = crate::device::to_device(&mask, large.device()); // [2K, L]
        let masked = vit.embed_patches_masked(&large, &mask, &self.mask_token);
        let tokens = vit.encode_tokens(&vit.prepend_class_token(&masked), depth); // [2K, 1 + L, D]
        let d = tokens.size()[2];
        let cls = tokens.select(1, 0); // [2K, D]
        let mut student = self.head.forward_t(&cls, true).split(k, 0);
        if views.len() > 2 {
            let small = self.backbone.forward_t(&Tensor::cat(&views[2..], 0), true);
            student.extend(self.head.forward_t(&small, true).split(k, 0));
        }
        let ids = mask.view([-1]).nonzero().squeeze_dim(1); // [n]: hidden patches, flat
        let n = ids.size()[0];
        let flat = |t: &Tensor| {
            t.narrow(1, 1, l)
                .reshape([2 * k * l, d])
                .index_select(0, &ids)
        };
        let tau_t = cfg.dino().teacher_temperature_at(ctx.epochs_done());
        let (teacher_cls, teacher_patches) = tch::no_grad(|| {
            let t = tvit.encode_tokens(
                &tvit.prepend_class_token(&tvit.embed_patches(&large)),
                depth,
            );
            let cls = self.target_head.forward_t(&t.select(1, 0), true);
            // BatchNorm in the head needs ≥ 2 rows
            let patches = (n >= 2).then(|| self.target_head.forward_t(&flat(&t), true));
            (cls, patches)
        });
        let targets =
            tch::no_grad(|| self.soft_targets(&teacher_cls, &self.center, tau_t)).split(k, 0);
        let tau_s = cfg.prototype_temperature;
        let mut loss = cross_view_loss(&targets, &student, tau_s)?;
        if let Some(tp) = teacher_patches {
            let tp = tch::no_grad(|| self.soft_targets(&tp, &self.patch_center, tau_t));
            let sp = self.head.forward_t(&flat(&tokens), true); // [n, P]
            let counts = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float); // [2K]
            let weights = counts
                .index_select(0, &ids.divide_scalar_mode(l, "floor"))
                .reciprocal();
            loss += masked_patch_distillation(&tp, &sp, &weights, 2 * k, tau_s)?
                * cfg.patch_loss_weight;
        }
        if cfg.koleo_weight > 0.0 {
            loss +=
                (koleo(&cls.narrow(0, 0, k))? + koleo(&cls.narrow(0, k, k))?) * cfg.koleo_weight;
        }
        let hd = cls.detach();
        Ok(StepOutput {
            loss: crate::dist::global_mean(&loss),
            embeddings: hd.narrow(0, 0, k),
            embeddings_b: hd.narrow(0, k, k),
            metrics: vec![("masked_patches", Tensor::from(n as f64 / (2 * k) as f64))],
        })
    }

    /// Teacher momentum from `ema_momentum` to 1 by cosine.
    fn after_step(&mut self, ctx: &StepContext) {
        let m = cosine_schedule(ctx.step, ctx.total_steps, self.cfg.ema_momentum, 1.0);
        self.target.update(m);
    }

    /// The mask token is not decayed.
    fn param_plan(&self) -> ParamPlan {
        ParamPlan {
            no_decay: vec![self.mask_token.shallow_clone()],
            ..Default::default()
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::{BackboneConfig, VitConfig};
    use crate::method::testing::{at, tiny_context, tiny_views};
    use tch::Device;

    fn tiny_vit_context() -> BuildContext {
        let mut ctx = tiny_context();
        let mut v = VitConfig::tiny(4, 16);
        (v.dim, v.depth, v.heads) = (32, 2, 2);
        ctx.backbone = BackboneConfig::Vit(v);
        ctx
    }

    #[test]
    fn the_patch_loss_weighs_each_masked_image_equally() {
        tch::manual_seed(0);
        let t = Tensor::randn([3, 5], (Kind::Float, Device::Cpu)).softmax(1, Kind::Float);
        let s = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
        // patches 0, 1 from image 0 (2 hidden), patch 2 from image 1 (1 hidden); 4 images
        let w = Tensor::from_slice(&[0.5f32, 0.5, 1.0]);
        let got = masked_patch_distillation(&t, &s, &w, 4, 0.1)
            .unwrap()
            .double_value(&[]);
        let ce = |j: i64| -> f64 {
            let lp = (s.get(j) / 0.1).log_softmax(0, Kind::Float);
            -(t.get(j) * lp).sum(Kind::Float).double_value(&[])
        };
        let want = ((ce(0) + ce(1)) / 2.0 + ce(2)) / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let e = masked_patch_distillation(&t, &s.narrow(0, 0, 2), &w, 4, 0.1).unwrap_err();
        assert!(e.to_string().contains("scores"), "{e}");
    }

    #[test]
    fn trains_with_both_centrings_and_koleo_the_teacher_gets_no_gradient() {
        for (centering, koleo_weight) in [(Centering::Center, 0.0), (Centering::Sinkhorn, 0.1)] {
            let cfg = IbotConfig {
                prototypes: 16,
                centering,
                koleo_weight,
                ..Default::default()
            };
            let vs = nn::VarStore::new(Device::Cpu);
            let mut m = Ibot::new(&vs, &tiny_vit_context(), &cfg).unwrap();
            let mut views = tiny_views(8, 2);
            views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
            let mut opt = crate::optim::AdamW::new(&vs, (0.9, 0.999), 0.04);
            let token = vs.variables()["mask_token"].copy();
            for s in 0..6 {
                let out = m.step(&views, None, &at(s, 6)).unwrap();
                assert!(out.loss.double_value(&[]).is_finite());
                opt.zero_grad();
                out.loss.backward();
                if s == 0 {
                    let v = vs.variables();
                    assert!(!v["target.head.last.weight"].grad().defined());
                    assert!(
                        v["mask_token"]
                            .grad()
                            .abs()
                            .sum(Kind::Float)
                            .double_value(&[])
                            > 0.0
                    );
                }
                opt.step(1e-3);
                m.after_step(&at(s, 6));
            }
            assert!(!vs.variables()["mask_token"].equal(&token));
            let moved = vs.variables()["patch_center"]
                .abs()
                .sum(Kind::Float)
                .double_value(&[]);
            assert_eq!(moved > 0.0, centering == Centering::Center, "{centering:?}");
        }
        let e = IbotConfig::default()
            .build(&nn::VarStore::new(Device::Cpu), &tiny_context())
            .err()
            .unwrap();
        assert!(e.to_string().contains("--backbone vit_tiny"), "{e}");
        let bad = IbotConfig {
            teacher_temperature: 0.0,
            ..Default::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("method.ibot.teacher_temperature"), "{e}");
    }
}
