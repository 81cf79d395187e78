//! The losses a two-view method can train with, by name (`selfsup pretrain --loss <name>`):
//! each maps the projections of the two views of K images, `z_a`, `z_b` [K, D], to a scalar.
//! The config's loss table is read once into a [`TwoViewLoss`] variant by serde (this file is
//! the loss registry: the enum, its tags and defaults).
//! Losses that need labels, noise samples or a predictor with stop-gradient are used from the
//! library and its examples instead (see [`NOT_TWO_VIEW`]).

use super::{
    barlow_twins, batch_hard_triplet, dcl, info_nce_in_batch, info_nce_in_batch_tiled,
    l2_normalize, margin::margin_contrastive_two_view, n_pair, nt_xent, nt_xent_tiled,
    vicreg::vicreg_loss, LossError,
};
use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The kinds `--loss` accepts (a test holds it equal to the enum's).
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

/// A two-view loss with its parameters: the config's `[method.<m>.loss]` table, tagged by
/// `kind` (one of [`NAMES`]) and carrying only that loss's parameters (another loss's key is
/// an error); a parameter left out takes the default its field documents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TwoViewLoss {
    /// NT-Xent (SimCLR), temperature τ (default 0.2).
    NtXent {
        #[serde(default = "tau")]
        temperature: f64,
    },
    /// NT-Xent in blocks of `tile_rows` rows (0: blocks of about 2²⁴ similarities).
    NtXentTiled {
        #[serde(default = "tau")]
        temperature: f64,
        #[serde(default)]
        tile_rows: usize,
    },
    /// Decoupled contrastive loss (the positive left out of the denominator).
    Dcl {
        #[serde(default = "tau")]
        temperature: f64,
    },
    /// Symmetric in-batch InfoNCE on L2-normalised rows.
    InfoNce {
        #[serde(default = "tau")]
        temperature: f64,
    },
    InfoNceTiled {
        #[serde(default = "tau")]
        temperature: f64,
        #[serde(default)]
        tile_rows: usize,
    },
    /// N-pair with the embedding-norm regulariser λ (default 0.002, Sohn 2016).
    NPair {
        #[serde(default = "n_pair_l2")]
        l2: f64,
    },
    /// Batch-hard triplet over the 2K views, margin m on L2-normalised rows (default 0.5).
    Triplet {
        #[serde(default = "margin")]
        margin: f64,
    },
    /// Contrastive margin loss (default margin 0.5).
    Margin {
        #[serde(default = "margin")]
        margin: f64,
    },
    /// Barlow Twins, off-diagonal weight λ (default 5e-3, the paper).
    BarlowTwins {
        #[serde(default = "barlow_lambda")]
        lambda: f64,
    },
    /// VICReg, weights (invariance, variance, covariance) (default [25, 25, 1]).
    #[serde(rename = "vicreg")]
    VicReg {
        #[serde(default = "vicreg_weights")]
        weights: [f64; 3],
    },
}

fn tau() -> f64 {
    0.2
}
fn n_pair_l2() -> f64 {
    0.002
}
fn margin() -> f64 {
    0.5
}
fn barlow_lambda() -> f64 {
    5e-3
}
fn vicreg_weights() -> [f64; 3] {
    [25.0, 25.0, 1.0]
}

impl Default for TwoViewLoss {
    /// NT-Xent at τ 0.2.
    fn default() -> Self {
        TwoViewLoss::NtXent { temperature: tau() }
    }
}

impl TwoViewLoss {
    /// The loss of kind `name` (one of [`NAMES`]) at its default parameters; an unknown name
    /// lists the choices, a catalogue loss that cannot train two views says why.
    pub fn of_kind(name: &str) -> Result<Self, SettingError> {
        let mut t = toml::Table::new();
        t.insert("kind".into(), toml::Value::String(name.into()));
        match toml::Value::Table(t).try_into() {
            Ok(loss) => Ok(loss),
            Err(_) => match NOT_TWO_VIEW.iter().find(|(n, _)| *n == name) {
                Some((_, why)) => {
                    Err(format!("loss {name:?} cannot train a two-view method: {why}").into())
                }
                None => {
                    Err(format!("unknown loss {name:?}: choose one of {}", NAMES.join(", ")).into())
                }
            },
        }
    }

    /// Whether the loss of kind `kind` has the parameter `key` (its value `value` may still be
    /// of the wrong type).
    pub fn takes(kind: &str, key: &str, value: &toml::Value) -> bool {
        let mut t = toml::Table::new();
        t.insert("kind".into(), toml::Value::String(kind.into()));
        t.insert(key.into(), value.clone());
        match toml::Value::Table(t).try_into::<TwoViewLoss>() {
            Ok(_) => true,
            Err(e) => !e.message().contains("unknown field"),
        }
    }

