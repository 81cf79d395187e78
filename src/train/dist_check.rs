//! `selfsup dist-check`: do W ranks compute what one process computes? For each loss where
//! gathering matters (NT-Xent, InfoNCE with a MoCo queue, Barlow Twins), every rank takes its
//! K/W rows of the same K image pairs through a BatchNorm-free test encoder, gathers
//! ([`gather_rows`]), takes the loss and backward, and sums the gradients
//! ([`all_reduce_gradients`]); then the same rank computes the loss and gradients of all K rows
//! alone (no communication) and compares. The queue after the step is compared too.
//!
//! In one process it compares the code path with itself (trivially equal); under
//! `mpirun -np 2` it is the gradient-equivalence test of tests/mpi.rs.

use crate::dist::{all_reduce_gradients, gather_rows, world};
use crate::loss::{info_nce, l2_normalize, TwoViewLoss};
use crate::method::Queue;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Input width of the test encoder's images (3×4×4 pixels).
const INPUT: i64 = 48;

/// One loss's comparison: the largest differences between the W-rank and the one-process
/// results, over every rank.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub loss: &'static str,
    pub value: f64,
    pub loss_diff: f64,
    /// max |∇_W-ranks − ∇_one process| over every parameter element.
    pub grad_diff: f64,
    /// max |∇| (the scale of `grad_diff`).
    pub grad_max: f64,
    /// max |queue_W-ranks − queue_one process| after the step (InfoNCE with a queue; else 0).
    pub state_diff: f64,
}

/// The test encoder `Linear(48, 32) → tanh → Linear(32, 16)`: no BatchNorm, so that a rank's
/// rows are encoded as they are in the whole batch.
fn encoder(vs: &nn::VarStore) -> nn::Sequential {
    let p = vs.root();
    nn::seq()
        .add(nn::linear(&p / "fc1", INPUT, 32, Default::default()))
        .add_fn(|x| x.tanh())
        .add(nn::linear(&p / "fc2", 32, 16, Default::default()))
}

/// Runs the check on `k` image pairs (a multiple of the ranks); the same rows on every rank.
pub fn run(k: i64) -> anyhow::Result<Vec<CheckRow>> {
    let w = world();
    let ranks = w.world() as i64;
    anyhow::ensure!(
        k >= 2 * ranks && k % ranks == 0,
        "--images is {k}: it must be a multiple of the {ranks} ranks, at least 2 per rank"
    );
    let local = k / ranks;
    let first = w.rank() as i64 * local;
    tch::manual_seed(1234);
    let x_a = Tensor::randn([k, INPUT], (Kind::Float, Device::Cpu));
    let x_b = &x_a + Tensor::randn([k, INPUT], (Kind::Float, Device::Cpu)) * 0.3;
    let queue_init = l2_normalize(&Tensor::randn([32, 16], (Kind::Float, Device::Cpu)));
    let mut rows = Vec::new();
    let objectives = [
        Objective::TwoView(TwoViewLoss::NtXent { temperature: 0.5 }),
        Objective::QueueInfoNce,
        Objective::TwoView(TwoViewLoss::BarlowTwins { lambda: 5e-3 }),
    ];
    for objective in &objectives {
        let loss = objective.name();
        tch::manual_seed(99);
        let vs = nn::VarStore::new(Device::Cpu);
        let f = encoder(&vs);
        crate::dist::broadcast_from_root(&vs);
        let mut one = nn::VarStore::new(Device::Cpu);
        let g = encoder(&one);
        one.copy(&vs)?;
        // W ranks: this rank's rows, gathered for the loss, gradients summed
        let (xa, xb) = (x_a.narrow(0, first, local), x_b.narrow(0, first, local));
        let (dist_loss, dist_queue) = objective.loss(&f, &xa, &xb, &queue_init, true)?;
        dist_loss.backward();
        let p = crate::optim::trainable_by_name(&vs);
        all_reduce_gradients(&p.iter().map(|(_, t)| t.shallow_clone()).collect::<Vec<_>>());
        // one process: all K rows, no communication
        let (one_loss, one_queue) = objective.loss(&g, &x_a, &x_b, &queue_init, false)?;
        one_loss.backward();
        let q = crate::optim::trainable_by_name(&one);
        let mut grad_diff = 0f64;
        let mut grad_max = 0f64;
        for ((n1, a), (n2, b)) in p.iter().zip(&q) {
            anyhow::ensure!(n1 == n2, "parameter order differs: {n1} vs {n2}");
            grad_diff = grad_diff.max(max_abs(&(a.grad() - b.grad())));
            grad_max = grad_max.max(max_abs(&b.grad()));
        }
        let mut worst = [
            (dist_loss.double_value(&[]) - one_loss.double_value(&[])).abs(),
            grad_diff,
            max_abs(&(dist_queue - one_queue)),
        ];
        // the worst over every rank
        let all = w.all_gather_f32(
            &worst.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            "all-gather of the check's differences",
        );
        for (i, v) in all.iter().enumerate() {
            worst[i % 3] = worst[i % 3].max(*v as f64);
        }
        rows.push(CheckRow {
            loss,
            value: one_loss.double_value(&[]),
            loss_diff: worst[0],
            grad_diff: worst[1],
            grad_max,
            state_diff: worst[2],
        });
    }
    Ok(rows)
}

