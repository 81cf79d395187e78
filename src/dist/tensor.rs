//! What the ranks exchange, on tensors: embeddings gathered for the loss, gradients reduced,
//! variables broadcast. Transfers go through host memory (MPI on host buffers; a GPU tensor
//! is copied to the CPU and back).

use super::world;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// `t` [k, …] of every rank, concatenated in rank order: [W·k, …]. The other ranks' rows are
/// detached copies; this rank's rows are `t` itself, so the gradient of a loss of the result
/// flows into this rank's graph through them (tch has no custom autograd functions; this is
/// open_clip's `gather_features` with `local_loss = False`). One process: `t`.
pub fn gather_rows(t: &Tensor) -> Tensor {
    let w = world();
    if w.world() == 1 {
        return t.shallow_clone();
    }
    let shape = t.size();
    let all = match t.kind() {
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8 | Kind::Bool => {
            let local: Vec<i64> = host_vec(&t.to_kind(Kind::Int64));
            Tensor::from_slice(&w.all_gather_i64(&local, "all-gather of a batch's labels"))
        }
        _ => {
            let local: Vec<f32> = host_vec(&t.detach().to_kind(Kind::Float));
            Tensor::from_slice(&w.all_gather_f32(&local, "all-gather of embeddings"))
        }
    };
    let parts: Vec<Tensor> = split(all, w.world(), &shape)
        .into_iter()
        .map(|p| p.to_kind(t.kind()).to_device(t.device()))
        .collect();
    let mut parts = parts;
    parts[w.rank()] = t.shallow_clone();
    Tensor::cat(&parts, 0)
}

/// The mean over the ranks of a per-rank mean `loss` (a scalar): the global batch's mean
/// for equal shards. Its value is the same on every rank; its gradient is `∇loss / W`, so
/// that the summed gradients are the global mean's. One process: `loss`.
pub fn global_mean(loss: &Tensor) -> Tensor {
    let w = world();
    if w.world() == 1 {
        return loss.shallow_clone();
    }
    let share = loss / w.world() as f64;
    let mine = share.double_value(&[]);
    let mut total = [mine];
    w.all_reduce_sum_f64(&mut total, "all-reduce of a loss");
    share + (total[0] - mine) // the others' shares as a constant: value global, gradient mine
}

/// The mean over the ranks of `t` (detached; the same on every rank): the global batch's
/// mean of a per-rank batch mean, for equal shards (DINO's centre). One process: `t`.
pub fn mean_over_ranks(t: &Tensor) -> Tensor {
    let w = world();
    if w.world() == 1 {
        return t.detach();
    }
    let mut buf: Vec<f32> = host_vec(&t.detach().to_kind(Kind::Float));
    w.all_reduce_sum_f32(&mut buf, "all-reduce of a batch mean");
    (Tensor::from_slice(&buf).view(t.size().as_slice()) / w.world() as f64)
        .to_kind(t.kind())
        .to_device(t.device())
}

/// `g ← Σ_ranks g` for the gradient of every tensor in `params` (one flat f32 buffer, as
/// Horovod fuses them; a parameter without a gradient contributes zeros). Returns the bytes
/// this rank sends per step (the buffer's size). One process: nothing, 0.
pub fn all_reduce_gradients(params: &[Tensor]) -> usize {
    let w = world();
    if w.world() == 1 || params.is_empty() {
        return 0;
    }
    for p in params.iter().filter(|p| !p.grad().defined()) {
        // a parameter this rank's loss did not reach: a zero gradient of its own, so that it
        // receives the others' sum (backward of 0·Σp defines p.grad = 0)
        (p.sum(p.kind()) * 0.0).backward();
    }
    let grads: Vec<Tensor> = params
        .iter()
        .map(|p| p.grad().to_kind(Kind::Float).reshape([-1]))
        .collect();
    let mut buf: Vec<f32> = host_vec(&Tensor::cat(&grads, 0));
    w.all_reduce_sum_f32(&mut buf, "all-reduce of gradients");
    let flat = Tensor::from_slice(&buf);
    let mut at = 0;
    tch::no_grad(|| {
        for p in params {
            let n = p.numel() as i64;
            let mut g = p.grad();
            g.copy_(&flat.narrow(0, at, n).view(p.size().as_slice()));
            at += n;
        }
    });
    buf.len() * std::mem::size_of::<f32>()
}

