//! FastSiam (Pototzky, Sultan, Schmidt-Thieme 2022, "FastSiam: Resource-Efficient
//! Self-supervised Learning on a Single GPU", GCPR): SimSiam with more views per image. Each
//! view's prediction is regressed onto the mean of the *other* views' stop-gradient
//! projections, a steadier target than SimSiam's single other view, which is what lets it
//! learn in fewer epochs (lightly's best CIFAR-10 kNN at 200 epochs comes from it).
//!
//! The network is SimSiam's ([`super::simsiam::SimSiam`]: encoder, projector, bottleneck
//! predictor); only the views and the loss differ, so the settings are SimSiam's plus `views`.

use super::simsiam::{SimSiam, SimSiamConfig, SIMSIAM_LR};
use super::{
    BuildContext, Method, MethodPlan, MethodSection, MethodSpec, ParamPlan, StepContext, StepOutput,
};
use crate::augment::{ViewRecipe, Views};
use crate::error::SettingError;
use crate::loss::negative_cosine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn;
use tch::Tensor;

/// `[method.fastsiam]`: the paper's 4 views, SimSiam's heads (2048-wide projection, 512-wide
/// predictor bottleneck, the predictor at the peak learning rate) and, without `optim.lr`,
/// SimSiam's measured learning rate ([`SIMSIAM_LR`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FastSiamConfig {
    /// Views per image, all of the large recipe (≥ 3: with 2 it is SimSiam). Default 4 (the
    /// paper's "3 + 1": every view is predicted from the mean of the other three).
    pub views: usize,
    /// Output dimension of the projector and the predictor; 0: `model.projection_dim`.
    /// Default 2048 (SimSiam's).
    pub out_dim: usize,
    /// Hidden width of the bottleneck predictor; 0: a quarter of the output. Default 512.
    pub predictor_hidden: usize,
    /// Train the predictor at the constant peak learning rate (SimSiam §4.3). Default true.
    pub fixed_predictor_lr: bool,
}

impl Default for FastSiamConfig {
    fn default() -> Self {
        let s = SimSiamConfig::default();
        FastSiamConfig {
            views: 4,
            out_dim: s.out_dim,
            predictor_hidden: s.predictor_hidden,
            fixed_predictor_lr: s.fixed_predictor_lr,
        }
    }
}

impl MethodSection for FastSiamConfig {
    const NAME: &'static str = "fastsiam";
    const SUMMARY: &'static str =
        "SimSiam with 4 views: each predicts the mean of the others' stop-gradient projections";
}

impl MethodSpec for FastSiamConfig {
    fn check(&self) -> Result<(), SettingError> {
        match self.views >= 3 {
            true => Ok(()),
            false => Err(SettingError::out_of_range(
                "method.fastsiam.views",
                self.views as f64,
                "it must be ≥ 3 (with 2 views use --method simsiam)",
            )),
        }
    }

    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the per-image loss.
            data_parallel: true,
            similarity_matrix: false,
            default_lr: Some(SIMSIAM_LR),
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    /// `views` views of the first (large) recipe.
    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        let recipe = recipes.into_iter().next().ok_or("no view recipe")?;
        Ok((0..self.views)
            .map(|_| Arc::new(recipe.clone()) as Arc<dyn Views>)
            .collect())
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        let heads = SimSiamConfig {
            out_dim: self.out_dim,
            predictor_hidden: self.predictor_hidden,
            fixed_predictor_lr: self.fixed_predictor_lr,
        };
        Ok(Box::new(FastSiam {
            net: SimSiam::new(vs, ctx, &heads)?,
            views: self.views,
        }))
    }
}

pub struct FastSiam {
    net: SimSiam,
    views: usize,
}

/// The loss for V views of K images: `z_v` projections, `p_v` predictions, [V, K, D] each:
/// ```text
/// z̄_v = stopgrad( (Σ_u z_u − z_v) / (V − 1) )      (the mean of the other views)
/// L    = (1/V) Σ_v  D(p_v, z̄_v),    D(p, z) = −mean_k cos(p_k, z_k)
/// ```
/// With V = 2 this is SimSiam's symmetric loss (eq. 2).
pub fn fastsiam_loss(z: &Tensor, p: &Tensor) -> anyhow::Result<Tensor> {
    let v = z.size()[0];
    anyhow::ensure!(
        v >= 2 && p.size() == z.size(),
        "z and p must be [V ≥ 2, K, D]"
    );
    let z = z.detach();
    let sum = z.sum_dim_intlist([0].as_slice(), false, tch::Kind::Float); // [K, D]
    let terms = (0..v)
        .map(|i| {
            let others = (&sum - z.get(i)) / (v - 1) as f64; // [K, D]
            negative_cosine(&p.get(i), &others)
        })
        .collect::<Result<Vec<_>, _>>()?; // V scalars
    Ok(Tensor::stack(&terms, 0).mean(tch::Kind::Float))
}