/// What the check compares: a two-view loss of the gathered batch, or MoCo's InfoNCE against
/// a queue (queries with gradient, keys without, the global keys enqueued).
enum Objective {
    TwoView(TwoViewLoss),
    QueueInfoNce,
}

impl Objective {
    fn name(&self) -> &'static str {
        match self {
            Objective::TwoView(l) => l.name(),
            Objective::QueueInfoNce => "info_nce_queue",
        }
    }

    /// The loss of image pairs `(x_a, x_b)` under encoder `f`, gathering across the ranks
    /// when `gather`; with the queue after the step's keys are enqueued.
    fn loss(
        &self,
        f: &nn::Sequential,
        x_a: &Tensor,
        x_b: &Tensor,
        queue_init: &Tensor,
        gather: bool,
    ) -> anyhow::Result<(Tensor, Tensor)> {
        let all = |t: Tensor| match gather {
            true => gather_rows(&t),
            false => t,
        };
        let (z_a, z_b) = (f.forward(x_a), f.forward(x_b));
        let qs = nn::VarStore::new(Device::Cpu);
        let queue = Queue::new(&(qs.root() / "queue"), queue_init.size()[0], 16);
        let keys_var = qs.variables()["queue.keys"].shallow_clone();
        tch::no_grad(|| {
            keys_var.shallow_clone().copy_(queue_init);
        });
        let loss = match self {
            Objective::TwoView(l) => l.compute(&all(z_a), &all(z_b))?,
            Objective::QueueInfoNce => {
                let q = all(l2_normalize(&z_a));
                let k = all(tch::no_grad(|| l2_normalize(&z_b)));
                let loss = info_nce(&q, &k, &queue.negatives(), 0.2)?;
                queue.push(&k);
                loss
            }
        };
        Ok((loss, keys_var.copy()))
    }
}

fn max_abs(t: &Tensor) -> f64 {
    match t.numel() {
        0 => 0.0,
        _ => t.abs().max().double_value(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_one_process_the_check_runs_and_agrees_with_itself() {
        let rows = run(8).unwrap();
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert!(r.value.is_finite(), "{r:?}");
            assert!(r.grad_max > 0.0, "{r:?}: no gradient");
            assert!(
                r.loss_diff < 1e-6 && r.grad_diff < 1e-6 && r.state_diff < 1e-6,
                "{r:?}"
            );
        }
        assert!(run(1).unwrap_err().to_string().contains("--images"));
    }
}
