//! The model being trained: built fresh (through `VarBuilder::init`) or loaded
//! from an HF LLaVA folder, prepared for training (stable parameter ids,
//! frozen parts) and exported back to HF safetensors keys.

use super::config::{LlmMode, TrainConfig, Trainable};
use crate::files::{self, DirSource};
use anyhow::Context;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor};
use genllava::genllava::GenLlavaConfig;
use genllava::head::{GenHead, GenHeadConfig};
use genllava::image::ImageProcessorConfig;
use genllava::llava::{Llava, LlavaCheckpoint, LlavaConfig};
use genllava::tokenizer::TextTokenizer;
use genllava::weights::VarBuilder;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What trains, as one module (one optimizer, one gradient tree): the LLaVA and,
/// for GenLLaVA, the generation head.
#[derive(Module, Debug)]
pub struct GenModel {
    pub llava: Llava,
    pub head: Option<GenHead>,
}

/// The generation side of a GenLLaVA bundle (absent for a plain LLaVA).
#[derive(Debug, Clone)]
pub struct GenParts {
    /// `genllava.json`.
    pub config: GenLlavaConfig,
    /// `gen_head/config.json`.
    pub head_config: GenHeadConfig,
    /// The frozen Stable Diffusion folder (copied into every checkpoint as `sd/`).
    pub sd_dir: PathBuf,
}

