//! Data-parallel training across processes: the ranks of one job, and what they exchange.
//!
//! `mpirun -np W selfsup pretrain …` (a build with `--features mpi`) runs W ranks. Step s
//! has the same global batch of B images as one process (a function of seed and s); rank r
//! takes rows `r·B/W .. (r+1)·B/W` of it. Per step:
//! ```text
//! views (local B/W) → encoder → embeddings ─ all-gather (detached; the live local rows in
//!   their slot) → the global loss, the same value on every rank → backward (the gradient
//!   through this rank's rows) → all-reduce SUM of every gradient, one flat buffer → update
//! ```
//! Summing is right because every rank differentiates the *global* loss: its gradient is the
//! part that flows through its own rows, and the parts add up to the one-process gradient.
//! (Averaging instead is the known bug class: gradients off by W, lightly #1528/#1977.)
//! Methods whose loss is a mean of per-image terms use [`global_mean`] instead of gathering,
//! which is the same thing for equal shards.
//!
//! The process-wide group ([`world`]) is one process ([`Solo`]) unless the binary was built
//! with `--features mpi` and started by an MPI launcher; then it is MPI's world communicator.
//! Nothing in a method names MPI: it calls [`gather_rows`] or [`global_mean`], which are the
//! identity in one process.

#[cfg(feature = "mpi")]
mod mpi_world;
mod tensor;

pub use tensor::{
    all_reduce_gradients, any_rank, broadcast_from_root, gather_rows, global_mean, mean_over_ranks,
    ranks_agree, share_running_stats,
};

use crate::error::SettingError;
use std::sync::OnceLock;

/// The collective operations data-parallel training needs, over the ranks of one job. Every
/// rank calls them in the same order with buffers of the same length.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// Every rank's `local` (the same length on all), concatenated in rank order.
    fn all_gather_f32(&self, local: &[f32], what: &'static str) -> Vec<f32>;
    /// [`all_gather_f32`](Self::all_gather_f32) of integers (labels, image indices).
    fn all_gather_i64(&self, local: &[i64], what: &'static str) -> Vec<i64>;
    /// `buf ← Σ_ranks buf`.
    fn all_reduce_sum_f32(&self, buf: &mut [f32], what: &'static str);
    /// `buf ← Σ_ranks buf`, in f64 (flags, counts, exact up to 2^53).
    fn all_reduce_sum_f64(&self, buf: &mut [f64], what: &'static str);
    /// `buf ←` rank 0's `buf`.
    fn broadcast_f32(&self, buf: &mut [f32], what: &'static str);
    fn broadcast_f64(&self, buf: &mut [f64], what: &'static str);
    /// Ends every rank of the job now, after printing `message` (a rank's fatal error: the
    /// others would otherwise wait for it forever).
    fn abort(&self, message: &str, code: i32) -> !;
    /// From now on a collective that waits longer than `seconds` for the other ranks ends the
    /// job with a message naming this rank (a rank that died or hangs); None disarms it.
    fn set_timeout(&self, _seconds: Option<f64>) {}
}

/// One process: every collective is the identity.
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn all_gather_f32(&self, local: &[f32], _: &'static str) -> Vec<f32> {
        local.to_vec()
    }
    fn all_gather_i64(&self, local: &[i64], _: &'static str) -> Vec<i64> {
        local.to_vec()
    }
    fn all_reduce_sum_f32(&self, _: &mut [f32], _: &'static str) {}
    fn all_reduce_sum_f64(&self, _: &mut [f64], _: &'static str) {}
    fn broadcast_f32(&self, _: &mut [f32], _: &'static str) {}
    fn broadcast_f64(&self, _: &mut [f64], _: &'static str) {}
    fn abort(&self, message: &str, code: i32) -> ! {
        eprintln!("{message}");
        std::process::exit(code)
    }
}

static WORLD: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// The job's ranks: MPI's world after [`init`] under an MPI launcher, else one process.
pub fn world() -> &'static dyn Collective {
    WORLD.get_or_init(|| Box::new(Solo)).as_ref()
}

/// This process's rank, 0-based.
pub fn rank() -> usize {
    world().rank()
}

/// Ranks in the job.
pub fn size() -> usize {
    world().world()
}

/// Rank 0: the one that writes checkpoints, metrics and progress.
pub fn is_root() -> bool {
    rank() == 0
}

/// The row of the global batch where this rank's `k` rows start: `rank · k`. Per-image
/// randomness inside a method (masks) is keyed by it, so that ranks draw different masks.
pub fn first_row(k: i64) -> i64 {
    rank() as i64 * k
}

/// Whether an MPI launcher started this process as one of several ranks (mpirun, srun).
pub fn launched_with_ranks() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "SLURM_NTASKS",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
    .filter(|&n: &usize| n > 1)
}

/// Ranks of this machine, for the CPU threads each may use.
pub fn ranks_on_this_machine() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
    .filter(|&n: &usize| n >= 1)
    .unwrap_or(1)
    .min(size().max(1))
}

/// Joins the MPI job when an MPI launcher started this process (a build with `--features
/// mpi`); otherwise stays one process. Without the feature, a launch with several ranks is
/// refused: W copies would each train alone. Returns a guard that finalises MPI when dropped.
pub fn init() -> anyhow::Result<Guard> {
    match launched_with_ranks() {
        None => Ok(Guard(false)),
        #[cfg(feature = "mpi")]
        Some(_) => {
            let w = mpi_world::MpiWorld::init()?;
            let _ = WORLD.set(Box::new(w));
            Ok(Guard(true))
        }
        #[cfg(not(feature = "mpi"))]
        Some(n) => anyhow::bail!(
            "an MPI launcher started {n} ranks, but this selfsup was built without MPI: each would \
             train alone. Build it with `cargo build --release --features mpi` (needs openmpi-bin, \
             libopenmpi-dev and libclang-dev), or run one process without mpirun"
        ),
    }
}

/// Finalises MPI when dropped (a rank that leaves without it makes mpirun fail the job).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub struct Guard(bool);

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "mpi")]
        if self.0 {
            mpi_world::finalize();
        }
    }
}

/// The global batch split over the ranks: `(rank, ranks)`, and this rank's rows of a batch
/// of `b` (the message names `train.batch_size` when it does not split evenly).
pub fn local_batch(b: usize) -> Result<usize, SettingError> {
    let w = size();
    match b % w {
        0 => Ok(b / w),
        _ => Err(format!(
            "train.batch_size is {b}, which does not split evenly over the {w} ranks: use a multiple \
             of {w} (every rank takes batch_size / ranks images of each step)"
        ).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_is_rank_0_of_1_and_keeps_its_whole_batch() {
        assert_eq!((rank(), size(), is_root()), (0, 1, true));
        assert_eq!(first_row(16), 0);
        assert_eq!(local_batch(7), Ok(7));
        let s = Solo;
        assert_eq!(s.all_gather_f32(&[1.0, 2.0], "t"), vec![1.0, 2.0]);
        let mut b = [3.0f32];
        s.all_reduce_sum_f32(&mut b, "t");
        assert_eq!(b, [3.0]);
    }
}
