//! LLaVA: the vision tower's patch features, projected by a 2-layer GELU MLP,
//! spliced into the language model's embeddings where the image tokens stand
//! (`LlavaForConditionalGeneration`).

use crate::checkpoint::{self, FileSource};
use crate::error::{Error, Result};
use crate::image::ImageProcessorConfig;
use crate::llama::{KvCache, Llama, LlamaConfig};
use crate::nn::{Activation, linear};
use crate::siglip::{SiglipVision, SiglipVisionConfig};
use crate::weights::{VarBuilder, WeightMap};
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::sync::Arc;

/// Which vision layer(s) feed the projector (`vision_feature_layer`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum FeatureLayer {
    One(i64),
    Many(Vec<i64>),
}

impl FeatureLayer {
    /// The layers, one or several, in the order their states are concatenated.
    pub fn layers(&self) -> Vec<i64> {
        match self {
            FeatureLayer::One(l) => vec![*l],
            FeatureLayer::Many(v) => v.clone(),
        }
    }
}

impl Default for FeatureLayer {
    fn default() -> Self {
        FeatureLayer::One(-2)
    }
}

/// `config.json` of `LlavaForConditionalGeneration`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LlavaConfig {
    /// The vision tower's config (SigLIP or CLIP; absent fields take the tower's defaults).
    #[serde(deserialize_with = "de_vision")]
    pub vision_config: SiglipVisionConfig,
    /// The language model's config (Llama / Mistral).
    pub text_config: LlamaConfig,
    /// Id of the `<image>` placeholder token.
    #[serde(alias = "image_token_id")]
    pub image_token_index: u32,
    /// Activation between the projector's two linears.
    #[serde(default)]
    pub projector_hidden_act: Activation,
    /// Hidden-state index of the tower the features come from (-2: penultimate).
    #[serde(default)]
    pub vision_feature_layer: FeatureLayer,
    /// `default` drops the first position (CLIP's class token), `full` keeps all.
    #[serde(default = "default_strategy")]
    pub vision_feature_select_strategy: String,
    /// Whether the projector's linears have biases.
    #[serde(default = "yes")]
    pub multimodal_projector_bias: bool,
}

fn de_vision<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<SiglipVisionConfig, D::Error> {
    let v = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    SiglipVisionConfig::from_value(v).map_err(serde::de::Error::custom)
}

fn default_strategy() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

impl LlavaConfig {
    /// Parse `config.json`; `file` names it in errors.
    pub fn from_json(file: &str, json: &[u8]) -> Result<Self> {
        let cfg: Self = serde_json::from_slice(json).map_err(|e| Error::config(file, e.to_string()))?;
        if !matches!(cfg.vision_feature_select_strategy.as_str(), "default" | "full") {
            return Err(Error::config(
                file,
                format!(
                    "vision_feature_select_strategy `{}` is not `default` or `full`",
                    cfg.vision_feature_select_strategy
                ),
            ));
        }
        Ok(cfg)
    }

    fn layers(&self) -> Vec<i64> {
        self.vision_feature_layer.layers()
    }

    /// Number of image features one image contributes.
    pub fn image_seq_len(&self) -> usize {
        self.vision_config.num_positions() - usize::from(self.vision_feature_select_strategy == "default")
    }
}

/// Map both key layouts seen in the wild onto the current one
/// (`model.language_model.*`, `model.vision_tower.*`, `model.multi_modal_projector.*`, `lm_head.*`).
pub fn normalize_keys(map: &mut WeightMap) {
    // Legacy layout (transformers < 4.52, and what transformers 5 writes). The
    // tower's own `vision_model.` level is present in some files and not in
    // others; `SiglipVision::load_checkpoint` accepts both.
    map.rename_prefix("language_model.model.", "model.language_model.");
    map.rename_prefix("language_model.lm_head.", "lm_head.");
    map.rename_prefix("vision_tower.", "model.vision_tower.");
    map.rename_prefix("multi_modal_projector.", "model.multi_modal_projector.");
}

