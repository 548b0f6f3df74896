//! The vision tower: embeddings, encoder, and the layer-selection rule that
//! LLaVA-style models use to read patch features.

use super::config::{SiglipVisionConfig, VisionTower};
use super::encoder::VisionEncoder;
use crate::error::{Error, Result};
use crate::nn;
use crate::weights::{Fill, VarBuilder};
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, LayerNorm, PaddingConfig2d};
use burn::tensor::Tensor;

/// Patch embedding (`patch_embedding`, a stride-`patch` conv), CLIP's
/// `class_embedding`, and learned absolute `position_embedding`.
#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    pub patch_embedding: Conv2d,
    pub class_embedding: Option<Param<Tensor<1>>>,
    pub position_embedding: Embedding,
}

impl VisionEmbeddings {
    /// Load `{prefix}.patch_embedding` (bias only for SigLIP),
    /// `{prefix}.class_embedding` (CLIP only) and `{prefix}.position_embedding`.
    pub fn load(cfg: &SiglipVisionConfig, vb: &VarBuilder) -> Result<Self> {
        let (c, d, p) = (cfg.num_channels, cfg.hidden_size, cfg.patch_size);
        let clip = cfg.model_type == VisionTower::Clip;
        let pe = vb.pp("patch_embedding");
        let patch_embedding = Conv2d {
            weight: pe.param("weight", [d, c, p, p], Fill::Normal)?,
            bias: if clip {
                None
            } else {
                Some(pe.param("bias", [d], Fill::Zeros)?)
            },
            stride: [p, p],
            kernel_size: [p, p],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Valid,
        };
        let class_embedding = if clip {
            Some(vb.param("class_embedding", [d], Fill::Normal)?)
        } else {
            None
        };
        let position_embedding =
            nn::embedding(&vb.pp("position_embedding"), cfg.num_positions(), d)?;
        Ok(Self {
            patch_embedding,
            class_embedding,
            position_embedding,
        })
    }

    /// `pixels`: `[batch, channels, H, W]` → `[batch, positions, hidden]`
    /// (CLIP puts the class token first).
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let patches = self.patch_embedding.forward(pixels); // [b, d, gh, gw]
        let [b, d, gh, gw] = patches.dims();
        let mut x = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        if let Some(cls) = &self.class_embedding {
            let cls = cls.val().reshape([1, 1, d]).expand([b, 1, d]);
            x = Tensor::cat(vec![cls, x], 1);
        }
        let pos = self.position_embedding.weight.val().unsqueeze::<3>();
        x + pos
    }
}

/// A SigLIP or CLIP vision transformer (`vision_model.` of `SiglipVisionModel` /
/// `CLIPVisionModel`). SigLIP's attention-pooling head is not part of it: if a
/// checkpoint holds `head.*`, those tensors simply stay unused.
#[derive(Module, Debug)]
pub struct SiglipVision {
    pub embeddings: VisionEmbeddings,
    /// CLIP only: the layer norm between embeddings and encoder.
    pub pre_layrnorm: Option<LayerNorm>,
    pub encoder: VisionEncoder,
    pub post_layernorm: LayerNorm,
    #[module(skip)]
    pub config: SiglipVisionConfig,
}

impl SiglipVision {
    /// Load from a builder whose prefix holds `embeddings`, `encoder` and
    /// `post_layernorm` (and `pre_layrnorm` for CLIP), i.e. `vision_model`.
    pub fn load(cfg: &SiglipVisionConfig, vb: &VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.hidden_size;
        let pre_layrnorm = match cfg.model_type {
            VisionTower::Clip => Some(nn::layer_norm(
                &vb.pp("pre_layrnorm"),
                d,
                cfg.layer_norm_eps,
            )?),
            VisionTower::Siglip => None,
        };
        Ok(Self {
            embeddings: VisionEmbeddings::load(cfg, &vb.pp("embeddings"))?,
            pre_layrnorm,
            encoder: VisionEncoder::load(cfg, &vb.pp("encoder"))?,
            post_layernorm: nn::layer_norm(&vb.pp("post_layernorm"), d, cfg.layer_norm_eps)?,
            config: cfg.clone(),
        })
    }

