//! DeepCluster (Caron et al. 2018, arXiv:1807.05520) in its v2 form (Caron et al. 2020,
//! arXiv:2006.09882, appendix; facebookresearch/swav `main_deepclusterv2.py`): k-means
//! pseudo-labels of every training image, re-clustered at the start of each epoch, and a
//! classifier whose weights are the frozen cluster centroids.
//!
//! ```text
//! bank B [N, D]: one unit embedding per training image (filled before the first step, then
//!                each step writes the first view's embeddings of its images)
//! epoch start:   (C [P, D], a \[N\]) = spherical_kmeans(B, P, 10 iterations)
//! step:          z_v = g(f(x_v)) / ‖·‖ for every view v (2 large + optional small crops);
//!                L = mean_v CE(z_v Cᵀ / τ, a[idx])
//! ```
//! C gets no gradient: only the encoder f and the projection g learn, towards their image's
//! cluster. P is `method.deepcluster.prototypes`, τ `method.deepcluster.prototype_temperature`.
//! Unlike the reference, one clustering (the reference averages three heads of 3000) and one
//! bank per image (the reference keeps one per large view). The bank, centroids, assignments
//! and the step of the last clustering are non-trainable variables, so checkpoints keep them
//! and a resumed run continues exactly.

use super::kmeans::spherical_kmeans;
use super::swav::check_prototypes;
use super::MethodPlan;
use super::{
    positive, BuildContext, Method, MethodSection, MethodSpec, StepContext, StepOutput, Targets,
    ViewPlan,
};
use crate::augment::{map_eval_batches, ViewRecipe};
use crate::backbone::Backbone;
use crate::data::ImageStore;
use crate::error::SettingError;
use crate::head::Mlp;
use crate::loss::l2_normalize;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// k-means iterations per clustering (DeepCluster-v2's reference setting).
pub const KMEANS_ITERATIONS: usize = 10;

/// `[method.deepcluster]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepClusterConfig {
    /// k-means clusters P, at most one per training image. Default 3000 (each of the
    /// reference's DeepCluster-v2 heads).
    pub prototypes: usize,
    /// Temperature τ of the softmax over centroid scores. Default 0.1.
    pub prototype_temperature: f64,
}

impl Default for DeepClusterConfig {
    fn default() -> Self {
        DeepClusterConfig {
            prototypes: 3000,
            prototype_temperature: 0.1,
        }
    }
}

impl MethodSection for DeepClusterConfig {
    const NAME: &'static str = "deepcluster";
    const SUMMARY: &'static str =
        "DeepCluster v2: k-means pseudo-labels of a memory bank, re-clustered every epoch";
}

impl MethodSpec for DeepClusterConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the loss; every rank writes the gathered global batch into its bank (each builds and clusters the same bank).
            data_parallel: true,
            targets: Targets::ImageIndices,
            views: ViewPlan {
                asymmetric: false,
                multi_crop: true,
            },
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        check_prototypes("deepcluster", self.prototypes)?;
        positive(
            "method.deepcluster.prototype_temperature",
            self.prototype_temperature,
        )
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(DeepCluster::new(&vs.root(), ctx, self)?))
    }
}

pub struct DeepCluster {
    pub backbone: Backbone,
    /// g: `Linear(d, hidden) → BN → ReLU → Linear(hidden, projection_dim)`.
    pub projection: Mlp,
    clusters: usize,
    temperature: f64,
    seed: u64,
    batch_size: usize,
    channels_last: bool,
    images: Arc<ImageStore>,
    /// Side of the views the bank is embedded from.
    input_side: usize,
    /// B [N, D] (`deepcluster.bank`).
    bank: Tensor,
    /// C [P, D] (`deepcluster.centroids`).
    centroids: Tensor,
    /// a \[N\] as floats (`deepcluster.assignments`; exact, P ≤ 65536).
    assignments: Tensor,
    /// [1]: the step whose start last clustered the bank; −1 before the bank is filled.
    clustered_at: Tensor,
    /// The first view's embeddings [K, D] and image indices \[K\] of the last step, written to
    /// the bank in `after_step` (so a step stopped by a fault changes nothing).
    pending: Option<(Tensor, Tensor)>,
}

