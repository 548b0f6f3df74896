//! Configuration of the ViT image towers: SigLIP (`SiglipVisionModel`) and
//! CLIP (`CLIPVisionModel`, the tower of LLaVA-1.5). Both share the field names
//! of their Hugging Face `config.json`; `model_type` decides the architecture
//! and which defaults fill absent fields.

use crate::error::{Error, Result};
use crate::nn::Activation;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which tower family a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum VisionTower {
    /// SigLIP: patch embedding with bias, no class token, post-layernorm on the
    /// last hidden state.
    #[serde(rename = "siglip_vision_model", alias = "siglip")]
    #[default]
    Siglip,
    /// CLIP: patch embedding without bias, a class token, `pre_layrnorm` before
    /// the encoder; `post_layernorm` only for the pooled class token.
    #[serde(rename = "clip_vision_model", alias = "clip")]
    Clip,
}

/// `SiglipVisionConfig` / `CLIPVisionConfig` of transformers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipVisionConfig {
    /// `siglip_vision_model` or `clip_vision_model`.
    #[serde(default)]
    pub model_type: VisionTower,
    /// Width of the transformer (embedding dimension).
    pub hidden_size: usize,
    /// Width of the MLP inside each encoder layer.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Channels of the input image (3 for RGB).
    pub num_channels: usize,
    /// Side of the square input image in pixels.
    pub image_size: usize,
    /// Side of a square patch in pixels (`image_size / patch_size` patches per
    /// side, rounded down).
    pub patch_size: usize,
    /// MLP activation (`gelu_pytorch_tanh` for SigLIP, `quick_gelu` for CLIP).
    pub hidden_act: Activation,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
}

impl SiglipVisionConfig {
    /// The position among the tower's `num_hidden_layers + 1` hidden states of `layer`,
    /// counted like a Python index (negative from the end), or an error naming the layer
    /// when it is out of range; what the loaded tower's `hidden_state_index` answers.
    pub fn hidden_state_index(&self, layer: i64) -> Result<usize> {
        hidden_state_index(self.num_hidden_layers, layer)
    }

    /// The defaults of transformers' `SiglipVisionConfig()`.
    pub fn siglip_default() -> Self {
        Self {
            model_type: VisionTower::Siglip,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 16,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
        }
    }

    /// The defaults of transformers' `CLIPVisionConfig()`.
    pub fn clip_default() -> Self {
        Self {
            model_type: VisionTower::Clip,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            ..Self::siglip_default()
        }
    }

    /// Parse a `config.json`: a standalone `SiglipVisionModel`/`CLIPVisionModel`
    /// config, or any config with a nested `vision_config` (LLaVA, SigLIP, CLIP).
    pub fn from_json(json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Error::config("vision config", e.to_string()))?;
        Self::from_value(value)
    }

    /// Build from an already parsed JSON object (e.g. `LlavaConfig.vision_config`).
    /// Absent fields take the defaults of the tower `model_type` names.
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(mut obj) = value else {
            return Err(Error::config("vision config", "expected a JSON object"));
        };
        if let Some(nested) = obj.remove("vision_config") {
            return Self::from_value(nested);
        }
        let tower = match obj.get("model_type") {
            None => VisionTower::Siglip,
            Some(v) => VisionTower::deserialize(v).map_err(|e| {
                Error::config(
                    "vision config",
                    format!("model_type: {e} (expected siglip_vision_model or clip_vision_model)"),
                )
            })?,
        };
        let defaults = match tower {
            VisionTower::Siglip => Self::siglip_default(),
            VisionTower::Clip => Self::clip_default(),
        };
        let Ok(Value::Object(mut merged)) = serde_json::to_value(defaults) else {
            return Err(Error::config("vision config", "defaults do not serialise"));
        };
        for (key, slot) in merged.iter_mut() {
            if let Some(v) = obj.remove(key) {
                *slot = v;
            }
        }
        merged.insert(
            "model_type".into(),
            serde_json::to_value(tower).unwrap_or(Value::Null),
        );
        let cfg: Self = serde_json::from_value(Value::Object(merged))
            .map_err(|e| Error::config("vision config", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the sizes the model relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::config("vision config", why));
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        // Not a divisibility rule: so400m-patch14-384 has 27 patches per side and
        // the conv drops the last 6 pixel rows and columns, as PyTorch's does.
        if self.patch_size == 0 || self.patch_size > self.image_size {
            return bad(format!(
                "patch_size {} does not fit image_size {}",
                self.patch_size, self.image_size
            ));
        }
        Ok(())
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patch tokens per image (without CLIP's class token).
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Tokens the encoder sees: patches, plus the class token for CLIP.
    pub fn num_positions(&self) -> usize {
        self.num_patches() + usize::from(self.model_type == VisionTower::Clip)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// The position of `layer` among the `layers + 1` hidden states of a tower of `layers`
/// layers (the embeddings first), negative counting from the end.
pub(crate) fn hidden_state_index(layers: usize, layer: i64) -> Result<usize> {
    let n = layers as i64;
    let index = if layer < 0 { n + 1 + layer } else { layer };
    if !(0..=n).contains(&index) {
        return Err(Error::input(
            "layer",
            format!("{layer} is out of range for {} hidden states", n + 1),
        ));
    }
    Ok(index as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_llava_config_takes_clip_defaults() {
        let json = r#"{"model_type":"llava","vision_config":{"model_type":"clip_vision_model","hidden_size":1024,
            "image_size":336,"intermediate_size":4096,"num_attention_heads":16,"num_hidden_layers":24,"patch_size":14}}"#;
        let cfg = SiglipVisionConfig::from_json(json).unwrap();
        assert_eq!(cfg.model_type, VisionTower::Clip);
        assert_eq!(cfg.hidden_act, Activation::QuickGelu);
        assert_eq!(cfg.num_patches(), 576);
        assert_eq!(cfg.num_positions(), 577);
    }

    #[test]
    fn standalone_siglip_and_errors() {
        let cfg = SiglipVisionConfig::from_json(
            r#"{"model_type":"siglip_vision_model","patch_size":14,"image_size":384}"#,
        )
        .unwrap();
        assert_eq!(cfg.hidden_act, Activation::GeluTanh);
        assert_eq!(cfg.layer_norm_eps, 1e-6);
        assert_eq!(cfg.num_patches(), 729);
        assert!(SiglipVisionConfig::from_json(r#"{"patch_size":300}"#).is_err());
        assert!(SiglipVisionConfig::from_json(r#"{"num_attention_heads":5}"#).is_err());
        assert!(SiglipVisionConfig::from_json(r#"{"model_type":"vit"}"#).is_err());
        assert!(SiglipVisionConfig::from_json("[1]").is_err());
    }
}
