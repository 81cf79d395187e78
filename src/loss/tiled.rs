//! Tiled NT-Xent and InfoNCE: the same value and gradients as [`super::nt_xent()`] and
//! [`super::info_nce_in_batch`], in O(N·D + r·M) memory instead of O(N·M): the N×M similarity
//! matrix is never materialised, only blocks of r rows of it.
//!
//! Both are a row-wise cross-entropy over `S = Q Kᵀ / τ` with a target column t(i) per row,
//! optionally excluding j = i. With `P = softmax_rows(S)` (excluded entries 0) and
//! `G = (P − onehot(t)) / N`, the gradients are
//! ```text
//! ∂L/∂Q = G K / τ        ∂L/∂K = Gᵀ Q / τ
//! ```
//! Pass 1 computes the row log-sum-exps block by block; pass 2 recomputes each block of S,
//! forms its block of G and accumulates both gradients. The result is returned as a
//! *surrogate* scalar `L.detach() + Σ Q⊙∂Q + Σ K⊙∂K − (same).detach()`: its value is L and
//! autograd through it hands ∂L/∂Q and ∂L/∂K to whatever produced Q and K (the encoder).

use super::{check_pair, check_positive, l2_normalize, LossError};
use tch::{Kind, Tensor};

/// Elements of one [r, M] block of S when `block_rows` is 0 (auto): 2²⁴ floats = 64 MiB in f32.
const AUTO_BLOCK_ELEMENTS: i64 = 1 << 24;

/// Rows per block: `block_rows`, or the auto size for M columns.
fn rows_per_block(block_rows: usize, m: i64) -> i64 {
    if block_rows > 0 {
        block_rows as i64
    } else {
        (AUTO_BLOCK_ELEMENTS / m.max(1)).max(1)
    }
}

/// Block `[start, start + r)` of `S = Q Kᵀ / τ`, with `S_{i,i} = −∞` when `exclude_self`.
fn logits_block(
    q: &Tensor,
    k: &Tensor,
    start: i64,
    r: i64,
    exclude_self: bool,
    temperature: f64,
) -> Tensor {
    let s = q.narrow(0, start, r).matmul(&k.tr()) / temperature; // [r, M]
    if exclude_self {
        let _ = s
            .narrow(1, start, r)
            .diagonal(0, 0, 1)
            .fill_(f64::NEG_INFINITY);
    }
    s
}

/// Mean over rows of `−log softmax(S)_{i, t(i)}`, tiled; see the module doc.
///
/// # Shapes
/// `q`: [N, D]; `k`: [M, D]; `targets`: \[N\] int64 in 0..M → scalar
fn tiled_row_cross_entropy(
    q: &Tensor,
    k: &Tensor,
    targets: &Tensor,
    exclude_self: bool,
    temperature: f64,
    block_rows: usize,
) -> Tensor {
    let (n, m) = (q.size()[0], k.size()[0]);
    let kind = q.kind();
    let r_max = rows_per_block(block_rows, m);
    let (qd, kd) = (q.detach(), k.detach());
    let blocks: Vec<(i64, i64)> = (0..n)
        .step_by(r_max as usize)
        .map(|s| (s, r_max.min(n - s)))
        .collect();
    let (value, grad_q, grad_k) = tch::no_grad(|| {
        // Pass 1: log-sum-exp of every row, [N].
        let lse = Tensor::cat(
            &blocks
                .iter()
                .map(|&(s, r)| {
                    logits_block(&qd, &kd, s, r, exclude_self, temperature)
                        .logsumexp([1i64].as_slice(), false)
                })
                .collect::<Vec<_>>(),
            0,
        );
        let target_logits =
            (&qd * kd.index_select(0, targets)).sum_dim_intlist([1i64].as_slice(), false, kind)
                / temperature; // [N]
        let value = (&lse - target_logits).mean(kind);
        // Pass 2: G block by block, both gradients accumulated.
        let grad_q = Tensor::zeros_like(&qd); // [N, D]
        let mut grad_k = Tensor::zeros_like(&kd); // [M, D]
        let minus_one = Tensor::full([r_max, 1], -1.0, (kind, q.device()));
        for &(s, r) in &blocks {
            let logits = logits_block(&qd, &kd, s, r, exclude_self, temperature); // [r, M]
            let g = (logits - lse.narrow(0, s, r).unsqueeze(1)).exp(); // P, [r, M]
            let g = g.scatter_add(
                1,
                &targets.narrow(0, s, r).unsqueeze(1),
                &minus_one.narrow(0, 0, r),
            ) / (n as f64 * temperature);
            grad_q.narrow(0, s, r).copy_(&g.matmul(&kd)); // [r, D]
            let _ = grad_k.g_add_(&g.tr().matmul(&qd.narrow(0, s, r))); // [M, D]
        }
        (value, grad_q, grad_k)
    });
    let linear = (q * &grad_q).sum(kind) + (k * &grad_k).sum(kind);
    value + &linear - linear.detach()
}

/// NT-Xent ([`super::nt_xent()`]) computed in blocks of `block_rows` anchors (0: auto, blocks of
/// about 2²⁴ similarities). Same value and gradients; memory O(K·D + block_rows·K).
///
/// # Shapes
/// `z_a`, `z_b`: [K, D] → scalar
pub fn nt_xent_tiled(
    z_a: &Tensor,
    z_b: &Tensor,
    temperature: f64,
    block_rows: usize,
) -> Result<Tensor, LossError> {
    check_pair("z_a", z_a, "z_b", z_b, 1)?;
    check_positive("temperature", temperature)?;
    let k = z_a.size()[0];
    let u = l2_normalize(&Tensor::cat(&[z_a, z_b], 0)); // [2K, D]
    let targets = (Tensor::arange(2 * k, (Kind::Int64, u.device())) + k).remainder(2 * k); // [2K]
    Ok(tiled_row_cross_entropy(
        &u,
        &u,
        &targets,
        true,
        temperature,
        block_rows,
    ))
}