/// The 2-layer MLP projector: `linear_1 → act → linear_2`.
#[derive(Module, Debug)]
pub struct Projector {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl Projector {
    /// Load `linear_1` `[text, vision·layers]` and `linear_2` `[text, text]`.
    pub fn load(vb: &VarBuilder, d_vision: usize, d_text: usize, bias: bool) -> Result<Self> {
        Ok(Self {
            linear_1: linear(&vb.pp("linear_1"), d_vision, d_text, bias)?,
            linear_2: linear(&vb.pp("linear_2"), d_text, d_text, bias)?,
        })
    }

    /// `[b, n, d_vision] → [b, n, d_text]`.
    pub fn forward(&self, x: Tensor<3>, act: Activation) -> Tensor<3> {
        crate::kernels::linear(&self.linear_2, act.forward(crate::kernels::linear(&self.linear_1, x)))
    }
}

/// The whole LLaVA model.
#[derive(Module, Debug)]
pub struct Llava {
    pub vision_tower: SiglipVision,
    pub multi_modal_projector: Projector,
    pub language_model: Llama,
}

impl Llava {
    /// Load from normalised weights (see [`normalize_keys`]).
    pub fn load(cfg: &LlavaConfig, vb: &VarBuilder) -> Result<Self> {
        let d_vision = cfg.vision_config.hidden_size * cfg.layers().len();
        Ok(Self {
            vision_tower: SiglipVision::load_checkpoint(&cfg.vision_config, &vb.pp("model.vision_tower"))?,
            multi_modal_projector: Projector::load(
                &vb.pp("model.multi_modal_projector"),
                d_vision,
                cfg.text_config.hidden_size,
                cfg.multimodal_projector_bias,
            )?,
            language_model: Llama::load(&cfg.text_config, &vb.pp("model.language_model"), &vb.pp("lm_head"))?,
        })
    }

