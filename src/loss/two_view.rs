//! The losses a two-view method can train with, by name (`selfsup pretrain --loss <name>`):
//! each maps the projections of the two views of K images, `z_a`, `z_b` [K, D], to a scalar.
//! Losses that need labels, noise samples or a predictor with stop-gradient are used from the
//! library and its examples instead (see [`NOT_TWO_VIEW`]).

use super::{
    barlow_twins, batch_hard_triplet, dcl, info_nce_in_batch, info_nce_in_batch_tiled,
    l2_normalize, margin::margin_contrastive_two_view, n_pair, nt_xent, nt_xent_tiled,
    vicreg::vicreg_loss, LossError,
};
use tch::{Kind, Tensor};

/// The names `--loss` accepts.
pub const NAMES: &[&str] = &[
    "nt_xent",
    "nt_xent_tiled",
    "dcl",
    "info_nce",
    "info_nce_tiled",
    "n_pair",
    "triplet",
    "margin",
    "barlow_twins",
    "vicreg",
];

/// Losses of the catalogue that do not fit two-view training as a plain loss, and why.
pub const NOT_TWO_VIEW: &[(&str, &str)] = &[
    (
        "neg_cosine",
        "it collapses without a predictor and stop-gradient: it is the loss of the BYOL/SimSiam methods",
    ),
    ("nce", "it needs noise samples from a known distribution: see examples/nce_word_pairs.rs"),
    ("supcon", "it needs class labels: use the library's supcon (SupCon, Khosla et al. 2020)"),
    ("triplet_batch_all", "use `triplet` (batch-hard over pair ids) or the library's batch_all_triplet with labels"),
];

/// The numbers the two-view losses take (from the `[method]` config section).
#[derive(Clone, Debug, PartialEq)]
pub struct LossParams {
    pub temperature: f64,
    pub margin: f64,
    pub barlow_lambda: f64,
    /// VICReg (invariance, variance, covariance) weights.
    pub vicreg_weights: [f64; 3],
    pub n_pair_l2: f64,
    /// Rows per block of the tiled losses (0: auto).
    pub tile_rows: usize,
}

/// A two-view loss with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct TwoViewLoss {
    pub name: String,
    pub params: LossParams,
}

impl TwoViewLoss {
    /// The loss called `name`; an unknown name lists the choices.
    pub fn new(name: &str, params: LossParams) -> Result<Self, String> {
        if NAMES.contains(&name) {
            return Ok(TwoViewLoss {
                name: name.to_string(),
                params,
            });
        }
        if let Some((_, why)) = NOT_TWO_VIEW.iter().find(|(n, _)| *n == name) {
            return Err(format!(
                "loss {name:?} cannot train a two-view method: {why}"
            ));
        }
        Err(format!(
            "unknown loss {name:?}: choose one of {}",
            NAMES.join(", ")
        ))
    }

    /// The loss of projections `z_a`, `z_b` [K, D] → scalar.
    ///
    /// `info_nce` is symmetric, `½[InfoNCE(u_a, u_b) + InfoNCE(u_b, u_a)]` on L2-normalised rows;
    /// `triplet` is batch-hard over the 2K views with the image index as label, and `triplet`
    /// and `margin` work on L2-normalised rows (distances in [0, 2]).
    pub fn compute(&self, z_a: &Tensor, z_b: &Tensor) -> Result<Tensor, LossError> {
        let p = &self.params;
        let t = p.temperature;
        match self.name.as_str() {
            "nt_xent" => nt_xent(z_a, z_b, t),
            "nt_xent_tiled" => nt_xent_tiled(z_a, z_b, t, p.tile_rows),
            "dcl" => dcl(z_a, z_b, t),
            "info_nce" | "info_nce_tiled" => {
                super::check_pair("z_a", z_a, "z_b", z_b, 1)?;
                let (u_a, u_b) = (l2_normalize(z_a), l2_normalize(z_b));
                let f = |q: &Tensor, k: &Tensor| {
                    if self.name == "info_nce" {
                        info_nce_in_batch(q, k, t)
                    } else {
                        info_nce_in_batch_tiled(q, k, t, p.tile_rows)
                    }
                };
                Ok((f(&u_a, &u_b)? + f(&u_b, &u_a)?) * 0.5)
            }
            "n_pair" => n_pair(z_a, z_b, p.n_pair_l2),
            "triplet" => {
                super::check_pair("z_a", z_a, "z_b", z_b, 2)?;
                let k = z_a.size()[0];
                let ids = Tensor::arange(k, (Kind::Int64, z_a.device())).repeat([2]); // [2K]
                let z = l2_normalize(&Tensor::cat(&[z_a, z_b], 0)); // [2K, D]
                batch_hard_triplet(&z, &ids, p.margin)
            }
            "margin" => {
                margin_contrastive_two_view(&l2_normalize(z_a), &l2_normalize(z_b), p.margin)
            }
            "barlow_twins" => barlow_twins(z_a, z_b, p.barlow_lambda),
            "vicreg" => {
                let [l, m, n] = p.vicreg_weights;
                vicreg_loss(z_a, z_b, l, m, n)
            }
            other => unreachable!("TwoViewLoss::new admitted {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::randn;

    fn params() -> LossParams {
        LossParams {
            temperature: 0.5,
            margin: 0.5,
            barlow_lambda: 5e-3,
            vicreg_weights: [25.0, 25.0, 1.0],
            n_pair_l2: 0.002,
            tile_rows: 3,
        }
    }

    #[test]
    fn every_name_gives_a_finite_differentiable_loss_that_sees_both_views() {
        let (a, b) = (randn(&[6, 8], 0), randn(&[6, 8], 1));
        for name in NAMES {
            let loss = TwoViewLoss::new(name, params()).unwrap();
            let (a, b) = (
                a.detach().set_requires_grad(true),
                b.detach().set_requires_grad(true),
            );
            let l = loss.compute(&a, &b).unwrap();
            assert!(l.double_value(&[]).is_finite(), "{name}");
            l.backward();
            for g in [a.grad(), b.grad()] {
                assert!(
                    g.defined() && g.abs().sum(Kind::Double).double_value(&[]) > 0.0,
                    "{name}: no gradient"
                );
            }
        }
    }

    #[test]
    fn tiled_names_agree_with_plain_ones_and_info_nce_is_symmetric() {
        let (a, b) = (randn(&[5, 4], 2), randn(&[5, 4], 3));
        let v = |n: &str, a: &Tensor, b: &Tensor| {
            TwoViewLoss::new(n, params())
                .unwrap()
                .compute(a, b)
                .unwrap()
                .double_value(&[])
        };
        assert!((v("nt_xent", &a, &b) - v("nt_xent_tiled", &a, &b)).abs() < 1e-12);
        assert!((v("info_nce", &a, &b) - v("info_nce_tiled", &a, &b)).abs() < 1e-12);
        assert!((v("info_nce", &a, &b) - v("info_nce", &b, &a)).abs() < 1e-12);
    }

    #[test]
    fn unknown_and_unsuitable_names_say_what_to_do() {
        let e = TwoViewLoss::new("ntxent", params()).unwrap_err();
        assert!(
            e.contains("ntxent") && e.contains("nt_xent, nt_xent_tiled"),
            "{e}"
        );
        let e = TwoViewLoss::new("neg_cosine", params()).unwrap_err();
        assert!(e.contains("predictor"), "{e}");
    }
}