/// InfoNCE with in-batch negatives ([`super::info_nce_in_batch`]) computed in blocks of
/// `block_rows` queries (0: auto). Same value and gradients; memory O(B·D + block_rows·B).
///
/// # Shapes
/// `query`, `keys`: [B, D] → scalar
pub fn info_nce_in_batch_tiled(
    query: &Tensor,
    keys: &Tensor,
    temperature: f64,
    block_rows: usize,
) -> Result<Tensor, LossError> {
    check_pair("query", query, "keys", keys, 1)?;
    check_positive("temperature", temperature)?;
    let targets = Tensor::arange(query.size()[0], (Kind::Int64, query.device()));
    Ok(tiled_row_cross_entropy(
        query,
        keys,
        &targets,
        false,
        temperature,
        block_rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::randn;
    use crate::loss::{info_nce_in_batch, nt_xent};

    /// (value, ∂/∂a, ∂/∂b) of `f(a, b)`.
    fn value_and_grads(
        a: &Tensor,
        b: &Tensor,
        f: impl Fn(&Tensor, &Tensor) -> Tensor,
    ) -> (f64, Tensor, Tensor) {
        let a = a.detach().set_requires_grad(true);
        let b = b.detach().set_requires_grad(true);
        let l = f(&a, &b);
        l.backward();
        (l.double_value(&[]), a.grad().copy(), b.grad().copy())
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().double_value(&[])
    }

    #[test]
    fn nt_xent_tiled_matches_the_plain_form_in_value_and_gradients() {
        let (a, b) = (randn(&[7, 5], 0), randn(&[7, 5], 1));
        let plain = value_and_grads(&a, &b, |a, b| nt_xent(a, b, 0.3).unwrap());
        // block sizes that divide 2K = 14, that do not, 1 row, everything at once, auto
        for block in [1usize, 3, 7, 14, 100, 0] {
            let tiled = value_and_grads(&a, &b, |a, b| nt_xent_tiled(a, b, 0.3, block).unwrap());
            assert!(
                (plain.0 - tiled.0).abs() < 1e-12,
                "block {block}: {} vs {}",
                plain.0,
                tiled.0
            );
            assert!(
                max_abs(&(&plain.1 - &tiled.1)) < 1e-12,
                "block {block}: ∂z_a"
            );
            assert!(
                max_abs(&(&plain.2 - &tiled.2)) < 1e-12,
                "block {block}: ∂z_b"
            );
        }
    }

    #[test]
    fn info_nce_tiled_matches_the_plain_form_in_value_and_gradients() {
        let (q, k) = (randn(&[9, 4], 2), randn(&[9, 4], 3));
        let plain = value_and_grads(&q, &k, |q, k| info_nce_in_batch(q, k, 0.2).unwrap());
        for block in [1usize, 2, 4, 9, 0] {
            let tiled = value_and_grads(&q, &k, |q, k| {
                info_nce_in_batch_tiled(q, k, 0.2, block).unwrap()
            });
            assert!((plain.0 - tiled.0).abs() < 1e-12, "block {block}");
            assert!(max_abs(&(&plain.1 - &tiled.1)) < 1e-12, "block {block}: ∂q");
            assert!(max_abs(&(&plain.2 - &tiled.2)) < 1e-12, "block {block}: ∂k");
        }
    }

    #[test]
    fn float32_agrees_to_1e_5_and_identical_rows_give_ln_2k_minus_1() {
        let (a, b) = (
            randn(&[64, 16], 4).to_kind(Kind::Float),
            randn(&[64, 16], 5).to_kind(Kind::Float),
        );
        let plain = value_and_grads(&a, &b, |a, b| nt_xent(a, b, 0.5).unwrap());
        let tiled = value_and_grads(&a, &b, |a, b| nt_xent_tiled(a, b, 0.5, 10).unwrap());
        assert!((plain.0 - tiled.0).abs() < 1e-5);
        assert!(max_abs(&(&plain.1 - &tiled.1)) < 1e-5);
        assert!(max_abs(&(&plain.2 - &tiled.2)) < 1e-5);
        let z = Tensor::ones([6, 3], (Kind::Double, tch::Device::Cpu));
        let l = nt_xent_tiled(&z, &z, 0.5, 4).unwrap().double_value(&[]);
        assert!((l - 11f64.ln()).abs() < 1e-10);
    }

    #[test]
    fn gradients_flow_to_what_produced_the_embeddings() {
        // z = x W: the surrogate must hand ∂L/∂z on to W exactly as the plain form does.
        let x = randn(&[8, 3], 6);
        let w0 = randn(&[3, 4], 7);
        let grad_w = |tiled: bool| {
            let w = w0.detach().set_requires_grad(true);
            let z = x.matmul(&w);
            let (a, b) = (z.narrow(0, 0, 4), z.narrow(0, 4, 4));
            let l = if tiled {
                nt_xent_tiled(&a, &b, 0.5, 3)
            } else {
                nt_xent(&a, &b, 0.5)
            };
            l.unwrap().backward();
            w.grad().copy()
        };
        assert!(max_abs(&(grad_w(true) - grad_w(false))) < 1e-12);
    }

    #[test]
    fn bad_arguments_are_named() {
        let z = randn(&[4, 3], 0);
        let e = nt_xent_tiled(&z, &randn(&[5, 3], 0), 0.5, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 3]") && e.contains("[5, 3]"), "{e}");
        let e = info_nce_in_batch_tiled(&z, &z, 0.0, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("temperature"), "{e}");
    }
}
