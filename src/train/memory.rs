//! A memory estimate of one training step, checked against the machine's available memory
//! before training starts: a batch that cannot fit is refused up front with the estimate,
//! not after an hour when the allocator fails.

use crate::backbone::{BackboneConfig, ResNetConfig, Stem, VitConfig};
use crate::error::SettingError;

/// Activation floats a ResNet keeps for backward per input view of `size`² pixels.
///
/// Every conv output is kept about three times (conv, BatchNorm, ReLU outputs), per stage
/// `i` with `c_i · w` channels (×4 at bottleneck outputs) at `(S / 2^i)²` positions (÷4 more
/// after the ImageNet stem's stride and max-pool).
pub fn activation_floats_per_view(cfg: &ResNetConfig, size: usize) -> f64 {
    let w = cfg.width;
    let (blocks, bottleneck): (&[usize], bool) = match cfg.depth {
        18 => (&[2, 2, 2, 2], false),
        34 => (&[3, 4, 6, 3], false),
        _ => (&[3, 4, 6, 3], true),
    };
    let s2 = (size * size) as f64;
    let (stem_area, body_area) = match cfg.stem {
        Stem::Cifar => (s2, s2),
        Stem::Imagenet => (s2 / 4.0, s2 / 16.0),
    };
    let mut floats = 64.0 * w * stem_area;
    for (i, &n) in blocks.iter().enumerate() {
        let c = 64.0 * w * (1 << i) as f64;
        let area = body_area / (1 << (2 * i)) as f64;
        let per_block = if bottleneck { c + c + 4.0 * c } else { 2.0 * c };
        floats += n as f64 * per_block * area;
    }
    3.0 * floats
}

/// Activation floats a ViT keeps for backward per input view of `size`² pixels: per block and
/// token about 17·D (norms, q/k/v, attention output, projection, the 4·D MLP before and after
/// its GELU, residuals) and the attention probabilities, heads·T² per block (T = L + 1).
pub fn vit_activation_floats_per_view(cfg: &VitConfig, size: usize) -> f64 {
    let t = ((size as i64 / cfg.patch.max(1)).pow(2) + 1) as f64;
    cfg.depth as f64 * (17.0 * cfg.dim as f64 * t + 2.0 * cfg.heads as f64 * t * t)
}

/// Activation floats of either encoder per view.
pub fn backbone_activation_floats(cfg: &BackboneConfig, size: usize) -> f64 {
    match cfg {
        BackboneConfig::ResNet(c) => activation_floats_per_view(c, size),
        BackboneConfig::Vit(c) => vit_activation_floats_per_view(c, size),
    }
}

/// What one training step holds: `batch` images, each `views[v].0` crops of `views[v].1`²
/// pixels for every view v (two large views, multi-crop views, a pretext task's crops).
#[derive(Clone, Debug)]
pub struct StepShape {
    pub batch: usize,
    /// `(crops, side)` per view of an image.
    pub views: Vec<(usize, usize)>,
    /// The contrastive loss works in blocks (no 2B×2B matrix).
    pub tiled: bool,
    /// `train.micro_batch`: the images whose activations are held at once (None: all).
    pub micro_batch: Option<usize>,
    /// The method can be micro-batched (what a refusal may suggest).
    pub splits: bool,
}

impl StepShape {
    /// Two views of `size`² and `small_crops` of `small_size`².
    pub fn two_views(
        batch: usize,
        size: usize,
        small_crops: usize,
        small_size: usize,
        tiled: bool,
    ) -> Self {
        let mut views = vec![(1, size), (1, size)];
        views.extend(std::iter::repeat_n((1, small_size), small_crops));
        StepShape {
            batch,
            views,
            tiled,
            micro_batch: None,
            splits: false,
        }
    }

    /// "on 32x32 images with 6 small crops", "on 9 crops of 18x18 per image".
    fn describe(&self) -> String {
        let (Some(&(c0, s0)), rest) = (self.views.first(), self.views.get(1..).unwrap_or(&[]))
        else {
            return "with no views".into();
        };
        if c0 > 1 || self.views.len() == 1 {
            return format!("on {c0} crops of {s0}x{s0} per image");
        }
        let small = rest.iter().filter(|&&(_, s)| s != s0).count();
        match small {
            0 => format!("on {s0}x{s0} images"),
            n => format!("on {s0}x{s0} images with {n} small crops"),
        }
    }
}

