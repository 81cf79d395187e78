//! DeepCluster (Caron et al. 2018, arXiv:1807.05520) in its v2 form (Caron et al. 2020,
//! arXiv:2006.09882, appendix; facebookresearch/swav `main_deepclusterv2.py`): k-means
//! pseudo-labels of every training image, re-clustered at the start of each epoch, and a
//! classifier whose weights are the frozen cluster centroids.
//!
//! ```text
//! bank B [N, D]: one unit embedding per training image (filled by `prepare`, then each step
//!                writes the first view's embeddings of its images)
//! epoch start:   (C [P, D], a [N]) = spherical_kmeans(B, P, 10 iterations)
//! step:          z_v = g(f(x_v)) / ‖·‖ for every view v (2 large + optional small crops);
//!                L = mean_v CE(z_v Cᵀ / τ, a[idx])
//! ```
//! C gets no gradient: only the encoder f and the projection g learn, towards their image's
//! cluster. P is `method.prototypes`, τ `method.prototype_temperature`. Unlike the reference,
//! one clustering (the reference averages three heads of 3000) and one bank per image (the
//! reference keeps one per large view); the bank, centroids and assignments are checkpointed,
//! so a resumed run continues exactly.

use super::kmeans::spherical_kmeans;
use super::{Method, StepOutput, Targets};
use crate::augment::{eval_batch, ViewRecipe};
use crate::backbone::ResNet;
use crate::config::TrainConfig;
use crate::data::ImageStore;
use crate::eval::features::nhwc_to_tensor;
use crate::head::Mlp;
use crate::loss::l2_normalize;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// k-means iterations per clustering (DeepCluster-v2's reference setting).
pub const KMEANS_ITERATIONS: usize = 10;

/// `clustered_at` of a clustering restored from a checkpoint: the next epoch start re-clusters.
const RESTORED: u64 = u64::MAX;

/// Checkpoint names of the bank, the centroids and the assignments.
const BUFFERS: [&str; 3] = [
    "deepcluster.bank",
    "deepcluster.centroids",
    "deepcluster.assignments",
];

pub struct DeepCluster {
    pub backbone: ResNet,
    /// g: `Linear(d, hidden) → BN → ReLU → Linear(hidden, projection_dim)`.
    pub projection: Mlp,
    clusters: usize,
    temperature: f64,
    seed: u64,
    batch_size: usize,
    channels_last: bool,
    /// Set by [`Method::prepare`].
    state: RefCell<Option<Clustering>>,
    /// The step the next call to `step` takes.
    next_step: Cell<u64>,
    /// The first view's embeddings [K, D] and image indices [K] of the last step, written to
    /// the bank in `after_step` (so a step stopped by a fault changes nothing).
    pending: RefCell<Option<(Tensor, Tensor)>>,
}

/// The memory bank and its latest clustering.
struct Clustering {
    bank: Tensor,
    centroids: Tensor,
    assignments: Tensor,
    steps_per_epoch: u64,
    /// The step at which `centroids` were computed.
    clustered_at: u64,
}

