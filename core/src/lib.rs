//! GenLLaVA: generative visual instruction tuning on Burn.
//!
//! This crate holds only models: bytes in, tensors and tokens out. No file
//! system, network or CLI code lives here, so it builds for `wasm32`.

pub mod checkpoint;
pub mod clip_text;
pub mod diffusion;
pub mod error;
pub mod export;
pub mod genllava;
pub mod head;
pub mod image;
pub mod kernels;
pub mod llama;
pub mod llava;
pub mod lora;
pub mod nn;
pub mod pipeline;
pub mod quant;
pub mod rng;
pub mod safetensors;
pub mod sampling;
pub mod scheduler;
pub mod sd;
pub mod shapes;
pub mod siglip;
pub mod template;
pub mod tokenizer;
pub mod web;
pub mod weights;

pub use error::{Error, Result};
pub use weights::{Fill, VarBuilder, WeightMap};
