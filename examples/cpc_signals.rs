//! CPC on generated signals: does the context learn the hidden class of a sequence?
//!
//! ```text
//! cargo run --release --example cpc_signals [-- STEPS [SEEDS]]
//! ```
//! The signals are `selfsup::sequence::signals::oscillators` (4 classes of two jittered
//! sinusoids with random phases and noise; chance 25 %): 1 024 training and 512 test sequences of
//! 256 samples. The same network (strided conv encoder → GRU context) is trained without labels
//! by CPC (InfoNCE 1–4 latent steps ahead) and by the plain autoregressive next-value predictor
//! (least squares on the next 8 samples), STEPS Adam steps each (default 600, batch 64, lr 2e-3);
//! then a linear probe on the last context of each sequence (labels of the training sequences)
//! is scored on the test sequences, next to the untrained network and the raw samples. SEEDS
//! runs (default 3) give the spread.

use selfsup::eval::{labels_tensor, linear_probe};
use selfsup::sequence::cpc::{self, CpcNet, Objective};
use selfsup::sequence::signals::{oscillators, SignalSet};
use std::time::Instant;
use tch::nn;

const CLASSES: usize = 4;

fn probe(ftr: &tch::Tensor, train: &SignalSet, fte: &tch::Tensor, test: &SignalSet) -> f64 {
    let (ytr, yte) = (labels_tensor(&train.labels), labels_tensor(&test.labels));
    100.0 * linear_probe(ftr, &ytr, fte, &yte, CLASSES as i64, 100, 1e-2, 0).test_accuracy
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.first().map_or(Ok(600), |s| s.parse())?;
    let seeds: u64 = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let rows = [
        "raw samples",
        "random-init network",
        "next-value predictor (AR baseline)",
        "CPC (k = 1..4)",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
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
                    steps,
                    64,
                    2e-3,
                    seed,
                    |step, loss, acc| {
                        let acc = if acc.is_nan() {
                            String::new()
                        } else {
                            format!(", 1-step accuracy {:.1} %", 100.0 * acc)
                        };
                        eprintln!(
                            "seed {seed} {}: step {step}/{steps}: loss {loss:.4}{acc}",
                            rows[row]
                        );
                    },
                )?;
            }
            let a = probe(
                &cpc::features(&net, &train),
                &train,
                &cpc::features(&net, &test),
                &test,
            );
            eprintln!(
                "seed {seed} {}: linear probe {a:.2} % ({:.0} s)",
                rows[row],
                t.elapsed().as_secs_f64()
            );
            results[row].push(a);
        }
    }
    println!("linear probe top-1 on the test sequences ({CLASSES} classes, chance 25 %), {steps} steps, seeds 0..{seeds}:");
    for (name, r) in rows.iter().zip(&results) {
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        let each: Vec<String> = r.iter().map(|a| format!("{a:.2}")).collect();
        println!("  {name:<36} {mean:6.2} %  ({})", each.join(", "));
    }
    Ok(())
}
