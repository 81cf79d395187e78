//! Learning-rate (and momentum, temperature, …) schedules as pure functions of the step.

use std::f64::consts::PI;

/// Cosine decay from `start` at step 0 to `end` at step `total` (DINO's `cosine_scheduler`):
/// ```text
/// v(s) = end + ½ (start − end) (1 + cos(π s / total)),   s clamped to [0, total]
/// ```
pub fn cosine_schedule(step: u64, total: u64, start: f64, end: f64) -> f64 {
    if total == 0 {
        return end;
    }
    let t = (step.min(total)) as f64 / total as f64;
    end + 0.5 * (start - end) * (1.0 + (PI * t).cos())
}

/// Linear warm-up from 0 to `base` over `warmup` steps, then cosine decay to `end` at `total`
/// (SimCLR §B.1, nanoGPT's `get_lr`):
/// ```text
/// v(s) = base (s + 1) / warmup                                   s < warmup
/// v(s) = cosine_schedule(s − warmup, total − warmup, base, end)  otherwise
/// ```
pub fn warmup_cosine(step: u64, total: u64, warmup: u64, base: f64, end: f64) -> f64 {
    if step < warmup {
        base * (step + 1) as f64 / warmup as f64
    } else {
        cosine_schedule(step - warmup, total.saturating_sub(warmup), base, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_endpoints_and_midpoint() {
        assert_eq!(cosine_schedule(0, 100, 1.0, 0.0), 1.0);
        assert!((cosine_schedule(50, 100, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!(cosine_schedule(100, 100, 1.0, 0.1) - 0.1 < 1e-12);
        assert!((cosine_schedule(500, 100, 1.0, 0.1) - 0.1).abs() < 1e-12);
        // Increasing schedules too (BYOL's momentum 0.996 → 1).
        assert!(
            (cosine_schedule(25, 100, 0.0, 1.0) - (1.0 - (2f64.sqrt() / 2.0)) / 2.0).abs() < 1e-12
        );
    }

    #[test]
    fn warmup_is_linear_then_cosine_decreasing() {
        assert!((warmup_cosine(0, 100, 10, 2.0, 0.0) - 0.2).abs() < 1e-12);
        assert!((warmup_cosine(9, 100, 10, 2.0, 0.0) - 2.0).abs() < 1e-12);
        assert!((warmup_cosine(10, 100, 10, 2.0, 0.0) - 2.0).abs() < 1e-12);
        let vals: Vec<f64> = (10..=100)
            .map(|s| warmup_cosine(s, 100, 10, 2.0, 0.0))
            .collect();
        assert!(vals.windows(2).all(|w| w[1] <= w[0]));
        assert!(vals.last().unwrap().abs() < 1e-12);
        // No warm-up: plain cosine.
        assert_eq!(warmup_cosine(0, 10, 0, 1.0, 0.0), 1.0);
    }
}
