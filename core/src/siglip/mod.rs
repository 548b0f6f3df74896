//! Vision towers: SigLIP (GenLLaVA's encoder) and CLIP (LLaVA-1.5's), one
//! pre-norm ViT with the differences chosen by `model_type`.
//!
//! Load from `vision_model.` of `SiglipVisionModel` / `CLIPVisionModel`
//! checkpoints (or `vision_tower.vision_model.` inside LLaVA):
//!
//! ```ignore
//! let cfg = SiglipVisionConfig::from_json(config_json)?;
//! let tower = SiglipVision::load(&cfg, &vb.pp("vision_model"))?;
//! let feats = tower.features(pixels, -2)?; // penultimate layer, no post norm
//! ```

mod config;
mod encoder;
mod model;

pub use config::{SiglipVisionConfig, VisionTower};
pub use encoder::{VisionAttention, VisionEncoder, VisionEncoderLayer, VisionMlp};
pub use model::{SiglipVision, VisionEmbeddings};
