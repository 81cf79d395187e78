//! DINO (Caron et al. 2021, arXiv:2104.14294): self-distillation with no labels. A student
//! matches the centred, sharpened output of a momentum (EMA) teacher across views; the
//! teacher sees only the large views, the student all of them (multi-crop).

use super::ema::Ema;
use super::{Method, StepOutput};
use crate::backbone::ResNet;
use crate::config::TrainConfig;
use crate::head::DinoHead;
use crate::loss::cross_view_loss;
use crate::optim::cosine_schedule;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

pub struct Dino {
    pub backbone: ResNet,
    pub head: DinoHead,
    target_backbone: ResNet,
    target_head: DinoHead,
    target: Ema,
    /// c: [1, K] running mean of the teacher's outputs (in the store: checkpoints keep it).
    pub center: Tensor,
    student_temperature: f64,
    teacher_temperature: f64,
    center_momentum: f64,
    base_momentum: f64,
}

impl Dino {
    /// Student under `backbone.*`, `head.*`; teacher under `target.*`; `center` [1, K].
    /// Head: hidden `model.projection_hidden` (4 × the encoder's features), bottleneck
    /// `model.projection_dim`, K = `method.prototypes`.
    pub fn new(vs: &nn::VarStore, cfg: &TrainConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let e = anyhow::Error::msg;
        let r = cfg.model.resnet();
        let backbone = ResNet::new(&(&p / "backbone"), &r).map_err(e)?;
        let d = backbone.out_dim();
        let hidden = cfg.model.projection_hidden.unwrap_or(4 * d);
        let (bottleneck, k) = (cfg.model.projection_dim, cfg.method.prototypes as i64);
        let head = DinoHead::new(&(&p / "head"), d, hidden, bottleneck, k).map_err(e)?;
        let t = &p / "target";
        let target_backbone = ResNet::new(&(&t / "backbone"), &r).map_err(e)?;
        let target_head = DinoHead::new(&(&t / "head"), d, hidden, bottleneck, k).map_err(e)?;
        let target = Ema::new(vs, "target.").map_err(e)?;
        let center = p.zeros_no_train("center", &[1, k]);
        let m = &cfg.method;
        Ok(Dino {
            backbone,
            head,
            target_backbone,
            target_head,
            target,
            center,
            student_temperature: m.prototype_temperature,
            teacher_temperature: m.teacher_temperature,
            center_momentum: m.center_momentum,
            base_momentum: m.ema_momentum,
        })
    }
}

impl Method for Dino {
    /// Views 0 and 1 are the large ones, any further views the small multi-crops:
    /// ```text
    /// s_v = h(f(x_v))                                    student, every view   [K, P]
    /// t_i = softmax((h'(f'(x_i)) − c) / τ_t)             teacher, i ∈ {0, 1}, no gradient
    /// L = mean over i ∈ {0, 1}, v ≠ i of  −Σ_p t_ip log softmax(s_v / τ_s)_p
    /// c ← m_c · c + (1 − m_c) · mean of the teacher outputs over the batch
    /// ```
    fn step(&self, views: &[Tensor], _labels: Option<&Tensor>) -> anyhow::Result<StepOutput> {
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
        let targets: Vec<Tensor> = ((&teacher_out - &self.center) / self.teacher_temperature)
            .softmax(1, Kind::Float)
            .split(k, 0);
        let loss = cross_view_loss(&targets, &student, self.student_temperature)?;
        tch::no_grad(|| {
            let batch_mean = teacher_out.mean_dim([0i64].as_slice(), true, Kind::Float);
            let mut c = self.center.shallow_clone();
            let m = self.center_momentum;
            let _ = c.g_mul_scalar_(m).g_add_(&(batch_mean * (1.0 - m)));
        });
        // diagnostics on the encoder features: the head outputs are cosines over K prototypes
        let hd = h.detach();
        Ok(StepOutput {
            loss,
            embeddings: hd.narrow(0, 0, k),
            embeddings_b: hd.narrow(0, k, k),
        })
    }

    /// Teacher momentum from `ema_momentum` to 1 by cosine over the run (DINO: 0.996 → 1).
    fn after_step(&self, step: u64, total_steps: u64) {
        self.target
            .update(cosine_schedule(step, total_steps, self.base_momentum, 1.0));
    }

    fn encoder(&self) -> &ResNet {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{tiny_config, tiny_views, train_a_few_steps};
    use tch::Device;

    #[test]
    fn the_center_tracks_the_teacher_and_the_teacher_gets_no_gradient() {
        let mut cfg = tiny_config("dino");
        cfg.method.prototypes = 10;
        cfg.method.center_momentum = 0.5;
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Dino::new(&vs, &cfg).unwrap();
        let views = tiny_views(8, 4);
        let teacher = tch::no_grad(|| {
            let x = Tensor::cat(&views, 0);
            m.target_head
                .forward_t(&m.target_backbone.forward_t(&x, true), true)
        });
        // the same forward again inside step: BatchNorm in training mode gives the same output
        let out = m.step(&views, None).unwrap();
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
            .step(&multi, None)
            .unwrap()
            .loss
            .double_value(&[])
            .is_finite());
        train_a_few_steps(&vs, &m, &cfg);
    }
}