impl DeepCluster {
    /// Variables `backbone.*` and `projection.*` (SimCLR's); the centroids are not variables.
    pub fn new(p: &nn::Path, cfg: &TrainConfig) -> anyhow::Result<Self> {
        let e = anyhow::Error::msg;
        let backbone = ResNet::new(&(p / "backbone"), &cfg.model.resnet()).map_err(e)?;
        let d = backbone.out_dim();
        let hidden = cfg.model.projection_hidden.unwrap_or(d);
        let projection =
            Mlp::simclr_projection(&(p / "projection"), d, hidden, cfg.model.projection_dim)
                .map_err(e)?;
        Ok(DeepCluster {
            backbone,
            projection,
            clusters: cfg.method.prototypes,
            temperature: cfg.method.prototype_temperature,
            seed: cfg.train.seed,
            batch_size: cfg.train.batch_size,
            channels_last: cfg.model.uses_channels_last(),
            state: RefCell::new(None),
            next_step: Cell::new(0),
            pending: RefCell::new(None),
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

    /// Embeds every image of `images` (normalised, uncropped; no gradient) with BatchNorm on
    /// batch statistics, as in training: the initial bank [N, D]. The last batch is filled up
    /// with the first images so that every batch has the same size. (This forward pass also
    /// moves the BatchNorm running statistics, which only evaluation uses.)
    fn embed_all(&self, images: &ImageStore) -> Tensor {
        let s = crate::train::input_size(images.height, images.width);
        let recipe = ViewRecipe::eval(s);
        let n = images.len();
        let b = self.batch_size.clamp(2, n.max(2));
        let mut buf = vec![0f32; b * s * s * 3];
        let parts: Vec<Tensor> = tch::no_grad(|| {
            (0..n)
                .step_by(b)
                .map(|start| {
                    let idx: Vec<usize> = (start..start + b).map(|i| i % n).collect();
                    eval_batch(
                        &images.pixels,
                        images.height,
                        images.width,
                        &idx,
                        &recipe,
                        &mut buf,
                    );
                    let x = nhwc_to_tensor(&buf, b, s, self.channels_last);
                    let rows = (n - start).min(b) as i64;
                    self.embed(&x).narrow(0, 0, rows)
                })
                .collect()
        });
        Tensor::cat(&parts, 0)
    }

    /// Re-clusters the bank at step `step` (the seed of the initial centroids).
    fn recluster(&self, c: &mut Clustering, step: u64) {
        let seed = self.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (centroids, assignments) =
            spherical_kmeans(&c.bank, self.clusters, KMEANS_ITERATIONS, seed);
        (c.centroids, c.assignments, c.clustered_at) = (centroids, assignments, step);
    }

    /// The current cluster of every training image [N] (after `prepare`).
    pub fn assignments(&self) -> Option<Tensor> {
        self.state
            .borrow()
            .as_ref()
            .map(|c| c.assignments.shallow_clone())
    }

    /// The step whose start last clustered the bank (after `prepare`).
    pub fn clustered_at(&self) -> Option<u64> {
        self.state.borrow().as_ref().map(|c| c.clustered_at)
    }

    /// The memory bank [N, D] (after `prepare`).
    pub fn bank(&self) -> Option<Tensor> {
        self.state.borrow().as_ref().map(|c| c.bank.shallow_clone())
    }
}

impl Method for DeepCluster {
    /// `targets` [K] are the batch's image indices; views 0 and 1 are the large ones, any
    /// further views small multi-crops (each size its own batch through the network). At an
    /// epoch start (other than the one `prepare` clustered at) the bank is re-clustered first;
    /// then `L = (1/V) Σ_v CE(z_v Cᵀ / τ, a[idx])`.
    fn step(&self, views: &[Tensor], targets: Option<&Tensor>) -> anyhow::Result<StepOutput> {
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
        let mut state = self.state.borrow_mut();
        let Some(c) = state.as_mut() else {
            anyhow::bail!("DeepCluster: the memory bank is empty (prepare was not called)");
        };
        let n = c.bank.size()[0];
        let (lo, hi) = (idx.min().int64_value(&[]), idx.max().int64_value(&[]));
        anyhow::ensure!(
            lo >= 0 && hi < n,
            "DeepCluster: image index {} outside the bank of {n} images",
            if lo < 0 { lo } else { hi }
        );
        let s = self.next_step.get();
        if s != c.clustered_at && s.is_multiple_of(c.steps_per_epoch) {
            self.recluster(c, s);
        }
        let mut z = vec![self.embed(&Tensor::cat(&views[..2], 0))]; // [2K, D]
        if views.len() > 2 {
            z.push(self.embed(&Tensor::cat(&views[2..], 0))); // [nK, D]
        }
        let z_all = Tensor::cat(&z, 0); // [VK, D]
        let logits = z_all.matmul(&c.centroids.tr()) / self.temperature; // [VK, P]
        let y = c
            .assignments
            .index_select(0, idx)
            .repeat([views.len() as i64]); // [VK]
        let loss = logits.cross_entropy_for_logits(&y);
        let za = z[0].narrow(0, 0, k).detach();
        *self.pending.borrow_mut() = Some((za.shallow_clone(), idx.shallow_clone()));
        Ok(StepOutput {
            loss,
            embeddings: za,
            embeddings_b: z[0].narrow(0, k, k).detach(),
        })
    }

    fn targets(&self) -> Targets {
        Targets::ImageIndices
    }

    /// At most one cluster per training image.
    fn check_data(&self, images: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.clusters <= images,
            "method.prototypes is {} but the training split has only {images} images: DeepCluster \
             needs at most one cluster per image; pass --set method.prototypes=<at most {images}>",
            self.clusters
        );
        Ok(())
    }

    /// A fresh run: fills the bank with every image's embedding and clusters it. A resumed
    /// run (after [`restore_buffers`](Method::restore_buffers)) keeps the checkpoint's bank.
    /// Refuses more clusters than images.
    fn prepare(
        &self,
        images: &ImageStore,
        first_step: u64,
        steps_per_epoch: u64,
    ) -> anyhow::Result<()> {
        let n = images.len();
        self.check_data(n)?;
        let steps_per_epoch = steps_per_epoch.max(1);
        let restored = self.state.borrow_mut().as_mut().map(|c| {
            c.steps_per_epoch = steps_per_epoch;
            c.bank.size()[0]
        });
        match restored {
            Some(rows) => anyhow::ensure!(
                rows == n as i64,
                "the checkpoint's DeepCluster memory bank holds {rows} images but the training split \
                 has {n}: resume with the same data"
            ),
            None => {
                let mut c = Clustering {
                    bank: self.embed_all(images),
                    centroids: Tensor::zeros([0], (Kind::Float, tch::Device::Cpu)),
                    assignments: Tensor::zeros([0], (Kind::Int64, tch::Device::Cpu)),
                    steps_per_epoch,
                    clustered_at: first_step,
                };
                self.recluster(&mut c, first_step);
                *self.state.borrow_mut() = Some(c);
            }
        }
        self.next_step.set(first_step);
        Ok(())
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        let state = self.state.borrow();
        let Some(c) = state.as_ref() else {
            return Vec::new();
        };
        let tensors = [
            c.bank.shallow_clone(),
            c.centroids.shallow_clone(),
            c.assignments.to_kind(Kind::Float), // exact: clusters ≤ 65536
        ];
        BUFFERS.iter().map(|n| n.to_string()).zip(tensors).collect()
    }

    fn restore_buffers(&self, saved: &HashMap<String, Tensor>) -> anyhow::Result<()> {
        let [bank, centroids, assignments] = BUFFERS.map(|n| saved.get(n));
        let (Some(bank), Some(centroids), Some(assignments)) = (bank, centroids, assignments)
        else {
            anyhow::bail!(
                "the checkpoint has no DeepCluster memory bank: it was written by another method"
            );
        };
        anyhow::ensure!(
            centroids.size() == [self.clusters as i64, bank.size()[1]]
                && assignments.size() == [bank.size()[0]],
            "the checkpoint's DeepCluster clustering has {:?} centroids for {:?} bank rows: it was written \
             with another method.prototypes or model.projection_dim",
            centroids.size(),
            bank.size()
        );
        *self.state.borrow_mut() = Some(Clustering {
            bank: bank.copy(),
            centroids: centroids.copy(),
            assignments: assignments.to_kind(Kind::Int64),
            steps_per_epoch: 1,
            clustered_at: RESTORED,
        });
        Ok(())
    }

    /// Writes the step's first-view embeddings into the bank rows of its images.
    fn after_step(&self, step: u64, _total_steps: u64) {
        if let (Some((z, idx)), Some(c)) = (
            self.pending.borrow_mut().take(),
            self.state.borrow_mut().as_mut(),
        ) {
            tch::no_grad(|| {
                let _ = c.bank.index_copy_(0, &idx, &z);
            });
        }
        self.next_step.set(step + 1);
    }

    fn encoder(&self) -> &ResNet {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{tiny_config, tiny_views};
    use super::*;
    use crate::optim::Sgd;
    use tch::Device;

    /// `n` random 16×16 images.
    fn store(n: usize, seed: u64) -> ImageStore {
        let mut rng = crate::rng::Rng::new(seed);
        ImageStore {
            height: 16,
            width: 16,
            pixels: (0..n * 16 * 16 * 3).map(|_| rng.below(256) as u8).collect(),
        }
    }

    fn method(clusters: usize) -> (nn::VarStore, DeepCluster) {
        let mut cfg = tiny_config("deepcluster");
        cfg.method.prototypes = clusters;
        cfg.train.batch_size = 8;
        let vs = nn::VarStore::new(Device::Cpu);
        let m = DeepCluster::new(&vs.root(), &cfg).unwrap();
        (vs, m)
    }

    #[test]
    fn prepare_fills_the_bank_with_unit_rows_and_clusters_it() {
        let (_vs, m) = method(5);
        m.prepare(&store(20, 1), 0, 4).unwrap();
        let bank = m.bank().unwrap();
        assert_eq!(bank.size(), [20, 16]);
        let norms = bank.norm_scalaropt_dim(2, [1], false);
        assert!(norms.allclose(
            &Tensor::ones([20], (Kind::Float, Device::Cpu)),
            1e-5,
            1e-5,
            false
        ));
        let a = m.assignments().unwrap();
        assert_eq!(a.size(), [20]);
        assert!(a.min().int64_value(&[]) >= 0 && a.max().int64_value(&[]) < 5);
    }

    #[test]
    fn refuses_more_clusters_than_images_and_steps_before_prepare() {
        let (_vs, m) = method(50);
        let e = m.prepare(&store(20, 1), 0, 4).unwrap_err().to_string();
        assert!(
            e.contains("method.prototypes is 50") && e.contains("20 images"),
            "{e}"
        );
        let idx = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        let e = m
            .step(&tiny_views(8, 0), Some(&idx))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("prepare"), "{e}");
        let (_vs, m) = method(5);
        m.prepare(&store(20, 1), 0, 4).unwrap();
        assert!(m.step(&tiny_views(8, 0), None).is_err());
        let out_of_bank = Tensor::arange_start(15, 23, (Kind::Int64, Device::Cpu));
        let e = m
            .step(&tiny_views(8, 0), Some(&out_of_bank))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("index 22"), "{e}");
        let negative = Tensor::arange_start(-1, 7, (Kind::Int64, Device::Cpu));
        let e = m
            .step(&tiny_views(8, 0), Some(&negative))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("index -1"), "{e}");
    }