impl Method for FastSiam {
    /// One pass of the V·K views through encoder, projector and predictor, then
    /// [`fastsiam_loss`].
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() == self.views,
            "FastSiam takes {} views per image, got {}",
            self.views,
            views.len()
        );
        let k = views[0].size()[0];
        let x = Tensor::cat(views, 0); // [V·K, 3, H, W]
        let (z, p) = self.net.project_and_predict(&x); // [V·K, D] each
        let d = z.size()[1];
        let v = self.views as i64;
        let loss = fastsiam_loss(&z.view([v, k, d]), &p.view([v, k, d]))?;
        let loss = crate::dist::global_mean(&loss); // data-parallel: the global batch's mean
        Ok(StepOutput {
            loss,
            embeddings: z.narrow(0, 0, k).detach(),
            embeddings_b: z.narrow(0, k, k).detach(),
            metrics: Vec::new(),
        })
    }

    /// SimSiam's: the predictor at the peak learning rate with `fixed_predictor_lr`.
    fn param_plan(&self) -> ParamPlan {
        self.net.param_plan()
    }

    fn encoder(&self) -> &crate::backbone::Backbone {
        self.net.encoder()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn randn(shape: &[i64], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn(shape, (Kind::Float, Device::Cpu))
    }

    /// With two views the loss is SimSiam's ½ D(p_a, z_b) + ½ D(p_b, z_a).
    #[test]
    fn two_views_give_simsiams_loss() {
        let (z, p) = (randn(&[2, 5, 8], 0), randn(&[2, 5, 8], 1));
        let ours = fastsiam_loss(&z, &p).unwrap().double_value(&[]);
        let simsiam = 0.5
            * negative_cosine(&p.get(0), &z.get(1))
                .unwrap()
                .double_value(&[])
            + 0.5
                * negative_cosine(&p.get(1), &z.get(0))
                    .unwrap()
                    .double_value(&[]);
        assert!((ours - simsiam).abs() < 1e-6, "{ours} vs {simsiam}");
    }

    /// Four views: each prediction against the plain mean of the other three, by hand.
    #[test]
    fn four_views_regress_each_onto_the_mean_of_the_others() {
        let (z, p) = (randn(&[4, 3, 6], 2), randn(&[4, 3, 6], 3));
        let ours = fastsiam_loss(&z, &p).unwrap().double_value(&[]);
        let mut want = 0.0;
        for i in 0..4 {
            let others: Vec<Tensor> = (0..4).filter(|&j| j != i).map(|j| z.get(j)).collect();
            let mean = Tensor::stack(&others, 0).mean_dim(0, false, Kind::Float);
            want += negative_cosine(&p.get(i), &mean).unwrap().double_value(&[]) / 4.0;
        }
        assert!((ours - want).abs() < 1e-6, "{ours} vs {want}");
        // a prediction equal to its target scores the minimum, −1
        let z = randn(&[3, 4, 5], 4);
        let sum = z.sum_dim_intlist([0].as_slice(), false, Kind::Float);
        let p = Tensor::stack(
            &[(&sum - z.get(0)), (&sum - z.get(1)), (&sum - z.get(2))],
            0,
        );
        let best = fastsiam_loss(&z, &p).unwrap().double_value(&[]);
        assert!((best + 1.0).abs() < 1e-5, "{best}");
    }

    /// The targets are stop-gradient: only the predictions receive a gradient.
    #[test]
    fn only_the_predictions_get_a_gradient() {
        let z = randn(&[3, 4, 5], 5).set_requires_grad(true);
        let p = randn(&[3, 4, 5], 6).set_requires_grad(true);
        fastsiam_loss(&z, &p).unwrap().backward();
        assert!(!z.grad().defined() || z.grad().abs().sum(Kind::Float).double_value(&[]) == 0.0);
        assert!(p.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn fewer_than_three_views_are_refused_by_name() {
        let cfg = FastSiamConfig {
            views: 2,
            ..FastSiamConfig::default()
        };
        let e = cfg.check().unwrap_err().to_string();
        assert!(
            e.contains("method.fastsiam.views") && e.contains("simsiam"),
            "{e}"
        );
        assert_eq!(
            FastSiamConfig::default()
                .render_views(vec![ViewRecipe::simclr(8)])
                .unwrap()
                .len(),
            4
        );
    }
}
