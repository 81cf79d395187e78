//! DINO (Caron et al. 2021, arXiv:2104.14294): self-distillation with no labels. A student
//! matches the centred, sharpened output of a momentum (EMA) teacher across views; the
//! teacher sees only the large views, the student all of them (multi-crop).

use super::ema::Ema;
use super::swav::check_prototypes;
use super::MethodPlan;
use super::{
    positive, unit_interval, BuildContext, Method, MethodSection, MethodSpec, StepContext,
    StepOutput, ViewPlan,
};
use crate::backbone::Backbone;
use crate::error::SettingError;
use crate::head::DinoHead;
use crate::loss::cross_view_loss;
use crate::optim::cosine_schedule;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// `[method.dino]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoConfig {
    /// Output dimensions K of the head. Default 3000.
    pub prototypes: usize,
    /// Student temperature τ_s. Default 0.1.
    pub prototype_temperature: f64,
    /// Teacher temperature τ_t after the warm-up (sharpening). Default 0.07 (the paper: "a
    /// linear warm-up from 0.04 to 0.07 during the first 30 epochs").
    pub teacher_temperature: f64,
    /// Teacher temperature at step 0; τ_t rises linearly from it to `teacher_temperature`
    /// over `teacher_warmup_epochs`. Default 0.04.
    pub teacher_temperature_start: f64,
    /// Epochs of the teacher-temperature warm-up (fractions allowed; 0: none). Default 30.
    pub teacher_warmup_epochs: f64,
    /// Centre momentum m_c: `c ← m_c·c + (1 − m_c)·mean(teacher outputs)`. Default 0.9.
    pub center_momentum: f64,
    /// Starting momentum of the EMA teacher; it rises to 1 by a cosine schedule. Default 0.99.
    pub ema_momentum: f64,
}

impl Default for DinoConfig {
    fn default() -> Self {
        DinoConfig {
            prototypes: 3000,
            prototype_temperature: 0.1,
            teacher_temperature: 0.07,
            teacher_temperature_start: 0.04,
            teacher_warmup_epochs: 30.0,
            center_momentum: 0.9,
            ema_momentum: 0.99,
        }
    }
}

impl DinoConfig {
    /// τ_t at `epochs` epochs into the run:
    /// `τ_start + (τ_t − τ_start) · min(1, epochs / teacher_warmup_epochs)`.
    pub fn teacher_temperature_at(&self, epochs: f64) -> f64 {
        let w = self.teacher_warmup_epochs;
        let f = if w > 0.0 { (epochs / w).min(1.0) } else { 1.0 };
        self.teacher_temperature_start
            + (self.teacher_temperature - self.teacher_temperature_start) * f
    }
}

impl MethodSection for DinoConfig {
    const NAME: &'static str = "dino";
    const SUMMARY: &'static str =
        "student / EMA teacher, centring and sharpening, multi-crop, asymmetric views";
}

impl MethodSpec for DinoConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the cross-view loss; the centre moves by the global batch mean of the teacher outputs.
            data_parallel: true,
            views: ViewPlan {
                asymmetric: true,
                multi_crop: true,
            },
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        check_prototypes("dino", self.prototypes)?;
        positive(
            "method.dino.prototype_temperature",
            self.prototype_temperature,
        )?;
        positive("method.dino.teacher_temperature", self.teacher_temperature)?;
        positive(
            "method.dino.teacher_temperature_start",
            self.teacher_temperature_start,
        )?;
        let w = self.teacher_warmup_epochs;
        if !(w.is_finite() && w >= 0.0) {
            return Err(format!("method.dino.teacher_warmup_epochs is {w}: it must be ≥ 0").into());
        }
        unit_interval("method.dino.center_momentum", self.center_momentum)?;
        unit_interval("method.dino.ema_momentum", self.ema_momentum)
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(Dino::new(vs, ctx, self)?))
    }
}

