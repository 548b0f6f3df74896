//! The one pseudo-random generator of the crate: seeded, portable, the same
//! stream on every platform (data generation, sampling, initial noise).

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for data generation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for stream `stream` of `seed` (independent-looking streams per index).
    pub fn derive(seed: u64, stream: &[u64]) -> Self {
        let mut h = Self::new(seed).next_u64();
        for &s in stream {
            h = Self::new(h ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
        }
        Self::new(h)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() >> 11) % n as u64) as usize
    }

    /// Uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// An index of `weights` drawn with relative weight `weights[i]`: one `below(total)`
    /// mapped through the running sums, so equal weights of 1 draw exactly as
    /// `below(weights.len())` does (all zero: one `below(1)` is used up and 0 returned).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut r = self.below(total.max(1) as usize) as u64;
        for (i, &w) in weights.iter().enumerate() {
            if r < u64::from(w) {
                return i;
            }
            r -= u64::from(w);
        }
        0
    }

    /// A uniformly chosen element (None for an empty slice).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn weighted_draws_follow_the_weights() {
        // Weights of 1 draw as `below` does, value for value.
        let (mut a, mut b) = (SplitMix64::new(3), SplitMix64::new(3));
        for _ in 0..200 {
            assert_eq!(a.weighted(&[1; 8]), b.below(8));
        }
        // A zero weight is never drawn; the rest in proportion.
        let mut rng = SplitMix64::new(5);
        let mut n = [0usize; 3];
        for _ in 0..4000 {
            n[rng.weighted(&[0, 1, 3])] += 1;
        }
        assert_eq!(n[0], 0);
        assert!(n[2] > 2 * n[1] && n[2] < 4 * n[1], "{n:?}");
    }
}