    /// Checks the parameters' ranges: τ > 0, the others finite and ≥ 0; the message names the
    /// key under `at` (`method.simclr.loss.temperature`).
    pub fn check(&self, at: &str) -> Result<(), SettingError> {
        let table = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        for (key, value) in &table {
            let numbers: Vec<f64> = match value {
                toml::Value::Float(x) => vec![*x],
                toml::Value::Array(a) => a.iter().filter_map(toml::Value::as_float).collect(),
                _ => continue,
            };
            for v in numbers {
                match key.as_str() {
                    "temperature" if !(v.is_finite() && v > 0.0) => {
                        return Err(format!("{at}.{key} is {v}: it must be > 0").into())
                    }
                    _ if !(v.is_finite() && v >= 0.0) => {
                        return Err(format!("{at}.{key} is {v}: it must be ≥ 0").into())
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Its kind, the `kind` of its table.
    pub fn name(&self) -> &'static str {
        match self {
            TwoViewLoss::NtXent { .. } => "nt_xent",
            TwoViewLoss::NtXentTiled { .. } => "nt_xent_tiled",
            TwoViewLoss::Dcl { .. } => "dcl",
            TwoViewLoss::InfoNce { .. } => "info_nce",
            TwoViewLoss::InfoNceTiled { .. } => "info_nce_tiled",
            TwoViewLoss::NPair { .. } => "n_pair",
            TwoViewLoss::Triplet { .. } => "triplet",
            TwoViewLoss::Margin { .. } => "margin",
            TwoViewLoss::BarlowTwins { .. } => "barlow_twins",
            TwoViewLoss::VicReg { .. } => "vicreg",
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

    /// The loss `name` with τ 0.5 and 3-row tiles where it takes them.
    fn loss(name: &str) -> TwoViewLoss {
        let mut l = TwoViewLoss::of_kind(name).unwrap();
        match &mut l {
            TwoViewLoss::NtXent { temperature }
            | TwoViewLoss::Dcl { temperature }
            | TwoViewLoss::InfoNce { temperature } => *temperature = 0.5,
            TwoViewLoss::NtXentTiled {
                temperature,
                tile_rows,
            }
            | TwoViewLoss::InfoNceTiled {
                temperature,
                tile_rows,
            } => (*temperature, *tile_rows) = (0.5, 3),
            _ => {}
        }
        l
    }

    #[test]
    fn every_name_gives_a_finite_differentiable_loss_that_sees_both_views() {
        let (a, b) = (randn(&[6, 8], 0), randn(&[6, 8], 1));
        for name in NAMES {
            let loss = loss(name);
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
        let v = |n: &str, a: &Tensor, b: &Tensor| loss(n).compute(a, b).unwrap().double_value(&[]);
        assert!((v("nt_xent", &a, &b) - v("nt_xent_tiled", &a, &b)).abs() < 1e-12);
        assert!((v("info_nce", &a, &b) - v("info_nce_tiled", &a, &b)).abs() < 1e-12);
        assert!((v("info_nce", &a, &b) - v("info_nce", &b, &a)).abs() < 1e-12);
    }

    #[test]
    fn unknown_and_unsuitable_names_say_what_to_do() {
        let e = TwoViewLoss::of_kind("ntxent").unwrap_err().to_string();
        assert!(
            e.contains("ntxent") && e.contains("nt_xent, nt_xent_tiled"),
            "{e}"
        );
        let e = TwoViewLoss::of_kind("neg_cosine").unwrap_err().to_string();
        assert!(e.contains("predictor"), "{e}");
    }

    #[test]
    fn the_kinds_are_the_enums_tags_and_a_table_takes_only_its_own_keys() {
        for (i, name) in NAMES.iter().enumerate() {
            let l = TwoViewLoss::of_kind(name).unwrap();
            assert_eq!(l.name(), *name);
            // every variant once, in NAMES order (a new variant breaks this match)
            let at = match l {
                TwoViewLoss::NtXent { .. } => 0,
                TwoViewLoss::NtXentTiled { .. } => 1,
                TwoViewLoss::Dcl { .. } => 2,
                TwoViewLoss::InfoNce { .. } => 3,
                TwoViewLoss::InfoNceTiled { .. } => 4,
                TwoViewLoss::NPair { .. } => 5,
                TwoViewLoss::Triplet { .. } => 6,
                TwoViewLoss::Margin { .. } => 7,
                TwoViewLoss::BarlowTwins { .. } => 8,
                TwoViewLoss::VicReg { .. } => 9,
            };
            assert_eq!(at, i, "{name}");
            let t = toml::Table::try_from(&l).unwrap();
            assert_eq!(t["kind"].as_str(), Some(*name));
            assert_eq!(toml::Value::Table(t).try_into::<TwoViewLoss>().unwrap(), l);
        }
        let v = |x: f64| toml::Value::Float(x);
        assert!(TwoViewLoss::takes("dcl", "temperature", &v(0.3)));
        assert!(!TwoViewLoss::takes("vicreg", "temperature", &v(0.3)));
        assert!(TwoViewLoss::takes(
            "margin",
            "margin",
            &toml::Value::String("x".into())
        ));
        let e = toml::from_str::<TwoViewLoss>("kind = \"vicreg\"\nmargin = 0.7")
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("unknown field `margin`"), "{e}");
    }
}