/// Peak heap over the tensors a step holds, measured: with `malloc.rs`'s settings glibc keeps
/// freed blocks for reuse, and a ResNet-18 width 0.25 batch 256 run peaks at about 1.3 times
/// what it did when glibc handed them back every step (2.2 against 1.7 GB).
pub const HEAP_OVERHEAD: f64 = 1.3;

/// Bytes of one training step: the activations kept for backward for every view (their
/// gradients are freed layer by layer as backward proceeds), plus the 2B×2B similarity matrix
/// of the plain contrastive losses about four times over (logits, mask, softmax, gradient)
/// unless tiled, times [`HEAP_OVERHEAD`]. Micro-batched, the activations are a micro-batch's
/// and the whole batch's views are held besides. Calibration: ResNet-18 width 0.25, 32 px, batch 256,
/// two views is estimated at 1.1 GB; that run's process peaks at about 2.2 GB including
/// libtorch, the decoded images and the model.
pub fn step_bytes(cfg: &BackboneConfig, s: &StepShape) -> f64 {
    let b = s.batch as f64;
    let view_floats: f64 = s
        .views
        .iter()
        .map(|&(crops, side)| crops as f64 * backbone_activation_floats(cfg, side))
        .sum();
    let held = s.micro_batch.map_or(b, |m| m.min(s.batch) as f64);
    let inputs: f64 = match s.micro_batch {
        None => 0.0, // counted among the activations
        Some(_) => s
            .views
            .iter()
            .map(|&(c, side)| (c * 3 * side * side) as f64)
            .sum(),
    };
    let activations = 4.0 * (held * view_floats + b * inputs);
    let similarity = if s.tiled {
        0.0
    } else {
        4.0 * 4.0 * (2.0 * b) * (2.0 * b)
    };
    HEAP_OVERHEAD * (activations + similarity)
}

/// `MemAvailable` of /proc/meminfo in bytes (Linux), if known.
pub fn available_bytes() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Refuses a method's state of `need` bytes (`what`, e.g. a queue of negatives, sized by
/// `setting`) that does not fit in `available` bytes; returns the bytes left for the step.
pub fn check_state_fits(
    need: f64,
    what: &str,
    setting: &str,
    available: f64,
) -> Result<f64, SettingError> {
    if need > available {
        return Err(format!(
            "{what} needs about {:.1} GiB but {:.1} GiB of memory is available: lower {setting}",
            gib(need),
            gib(available)
        )
        .into());
    }
    Ok(available - need)
}

fn gib(bytes: f64) -> f64 {
    bytes / (1u64 << 30) as f64
}