    /// Projected image features: `pixels` `[b, 3, H, W]` → `[b, n, d_text]`.
    pub fn image_features(&self, cfg: &LlavaConfig, pixels: Tensor<4>) -> Result<Tensor<3>> {
        let skip = usize::from(cfg.vision_feature_select_strategy == "default");
        let feats = cfg
            .layers()
            .into_iter()
            .map(|l| {
                let f = self.vision_tower.features(pixels.clone(), l)?;
                let n = f.dims()[1];
                Ok(f.narrow(1, skip, n - skip))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.multi_modal_projector.forward(Tensor::cat(feats, 2), cfg.projector_hidden_act))
    }

    /// Embeddings of `ids` with the image features written over the image-token
    /// positions, in order. `ids` must hold exactly as many image tokens as
    /// `features` has rows (use [`expand_image_tokens`] first).
    pub fn embed(
        &self,
        cfg: &LlavaConfig,
        ids: &[u32],
        features: Option<Tensor<3>>,
        device: &Device,
    ) -> Result<Tensor<3>> {
        let n_img = ids.iter().filter(|&&i| i == cfg.image_token_index).count();
        let ids_t = Tensor::<2, Int>::from_data(
            TensorData::new(
                ids.iter().map(|&i| if i == cfg.image_token_index { 0 } else { i as i64 }).collect::<Vec<_>>(),
                [1, ids.len()],
            ),
            device,
        );
        let text = self.language_model.embed_tokens(ids_t);
        let Some(features) = features else {
            if n_img > 0 {
                return Err(Error::input("prompt", format!("has {n_img} image tokens but no image was given")));
            }
            return Ok(text);
        };
        let [_, n_feat, _] = features.dims();
        if n_img != n_feat {
            return Err(Error::input(
                "prompt",
                format!("has {n_img} image tokens but the image gives {n_feat} features"),
            ));
        }
        // Splice runs of image tokens: text pieces and feature pieces alternate.
        let mut pieces = Vec::new();
        let (mut i, mut f) = (0, 0);
        while i < ids.len() {
            let is_img = ids[i] == cfg.image_token_index;
            let start = i;
            while i < ids.len() && (ids[i] == cfg.image_token_index) == is_img {
                i += 1;
            }
            if is_img {
                pieces.push(features.clone().narrow(1, f, i - start));
                f += i - start;
            } else {
                pieces.push(text.clone().narrow(1, start, i - start));
            }
        }
        Ok(Tensor::cat(pieces, 1))
    }

    /// A fresh KV cache for the language model.
    pub fn new_cache(&self, cfg: &LlavaConfig, device: &Device) -> KvCache {
        KvCache::new(&cfg.text_config, device)
    }
}

/// Replace each single image token by `n` copies, as LLaVA's processor does.
/// Tokens already expanded (a run of exactly `n`) are kept.
pub fn expand_image_tokens(ids: &[u32], image_token: u32, n: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len() + n);
    let mut i = 0;
    while i < ids.len() {
        if ids[i] != image_token {
            out.push(ids[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < ids.len() && ids[i] == image_token {
            i += 1;
        }
        let run = i - start;
        let copies = if run % n == 0 { run } else { run * n };
        out.extend(std::iter::repeat_n(image_token, copies));
    }
    out
}

/// The image processor of a checkpoint folder: `preprocessor_config.json`, or
/// the `image_processor` object of transformers 5's `processor_config.json`.
pub fn load_image_processor(src: &dyn FileSource) -> Result<Option<ImageProcessorConfig>> {
    if let Some(bytes) = src.read("preprocessor_config.json")? {
        let text = String::from_utf8_lossy(&bytes);
        return ImageProcessorConfig::from_json(&text).map(Some);
    }
    if let Some(bytes) = src.read("processor_config.json")? {
        let name = src.describe("processor_config.json");
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::config(&name, e.to_string()))?;
        if let Some(ip) = v.get("image_processor") {
            return ImageProcessorConfig::from_json(&ip.to_string()).map(Some);
        }
    }
    Ok(None)
}

/// A loaded LLaVA checkpoint: config, weights and tokenizer.
pub struct LlavaCheckpoint {
    pub config: LlavaConfig,
    pub model: Llava,
    /// Tensors of the checkpoint no module used (reported, not an error).
    pub unused: Vec<String>,
}

impl LlavaCheckpoint {
    /// Load `config.json` and `model*.safetensors` (either key layout); a PEFT
    /// LoRA adapter beside them (`adapter_config.json`, `adapter_model.safetensors`)
    /// is merged into the language model.
    pub fn load(src: &dyn FileSource, device: &Device) -> Result<Self> {
        let mut ckpt = Self::load_base(src, device)?;
        crate::lora::merge_folder(src, &mut ckpt.model.language_model, device)?;
        Ok(ckpt)
    }

    /// [`Self::load`] without merging an adapter (a LoRA run resumes from the
    /// base weights and the factors apart).
    pub fn load_base(src: &dyn FileSource, device: &Device) -> Result<Self> {
        let config =
            LlavaConfig::from_json(&src.describe("config.json"), &checkpoint::read_required(src, "config.json")?)?;
        let mut map = checkpoint::load_weights(src, "model")?;
        normalize_keys(&mut map);
        let map = Arc::new(map);
        let model = Llava::load(&config, &VarBuilder::from_map(map.clone(), device))?;
        let unused = map.unused();
        if !unused.is_empty() {
            log::warn!("{} tensors of the checkpoint are unused: {}", unused.len(), unused.join(", "));
        }
        Ok(Self { config, model, unused })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        assert_eq!(expand_image_tokens(&[1, 9, 2], 9, 3), vec![1, 9, 9, 9, 2]);
        assert_eq!(expand_image_tokens(&[1, 9, 9, 9, 2], 9, 3), vec![1, 9, 9, 9, 2]);
    }
}