impl DeepCluster {
    /// Variables `backbone.*` and `projection.*` (SimCLR's; hidden width
    /// `model.projection_hidden`, default the encoder's features) and the non-trainable
    /// `deepcluster.*` state. Refuses more clusters than training images.
    pub fn new(p: &nn::Path, ctx: &BuildContext, cfg: &DeepClusterConfig) -> anyhow::Result<Self> {
        let Some(images) = ctx.images.clone() else {
            anyhow::bail!(
                "DeepCluster keeps a memory bank of the training images: build it with them"
            );
        };
        let n = images.len();
        anyhow::ensure!(
            cfg.prototypes <= n,
            "method.deepcluster.prototypes is {} but the training split has only {n} images: \
             DeepCluster needs at most one cluster per image; pass --set method.prototypes=<at most {n}>",
            cfg.prototypes
        );
        let (backbone, projection) = ctx.encoder_and_projection(p)?;
        let out = ctx.projection_dim;
        let state = p / "deepcluster";
        let clustered_at = state.zeros_no_train("clustered_at", &[1]);
        let _ = tch::no_grad(|| clustered_at.shallow_clone().fill_(-1.0));
        Ok(DeepCluster {
            backbone,
            projection,
            clusters: cfg.prototypes,
            temperature: cfg.prototype_temperature,
            seed: ctx.seed,
            batch_size: ctx.batch_size,
            channels_last: ctx.channels_last,
            bank: state.zeros_no_train("bank", &[n as i64, out]),
            centroids: state.zeros_no_train("centroids", &[cfg.prototypes as i64, out]),
            assignments: state.zeros_no_train("assignments", &[n as i64]),
            clustered_at,
            images,
            input_side: ctx.input_side,
            pending: None,
        })
    }

    /// Unit embeddings `g(f(x)) / ‖·‖` of a batch [B, 3, S, S] → [B, D] (training mode).
    fn embed(&self, x: &Tensor) -> Tensor {
        l2_normalize(
            &self
                .projection
                .forward_t(&self.backbone.forward_t(x, true), true),
        )
    }

    /// Embeds every training image (normalised, uncropped; no gradient) with BatchNorm on
    /// batch statistics, as in training: the initial bank [N, D]. Every batch has the step's
    /// size. (This forward pass also moves the BatchNorm running statistics, which only
    /// evaluation uses.)
    fn embed_all(&self) -> Tensor {
        let images = &self.images;
        let recipe = ViewRecipe::eval(self.input_side);
        let b = self.batch_size.clamp(2, images.len().max(2));
        let parts = tch::no_grad(|| {
            map_eval_batches(images, &recipe, b, self.channels_last, true, |x| {
                self.embed(&crate::device::to_device(x, self.backbone.device()))
            })
        });
        Tensor::cat(&parts, 0)
    }

    /// Clusters the bank at step `step` (the seed of the initial centroids).
    fn recluster(&mut self, step: u64) {
        let seed = self.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (centroids, assignments) =
            spherical_kmeans(&self.bank, self.clusters, KMEANS_ITERATIONS, seed);
        tch::no_grad(|| {
            self.centroids.copy_(&centroids);
            self.assignments.copy_(&assignments.to_kind(Kind::Float));
            let _ = self.clustered_at.fill_(step as f64);
        });
    }

    /// The current cluster of every training image \[N\] (i64).
    pub fn assignments(&self) -> Tensor {
        self.assignments.to_kind(Kind::Int64)
    }

    /// The step whose start last clustered the bank; None before the first step.
    pub fn clustered_at(&self) -> Option<u64> {
        let s = self.clustered_at.double_value(&[0]);
        (s >= 0.0).then_some(s as u64)
    }

    /// The memory bank [N, D].
    pub fn bank(&self) -> Tensor {
        self.bank.shallow_clone()
    }
}

