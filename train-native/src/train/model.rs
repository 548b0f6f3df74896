//! The model being trained: built fresh (through `VarBuilder::init`) or loaded
//! from an HF LLaVA folder, prepared for training (stable parameter ids,
//! frozen parts) and exported back to HF safetensors keys.

use super::config::{LlmMode, TrainConfig, Trainable};
use crate::files::{self, DirSource};
use anyhow::Context;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor};
use genllava::image::ImageProcessorConfig;
use genllava::llava::{Llava, LlavaCheckpoint, LlavaConfig};

use genllava::tokenizer::TextTokenizer;
use genllava::weights::VarBuilder;

/// A model plus everything that travels with it in a checkpoint folder.
pub struct Bundle {
    /// `config.json` as written (HF LLaVA config).
    pub config_json: serde_json::Value,
    pub config: LlavaConfig,
    pub tokenizer: TextTokenizer,
    /// `processor_config.json` as written.
    pub processor_json: serde_json::Value,
    pub processor: ImageProcessorConfig,
    pub model: Llava,
}

/// The built-in tiny LLaVA (SigLIP 32×32 / patch 8, a 2-layer Mistral of width 64):
/// trains on a CPU in seconds. Token ids and the vocabulary size are filled in later.
pub fn tiny_preset() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "image_token_index": 4,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "full",
        "multimodal_projector_bias": true,
        "tie_word_embeddings": false,
        "vision_config": {
            "model_type": "siglip_vision_model", "hidden_act": "gelu_pytorch_tanh", "hidden_size": 32,
            "image_size": 32, "intermediate_size": 64, "layer_norm_eps": 1e-6, "num_attention_heads": 4,
            "num_channels": 3, "num_hidden_layers": 2, "patch_size": 8
        },
        "text_config": {
            "model_type": "mistral", "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "head_dim": 16,
            "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": false, "vocab_size": 0, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3
        }
    })
}

/// `processor_config.json` for a SigLIP-style tower of side `size`.
pub fn processor_json(size: usize) -> serde_json::Value {
    serde_json::json!({
        "image_processor": {
            "image_processor_type": "SiglipImageProcessor", "do_convert_rgb": true, "do_normalize": true,
            "do_rescale": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
            "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"height": size, "width": size}
        },
        "image_token": "<image>",
        "num_additional_image_tokens": 0,
        "processor_class": "LlavaProcessor"
    })
}

/// Fresh weights from `cfg.model.init` (or the tiny preset), sized for `tokenizer`.
pub fn fresh(cfg: &TrainConfig, tokenizer: TextTokenizer, device: &Device) -> anyhow::Result<Bundle> {
    let mut json = cfg.model.init.clone().unwrap_or_else(tiny_preset);
    let id = |t: &str| tokenizer.token_id(t).with_context(|| format!("the tokenizer has no `{t}` token"));
    json["image_token_index"] = id("<image>")?.into();
    let text = json.get_mut("text_config").context("model.init has no text_config")?;
    text["vocab_size"] = super::tokenize::id_space(&tokenizer).into();
    text["bos_token_id"] = id("<s>")?.into();
    text["eos_token_id"] = id("</s>")?.into();
    text["pad_token_id"] = id("<pad>")?.into();
    let config = LlavaConfig::from_json("model.init", json.to_string().as_bytes())?;
    let size = config.vision_config.image_size;
    let processor_json = processor_json(size);
    let processor = ImageProcessorConfig::from_json(&processor_json["image_processor"].to_string())?;
    device.seed(cfg.seed);
    let model = Llava::load(&config, &VarBuilder::init(cfg.model.init_std, device))?;
    Ok(Bundle { config_json: json, config, tokenizer, processor_json, processor, model })
}