    #[test]
    fn a_step_writes_its_embeddings_to_the_bank_and_epochs_recluster() {
        let (vs, m) = method(4);
        let images = store(16, 2);
        m.prepare(&images, 0, 2).unwrap(); // 2 steps per epoch
        let mut opt = Sgd::new(&vs, 0.9, 0.0);
        let w = vs.variables()["backbone.conv1.weight"].copy();
        for s in 0..6u64 {
            let half = 8 * (s as i64 % 2);
            let idx = Tensor::arange_start(half, half + 8, (Kind::Int64, Device::Cpu));
            let out = m.step(&tiny_views(8, s as i64), Some(&idx)).unwrap();
            let l = out.loss.double_value(&[]);
            assert!(l.is_finite(), "step {s}: loss {l}");
            // clustered by prepare at 0, then at the start of epochs 1 and 2 only
            assert_eq!(m.clustered_at(), Some(s - s % 2), "step {s}");
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.05);
            m.after_step(s, 6);
            let rows = m.bank().unwrap().index_select(0, &idx);
            assert!(
                rows.equal(&out.embeddings),
                "step {s}: the bank rows are not the step's embeddings"
            );
        }
        assert!(
            !vs.variables()["backbone.conv1.weight"].equal(&w),
            "the encoder did not move"
        );
        // the centroids are not variables: nothing but the encoder and projection trains
        assert!(vs
            .variables()
            .keys()
            .all(|k| k.starts_with("backbone.") || k.starts_with("projection.")));
    }

    #[test]
    fn the_loss_pulls_an_embedding_towards_its_cluster_centroid() {
        let (vs, m) = method(3);
        let images = store(12, 3);
        m.prepare(&images, 0, 100).unwrap();
        let idx = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        let views = tiny_views(8, 5);
        let mut opt = Sgd::new(&vs, 0.0, 0.0);
        let mut losses = Vec::new();
        for s in 0..10 {
            let out = m.step(&views, Some(&idx)).unwrap();
            losses.push(out.loss.double_value(&[]));
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.1);
            *m.pending.borrow_mut() = None; // keep the bank (and so the targets) fixed
            m.next_step.set(s + 1);
        }
        assert!(
            losses[9] < losses[0] - 0.05,
            "loss did not fall: {losses:?}"
        );
    }
    #[test]
    fn a_restored_clustering_resumes_like_the_uninterrupted_run() {
        // Run A takes steps 0..6 (2 steps per epoch: clusterings at 0, 2, 4). Run B is
        // restored from A's variables and buffers after step 2, then takes steps 3..6: it
        // resumes mid-epoch, so it must not re-cluster before step 4.
        let images = store(16, 4);
        let run = |m: &DeepCluster, vs: &nn::VarStore, steps: std::ops::Range<u64>| {
            let mut losses = Vec::new();
            let mut opt = Sgd::new(vs, 0.0, 0.0);
            for s in steps {
                let half = 8 * (s as i64 % 2);
                let idx = Tensor::arange_start(half, half + 8, (Kind::Int64, Device::Cpu));
                let out = m.step(&tiny_views(8, s as i64), Some(&idx)).unwrap();
                losses.push(out.loss.double_value(&[]));
                opt.zero_grad();
                out.loss.backward();
                opt.step(0.05);
                m.after_step(s, 6);
            }
            losses
        };
        let (vs_a, a) = method(4);
        a.prepare(&images, 0, 2).unwrap();
        run(&a, &vs_a, 0..3);
        let saved_vars: Vec<(String, Tensor)> = vs_a
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        // copies: A's bank changes in place as it goes on
        let saved: HashMap<String, Tensor> = a
            .buffers()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        assert_eq!(saved.len(), 3);
        let want = run(&a, &vs_a, 3..6);

        let (vs_b, b) = method(4);
        tch::no_grad(|| {
            for (n, t) in &saved_vars {
                vs_b.variables()[n].shallow_clone().copy_(t);
            }
        });
        b.restore_buffers(&saved).unwrap();
        b.prepare(&images, 3, 2).unwrap(); // keeps the restored bank: no re-embedding
        assert!(b.bank().unwrap().equal(&saved["deepcluster.bank"]));
        assert_eq!(
            b.clustered_at(),
            Some(RESTORED),
            "re-clustered mid-epoch on resume"
        );
        let got = run(&b, &vs_b, 3..6);
        assert_eq!(b.clustered_at(), Some(4), "epoch 2 starts at step 4");
        assert_eq!(want, got);
    }

    #[test]
    fn restoring_refuses_missing_or_mismatched_buffers() {
        let (_vs, m) = method(4);
        let e = m.restore_buffers(&HashMap::new()).unwrap_err().to_string();
        assert!(e.contains("another method"), "{e}");
        let (_vs, m5) = method(5);
        m5.prepare(&store(16, 1), 0, 2).unwrap();
        let saved: HashMap<String, Tensor> = m5.buffers().into_iter().collect();
        let e = m.restore_buffers(&saved).unwrap_err().to_string();
        assert!(e.contains("method.prototypes"), "{e}");
        let (_vs, m5b) = method(5);
        m5b.restore_buffers(&saved).unwrap();
        let e = m5b.prepare(&store(20, 1), 0, 2).unwrap_err().to_string();
        assert!(e.contains("holds 16 images") && e.contains("has 20"), "{e}");
    }

    #[test]
    fn small_crops_train_with_their_image_targets() {
        let (_vs, m) = method(4);
        m.prepare(&store(16, 5), 0, 2).unwrap();
        let mut views = tiny_views(8, 1);
        tch::manual_seed(2);
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        let idx = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        let out = m.step(&views, Some(&idx)).unwrap();
        assert!(out.loss.double_value(&[]).is_finite());
        out.loss.backward();
        assert!(m.step(&views[..1], Some(&idx)).is_err());
    }
}
