//! The CPC experiment on generated signals, shared by `selfsup cpc` and
//! `examples/cpc_signals.rs`: does a representation learnt without labels hold a sequence's
//! hidden class?
//!
//! Per seed: 1 024 training and 512 test sequences of 256 samples
//! ([`super::signals::oscillators`], 4 classes, chance 25 %). The same network (strided conv
//! encoder → GRU context) is trained without labels by CPC (InfoNCE 1–4 latent steps ahead)
//! and by the plain autoregressive next-value predictor (least squares on the next 8
//! samples), `steps` Adam steps each (batch 64, lr 2e-3); a linear probe on the last context of
//! each sequence (the training sequences' labels) is scored on the test sequences, next to the
//! untrained network and the raw samples.

use super::cpc::{self, CpcNet, Objective};
use super::signals::{oscillators, SignalSet};
use crate::eval::{labels_tensor, linear_probe};
use std::time::Instant;
use tch::nn;

/// Hidden classes of the signals.
pub const CLASSES: usize = 4;

/// The representations compared, in the order of [`compare`]'s rows.
pub const ROWS: [&str; 4] = [
    "raw samples",
    "random-init network",
    "next-value predictor (AR baseline)",
    "CPC (k = 1..4)",
];

/// Linear-probe test top-1 (%) of each of [`ROWS`], one figure per seed (seeds `0..seeds`).
/// `log` hears each training step's loss (and CPC's 1-step accuracy) and each probe's result.
pub fn compare(
    steps: usize,
    seeds: u64,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<Vec<f64>>> {
    anyhow::ensure!(steps >= 1, "--steps is 0: give at least 1");
    anyhow::ensure!(seeds >= 1, "--seeds is 0: give at least 1");
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); ROWS.len()];
    for seed in 0..seeds {
        let train = oscillators(256, CLASSES, 256, 100 + seed);
        let test = oscillators(128, CLASSES, 256, 200 + seed);
        results[0].push(probe(&train.x, &train, &test.x, &test));
        for (row, objective) in [
            (1, None),
            (2, Some(Objective::NextValue)),
            (3, Some(Objective::Cpc { steps_ahead: 4 })),
        ] {
            tch::manual_seed(seed as i64);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = CpcNet::new(
                &vs.root(),
                64,
                64,
                objective.unwrap_or(Objective::NextValue),
            );
            let t = Instant::now();
            if objective.is_some() {
                cpc::train(
                    &vs,
                    &net,
                    &train,
                    cpc::Steps {
                        steps,
                        batch: 64,
                        lr: 2e-3,
                        seed,
                    },
                    |step, loss, acc| {
                        let acc = match acc.is_nan() {
                            true => String::new(),
                            false => format!(", 1-step accuracy {:.1} %", 100.0 * acc),
                        };
                        log(&format!(
                            "seed {seed} {}: step {step}/{steps}: loss {loss:.4}{acc}",
                            ROWS[row]
                        ));
                    },
                )?;
            }
            let a = probe(
                &cpc::features(&net, &train),
                &train,
                &cpc::features(&net, &test),
                &test,
            );
            log(&format!(
                "seed {seed} {}: linear probe {a:.2} % ({:.0} s)",
                ROWS[row],
                t.elapsed().as_secs_f64()
            ));
            results[row].push(a);
        }
    }
    Ok(results)
}

/// The table [`compare`]'s figures make: per row the mean and each seed's figure.
pub fn table(results: &[Vec<f64>], steps: usize) -> String {
    let mut s = format!(
        "linear probe top-1 on the test sequences ({CLASSES} classes, chance 25 %), {steps} steps, seeds 0..{}:\n",
        results[0].len()
    );
    for (name, r) in ROWS.iter().zip(results) {
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        let each: Vec<String> = r.iter().map(|a| format!("{a:.2}")).collect();
        s += &format!("  {name:<36} {mean:6.2} %  ({})\n", each.join(", "));
    }
    s
}

fn probe(ftr: &tch::Tensor, train: &SignalSet, fte: &tch::Tensor, test: &SignalSet) -> f64 {
    let (ytr, yte) = (labels_tensor(&train.labels), labels_tensor(&test.labels));
    100.0 * linear_probe(ftr, &ytr, fte, &yte, CLASSES as i64, 100, 1e-2, 0).test_accuracy
}
