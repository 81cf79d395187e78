//! The losses a two-view method can train with, by name (`selfsup pretrain --loss <name>`):
//! each maps the projections of the two views of K images, `z_a`, `z_b` [K, D], to a scalar.
//! The names are parsed once into a [`TwoViewLoss`] variant (this file is the loss registry).
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

/// The numbers the two-view losses take (from the method's config section).
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

/// A two-view loss with its parameters, parsed once from its name ([`TwoViewLoss::new`]).
#[derive(Clone, Debug, PartialEq)]
pub enum TwoViewLoss {
    NtXent { temperature: f64 },
    NtXentTiled { temperature: f64, tile_rows: usize },
    Dcl { temperature: f64 },
    InfoNce { temperature: f64 },
    InfoNceTiled { temperature: f64, tile_rows: usize },
    NPair { l2: f64 },
    Triplet { margin: f64 },
    Margin { margin: f64 },
    BarlowTwins { lambda: f64 },
    VicReg { weights: [f64; 3] },
}

impl TwoViewLoss {
    /// The loss called `name` (one of [`NAMES`]) with its parameters from `p`; an unknown name
    /// lists the choices, a catalogue loss that cannot train two views says why.
    pub fn new(name: &str, p: &LossParams) -> Result<Self, String> {
        let t = p.temperature;
        let tile_rows = p.tile_rows;
        let loss = match name {
            "nt_xent" => TwoViewLoss::NtXent { temperature: t },
            "nt_xent_tiled" => TwoViewLoss::NtXentTiled {
                temperature: t,
                tile_rows,
            },
            "dcl" => TwoViewLoss::Dcl { temperature: t },
            "info_nce" => TwoViewLoss::InfoNce { temperature: t },
            "info_nce_tiled" => TwoViewLoss::InfoNceTiled {
                temperature: t,
                tile_rows,
            },
            "n_pair" => TwoViewLoss::NPair { l2: p.n_pair_l2 },
            "triplet" => TwoViewLoss::Triplet { margin: p.margin },
            "margin" => TwoViewLoss::Margin { margin: p.margin },
            "barlow_twins" => TwoViewLoss::BarlowTwins {
                lambda: p.barlow_lambda,
            },
            "vicreg" => TwoViewLoss::VicReg {
                weights: p.vicreg_weights,
            },
            _ => {
                if let Some((_, why)) = NOT_TWO_VIEW.iter().find(|(n, _)| *n == name) {
                    return Err(format!(
                        "loss {name:?} cannot train a two-view method: {why}"
                    ));
                }
                return Err(format!(
                    "unknown loss {name:?}: choose one of {}",
                    NAMES.join(", ")
                ));
            }
        };
        debug_assert_eq!(loss.name(), name);
        Ok(loss)
    }

    /// The name [`TwoViewLoss::new`] takes for this loss.
    pub fn name(&self) -> &'static str {
        match self {
            TwoViewLoss::NtXent { .. } => NAMES[0],
            TwoViewLoss::NtXentTiled { .. } => NAMES[1],
            TwoViewLoss::Dcl { .. } => NAMES[2],
            TwoViewLoss::InfoNce { .. } => NAMES[3],
            TwoViewLoss::InfoNceTiled { .. } => NAMES[4],
            TwoViewLoss::NPair { .. } => NAMES[5],
            TwoViewLoss::Triplet { .. } => NAMES[6],
            TwoViewLoss::Margin { .. } => NAMES[7],
            TwoViewLoss::BarlowTwins { .. } => NAMES[8],
            TwoViewLoss::VicReg { .. } => NAMES[9],
        }
    }

    /// Works in blocks of rows: no 2K×2K similarity matrix is held (memory estimate).
    pub fn is_tiled(&self) -> bool {
        matches!(
            self,
            TwoViewLoss::NtXentTiled { .. } | TwoViewLoss::InfoNceTiled { .. }
        )
    }

    /// The loss of projections `z_a`, `z_b` [K, D] → scalar.
    ///
    /// `info_nce` is symmetric, `½[InfoNCE(u_a, u_b) + InfoNCE(u_b, u_a)]` on L2-normalised rows;
    /// `triplet` is batch-hard over the 2K views with the image index as label, and `triplet`
    /// and `margin` work on L2-normalised rows (distances in [0, 2]).
    pub fn compute(&self, z_a: &Tensor, z_b: &Tensor) -> Result<Tensor, LossError> {
        match *self {
            TwoViewLoss::NtXent { temperature } => nt_xent(z_a, z_b, temperature),
            TwoViewLoss::NtXentTiled {
                temperature,
                tile_rows,
            } => nt_xent_tiled(z_a, z_b, temperature, tile_rows),
            TwoViewLoss::Dcl { temperature } => dcl(z_a, z_b, temperature),
            TwoViewLoss::InfoNce { temperature } => {
                symmetric(z_a, z_b, |q, k| info_nce_in_batch(q, k, temperature))
            }
            TwoViewLoss::InfoNceTiled {
                temperature,
                tile_rows,
            } => symmetric(z_a, z_b, |q, k| {
                info_nce_in_batch_tiled(q, k, temperature, tile_rows)
            }),
            TwoViewLoss::NPair { l2 } => n_pair(z_a, z_b, l2),
            TwoViewLoss::Triplet { margin } => {
                super::check_pair("z_a", z_a, "z_b", z_b, 2)?;
                let k = z_a.size()[0];
                let ids = Tensor::arange(k, (Kind::Int64, z_a.device())).repeat([2]); // [2K]
                let z = l2_normalize(&Tensor::cat(&[z_a, z_b], 0)); // [2K, D]
                batch_hard_triplet(&z, &ids, margin)
            }
            TwoViewLoss::Margin { margin } => {
                margin_contrastive_two_view(&l2_normalize(z_a), &l2_normalize(z_b), margin)
            }
            TwoViewLoss::BarlowTwins { lambda } => barlow_twins(z_a, z_b, lambda),
            TwoViewLoss::VicReg { weights: [l, m, n] } => vicreg_loss(z_a, z_b, l, m, n),
        }
    }
}

/// `½[f(u_a, u_b) + f(u_b, u_a)]` on L2-normalised rows `u` of `z_a`, `z_b` [K, D].
fn symmetric(
    z_a: &Tensor,
    z_b: &Tensor,
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor, LossError>,
) -> Result<Tensor, LossError> {
    super::check_pair("z_a", z_a, "z_b", z_b, 1)?;
    let (u_a, u_b) = (l2_normalize(z_a), l2_normalize(z_b));
    Ok((f(&u_a, &u_b)? + f(&u_b, &u_a)?) * 0.5)
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
            let loss = TwoViewLoss::new(name, &params()).unwrap();
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
            TwoViewLoss::new(n, &params())
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
        let e = TwoViewLoss::new("ntxent", &params()).unwrap_err();
        assert!(
            e.contains("ntxent") && e.contains("nt_xent, nt_xent_tiled"),
            "{e}"
        );
        let e = TwoViewLoss::new("neg_cosine", &params()).unwrap_err();
        assert!(e.contains("predictor"), "{e}");
    }
}
