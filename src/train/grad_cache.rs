//! Exact large batches in bounded memory: gradient caching (Gao et al. 2021, "Scaling Deep
//! Contrastive Learning Batch Size under Memory Limited Setup", arXiv:2101.06983), for
//! `train.micro_batch`.
//!
//! A method whose step splits into per-image embeddings `e = embed(x)` and a loss of the whole
//! batch `L(e)` ([`Method::embed_views`], [`Method::embedding_loss`]; its plan says
//! [`MicroBatch::Split`](crate::method::MicroBatch)) takes a batch of K images in micro-batches
//! x_j of M images:
//! ```text
//! 1. e_j = embed(x_j)                      each j, without a graph          [M, …] per tensor
//! 2. ê = cat_j e_j as leaves; L(ê); backward: G = ∂L/∂ê                    [K, …] per tensor
//!    (and ∂L/∂θ of the parameters the loss itself holds, such as CLIP's temperature)
//! 3. e_j = embed(x_j) again, with a graph; backward of Σ ⟨e_j, G_j⟩      ∇θ += (∂e_j/∂θ)ᵀ G_j
//! ```
//! By the chain rule ∂L/∂θ = Σ_j (∂e_j/∂θ)ᵀ ∂L/∂e_j: the gradient is the whole batch's
//! whenever the second pass recomputes the first one's e_j: the same views, the random
//! generator seeded alike before both, and nothing in `embed` that couples micro-batches.
//! LayerNorm does not; BatchNorm normalises each micro-batch by its own statistics (as each GPU
//! of a data-parallel job does), and its running statistics, which the first pass moves, are
//! put back before the second, so that they move once per micro-batch. Memory: the activations
//! of M images, plus the K images' views and embeddings.

use super::Model;
use crate::method::{Method, StepContext, StepOutput};
use crate::precision::Precision;
use tch::{Kind, Tensor};

/// The image ranges `[start, start + len)` of the fewest micro-batches of at most `micro` of
/// `k` images, as equal as they can be (sizes differ by at most one, so that no micro-batch is
/// left with a single image for BatchNorm).
pub fn micro_batches(k: i64, micro: i64) -> Vec<(i64, i64)> {
    let n = (k + micro.max(1) - 1) / micro.max(1);
    let (base, extra) = (k / n.max(1), k % n.max(1));
    let mut start = 0;
    (0..n)
        .map(|j| {
            let len = base + i64::from(j < extra);
            start += len;
            (start - len, len)
        })
        .collect()
}

/// Steps 1–3 on the batch `views` (and `targets`) of step `ctx`: the step's output, with the
/// whole batch's gradients (of `loss × scale`) accumulated into the variables' gradients,
/// which the caller has zeroed.
pub fn backward(
    model: &mut Model,
    micro: usize,
    views: &[Tensor],
    targets: Option<&Tensor>,
    ctx: &StepContext,
    (precision, scale): (Precision, f64),
) -> anyhow::Result<StepOutput> {
    let k = views.first().map_or(0, |v| v.size()[0]);
    let parts = Parts {
        views,
        targets,
        ranges: micro_batches(k, micro as i64),
        ctx,
        precision,
        device: model.vs.device(),
    };
    // 1. every micro-batch's embeddings, without a graph; BatchNorm's statistics put back
    let statistics = norm_statistics(&model.vs);
    let saved: Vec<Tensor> = statistics.iter().map(|(_, t)| t.copy()).collect();
    let mut first: Vec<Vec<Tensor>> = Vec::with_capacity(parts.ranges.len());
    for j in 0..parts.ranges.len() {
        first.push(parts.embed(model.method.as_mut(), j, false)?);
    }
    tch::no_grad(|| {
        for ((_, t), s) in statistics.iter().zip(&saved) {
            t.shallow_clone().copy_(s);
        }
    });
    // 2. the loss of the whole batch on leaf copies of the embeddings, and ∂L/∂ê
    let leaves: Vec<Tensor> = (0..first[0].len())
        .map(|i| {
            let e = Tensor::cat(&first.iter().map(|p| &p[i]).collect::<Vec<_>>(), 0).detach();
            match is_float(e.kind()) {
                true => e.set_requires_grad(true),
                false => e,
            }
        })
        .collect();
    drop(first);
    let method = model.method.as_mut();
    let out = crate::precision::training(precision, parts.device, || {
        method.embedding_loss(&leaves, targets, ctx)
    })?;
    match scale == 1.0 {
        true => out.loss.backward(),
        false => (&out.loss * scale).backward(),
    }
    let cached: Vec<Tensor> = leaves.iter().map(Tensor::grad).collect();
    // 3. each micro-batch again, with a graph, back-propagating its rows of ∂L/∂ê
    for (j, &(s, n)) in parts.ranges.iter().enumerate() {
        let e = parts.embed(model.method.as_mut(), j, true)?;
        let mut surrogate: Option<Tensor> = None;
        for (e, g) in e.iter().zip(&cached) {
            if !(e.requires_grad() && g.defined()) {
                continue; // a target network's output, or one the loss does not read
            }
            // ⟨e_j, G_j⟩ in fp32 whatever the precision of e_j
            let term =
                (e.to_kind(Kind::Float) * g.narrow(0, s, n).to_kind(Kind::Float)).sum(Kind::Float);
            surrogate = Some(match surrogate {
                None => term,
                Some(acc) => acc + term,
            });
        }
        if let Some(surrogate) = surrogate {
            surrogate.backward();
        }
    }
    Ok(out)
}

