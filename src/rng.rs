//! Counter-based randomness: every random draw of the pipeline is a pure function of
//! `(seed, epoch, index, stream)`, so results do not depend on thread count or scheduling.
//!
//! The generator is SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for
//! augmentation parameters and shuffles. It is not cryptographic.

/// A small deterministic random number generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from a single value.
    pub fn new(seed: u64) -> Self {
        Rng {
            state: mix(seed ^ GOLDEN),
        }
    }

    /// The generator for one sample: the same `(seed, epoch, index, stream)` always gives the
    /// same sequence. `stream` separates independent uses (e.g. view 0 and view 1 of one image).
    pub fn for_sample(seed: u64, epoch: u64, index: u64, stream: u64) -> Self {
        let mut h = mix(seed.wrapping_add(GOLDEN));
        h = mix(h ^ epoch.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        h = mix(h ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
        h = mix(h ^ stream.wrapping_mul(0xE703_7ED1_A0B4_28DB));
        Rng { state: h }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [0, n); `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// True with probability `p`.
    pub fn bernoulli(&mut self, p: f32) -> bool {
        self.uniform() < p
    }

    /// Standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(f32::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }

    /// A uniformly random permutation of `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i + 1);
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_sequence_and_keys_differ() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::for_sample(1, 2, 3, 0), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::for_sample(1, 2, 3, 0), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::for_sample(1, 2, 3, 1), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_moments_and_range() {
        let mut r = Rng::new(7);
        let n = 20_000;
        let xs: Vec<f32> = (0..n).map(|_| r.uniform()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = xs.iter().sum::<f32>() / n as f32;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        let counts = (0..n).fold([0usize; 5], |mut c, _| {
            c[r.below(5)] += 1;
            c
        });
        assert!(
            counts
                .iter()
                .all(|&c| (c as f32 - n as f32 / 5.0).abs() < 300.0),
            "{counts:?}"
        );
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Rng::new(3).permutation(100);
        assert_ne!(p, (0..100).collect::<Vec<_>>());
        p.sort();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }
}