/// A model plus everything that travels with it in a checkpoint folder.
pub struct Bundle {
    /// `config.json` as written (HF LLaVA config).
    pub config_json: serde_json::Value,
    pub config: LlavaConfig,
    pub tokenizer: TextTokenizer,
    /// `processor_config.json` as written.
    pub processor_json: serde_json::Value,
    pub processor: ImageProcessorConfig,
    pub model: GenModel,
    pub generation: Option<GenParts>,
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

/// The generation head's sizes for an LLM of width `d_llm` feeding a UNet whose
/// text context is `l × out_dim`: the paper's mapper shape scaled down by
/// `cfg.model.head` (a partial `gen_head/config.json`; defaults: width 64, 4 heads,
/// 2 + 2 layers, FFN 128).
fn head_config(cfg: &TrainConfig, d_llm: usize, l: usize, out_dim: usize) -> anyhow::Result<GenHeadConfig> {
    let mut json = serde_json::json!({"d_model": 64, "heads": 4, "enc_layers": 2, "dec_layers": 2, "ffn": 128});
    if let Some(serde_json::Value::Object(given)) = &cfg.model.head {
        for (k, v) in given {
            json[k] = v.clone();
        }
    }
    json["d_llm"] = d_llm.into();
    json["num_queries"] = l.into();
    json["out_dim"] = out_dim.into();
    json["num_img_tokens"] = cfg.model.n_img.into();
    Ok(GenHeadConfig::from_json(&json.to_string())?)
}

/// The frozen Stable Diffusion folder of a GenLLaVA run (`cfg.model.sd`, else the
/// shipped shapes-world stand-in).
pub fn sd_dir(cfg: &TrainConfig) -> PathBuf {
    cfg.model
        .sd
        .as_deref()
        .map(asset_path)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sd-shapes"))
}

/// Point a GenLLaVA bundle at the run's own decoder folder: `cfg.model.sd` when
/// given, else `sd/` of `cfg.model.from` when it has one, else the shipped stand-in. (A resumed
/// bundle was read from a step folder that pruning may delete.)
pub fn resolve_sd_dir(bundle: &mut Bundle, cfg: &TrainConfig) {
    if let Some(g) = &mut bundle.generation {
        g.sd_dir = match (&cfg.model.sd, &cfg.model.from) {
            (None, Some(from)) if from.join("sd").is_dir() => from.join("sd"),
            _ => sd_dir(cfg),
        };
    }
}

/// Fresh weights from `cfg.model.init` (or the tiny preset), sized for `tokenizer`;
/// with `generation`, the task and `[IMG]` tokens are added and a fresh
/// generation head is built for the frozen Stable Diffusion in [`sd_dir`].
pub fn fresh(
    cfg: &TrainConfig,
    mut tokenizer: TextTokenizer,
    generation: bool,
    device: &Device,
) -> anyhow::Result<Bundle> {
    let task = generation.then(|| tokenizer.add_task_tokens(cfg.model.n_img));
    let mut json = cfg.model.init.clone().unwrap_or_else(tiny_preset);
    let id = |t: &str| tokenizer.token_id(t).with_context(|| format!("the tokenizer has no `{t}` token"));
    json["image_token_index"] = id("<image>")?.into();
    let text = json.get_mut("text_config").context("model.init has no text_config")?;
    text["vocab_size"] = super::tokenize::id_space(&tokenizer).into();
    text["bos_token_id"] = id("<s>")?.into();
    text["eos_token_id"] = id("</s>")?.into();
    text["pad_token_id"] = id("<pad>")?.into();
    let pretrained = match &cfg.model.vision {
        Some(dir) => {
            let dir = asset_path(dir);
            let (tower, tower_json) = load_vision(&dir)?;
            let want = json["vision_config"]["image_size"].as_u64();
            anyhow::ensure!(
                want.is_none_or(|w| w == tower_json["image_size"].as_u64().unwrap_or(0)),
                "{}: the tower sees {} px images, model.init.vision_config.image_size is {}",
                dir.display(),
                tower_json["image_size"],
                want.unwrap_or(0)
            );
            json["vision_config"] = tower_json;
            Some(tower)
        }
        None => None,
    };
    let llm = match &cfg.model.llm {
        Some(dir) => {
            let dir = asset_path(dir);
            let (mut text_json, weights) = read_hf_folder(&dir)?;
            let base_vocab = text_json["vocab_size"].as_u64().unwrap_or(0) as usize;
            // The run's id space: the LLM's own, plus the task and [IMG] tokens added above.
            for key in ["vocab_size", "bos_token_id", "eos_token_id", "pad_token_id"] {
                text_json[key] = json["text_config"][key].clone();
            }
            json["text_config"] = text_json;
            Some((dir, base_vocab, weights))
        }
        None => None,
    };
    let config = LlavaConfig::from_json("model.init", json.to_string().as_bytes())?;
    let size = config.vision_config.image_size;
    let processor_json = processor_json(size);
    let processor = ImageProcessorConfig::from_json(&processor_json["image_processor"].to_string())?;
    device.seed(cfg.seed);
    let vb = VarBuilder::init(cfg.model.init_std, device);
    let mut llava = Llava::load(&config, &vb)?;
    if let Some(tower) = pretrained {
        let vb = VarBuilder::from_map(tower.clone(), device);
        llava.vision_tower = genllava::siglip::SiglipVision::load_checkpoint(&config.vision_config, &vb)?;
        let unused = tower.unused();
        anyhow::ensure!(unused.is_empty(), "{}: tensors the vision tower does not read: {unused:?}", tower.source);
    }
    if let Some((dir, base_vocab, weights)) = llm {
        let mut text = config.text_config.clone();
        text.vocab_size = base_vocab;
        let map = Arc::new(weights);
        let vb = VarBuilder::from_map(map.clone(), device);
        let mut lm = genllava::llama::Llama::load(&text, &vb.pp("model"), &vb.pp("lm_head"))
            .with_context(|| dir.display().to_string())?;
        let unused = map.unused();
        anyhow::ensure!(unused.is_empty(), "{}: tensors the language model does not read: {unused:?}", dir.display());
        grow_vocab(&mut lm, config.text_config.vocab_size, device);
        llava.language_model = lm;
    }
    let (head, genr) = match task {
        None => (None, None),
        Some(task_tokens) => {
            let sd_dir = sd_dir(cfg);
            let (l, out_dim) = sd_context(&sd_dir)?;
            let head_config = head_config(cfg, config.text_config.hidden_size, l, out_dim)?;
            let head = GenHead::load(&head_config, &vb.pp("gen_head"))?;
            let gen_json = serde_json::json!({"task_tokens": task_tokens, "system": null,
                "describe_edits": cfg.data.describe_edits,
                "diffusion": {"steps": 25, "guidance": 4.0, "scheduler": "ddim", "edit": edit_mode(&sd_dir)?}});
            let config = GenLlavaConfig::from_json("genllava.json", gen_json.to_string().as_bytes())?;
            (Some(head), Some(GenParts { config, head_config, sd_dir }))
        }
    };
    Ok(Bundle {
        config_json: json,
        config,
        tokenizer,
        processor_json,
        processor,
        model: GenModel { llava, head },
        generation: genr,
    })
}

/// `path` as given when it exists (or is absolute), else inside the train-native crate,
/// where the shipped assets live: `assets/siglip-shapes` works from any directory.
pub fn asset_path(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if shipped.exists() { shipped } else { path.to_path_buf() }
}

/// A transformers model folder (`config.json`, `model*.safetensors`): its config and weights.
pub fn read_hf_folder(dir: &Path) -> anyhow::Result<(serde_json::Value, genllava::WeightMap)> {
    let config = dir.join("config.json");
    let json: serde_json::Value =
        serde_json::from_slice(&files::read(&config)?).with_context(|| config.display().to_string())?;
    let src = DirSource::open(dir)?;
    let map = genllava::checkpoint::load_weights(&src, "model").with_context(|| dir.display().to_string())?;
    Ok((json, map))
}

/// A `SiglipVisionModel` folder: its weights and its `config.json`.
fn load_vision(dir: &Path) -> anyhow::Result<(Arc<genllava::WeightMap>, serde_json::Value)> {
    let (json, map) = read_hf_folder(dir)?;
    genllava::siglip::SiglipVisionConfig::from_value(json.clone())
        .with_context(|| dir.join("config.json").display().to_string())?;
    Ok((Arc::new(map), json))
}

/// Turn a loaded plain LLaVA into a GenLLaVA to tune: the task and `[IMG]`
/// tokens join the tokenizer, the embedding and output rows grow to match (new
/// rows start at the mean of the old ones, as LLaVA-style token additions do), a
/// fresh generation head is built for the decoder in [`sd_dir`].
pub fn add_generation(bundle: &mut Bundle, cfg: &TrainConfig, device: &Device) -> anyhow::Result<()> {
    let task_tokens = bundle.tokenizer.add_task_tokens(cfg.model.n_img);
    let vocab = super::tokenize::id_space(&bundle.tokenizer);
    grow_vocab(&mut bundle.model.llava.language_model, vocab, device);
    bundle.config_json["text_config"]["vocab_size"] = vocab.into();
    bundle.config.text_config.vocab_size = vocab;
    let sd_dir = sd_dir(cfg);
    let (l, out_dim) = sd_context(&sd_dir)?;
    let head_config = head_config(cfg, bundle.config.text_config.hidden_size, l, out_dim)?;
    device.seed(cfg.seed);
    let head = GenHead::load(&head_config, &VarBuilder::init(cfg.model.init_std, device).pp("gen_head"))?;
    let gen_json = serde_json::json!({"task_tokens": task_tokens, "describe_edits": cfg.data.describe_edits,
        "diffusion": {"steps": 50, "guidance": 7.5, "scheduler": "ddim", "edit": edit_mode(&sd_dir)?}});
    let config = GenLlavaConfig::from_json("genllava.json", gen_json.to_string().as_bytes())?;
    bundle.model.head = Some(head);
    bundle.generation = Some(GenParts { config, head_config, sd_dir });
    Ok(())
}

/// Grow the token embeddings and output rows of `lm` to `vocab` (new rows start at
/// the mean of the old ones, as LLaVA-style token additions do); trainable.
fn grow_vocab(lm: &mut genllava::llama::Llama, vocab: usize, device: &Device) {
    let grow = |w: Tensor<2>, dim: usize| -> Tensor<2> {
        let old = w.dims()[dim];
        if vocab <= old {
            return w;
        }
        let mean = w.clone().mean_dim(dim);
        Tensor::cat(vec![w, mean.repeat_dim(dim, vocab - old)], dim)
    };
    let (id, w, _) = lm.embed_tokens.weight.clone().consume();
    lm.embed_tokens.weight = Param::initialized(id, grow(w, 0).detach().require_grad());
    if let Some(head) = &mut lm.lm_head {
        // Burn's linear weight is `[in, out]`: the vocabulary is the second axis.
        let (id, w, _) = head.weight.clone().consume();
        head.weight = Param::initialized(id, grow(w, 1).detach().require_grad());
        if let Some(b) = &head.bias {
            let (id, bias, _) = b.clone().consume();
            let old = bias.dims()[0];
            let bias =
                if vocab > old { Tensor::cat(vec![bias, Tensor::zeros([vocab - old], device)], 0) } else { bias };
            head.bias = Some(Param::initialized(id, bias.detach().require_grad()));
        }
    }
}

/// The text context the UNet in `sd_dir` cross-attends to: (positions of its text
/// encoder, `cross_attention_dim`).
/// How edits reach the decoder in `sd_dir`: an InstructPix2Pix UNet (twice its
/// output channels in) takes the source image beside the noise (image guidance 1.5,
/// diffusers' default); a plain one starts img2img from it at strength 0.75.
fn edit_mode(sd_dir: &Path) -> anyhow::Result<serde_json::Value> {
    let path = sd_dir.join("unet/config.json");
    let unet: serde_json::Value =
        serde_json::from_slice(&files::read(&path)?).with_context(|| path.display().to_string())?;
    let channels = |k: &str| unet[k].as_u64().with_context(|| format!("{}: no {k}", path.display()));
    Ok(if channels("in_channels")? == 2 * channels("out_channels")? {
        serde_json::json!({"pix2pix": {"image_guidance": 1.5}})
    } else {
        serde_json::json!({"img2img": {"strength": 0.75}})
    })
}

fn sd_context(sd_dir: &Path) -> anyhow::Result<(usize, usize)> {
    let read = |name: &str| -> anyhow::Result<serde_json::Value> {
        let path = sd_dir.join(name);
        serde_json::from_slice(&files::read(&path)?).with_context(|| path.display().to_string())
    };
    let unet = read("unet/config.json")?;
    let text = read("text_encoder/config.json")?;
    let dim = unet["cross_attention_dim"].as_u64().context("unet/config.json: no cross_attention_dim")?;
    let l = text["max_position_embeddings"].as_u64().unwrap_or(77);
    Ok((l as usize, dim as usize))
}

/// Load an HF LLaVA folder (a base model, or one of our checkpoints); a LoRA
/// adapter beside the weights is merged.
pub fn load(dir: &std::path::Path, device: &Device) -> anyhow::Result<Bundle> {
    load_with(dir, device, true)
}

/// [`load`], merging the folder's LoRA adapter or leaving it out (`merge_adapter`
/// false: a LoRA run resuming reads its factors apart).
pub fn load_with(dir: &std::path::Path, device: &Device, merge_adapter: bool) -> anyhow::Result<Bundle> {
    let src = DirSource::open(dir)?;
    let ckpt =
        if merge_adapter { LlavaCheckpoint::load(&src, device) } else { LlavaCheckpoint::load_base(&src, device) }
            .with_context(|| dir.display().to_string())?;
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
    let (head, genr) = if dir.join("genllava.json").exists() {
        let config = GenLlavaConfig::from_json("genllava.json", &files::read(&dir.join("genllava.json"))?)?;
        let head_dir = dir.join("gen_head");
        let head_config =
            GenHeadConfig::from_json(&String::from_utf8_lossy(&files::read(&head_dir.join("config.json"))?))?;
        let weights = genllava::checkpoint::load_weights(&DirSource::open(&head_dir)?, "model")
            .with_context(|| head_dir.display().to_string())?;
        let head = GenHead::load(&head_config, &VarBuilder::from_map(Arc::new(weights), device))?;
        (Some(head), Some(GenParts { config, head_config, sd_dir: dir.join("sd") }))
    } else {
        (None, None)
    };
    Ok(Bundle {
        config_json,
        config: ckpt.config,
        tokenizer,
        processor_json,
        processor,
        model: GenModel { llava: ckpt.model, head },
        generation: genr,
    })
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

/// Freeze what the config leaves untrained: the vision tower unless `vision`, the
/// projector, the LLM and the generation head on request.
pub fn apply_trainable(mut model: GenModel, t: &Trainable) -> GenModel {
    let llava = &mut model.llava;
    if !t.vision {
        llava.vision_tower = llava.vision_tower.clone().no_grad();
    }
    if !t.projector {
        llava.multi_modal_projector = llava.multi_modal_projector.clone().no_grad();
    }
    match t.llm {
        LlmMode::Full => {}
        LlmMode::Frozen => llava.language_model = llava.language_model.clone().no_grad(),
        LlmMode::Lora => {
            llava.language_model =
                llava.language_model.clone().map(&mut FreezeBase { path: Vec::new(), embeddings: t.img_embeddings })
        }
    }
    if !t.head {
        model.head = model.head.map(|h| h.no_grad());
    }
    model
}

/// LoRA training: freezes the language model's own weights, except the adapter
/// factors (`….weight.lora.{a,b}`) and, with `embeddings`, the token embeddings
/// and output layer.
struct FreezeBase {
    path: Vec<String>,
    embeddings: bool,
}

impl ModuleMapper for FreezeBase {
    fn enter_module(&mut self, name: &str, _kind: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _kind: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let adapter = self.path.iter().any(|p| p == "lora");
        let token_rows = matches!(self.path.first().map(String::as_str), Some("embed_tokens" | "lm_head"));
        let trains = adapter || (self.embeddings && token_rows);
        let (id, tensor, _) = param.consume();
        Param::initialized(id, tensor.set_require_grad(trains))
    }
}

/// Put fresh LoRA adapters (`cfg.trainable.lora`, seeded by `cfg.seed`) or the
/// `loaded` factors of a checkpoint on the language model.
pub fn attach_lora(
    bundle: &mut Bundle,
    cfg: &TrainConfig,
    loaded: Option<genllava::lora::Factors>,
) -> anyhow::Result<()> {
    let lora = &cfg.trainable.lora;
    let device = bundle.model.llava.language_model.embed_tokens.weight.device();
    device.seed(cfg.seed ^ 0x10AA);
    let lm = bundle.model.llava.language_model.clone();
    let (lm, n) = genllava::lora::attach(lm, &lora.adapter_config(), &lora.targets, loaded)?;
    anyhow::ensure!(n > 0, "trainable.lora: no projection of the language model matched {:?}", lora.targets);
    bundle.model.llava.language_model = lm;
    Ok(())
}

/// Whether the language model carries LoRA adapters.
pub fn has_lora(model: &GenModel) -> bool {
    genllava::lora::count(&model.llava.language_model) > 0
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
    export_llava(model)
}

/// The generation head as `gen_head/model.safetensors` (torch `nn.Transformer` keys).
pub fn export_head(head: &GenHead) -> Vec<u8> {
    genllava::export::safetensors_bytes(&genllava::export::named_tensors(head, ""), false)
}

fn export_llava(model: &Llava) -> anyhow::Result<Vec<u8>> {
    let mut tensors = genllava::export::named_tensors(model, "");
    // LoRA factors (`….weight.lora.{a,b}`) go to the adapter file, not here.
    tensors.retain(|t| !t.name.contains(".lora."));
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
