//! Batches of augmented views (two, 2 + n small multi-crop views, or a pretext task's crops
//! and labels), prepared on a background thread while the model trains.
//!
//! Step s of a run reads images `perm_e[b·B .. (b+1)·B]` where `e = s / steps_per_epoch`,
//! `b = s % steps_per_epoch` and `perm_e` is a permutation drawn from `(seed, e)`; every
//! view's randomness comes from `(seed, e, image index, view)`. A batch is therefore a pure
//! function of `(seed, s)`: a resumed run sees exactly the batches the uninterrupted run saw,
//! and the ranks of a data-parallel job each render their slice of the same global batch.

use crate::augment::nhwc_to_tensor;
use crate::augment::{render_batch, Views};
use crate::data::ImageStore;
use crate::rng::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Random stream that draws the epoch permutations (views use streams 0, 1, …).
const PERMUTATION_STREAM: u64 = 1 << 32;

/// One prepared training batch.
pub struct ViewBatch {
    pub step: u64,
    /// `views[v]` is [B, C_v, S_v, S_v, 3] f32 (NHWC), normalised; `S_v = sizes[v]`, `C_v =
    /// crops[v]` crops per image (1 but for pretext tasks).
    pub views: Vec<Vec<f32>>,
    pub sizes: Vec<usize>,
    pub crops: Vec<usize>,
    /// The per-image targets of the batch's images \[B\] (class labels or image indices), when
    /// the loader was given targets; else the labels the views drew [B, L], when they draw any.
    pub targets: Option<Vec<i64>>,
    /// The shape of `targets`: `[B]` or `[B, L]`.
    pub target_shape: Vec<i64>,
    pub batch_size: usize,
    /// Seconds the background thread spent augmenting this batch.
    pub augment_s: f64,
}

impl ViewBatch {
    /// The views as `[B·C_v, 3, S_v, S_v]` tensors (image-major: the crops of image k are rows
    /// `k·C_v ..`; channels-last strides when asked, no copy) and the targets as a `[B]` (or
    /// `[B, L]` view labels) i64 tensor.
    pub fn to_tensors(&self, channels_last: bool) -> (Vec<tch::Tensor>, Option<tch::Tensor>) {
        let views = self
            .views
            .iter()
            .zip(self.sizes.iter().zip(&self.crops))
            .map(|(v, (&s, &c))| nhwc_to_tensor(v, self.batch_size * c, s, channels_last))
            .collect();
        let targets = self
            .targets
            .as_deref()
            .map(|t| tch::Tensor::from_slice(t).view(self.target_shape.as_slice()));
        (views, targets)
    }
}

/// The images a loader draws from, with the per-image targets a method needs (see
/// [`Targets`](crate::method::Targets)).
#[derive(Clone)]
pub struct LoaderData {
    pub images: Arc<ImageStore>,
    pub targets: Option<Arc<Vec<i64>>>,
    /// The images' captions, for methods that learn from text too (the loader does not read
    /// them: the method looks them up by image index).
    pub captions: Option<Arc<Vec<String>>>,
}

impl LoaderData {
    /// Images alone: no targets, no captions.
    pub fn images(images: Arc<ImageStore>) -> Self {
        LoaderData {
            images,
            targets: None,
            captions: None,
        }
    }
}

/// The image order of epoch `epoch`.
pub fn epoch_permutation(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    Rng::for_sample(seed, epoch, 0, PERMUTATION_STREAM).permutation(n)
}

/// The labels the views of a batch of `b` images drew, image-major `[b, L]` (each image's
/// labels of view 0, then of view 1, …); None when they drew none.
fn view_labels(per_view: Vec<(Vec<i64>, usize)>, b: usize) -> (Option<Vec<i64>>, Vec<i64>) {
    let l: usize = per_view.iter().map(|(_, n)| n).sum();
    if l == 0 {
        return (None, vec![b as i64]);
    }
    let mut out = Vec::with_capacity(b * l);
    for k in 0..b {
        for (drawn, n) in &per_view {
            out.extend_from_slice(&drawn[k * n..(k + 1) * n]);
        }
    }
    (Some(out), vec![b as i64, l as i64])
}

/// Makes the batches of steps `start..end` in order: a pure function of `(seed, step)`.
struct BatchMaker {
    data: LoaderData,
    views: Vec<Arc<dyn Views>>,
    batch_size: usize,
    shard: (usize, usize),
    /// From the run's [`Schedule`](super::Schedule): at most `N / B`.
    steps_per_epoch: u64,
    seed: u64,
    next_step: u64,
    end: u64,
    /// The permutation of the epoch last used, cached.
    perm: (u64, Vec<usize>),
    early: Option<EarlyViews>,
}