/// Load an HF LLaVA folder (a base model, or one of our checkpoints).
pub fn load(dir: &std::path::Path, device: &Device) -> anyhow::Result<Bundle> {
    let src = DirSource::open(dir)?;
    let ckpt = LlavaCheckpoint::load(&src, device).with_context(|| dir.display().to_string())?;
    let config_json: serde_json::Value = serde_json::from_slice(&files::read(&dir.join("config.json"))?)?;
    let tokenizer = TextTokenizer::from_bytes(&files::read(&dir.join("tokenizer.json"))?)?;
    let processor = genllava::llava::load_image_processor(&src)?
        .with_context(|| format!("{}: no preprocessor_config.json or processor_config.json", dir.display()))?;
    let processor_json = match std::fs::read(dir.join("processor_config.json")) {
        Ok(b) => serde_json::from_slice(&b)?,
        Err(_) => {
            serde_json::json!({"image_processor": serde_json::from_slice::<serde_json::Value>(&files::read(&dir.join("preprocessor_config.json"))?)?})
        }
    };
    Ok(Bundle { config_json, config: ckpt.config, tokenizer, processor_json, processor, model: ckpt.model })
}

/// Give every parameter an id that depends only on its position in the module
/// tree (the optimizer state is keyed by id, so a resumed run must match the one
/// that saved it) and a contiguous copy of its value (a loaded linear weight is a
/// transposed view; kernels may sum in a different order on views, so both the
/// fresh and the resumed run start from the same layout).
pub fn stable_params<M: Module>(module: M, device: &Device) -> M {
    struct Renumber<'a> {
        next: u64,
        device: &'a Device,
    }
    impl ModuleMapper for Renumber<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, tensor, _) = param.consume();
            self.next += 1;
            let value = Tensor::<D>::from_data(tensor.into_data(), self.device).require_grad();
            Param::initialized(ParamId::from(self.next), value)
        }
    }
    module.map(&mut Renumber { next: 0, device })
}

/// Freeze what the config leaves untrained: the vision tower always, the projector
/// and the LLM on request.
pub fn apply_trainable(mut model: Llava, t: &Trainable) -> Llava {
    model.vision_tower = model.vision_tower.no_grad();
    if !t.projector {
        model.multi_modal_projector = model.multi_modal_projector.no_grad();
    }
    if t.llm == LlmMode::Frozen {
        model.language_model = model.language_model.no_grad();
    }
    model
}

/// Number of parameters that require gradients, and of all parameters.
pub fn count_params<M: Module>(module: &M) -> (usize, usize) {
    struct Count(usize, usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.shape().num_elements();
            self.1 += n;
            if param.val().is_require_grad() {
                self.0 += n;
            }
        }
    }
    let mut c = Count(0, 0);
    module.visit(&mut c);
    (c.0, c.1)
}

/// The weights as safetensors bytes under the current HF LLaVA key layout
/// (`model.vision_tower.vision_model.*`, `model.multi_modal_projector.*`,
/// `model.language_model.*`, `lm_head.*`), linear weights back in PyTorch's
/// `[out, in]`, f32.
pub fn export_safetensors(model: &Llava) -> anyhow::Result<Vec<u8>> {
    let mut tensors = genllava::export::named_tensors(model, "");
    for t in &mut tensors {
        let parts: Vec<&str> = t.name.split('.').collect();
        if let Some((leaf, path)) = parts.split_last() {
            t.name = hf_name(path, leaf);
        }
    }
    Ok(genllava::export::safetensors_bytes(&tensors, false))
}

/// HF name of a parameter at Burn module path `names` + `leaf`.
fn hf_name(names: &[&str], leaf: &str) -> String {
    let rest = |from: usize| names[from..].iter().copied().chain([leaf]).collect::<Vec<_>>().join(".");
    match names.first().copied() {
        Some("vision_tower") => format!("model.vision_tower.vision_model.{}", rest(1)),
        Some("multi_modal_projector") => format!("model.multi_modal_projector.{}", rest(1)),
        Some("language_model") if names.get(1) == Some(&"lm_head") => format!("lm_head.{}", rest(2)),
        Some("language_model") => format!("model.language_model.{}", rest(1)),
        _ => rest(0),
    }
}