/// Every variable of `vs` (trainable or not: weights, queues, banks, BatchNorm statistics)
/// set to rank 0's, in name order, one buffer. Returns the bytes broadcast.
pub fn broadcast_from_root(vs: &VarStore) -> usize {
    broadcast_where(vs, |_| true, "broadcast of the model from rank 0")
}

/// BatchNorm running statistics set to rank 0's (each rank's move with its own shard; a
/// checkpoint written by rank 0 is then the state of every rank).
pub fn share_running_stats(vs: &VarStore) -> usize {
    broadcast_where(
        vs,
        |name| name.contains("running_") || name.ends_with("num_batches_tracked"),
        "broadcast of BatchNorm statistics",
    )
}

fn broadcast_where(vs: &VarStore, keep: impl Fn(&str) -> bool, what: &'static str) -> usize {
    let w = world();
    if w.world() == 1 {
        return 0;
    }
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| keep(n))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    if vars.is_empty() {
        return 0;
    }
    let flat: Vec<Tensor> = vars
        .iter()
        .map(|(_, t)| t.detach().to_kind(Kind::Float).reshape([-1]))
        .collect();
    let mut buf: Vec<f32> = host_vec(&Tensor::cat(&flat, 0));
    w.broadcast_f32(&mut buf, what);
    let flat = Tensor::from_slice(&buf);
    let mut at = 0;
    tch::no_grad(|| {
        for (_, t) in &vars {
            let n = t.numel() as i64;
            let mut t = t.shallow_clone();
            t.copy_(&flat.narrow(0, at, n).view(t.size().as_slice()));
            at += n;
        }
    });
    buf.len() * std::mem::size_of::<f32>()
}

/// Checks that every rank holds the same weights and state (a checksum of every variable but
/// the BatchNorm statistics, against the ranks' mean); the error says which rank differs.
pub fn ranks_agree(vs: &VarStore) -> anyhow::Result<()> {
    let w = world();
    if w.world() == 1 {
        return Ok(());
    }
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| !n.contains("running_") && !n.ends_with("num_batches_tracked"))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mine: f64 = vars
        .iter()
        .enumerate()
        .map(|(i, (_, t))| {
            (i + 1) as f64 * t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[])
        })
        .sum();
    let mut sum = [mine];
    w.all_reduce_sum_f64(&mut sum, "all-reduce of the weights' checksum");
    let mean = sum[0] / w.world() as f64;
    match (mine - mean).abs() <= 1e-6 * (1.0 + mean.abs()) {
        true => Ok(()),
        false => Err(anyhow::anyhow!(
            "rank {}'s weights differ from the other ranks' (checksum {mine} against a mean of {mean}):              the ranks stopped training the same model",
            w.rank()
        )),
    }
}

/// True on every rank when `flag` is true on any (a Ctrl-C seen by one rank stops all at
/// the same step). One process: `flag`.
pub fn any_rank(flag: bool) -> bool {
    let w = world();
    if w.world() == 1 {
        return flag;
    }
    let mut v = [flag as u8 as f64];
    w.all_reduce_sum_f64(&mut v, "all-reduce of the stop flag");
    v[0] > 0.0
}

/// The elements of `t` in standard order on the host.
fn host_vec<T: tch::kind::Element>(t: &Tensor) -> Vec<T> {
    let t = t.to_device(Device::Cpu).contiguous().reshape([-1]);
    let mut v = vec![T::ZERO; t.numel()];
    t.copy_data(&mut v, t.numel());
    v
}

/// `flat` (W·numel(shape) elements) as W tensors of `shape`.
fn split(flat: Tensor, w: usize, shape: &[i64]) -> Vec<Tensor> {
    let mut all = vec![w as i64 * shape[0]];
    all.extend_from_slice(&shape[1..]);
    flat.view(all.as_slice()).chunk(w as i64, 0)
}
