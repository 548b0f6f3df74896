//! GenLLaVA: generative visual instruction tuning on Burn.
//!
//! This crate holds only models: bytes in, tensors and tokens out. No file
//! system, network or CLI code lives here, so it builds for `wasm32`.

pub mod error;
pub mod nn;
pub mod safetensors;
pub mod shapes;
pub mod weights;

pub use error::{Error, Result};
pub use weights::{Fill, VarBuilder, WeightMap};