/// Refuses a step that needs more than `available` bytes, naming the estimate, the setting
/// and the largest batch size that fits.
pub fn check_fits(
    cfg: &BackboneConfig,
    shape: &StepShape,
    available: f64,
) -> Result<(), SettingError> {
    let need = step_bytes(cfg, shape);
    if need <= available {
        return Ok(());
    }
    let at = |batch| StepShape {
        batch,
        ..shape.clone()
    };
    let largest = (1..=shape.batch)
        .rev()
        .find(|&b| step_bytes(cfg, &at(b)) <= available);
    let micro = |m| StepShape {
        micro_batch: Some(m),
        ..shape.clone()
    };
    let largest_micro = (2..shape.micro_batch.unwrap_or(shape.batch))
        .rev()
        .find(|&m| shape.splits && step_bytes(cfg, &micro(m)) <= available);
    Err(format!(
        "a training step at batch size {}{} {} ({}) needs about \
         {:.1} GiB but {:.1} GiB of memory is available: {}",
        shape.batch,
        shape
            .micro_batch
            .map_or(String::new(), |m| format!(" in micro-batches of {m}")),
        shape.describe(),
        cfg.describe(),
        gib(need),
        gib(available),
        match (largest_micro, largest) {
            (Some(m), _) => format!(
                "keep the batch and pass --micro-batch {m} or less (exact gradients in the memory \
                 of a smaller batch), or lower --batch-size"
            ),
            (None, Some(b)) => {
                format!("lower --batch-size to at most {b} (or --image-size / --width)")
            }
            (None, None) => "lower --image-size or --width".into(),
        },
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet18(width: f64) -> BackboneConfig {
        BackboneConfig::ResNet(ResNetConfig {
            depth: 18,
            stem: Stem::Cifar,
            width,
        })
    }

    fn shape(batch: usize, size: usize, tiled: bool) -> StepShape {
        StepShape::two_views(batch, size, 0, 0, tiled)
    }

    #[test]
    fn the_cifar_run_is_estimated_near_what_it_uses() {
        // ResNet-18 width 0.25, 32 px, batch 256: the process peaks at about 2.2 GB, of which
        // ~0.5 GB is libtorch, the data and the model; the estimate must be of that order.
        let b = step_bytes(&resnet18(0.25), &shape(256, 32, false));
        assert!(b > 0.6e9 && b < 2.2e9, "{b}");
    }

    #[test]
    fn the_estimate_grows_with_batch_width_size_and_crops_and_tiling_saves_the_matrix() {
        let c = resnet18(0.25);
        let base = step_bytes(&c, &shape(256, 32, false));
        assert!(step_bytes(&c, &shape(512, 32, false)) > base);
        assert!(step_bytes(&resnet18(1.0), &shape(256, 32, false)) > base);
        assert!(step_bytes(&c, &shape(256, 64, false)) > base);
        let plain = step_bytes(&c, &shape(32768, 32, false));
        let tiled = step_bytes(&c, &shape(32768, 32, true));
        assert!(
            plain - tiled > 60e9,
            "the 65536² matrix alone is ~17 GB, ×4"
        );
        // six 16-px crops hold six quarter-size views: 1.5 large views more than two
        let crops = StepShape::two_views(256, 32, 6, 16, true);
        let two = step_bytes(&c, &shape(256, 32, true));
        let ratio = step_bytes(&c, &crops) / two;
        assert!((ratio - 1.75).abs() < 0.01, "{ratio}");
    }

    #[test]
    fn micro_batches_hold_a_micro_batchs_activations_and_a_refusal_suggests_them() {
        let c = resnet18(0.25);
        let tiled = |micro| StepShape {
            micro_batch: micro,
            splits: true,
            ..shape(4096, 32, true)
        };
        let (whole, micro) = (
            step_bytes(&c, &tiled(None)),
            step_bytes(&c, &tiled(Some(256))),
        );
        let plain_256 = step_bytes(&c, &shape(256, 32, true));
        assert!(whole > 10.0 * micro, "{whole} vs {micro}");
        // the 4096 images' views on top of 256 images' activations
        assert!(
            micro > plain_256 && micro < 1.2 * plain_256,
            "{micro} vs {plain_256}"
        );
        let e = check_fits(&c, &tiled(None), 2.0 * plain_256)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--micro-batch"), "{e}");
        assert!(check_fits(&c, &tiled(Some(256)), 2.0 * plain_256).is_ok());
    }

    #[test]
    fn a_step_that_cannot_fit_is_refused_with_the_estimate_and_a_batch_that_fits() {
        let c = resnet18(0.25);
        assert!(check_fits(&c, &shape(256, 32, false), 64e9).is_ok());
        let e = check_fits(&c, &shape(256, 32, false), 0.2e9)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch size 256") && e.contains("GiB") && e.contains("at most"),
            "{e}"
        );
        let b: usize = e
            .split("at most ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            b < 256
                && step_bytes(&c, &shape(b, 32, false)) <= 0.2e9
                && step_bytes(&c, &shape(b + 1, 32, false)) > 0.2e9
        );
        let e = check_fits(&c, &shape(1, 4096, false), 1e6)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--image-size"), "{e}");
        let crops = StepShape::two_views(256, 32, 8, 14, false);
        let e = check_fits(&c, &crops, 0.2e9).unwrap_err().to_string();
        assert!(e.contains("on 32x32 images with 8 small crops"), "{e}");
        let jigsaw = StepShape {
            batch: 256,
            views: vec![(9, 18)],
            tiled: true,
            micro_batch: None,
            splits: false,
        };
        let e = check_fits(&c, &jigsaw, 0.2e9).unwrap_err().to_string();
        assert!(e.contains("on 9 crops of 18x18 per image"), "{e}");
    }

    #[test]
    fn a_queue_that_cannot_fit_is_refused_and_one_that_fits_leaves_the_rest() {
        let queue = |keys| crate::method::LargeState::Queue {
            keys,
            setting: "method.moco.queue_size",
        };
        let (need, what, setting) = queue(4096).bytes(128);
        let left = check_state_fits(need, &what, setting, 1e9).unwrap();
        assert!((left - (1e9 - 8.0 * 4096.0 * 128.0)).abs() < 1.0);
        let (need, what, setting) = queue(1 << 20).bytes(128);
        let e = check_state_fits(need, &what, setting, 1e8)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1048576 keys") && e.contains("queue_size"),
            "{e}"
        );
    }

    #[test]
    fn this_machine_reports_its_available_memory() {
        let a = available_bytes().expect("Linux /proc/meminfo");
        assert!(a > 1e8, "{a}");
    }
}