pub struct Dino {
    pub backbone: Backbone,
    pub head: DinoHead,
    target_backbone: Backbone,
    target_head: DinoHead,
    target: Ema,
    /// c: [1, K] running mean of the teacher's outputs (in the store: checkpoints keep it).
    pub center: Tensor,
    cfg: DinoConfig,
}

impl Dino {
    /// Student under `backbone.*`, `head.*`; teacher under `target.*`; `center` [1, K].
    /// Head: hidden `model.projection_hidden` (4 × the encoder's features), bottleneck
    /// `model.projection_dim`, K = `method.prototypes`.
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: &DinoConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let e = anyhow::Error::msg;
        let backbone = ctx.backbone(&p)?;
        let d = backbone.out_dim();
        let hidden = ctx.hidden_or(4 * d);
        let (bottleneck, k) = (ctx.projection_dim, cfg.prototypes as i64);
        let head = DinoHead::new(&(&p / "head"), d, hidden, bottleneck, k).map_err(e)?;
        let t = &p / "target";
        let target_backbone = ctx.backbone(&t)?;
        let target_head = DinoHead::new(&(&t / "head"), d, hidden, bottleneck, k).map_err(e)?;
        let target = Ema::new(vs, "target.").map_err(e)?;
        let center = p.zeros_no_train("center", &[1, k]);
        Ok(Dino {
            backbone,
            head,
            target_backbone,
            target_head,
            target,
            center,
            cfg: cfg.clone(),
        })
    }
}