/// A batch cut into micro-batches.
struct Parts<'a> {
    views: &'a [Tensor],
    targets: Option<&'a Tensor>,
    /// `[start, start + len)` of each micro-batch.
    ranges: Vec<(i64, i64)>,
    ctx: &'a StepContext,
    precision: Precision,
    device: tch::Device,
}

impl Parts<'_> {
    /// `embed` of micro-batch `j`, with or without a graph, the generator seeded for it.
    fn embed(&self, method: &mut dyn Method, j: usize, graph: bool) -> anyhow::Result<Vec<Tensor>> {
        let (s, n) = self.ranges[j];
        let views: Vec<Tensor> = self.views.iter().map(|v| v.narrow(0, s, n)).collect();
        let targets = self.targets.map(|t| t.narrow(0, s, n));
        tch::manual_seed(pass_seed(self.ctx.step, j));
        let mut run = || {
            crate::precision::training(self.precision, self.device, || {
                method.embed_views(&views, targets.as_ref(), self.ctx)
            })
        };
        match graph {
            true => run(),
            false => tch::no_grad(run),
        }
    }
}

/// The seed of the random generator before micro-batch `j` of step `step`, in both passes.
fn pass_seed(step: u64, j: usize) -> i64 {
    (0x5eed_0000_0000 ^ (step << 20) ^ j as u64) as i64
}

