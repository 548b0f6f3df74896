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

pub use crate::rng::SplitMix64;

pub use dataset::{DatasetConfig, HELD_OUT_PAIRS, ImageOut, Sample, Split};
pub use edit::Edit;
pub use eval::{
    SceneMatch, edit_target, edit_target_of_image, parse_image, score_answer, score_edit, score_generation,
};
pub use render::{Background, RenderOptions, render};
pub use scene::{Cell, Colour, Kind, Scene, Shape, Size};
pub use text::{caption, parse_caption};

#[cfg(test)]
mod tests {
    use crate::rng::SplitMix64;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
