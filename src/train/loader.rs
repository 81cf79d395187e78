//! Batches of two augmented views, prepared on a background thread while the model trains.
//!
//! Step s of a run reads images `perm_e[b·B .. (b+1)·B]` where `e = s / steps_per_epoch`,
//! `b = s % steps_per_epoch` and `perm_e` is a permutation drawn from `(seed, e)`; every
//! view's randomness comes from `(seed, e, image index, view)`. A batch is therefore a pure
//! function of `(seed, s)`: a resumed run sees exactly the batches the uninterrupted run saw.

use crate::augment::{augment_batch, ViewRecipe};
use crate::data::ImageStore;
use crate::rng::Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Random stream that draws the epoch permutations (views use streams 0, 1, …).
const PERMUTATION_STREAM: u64 = 1 << 32;

/// One prepared training batch.
pub struct ViewBatch {
    pub step: u64,
    /// `views[v]` is [B, S, S, 3] f32 (NHWC), normalised.
    pub views: Vec<Vec<f32>>,
    pub batch_size: usize,
    /// Seconds the background thread spent augmenting this batch.
    pub augment_s: f64,
}

/// The image order of epoch `epoch`.
pub fn epoch_permutation(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    Rng::for_sample(seed, epoch, 0, PERMUTATION_STREAM).permutation(n)
}

/// A background producer of [`ViewBatch`]es for steps `start..end`, at most `prefetch` ahead.
pub struct Loader {
    rx: Receiver<ViewBatch>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        images: Arc<ImageStore>,
        recipes: Vec<ViewRecipe>,
        batch_size: usize,
        seed: u64,
        start: u64,
        end: u64,
        prefetch: usize,
    ) -> Self {
        let (tx, rx) = sync_channel(prefetch);
        let handle = std::thread::spawn(move || {
            let n = images.len();
            let steps_per_epoch = (n / batch_size) as u64;
            let view_len = batch_size * recipes[0].out_size * recipes[0].out_size * 3;
            let mut perm_epoch = u64::MAX;
            let mut perm = Vec::new();
            for step in start..end {
                let t = Instant::now();
                let epoch = step / steps_per_epoch;
                if epoch != perm_epoch {
                    perm = epoch_permutation(seed, epoch, n);
                    perm_epoch = epoch;
                }
                let b = (step % steps_per_epoch) as usize;
                let idx = &perm[b * batch_size..(b + 1) * batch_size];
                let views = recipes
                    .iter()
                    .enumerate()
                    .map(|(v, recipe)| {
                        let mut out = vec![0f32; view_len];
                        augment_batch(
                            &images.pixels,
                            images.height,
                            images.width,
                            idx,
                            recipe,
                            seed,
                            epoch,
                            v as u64,
                            &mut out,
                        );
                        out
                    })
                    .collect();
                let batch = ViewBatch {
                    step,
                    views,
                    batch_size,
                    augment_s: t.elapsed().as_secs_f64(),
                };
                if tx.send(batch).is_err() {
                    return; // the trainer stopped early
                }
            }
        });
        Loader {
            rx,
            handle: Some(handle),
        }
    }

    /// The next batch, or None when the producer is done.
    pub fn next(&self) -> Option<ViewBatch> {
        self.rx.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock the producer (its send fails once rx is gone) and wait for it.
        let (_tx, rx) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