impl Method for Dino {
    /// Views 0 and 1 are the large ones, any further views the small multi-crops:
    /// ```text
    /// s_v = h(f(x_v))                                    student, every view   [K, P]
    /// t_i = softmax((h'(f'(x_i)) − c) / τ_t)             teacher, i ∈ {0, 1}, no gradient
    ///                                                    (τ_t after its warm-up schedule)
    /// L = mean over i ∈ {0, 1}, v ≠ i of  −Σ_p t_ip log softmax(s_v / τ_s)_p
    /// c ← m_c · c + (1 − m_c) · mean of the teacher outputs over the batch
    /// ```
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() >= 2,
            "DINO takes 2 large views (and optional small ones) per image, got {}",
            views.len()
        );
        let k = views[0].size()[0];
        let large = Tensor::cat(&views[..2], 0); // [2K, 3, H, W]
        let h = self.backbone.forward_t(&large, true); // [2K, D]
        let mut student = self.head.forward_t(&h, true).split(k, 0);
        if views.len() > 2 {
            let small = Tensor::cat(&views[2..], 0);
            let s = self
                .head
                .forward_t(&self.backbone.forward_t(&small, true), true);
            student.extend(s.split(k, 0));
        }
        let teacher_out = tch::no_grad(|| {
            self.target_head
                .forward_t(&self.target_backbone.forward_t(&large, true), true)
        }); // [2K, P]
        let teacher_temperature = self.cfg.teacher_temperature_at(ctx.epochs_done());
        let targets: Vec<Tensor> = ((&teacher_out - &self.center) / teacher_temperature)
            .softmax(1, Kind::Float)
            .split(k, 0);
        let loss = cross_view_loss(&targets, &student, self.cfg.prototype_temperature)?;
        let loss = crate::dist::global_mean(&loss); // data-parallel: the global batch's mean
        tch::no_grad(|| {
            // data-parallel: the global batch's mean (equal shards), the same centre on every rank
            let batch_mean = crate::dist::mean_over_ranks(&teacher_out.mean_dim(
                [0i64].as_slice(),
                true,
                Kind::Float,
            ));
            let mut c = self.center.shallow_clone();
            let m = self.cfg.center_momentum;
            let _ = c.g_mul_scalar_(m).g_add_(&(batch_mean * (1.0 - m)));
        });
        // diagnostics on the encoder features: the head outputs are cosines over K prototypes
        let hd = h.detach();
        Ok(StepOutput {
            loss,
            embeddings: hd.narrow(0, 0, k),
            embeddings_b: hd.narrow(0, k, k),
            metrics: Vec::new(),
        })
    }

    /// Teacher momentum from `ema_momentum` to 1 by cosine over the run (DINO: 0.996 → 1).
    fn after_step(&mut self, ctx: &StepContext) {
        self.target.update(cosine_schedule(
            ctx.step,
            ctx.total_steps,
            self.cfg.ema_momentum,
            1.0,
        ));
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, tiny_context, tiny_views, train_a_few_steps};
    use tch::Device;

    #[test]
    fn the_center_tracks_the_teacher_and_the_teacher_gets_no_gradient() {
        let cfg = DinoConfig {
            prototypes: 10,
            center_momentum: 0.5,
            ..Default::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = Dino::new(&vs, &tiny_context(), &cfg).unwrap();
        let views = tiny_views(8, 4);
        let teacher = tch::no_grad(|| {
            let x = Tensor::cat(&views, 0);
            m.target_head
                .forward_t(&m.target_backbone.forward_t(&x, true), true)
        });
        // the same forward again inside step: BatchNorm in training mode gives the same output
        let out = m.step(&views, None, &at(0, 1)).unwrap();
        let want = teacher.mean_dim([0i64].as_slice(), true, Kind::Float) * 0.5;
        assert!((m.center.copy() - want).abs().max().double_value(&[]) < 1e-5);
        out.loss.backward();
        let name = "head.last.weight";
        assert!(vs.variables()[name].grad().defined());
        assert!(!vs.variables()[&format!("target.{name}")].grad().defined());
        assert!(
            vs.variables().contains_key("center"),
            "checkpoints keep the centre"
        );
        let mut multi = views;
        multi.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        assert!(m
            .step(&multi, None, &at(1, 2))
            .unwrap()
            .loss
            .double_value(&[])
            .is_finite());
        train_a_few_steps(&vs, &mut m);
    }

    /// DINO on a (shallow) ViT: student and teacher are ViTs, small crops get resized position
    /// embeddings, every loss is finite and the student moves.
    #[test]
    fn trains_on_a_vit_with_small_crops() {
        let mut ctx = tiny_context();
        let mut v = crate::backbone::VitConfig::tiny(4, 16);
        (v.dim, v.depth, v.heads) = (32, 2, 2);
        ctx.backbone = crate::backbone::BackboneConfig::Vit(v);
        let cfg = DinoConfig {
            prototypes: 16,
            ..Default::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = Dino::new(&vs, &ctx, &cfg).unwrap();
        assert!(vs
            .variables()
            .contains_key("target.backbone.blocks.1.attn.qkv.weight"));
        let mut views = tiny_views(8, 2);
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        let mut opt = crate::optim::AdamW::new(&vs, (0.9, 0.999), 0.04);
        let w = vs.variables()["backbone.blocks.0.attn.qkv.weight"].copy();
        let mut losses = Vec::new();
        for s in 0..12 {
            let out = m.step(&views, None, &at(s, 12)).unwrap();
            losses.push(out.loss.double_value(&[]));
            opt.zero_grad();
            out.loss.backward();
            opt.step(1e-3);
            m.after_step(&at(s, 12));
        }
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        assert!(!vs.variables()["backbone.blocks.0.attn.qkv.weight"].equal(&w));
        assert!(losses[11] != losses[0], "{losses:?}");
    }

    #[test]
    fn the_teacher_temperature_warms_up_linearly_then_stays() {
        let cfg = DinoConfig {
            teacher_temperature_start: 0.04,
            teacher_temperature: 0.07,
            teacher_warmup_epochs: 30.0,
            ..Default::default()
        };
        assert!((cfg.teacher_temperature_at(0.0) - 0.04).abs() < 1e-12);
        assert!((cfg.teacher_temperature_at(15.0) - 0.055).abs() < 1e-12);
        assert!((cfg.teacher_temperature_at(45.0) - 0.07).abs() < 1e-12);
        let none = DinoConfig {
            teacher_warmup_epochs: 0.0,
            ..cfg
        };
        assert_eq!(none.teacher_temperature_at(0.0), 0.07);
    }
}