    /// Load from the root of a `SiglipVisionModel` / `CLIPVisionModel`
    /// checkpoint: transformers < 5 saves the keys under `vision_model.`,
    /// transformers 5 without that prefix; both load.
    pub fn load_checkpoint(cfg: &SiglipVisionConfig, vb: &VarBuilder) -> Result<Self> {
        if vb.contains("vision_model.embeddings.position_embedding.weight") {
            Self::load(cfg, &vb.pp("vision_model"))
        } else {
            Self::load(cfg, vb)
        }
    }

    /// The encoder input, HF's `hidden_states[0]` (for CLIP after `pre_layrnorm`).
    /// `pixels`: `[batch, channels, image_size, image_size]` → `[batch, positions, hidden]`.
    pub fn embed(&self, pixels: Tensor<4>) -> Result<Tensor<3>> {
        let [_, c, h, w] = pixels.dims();
        let cfg = &self.config;
        if c != cfg.num_channels || h != cfg.image_size || w != cfg.image_size {
            return Err(Error::input(
                "pixels",
                format!(
                    "expected [batch, {}, {s}, {s}], found [_, {c}, {h}, {w}]",
                    cfg.num_channels,
                    s = cfg.image_size
                ),
            ));
        }
        let x = self.embeddings.forward(pixels);
        Ok(match &self.pre_layrnorm {
            Some(ln) => ln.forward(x),
            None => x,
        })
    }

    /// HF's `hidden_states[layer]` without any post layer norm; layers after the
    /// requested one are not run. `layer` counts like a Python index into the
    /// `num_hidden_layers + 1` hidden states: `0` is the embeddings output, `-1`
    /// the last layer, `-2` the penultimate one (LLaVA's and Prismatic's choice).
    /// `pixels`: `[batch, channels, image_size, image_size]` →
    /// `[batch, positions, hidden]` (CLIP's class token first; LLaVA's
    /// `vision_feature_select_strategy = "default"` drops it afterwards).
    pub fn features(&self, pixels: Tensor<4>, layer: i64) -> Result<Tensor<3>> {
        let index = self.hidden_state_index(layer)?;
        Ok(self.encoder.forward_first(self.embed(pixels)?, index))
    }

    /// The position in [`Self::hidden_states`] of `layer`, counted as [`Self::features`]
    /// counts it (negative from the end), or an error naming the layer when it is out of range.
    pub fn hidden_state_index(&self, layer: i64) -> Result<usize> {
        super::config::hidden_state_index(self.encoder.layers.len(), layer)
    }

    /// HF's `last_hidden_state`: for SigLIP the last layer's output after
    /// `post_layernorm`; for CLIP the last layer's output as is (CLIP's
    /// `post_layernorm` only normalises the pooled class token).
    /// `pixels`: `[batch, channels, image_size, image_size]` → `[batch, positions, hidden]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<Tensor<3>> {
        let x = self.features(pixels, -1)?;
        Ok(match self.config.model_type {
            VisionTower::Siglip => self.post_layernorm.forward(x),
            VisionTower::Clip => x,
        })
    }

    /// Every hidden state as HF's `output_hidden_states=True` returns them:
    /// `num_hidden_layers + 1` tensors `[batch, positions, hidden]`.
    pub fn hidden_states(&self, pixels: Tensor<4>) -> Result<Vec<Tensor<3>>> {
        let mut x = self.embed(pixels)?;
        let mut out = Vec::with_capacity(self.encoder.layers.len() + 1);
        out.push(x.clone());
        for layer in &self.encoder.layers {
            x = layer.forward(x);
            out.push(x.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn fresh_weights_give_documented_shapes() {
        let device = Device::flex();
        for tower in ["siglip_vision_model", "clip_vision_model"] {
            let json = format!(
                r#"{{"model_type":"{tower}","hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,
                "num_attention_heads":2,"image_size":18,"patch_size":4}}"#
            );
            let cfg = SiglipVisionConfig::from_json(&json).unwrap();
            let model = SiglipVision::load(&cfg, &VarBuilder::init(0.02, &device)).unwrap();
            let pixels = Tensor::zeros([2, 3, 18, 18], &device);
            let feats = model.features(pixels.clone(), -2).unwrap();
            assert_eq!(feats.dims(), [2, cfg.num_positions(), 16]);
            assert_eq!(cfg.num_patches(), 16);
            assert_eq!(model.hidden_states(pixels).unwrap().len(), 3);
        }
    }
}