impl BatchMaker {
    fn make_next(&mut self) -> Option<ViewBatch> {
        if self.next_step >= self.end {
            return None;
        }
        let step = self.next_step;
        self.next_step += 1;
        let t = Instant::now();
        let (n, global) = (self.data.images.len(), self.batch_size);
        let (rank, ranks) = self.shard;
        let b = global / ranks.max(1);
        let steps_per_epoch = self.steps_per_epoch;
        let epoch = step / steps_per_epoch;
        if self.perm.0 != epoch {
            self.perm = (epoch, epoch_permutation(self.seed, epoch, n));
        }
        let k = (step % steps_per_epoch) as usize;
        let idx = &self.perm.1[k * global + rank * b..k * global + (rank + 1) * b];
        let recipes = match &self.early {
            Some(e) if step < e.until.load(Ordering::Relaxed) => &e.views,
            _ => &self.views,
        };
        let mut labels = Vec::new();
        let views = recipes
            .iter()
            .enumerate()
            .map(|(v, views)| {
                let shape = views.shape();
                let mut out = vec![0f32; b * shape.floats()];
                let mut drawn = vec![0i64; b * shape.labels];
                let (im, at) = (&self.data.images, (self.seed, epoch, v as u64));
                render_batch(im, idx, views.as_ref(), at, &mut out, &mut drawn);
                labels.push((drawn, shape.labels));
                out
            })
            .collect();
        self.data.images.release();
        let (targets, target_shape) = match &self.data.targets {
            Some(t) => (Some(idx.iter().map(|&i| t[i]).collect()), vec![b as i64]),
            None => view_labels(labels, b),
        };
        Some(ViewBatch {
            step,
            views,
            sizes: recipes.iter().map(|v| v.shape().side).collect(),
            crops: recipes.iter().map(|v| v.shape().crops).collect(),
            targets,
            target_shape,
            batch_size: b,
            augment_s: t.elapsed().as_secs_f64(),
        })
    }
}

/// The producer of [`ViewBatch`]es for steps `start..end`: on a background thread at most
/// `prefetch` batches ahead, or with `prefetch = 0` in the caller's thread when asked (on a
/// machine whose cores the training step already fills, overlap buys nothing and the two
/// thread pools only disturb each other: measure with `selfsup bench`).
pub struct Loader {
    source: Source,
}

enum Source {
    Background {
        rx: Receiver<ViewBatch>,
        handle: Option<JoinHandle<()>>,
    },
    InThread(Box<BatchMaker>),
}

/// What a [`Loader`] makes: the batches of `steps` from `data`, one view per recipe.
pub struct LoaderSpec {
    pub data: LoaderData,
    /// What each image becomes, view by view.
    pub views: Vec<Arc<dyn Views>>,
    pub batch_size: usize,
    /// The schedule's `⌊N / B⌋` (each epoch's permutation is cut into this many batches).
    pub steps_per_epoch: u64,
    pub seed: u64,
    pub steps: std::ops::Range<u64>,
    /// Batches prepared ahead on a background thread; 0: in the caller's thread.
    pub prefetch: usize,
    /// `(rank, ranks)`: this process renders rows `rank·B/ranks ..` of every global batch of
    /// `batch_size` (data-parallel; `(0, 1)`: all of it). See [`LoaderSpec::shard_of_this_rank`].
    pub shard: (usize, usize),
    /// Progressive resolution: the views of the steps before a switch step.
    pub early: Option<EarlyViews>,
}

/// The views of a run's early steps (progressive resolution: the same recipes at a smaller
/// crop side), rendered for steps `< until`. `until` is shared with the run, which moves it
/// when a time budget re-times the run (before any step near it is prepared).
#[derive(Clone)]
pub struct EarlyViews {
    pub views: Vec<Arc<dyn Views>>,
    pub until: Arc<AtomicU64>,
}

impl LoaderSpec {
    /// This process's shard in the job ([`crate::dist`]).
    pub fn shard_of_this_rank() -> (usize, usize) {
        (crate::dist::rank(), crate::dist::size())
    }
}

impl Loader {
    pub fn spawn(spec: LoaderSpec) -> Self {
        let prefetch = spec.prefetch;
        let whole_batches = (spec.data.images.len() / spec.batch_size.max(1)).max(1) as u64;
        let steps_per_epoch = spec.steps_per_epoch.clamp(1, whole_batches);
        let mut maker = BatchMaker {
            data: spec.data,
            views: spec.views,
            batch_size: spec.batch_size,
            shard: spec.shard,
            steps_per_epoch,
            seed: spec.seed,
            next_step: spec.steps.start,
            end: spec.steps.end,
            perm: (u64::MAX, Vec::new()),
            early: spec.early,
        };
        if prefetch == 0 {
            return Loader {
                source: Source::InThread(Box::new(maker)),
            };
        }
        let (tx, rx) = sync_channel(prefetch);
        let handle = std::thread::spawn(move || {
            while let Some(batch) = maker.make_next() {
                if tx.send(batch).is_err() {
                    return; // the trainer stopped early
                }
            }
        });
        Loader {
            source: Source::Background {
                rx,
                handle: Some(handle),
            },
        }
    }
}

impl Iterator for Loader {
    type Item = ViewBatch;

    /// The next batch, or None when the steps are done.
    fn next(&mut self) -> Option<ViewBatch> {
        match &mut self.source {
            Source::Background { rx, .. } => rx.recv().ok(),
            Source::InThread(maker) => maker.make_next(),
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if let Source::Background { rx, handle } = &mut self.source {
            // Unblock the producer (its send fails once rx is gone) and wait for it.
            let (_tx, new_rx) = sync_channel(1);
            drop(std::mem::replace(rx, new_rx));
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