/// BatchNorm's running means and variances in `vs` (every network of the method's), by name.
fn norm_statistics(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut stats: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(name, _)| name.ends_with("running_mean") || name.ends_with("running_var"))
        .collect();
    stats.sort_by(|a, b| a.0.cmp(&b.0));
    stats
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::train::loader::{Loader, LoaderSpec};
    use crate::train::trainer::{Batch, Batches, LoaderBatches};
    use crate::train::{build_model, load_data, preflight::preflight};

    /// A tiny run of `method` (16-px views, 16 images a batch) with `extra` settings, its model
    /// built twice with the same weights, and its first batch.
    fn two_models_and_a_batch(method: &str, extra: &[&str]) -> (Model, Model, Batch) {
        let mut set: Vec<String> = [
            "model.projection_dim=32",
            "train.batch_size=16",
            "train.threads=1",
            "data.synthetic_train_per_class=8",
            "data.synthetic_test_per_class=2",
            "data.synthetic_size=16",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        set.push(format!("method.name={method:?}"));
        let mut cfg = TrainConfig::load(None, &set).unwrap();
        let splits = load_data(&cfg).unwrap();
        cfg.model.crop_size = Some(cfg.crop_size(&splits.train.images));
        let spec = cfg.method.spec().unwrap();
        let (data, views, _) = preflight(&cfg, &splits, spec.as_ref()).unwrap();
        let a = build_model(&cfg, Some(&data), None).unwrap();
        let mut b = build_model(&cfg, Some(&data), None).unwrap();
        // the same weights and statistics, whatever other tests do to the shared generator
        b.vs.copy(&a.vs).unwrap();
        let mut batches = LoaderBatches {
            loader: Loader::spawn(LoaderSpec {
                data,
                views,
                batch_size: 16,
                steps_per_epoch: 5,
                seed: 0,
                steps: 0..1,
                prefetch: 0,
                shard: (0, 1),
                early: None,
            }),
            channels_last: false,
            device: tch::Device::Cpu,
        };
        (a, b, batches.next_batch().unwrap())
    }

    /// The loss and every trainable variable's gradient, by name, of one step on `batch`:
    /// the whole batch at once (`micro` None) or by gradient caching.
    fn loss_and_gradients(
        m: &mut Model,
        batch: &Batch,
        micro: Option<usize>,
    ) -> (f64, Vec<(String, Tensor)>) {
        let ctx = crate::method::testing::at(0, 5);
        let t = batch.targets.as_ref();
        let out = match micro {
            Some(micro) => {
                backward(m, micro, &batch.views, t, &ctx, (Precision::Fp32, 1.0)).unwrap()
            }
            None => {
                let out = m.method.step(&batch.views, t, &ctx).unwrap();
                out.loss.backward();
                out
            }
        };
        let grads = crate::optim::trainable_by_name(&m.vs)
            .into_iter()
            .map(|(n, v)| (n, v.grad().copy()))
            .collect();
        (out.loss.double_value(&[]), grads)
    }

    #[test]
    fn micro_batches_cover_the_batch_in_order() {
        assert_eq!(micro_batches(10, 4), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(
            micro_batches(16, 3).iter().map(|r| r.1).collect::<Vec<_>>(),
            [3, 3, 3, 3, 2, 2]
        );
        assert_eq!(micro_batches(8, 8), vec![(0, 8)]);
        assert_eq!(micro_batches(3, 1), vec![(0, 1), (1, 1), (2, 1)]);
    }

    /// Measured 2026-12-07 (AMD EPYC, libtorch 2.11): at most 1.4e-6 relative (fp32 sums in
    /// another order); the issue's bound is 1e-5.
    #[test]
    fn on_a_vit_with_layernorm_heads_eighth_batches_give_the_whole_batchs_gradients() {
        let vit = ["model.backbone=\"vit_tiny\"", "model.head_norm=\"layer\""];
        for (method, extra) in [
            ("simclr", &[][..]),
            ("clip", &[][..]),
            ("barlow_twins", &["model.projection_hidden=64"][..]),
        ] {
            let extra: Vec<&str> = vit.iter().chain(extra).copied().collect();
            let (mut whole, mut cached, batch) = two_models_and_a_batch(method, &extra);
            let (loss, want) = loss_and_gradients(&mut whole, &batch, None);
            let (loss_m, got) = loss_and_gradients(&mut cached, &batch, Some(2));
            assert!(
                (loss - loss_m).abs() <= 1e-6 * loss.abs(),
                "{method}: {loss} vs {loss_m}"
            );
            let norm = |g: &Tensor| match g.defined() {
                true => g.norm().double_value(&[]),
                false => 0.0,
            };
            let total = want
                .iter()
                .map(|(_, g)| norm(g).powi(2))
                .sum::<f64>()
                .sqrt();
            let mut worst = (0.0, String::new());
            for ((name, a), (_, b)) in want.iter().zip(&got) {
                assert_eq!(a.defined(), b.defined(), "{method} {name}");
                if !a.defined() {
                    continue;
                }
                // relative to the tensor's gradient, or to a thousandth of the whole gradient
                // where the tensor's is nought (Barlow Twins' last bias: the loss standardises
                // each feature over the batch, so a shift of it changes nothing)
                let scale = norm(a).max(1e-3 * total);
                let rel = (a - b).norm().double_value(&[]) / scale;
                if rel > worst.0 {
                    worst = (rel, name.clone());
                }
            }
            eprintln!(
                "{method}: largest relative gradient difference {:.1e} ({})",
                worst.0, worst.1
            );
            assert!(
                worst.0 <= 1e-5,
                "{method}: {} differs by {:.2e}",
                worst.1,
                worst.0
            );
            assert!(
                want.iter().any(|(_, g)| g.defined()),
                "{method}: no gradients"
            );
        }
    }

    /// BatchNorm's running statistics move once per micro-batch, as when each micro-batch is
    /// embedded once: the first pass's moves are undone.
    #[test]
    fn batchnorm_statistics_move_once_per_micro_batch() {
        let resnet = ["model.width=0.0625", "model.channels_last=false"];
        let (mut cached, mut once, batch) = two_models_and_a_batch("simclr", &resnet);
        loss_and_gradients(&mut cached, &batch, Some(4));
        let ctx = crate::method::testing::at(0, 5);
        tch::no_grad(|| {
            for (s, n) in micro_batches(16, 4) {
                let v: Vec<Tensor> = batch.views.iter().map(|v| v.narrow(0, s, n)).collect();
                once.method.embed_views(&v, None, &ctx).unwrap();
            }
        });
        let (a, b) = (norm_statistics(&cached.vs), norm_statistics(&once.vs));
        assert!(!a.is_empty());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x.allclose(y, 1e-6, 1e-7, false), "{name}");
        }
    }
}
