//! The "shapes world": a small, fully deterministic world of coloured shapes on a
//! 3×3 grid, used to pre-train and evaluate the tiny components offline.
//!
//! - [`scene`]: the vocabulary (kind, colour, size, cell) and the [`Scene`] struct.
//! - [`render`]: scene → RGB bytes (lightly anti-aliased, optional textured background).
//! - [`text`]: canonical captions, their parser, and short-answer normalisation.
//! - [`edit`]: edits (recolour, resize, remove, add, move), their instructions and semantics.
//! - [`questions`]: questions about a scene with short answers, and text-only questions.
//! - [`eval`]: the exact evaluator, image → scene, and the three scoring functions.
//! - [`dataset`]: understanding / generation / editing / text-only records, splits with
//!   held-out (colour, kind) combinations.
//!
//! Everything is produced in memory (bytes and `serde_json::Value`s); writing files is the
//! caller's job. Randomness comes from [`SplitMix64`] only, so a seed fixes every byte.

pub mod dataset;
pub mod edit;
pub mod eval;
pub mod questions;
pub mod render;
pub mod scene;
pub mod text;

pub use dataset::{DatasetConfig, HELD_OUT_PAIRS, ImageOut, Sample, Split};
pub use edit::Edit;
pub use eval::{SceneMatch, parse_image, score_answer, score_edit, score_generation};
pub use render::{Background, RenderOptions, render};
pub use scene::{Cell, Colour, Kind, Scene, Shape, Size};
pub use text::{caption, parse_caption};

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for data generation.
#[derive(Debug, Clone)]
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
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
