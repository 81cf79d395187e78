//! Generated 1-D signals whose class hides in their frequency content: each sequence is two
//! sinusoids at its class's frequencies (each jittered by up to ±8 %) with random phases and
//! amplitudes, plus Gaussian noise. The phase is random, so the class is not a linear function
//! of the raw samples: a representation has to find the frequencies.
//!
//! ```text
//! x_t = a₁ sin(2π f₁ t + φ₁) + a₂ sin(2π f₂ t + φ₂) + σ ε_t,   a ~ U(0.6, 1.4), φ ~ U(0, 2π),
//! class c: f₁ = 0.02 + 0.012 c,  f₂ = 0.13 − 0.016 c  (cycles per sample),  σ = 0.5
//! ```

use crate::rng::Rng;
use tch::Tensor;

/// Sequences with their hidden classes.
pub struct SignalSet {
    /// [N, L] float32
    pub x: Tensor,
    pub labels: Vec<u32>,
    pub classes: usize,
}

/// The two frequencies (cycles per sample) of class `c`.
pub fn frequencies(c: usize) -> (f32, f32) {
    (0.02 + 0.012 * c as f32, 0.13 - 0.016 * c as f32)
}

/// `per_class` sequences of `length` samples for each of `classes` classes (at most 5), in
/// class order, drawn from `seed`.
pub fn oscillators(per_class: usize, classes: usize, length: usize, seed: u64) -> SignalSet {
    assert!(
        (1..=5).contains(&classes),
        "1 to 5 classes: their frequencies stay apart"
    );
    let mut rng = Rng::new(seed);
    let mut values = Vec::with_capacity(per_class * classes * length);
    let mut labels = Vec::with_capacity(per_class * classes);
    let tau = std::f32::consts::TAU;
    for c in 0..classes {
        let (f1, f2) = frequencies(c);
        for _ in 0..per_class {
            let f1 = f1 * rng.range(0.92, 1.08);
            let f2 = f2 * rng.range(0.92, 1.08);
            let (a1, a2) = (rng.range(0.6, 1.4), rng.range(0.6, 1.4));
            let (p1, p2) = (rng.range(0.0, tau), rng.range(0.0, tau));
            for t in 0..length {
                let t = t as f32;
                values.push(
                    a1 * (tau * f1 * t + p1).sin()
                        + a2 * (tau * f2 * t + p2).sin()
                        + 0.5 * rng.normal(),
                );
            }
            labels.push(c as u32);
        }
    }
    let n = (per_class * classes) as i64;
    SignalSet {
        x: Tensor::from_slice(&values).view([n, length as i64]),
        labels,
        classes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_differ_in_their_spectrum_and_sets_are_reproducible() {
        let s = oscillators(20, 3, 256, 7);
        assert_eq!(s.x.size(), vec![60, 256]);
        assert_eq!(s.labels[19..21], [0, 1]);
        assert!(s.x.equal(&oscillators(20, 3, 256, 7).x));
        assert!(!s.x.equal(&oscillators(20, 3, 256, 8).x));
        // the power at each class's first frequency is highest for that class
        let power = |rows: &Tensor, f: f32| {
            let t = Tensor::arange(256, (tch::Kind::Float, tch::Device::Cpu));
            let w = t * (std::f64::consts::TAU * f as f64);
            let (re, im) = (rows.matmul(&w.cos()), rows.matmul(&w.sin()));
            (re.square() + im.square())
                .mean(tch::Kind::Float)
                .double_value(&[])
        };
        for c in 0..3 {
            let f = frequencies(c).0;
            let own = power(&s.x.narrow(0, 20 * c as i64, 20), f);
            for other in (0..3).filter(|&o| o != c) {
                assert!(
                    own > 3.0 * power(&s.x.narrow(0, 20 * other as i64, 20), f),
                    "class {c} vs {other}"
                );
            }
        }
    }
}