impl Method for DeepCluster {
    /// `targets` \[K\] are the batch's image indices; views 0 and 1 are the large ones, any
    /// further views small multi-crops (each size its own batch through the network). Before
    /// the first step the bank is filled and clustered; at every later epoch start (other than
    /// the one last clustered at) it is re-clustered; then `L = (1/V) Σ_v CE(z_v Cᵀ / τ, a[idx])`.
    fn step(
        &mut self,
        views: &[Tensor],
        targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() >= 2,
            "DeepCluster takes 2 large views (and optional small ones) per image, got {}",
            views.len()
        );
        let Some(idx) = targets else {
            anyhow::bail!("DeepCluster needs the image indices of the batch");
        };
        let k = views[0].size()[0];
        anyhow::ensure!(
            idx.size() == [k],
            "DeepCluster: {} image indices for {k} images",
            idx.size().first().copied().unwrap_or(0)
        );
        let n = self.bank.size()[0];
        // the indices come from the loader; checked where reading them costs no device wait
        if idx.device() == tch::Device::Cpu {
            let (lo, hi) = (idx.min().int64_value(&[]), idx.max().int64_value(&[]));
            anyhow::ensure!(
                lo >= 0 && hi < n,
                "DeepCluster: image index {} outside the bank of {n} images",
                if lo < 0 { lo } else { hi }
            );
        }
        let s = ctx.step;
        match self.clustered_at() {
            None => {
                let bank = self.embed_all();
                tch::no_grad(|| self.bank.copy_(&bank));
                self.recluster(s);
            }
            Some(at) if at != s && ctx.starts_epoch() => self.recluster(s),
            Some(_) => {}
        }
        let mut z = vec![self.embed(&Tensor::cat(&views[..2], 0))]; // [2K, D]
        if views.len() > 2 {
            z.push(self.embed(&Tensor::cat(&views[2..], 0))); // [nK, D]
        }
        let z_all = Tensor::cat(&z, 0); // [VK, D]
        let logits = z_all.matmul(&self.centroids.tr()) / self.temperature; // [VK, P]
        let y = self
            .assignments
            .index_select(0, idx)
            .to_kind(Kind::Int64)
            .repeat([views.len() as i64]); // [VK]
        let loss = crate::dist::global_mean(&logits.cross_entropy_for_logits(&y));
        let za = z[0].narrow(0, 0, k).detach();
        // data-parallel: the global batch's rows and indices, the same bank on every rank
        let gathered = (crate::dist::gather_rows(&za), crate::dist::gather_rows(idx));
        self.pending = Some(gathered);
        Ok(StepOutput {
            loss,
            embeddings: za,
            embeddings_b: z[0].narrow(0, k, k).detach(),
            metrics: Vec::new(),
        })
    }

    /// Writes the step's first-view embeddings into the bank rows of its images.
    fn after_step(&mut self, _ctx: &StepContext) {
        if let Some((z, idx)) = self.pending.take() {
            tch::no_grad(|| {
                let _ = self.bank.index_copy_(0, &idx, &z);
            });
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{tiny_context, tiny_views};
    use super::*;
    use crate::optim::Sgd;
    use tch::Device;

    /// `n` random 16×16 images.
    fn store(n: usize, seed: u64) -> Arc<ImageStore> {
        let mut rng = crate::rng::Rng::new(seed);
        Arc::new(ImageStore::uniform(
            16,
            16,
            (0..n * 16 * 16 * 3).map(|_| rng.below(256) as u8).collect(),
        ))
    }

    fn method(clusters: usize, images: Arc<ImageStore>) -> (nn::VarStore, DeepCluster) {
        let cfg = DeepClusterConfig {
            prototypes: clusters,
            ..Default::default()
        };
        let mut ctx = tiny_context();
        ctx.images = Some(images);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = DeepCluster::new(&vs.root(), &ctx, &cfg).unwrap();
        (vs, m)
    }

    /// Step `step`, `per_epoch` steps per epoch.
    fn at(step: u64, per_epoch: u64) -> StepContext {
        StepContext {
            step,
            total_steps: 100,
            steps_per_epoch: per_epoch,
            lr: 0.05,
        }
    }

    fn first_half(s: u64) -> Tensor {
        let half = 8 * (s as i64 % 2);
        Tensor::arange_start(half, half + 8, (Kind::Int64, Device::Cpu))
    }

    #[test]
    fn the_first_step_fills_the_bank_with_unit_rows_and_clusters_it() {
        let (_vs, mut m) = method(5, store(20, 1));
        assert_eq!(m.clustered_at(), None);
        m.step(&tiny_views(8, 0), Some(&first_half(0)), &at(0, 4))
            .unwrap();
        let bank = m.bank();
        assert_eq!(bank.size(), [20, 16]);
        let norms = bank.norm_scalaropt_dim(2, [1], false);
        assert!(norms.allclose(
            &Tensor::ones([20], (Kind::Float, Device::Cpu)),
            1e-5,
            1e-5,
            false
        ));
        let a = m.assignments();
        assert_eq!(a.size(), [20]);
        assert!(a.min().int64_value(&[]) >= 0 && a.max().int64_value(&[]) < 5);
        assert_eq!(m.clustered_at(), Some(0));
    }

    #[test]
    fn refuses_more_clusters_than_images_and_bad_indices() {
        let cfg = DeepClusterConfig {
            prototypes: 50,
            ..Default::default()
        };
        let mut ctx = tiny_context();
        ctx.images = Some(store(20, 1));
        let vs = nn::VarStore::new(Device::Cpu);
        let e = DeepCluster::new(&vs.root(), &ctx, &cfg)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("prototypes is 50") && e.contains("20 images"),
            "{e}"
        );
        ctx.images = None;
        assert!(DeepCluster::new(&vs.root(), &ctx, &DeepClusterConfig::default()).is_err());
        let (_vs, mut m) = method(5, store(20, 1));
        assert!(m.step(&tiny_views(8, 0), None, &at(0, 4)).is_err());
        let out_of_bank = Tensor::arange_start(15, 23, (Kind::Int64, Device::Cpu));
        let e = m
            .step(&tiny_views(8, 0), Some(&out_of_bank), &at(0, 4))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("index 22"), "{e}");
        let negative = Tensor::arange_start(-1, 7, (Kind::Int64, Device::Cpu));
        let e = m
            .step(&tiny_views(8, 0), Some(&negative), &at(0, 4))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("index -1"), "{e}");
    }

    #[test]
    fn a_step_writes_its_embeddings_to_the_bank_and_epochs_recluster() {
        let (vs, mut m) = method(4, store(16, 2));
        let mut opt = Sgd::new(&vs, 0.9, 0.0);
        let w = vs.variables()["backbone.conv1.weight"].copy();
        for s in 0..6u64 {
            let idx = first_half(s);
            let out = m
                .step(&tiny_views(8, s as i64), Some(&idx), &at(s, 2))
                .unwrap();
            let l = out.loss.double_value(&[]);
            assert!(l.is_finite(), "step {s}: loss {l}");
            // clustered at 0, then at the start of epochs 1 and 2 only (2 steps per epoch)
            assert_eq!(m.clustered_at(), Some(s - s % 2), "step {s}");
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.05);
            m.after_step(&at(s, 2));
            let rows = m.bank().index_select(0, &idx);
            assert!(
                rows.equal(&out.embeddings),
                "step {s}: the bank rows are not the step's embeddings"
            );
        }
        assert!(
            !vs.variables()["backbone.conv1.weight"].equal(&w),
            "the encoder did not move"
        );
        // the clustering is state, not trained: only the encoder and projection learn
        let trained: Vec<String> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, _)| n)
            .collect();
        assert!(trained
            .iter()
            .all(|k| k.starts_with("backbone.") || k.starts_with("projection.")));
    }

    #[test]
    fn the_loss_pulls_an_embedding_towards_its_cluster_centroid() {
        let (vs, mut m) = method(3, store(12, 3));
        let idx = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        let views = tiny_views(8, 5);
        let mut opt = Sgd::new(&vs, 0.0, 0.0);
        let mut losses = Vec::new();
        for s in 0..10 {
            // no after_step: the bank (and so the targets) stays fixed
            let out = m.step(&views, Some(&idx), &at(s, 100)).unwrap();
            losses.push(out.loss.double_value(&[]));
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.1);
        }
        assert!(
            losses[9] < losses[0] - 0.05,
            "loss did not fall: {losses:?}"
        );
    }

    #[test]
    fn restored_variables_resume_like_the_uninterrupted_run() {
        // Run A takes steps 0..6 (2 steps per epoch: clusterings at 0, 2, 4). Run B gets A's
        // variables after step 2 (as a checkpoint restores them), then takes steps 3..6: it
        // resumes mid-epoch, so it must not re-embed or re-cluster before step 4.
        let images = store(16, 4);
        let run = |m: &mut DeepCluster, vs: &nn::VarStore, steps: std::ops::Range<u64>| {
            let mut losses = Vec::new();
            let mut opt = Sgd::new(vs, 0.0, 0.0);
            for s in steps {
                let out = m
                    .step(&tiny_views(8, s as i64), Some(&first_half(s)), &at(s, 2))
                    .unwrap();
                losses.push(out.loss.double_value(&[]));
                opt.zero_grad();
                out.loss.backward();
                opt.step(0.05);
                m.after_step(&at(s, 2));
            }
            losses
        };
        let (vs_a, mut a) = method(4, images.clone());
        run(&mut a, &vs_a, 0..3);
        let saved: Vec<(String, Tensor)> = vs_a
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        assert!(saved.iter().any(|(n, _)| n == "deepcluster.bank"));
        let want = run(&mut a, &vs_a, 3..6);

        let (vs_b, mut b) = method(4, images);
        tch::no_grad(|| {
            for (n, t) in &saved {
                vs_b.variables()[n].shallow_clone().copy_(t);
            }
        });
        assert_eq!(b.clustered_at(), Some(2));
        let got = run(&mut b, &vs_b, 3..6);
        assert_eq!(b.clustered_at(), Some(4), "epoch 2 starts at step 4");
        assert_eq!(want, got);
    }

    #[test]
    fn small_crops_train_with_their_image_targets() {
        let (_vs, mut m) = method(4, store(16, 5));
        let mut views = tiny_views(8, 1);
        tch::manual_seed(2);
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        let idx = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        let out = m.step(&views, Some(&idx), &at(0, 2)).unwrap();
        assert!(out.loss.double_value(&[]).is_finite());
        out.loss.backward();
        assert!(m.step(&views[..1], Some(&idx), &at(1, 2)).is_err());
    }
}
