//! A memory estimate of one training step, checked against the machine's available memory
//! before training starts: a batch that cannot fit is refused up front with the estimate,
//! not after an hour when the allocator fails.

use crate::backbone::{ResNetConfig, Stem};

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

/// Bytes of one training step at `batch` images (two views each): the activations kept for
/// backward (their gradients are freed layer by layer as backward proceeds), plus the 2B×2B
/// similarity matrix of the plain contrastive losses about four times over (logits, mask,
/// softmax, gradient) unless `tiled`. Calibration: ResNet-18 width 0.25, 32 px, batch 256 is
/// estimated at 0.86 GB; that run's process peaks at about 1.3 GB including libtorch, the
/// decoded images and the model.
pub fn step_bytes(cfg: &ResNetConfig, size: usize, batch: usize, tiled: bool) -> f64 {
    let views = 2.0 * batch as f64;
    let activations = 4.0 * views * activation_floats_per_view(cfg, size);
    let similarity = if tiled {
        0.0
    } else {
        4.0 * 4.0 * views * views
    };
    activations + similarity
}

/// `MemAvailable` of /proc/meminfo in bytes (Linux), if known.
pub fn available_bytes() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Refuses a MoCo queue of `size` keys of `dim` floats (kept twice: the queue and the step's
/// snapshot) that does not fit in `available` bytes; returns the bytes left for the step.
pub fn check_queue_fits(size: usize, dim: i64, available: f64) -> Result<f64, String> {
    let need = 2.0 * 4.0 * size as f64 * dim as f64;
    if need > available {
        return Err(format!(
            "a queue of {size} keys × {dim} dimensions needs about {:.1} GiB but {:.1} GiB of memory is \
             available: lower method.queue_size",
            gib(need),
            gib(available)
        ));
    }
    Ok(available - need)
}

fn gib(bytes: f64) -> f64 {
    bytes / (1u64 << 30) as f64
}

/// Refuses a step that needs more than `available` bytes, naming the estimate, the setting
/// and the largest batch size that fits.
pub fn check_fits(
    cfg: &ResNetConfig,
    size: usize,
    batch: usize,
    tiled: bool,
    available: f64,
) -> Result<(), String> {
    let need = step_bytes(cfg, size, batch, tiled);
    if need <= available {
        return Ok(());
    }
    let largest = (1..=batch)
        .rev()
        .find(|&b| step_bytes(cfg, size, b, tiled) <= available);
    Err(format!(
        "a training step at batch size {batch} on {size}x{size} images (ResNet-{} width {}) needs about \
         {:.1} GiB but {:.1} GiB of memory is available: {}",
        cfg.depth,
        cfg.width,
        gib(need),
        gib(available),
        match largest {
            Some(b) => format!("lower --batch-size to at most {b} (or --image-size / --width)"),
            None => "lower --image-size or --width".into(),
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet18(width: f64) -> ResNetConfig {
        ResNetConfig {
            depth: 18,
            stem: Stem::Cifar,
            width,
        }
    }

    #[test]
    fn the_cifar_run_is_estimated_near_what_it_uses() {
        // ResNet-18 width 0.25, 32 px, batch 256: the process peaks at about 1.3 GB, of which
        // ~0.5 GB is libtorch, the data and the model; the estimate must be of that order.
        let b = step_bytes(&resnet18(0.25), 32, 256, false);
        assert!(b > 0.3e9 && b < 2.0e9, "{b}");
    }

    #[test]
    fn the_estimate_grows_with_batch_width_and_size_and_tiling_saves_the_matrix() {
        let c = resnet18(0.25);
        assert!(step_bytes(&c, 32, 512, false) > step_bytes(&c, 32, 256, false));
        assert!(step_bytes(&resnet18(1.0), 32, 256, false) > step_bytes(&c, 32, 256, false));
        assert!(step_bytes(&c, 64, 256, false) > step_bytes(&c, 32, 256, false));
        let plain = step_bytes(&c, 32, 32768, false);
        let tiled = step_bytes(&c, 32, 32768, true);
        assert!(
            plain - tiled > 60e9,
            "the 65536² matrix alone is ~17 GB, ×4"
        );
    }

    #[test]
    fn a_step_that_cannot_fit_is_refused_with_the_estimate_and_a_batch_that_fits() {
        let c = resnet18(0.25);
        assert!(check_fits(&c, 32, 256, false, 64e9).is_ok());
        let e = check_fits(&c, 32, 256, false, 0.2e9).unwrap_err();
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
                && step_bytes(&c, 32, b, false) <= 0.2e9
                && step_bytes(&c, 32, b + 1, false) > 0.2e9
        );
        let e = check_fits(&c, 4096, 1, false, 1e6).unwrap_err();
        assert!(e.contains("--image-size"), "{e}");
    }

    #[test]
    fn a_queue_that_cannot_fit_is_refused_and_one_that_fits_leaves_the_rest() {
        let left = check_queue_fits(4096, 128, 1e9).unwrap();
        assert!((left - (1e9 - 8.0 * 4096.0 * 128.0)).abs() < 1.0);
        let e = check_queue_fits(1 << 20, 128, 1e8).unwrap_err();
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
