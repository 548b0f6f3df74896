//! `pretrain-sd`: train the four parts in order and write them as a diffusers folder;
//! and the loader that reads such a folder back through core's own loaders.

use super::diffusion::{self, DiffusionData, TextStart, TextUnet, UnetSize};
use super::text::{CaptionTokenizer, TextSize, text_config, text_config_json};
use super::vae::{self, VaeSize};
use super::{Preset, PretrainArgs};
use crate::files::{DirSource, write_atomic};
use anyhow::Context;
use burn::tensor::Device;
use genllava::checkpoint::{FileSource, SubSource, load_weights, read_required};
use genllava::clip_text::{ClipTextConfig, ClipTextModel};
use genllava::export::{NamedTensor, named_tensors, safetensors_bytes};
use genllava::scheduler::SchedulerConfig;
use genllava::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use genllava::sd::vae::{AutoencoderKL, AutoencoderKLConfig};
use genllava::weights::{VarBuilder, WeightMap};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Row length of the tokenizer = text positions (the longest caption is 28 tokens).
const MAX_LEN: usize = 32;

fn sizes(preset: Preset) -> (TextSize, VaeSize, UnetSize, usize) {
    match preset {
        Preset::Small => (
            TextSize { hidden: 64, layers: 2, heads: 4 },
            VaeSize { channels: vec![16, 32, 32], groups: 8, latent_channels: 8, attention: true },
            UnetSize { channels: vec![32, 64], groups: 8, heads: 4, layers: 1 },
            4000,
        ),
        Preset::Tiny => (
            TextSize { hidden: 16, layers: 1, heads: 2 },
            VaeSize { channels: vec![8, 16], groups: 4, latent_channels: 4, attention: true },
            UnetSize { channels: vec![8, 16], groups: 4, heads: 2, layers: 1 },
            300,
        ),
    }
}

pub fn run_pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    device.seed(args.seed);
    let (text_size, vae_size, unet_size, tokenizer_captions) = sizes(args.preset);
    let start = Instant::now();

    anyhow::ensure!(
        args.edit_text == EditText::Caption || args.pix2pix,
        "--edit-text {} conditions editing triples: it needs --pix2pix",
        args.edit_text.name()
    );
    // Words of the instructions the vocabulary must hold ("make", "remove", …).
    let words = if args.edit_text == EditText::Instruction {
        diffusion::instruction_words(args.seed, args.pool, args.held_out_pairs)
    } else {
        Vec::new()
    };
    let (tok, text_json, start_text) = match &args.text_from {
        Some(dir) => {
            let (tok, text, json, added) = load_text_with_words(dir, &words, args.seed, &device)?;
            if !added.is_empty() {
                eprintln!("tokenizer: {} words added for the instructions: {}", added.len(), added.join(" "));
            }
            let (how, start) = if args.tune_text {
                ("trained on", TextStart::Tuned(text))
            } else {
                ("frozen", TextStart::Frozen(text))
            };
            eprintln!("text encoder: {how}, from {} ({} words)", dir.display(), tok.vocab_size());
            (tok, json, start)
        }
        None => {
            let (tok, _) = CaptionTokenizer::train(args.seed, tokenizer_captions, MAX_LEN)?
                .with_words(words.iter().map(String::as_str))?;
            eprintln!("tokenizer: {} words", tok.vocab_size());
            let json = text_config_json(text_size, &tok);
            (tok, json, TextStart::Fresh)
        }
    };
    let text_cfg = text_config(&text_json)?;

    let latent_side = args.size >> (vae_size.channels.len() - 1);
    let mut unet_json =
        diffusion::unet_config_json(&unet_size, vae_size.latent_channels, latent_side, text_cfg.hidden_size);
    if args.pix2pix {
        unet_json["in_channels"] = json!(2 * vae_size.latent_channels);
    }
    let unet_cfg = UNet2DConditionConfig::from_json(&unet_json.to_string())?;
    // Checked before the VAE trains: a mismatched UNet fails at once.
    let init_unet = match &args.unet_from {
        Some(dir) => {
            let unet = load_unet(dir, &unet_cfg, &device)?;
            eprintln!("unet: continued from {}", dir.display());
            Some(unet)
        }
        None => None,
    };
    let vae_cfg = AutoencoderKLConfig::from_json(&vae::vae_config_json(&vae_size, args.size, 1.0).to_string())?;
    let t = Instant::now();
    let (vae_model, vae_steps) = match &args.vae_from {
        Some(dir) => {
            let (vae_model, cfg) = load_vae(dir, &device)?;
            anyhow::ensure!(
                cfg.block_out_channels == vae_cfg.block_out_channels
                    && cfg.latent_channels == vae_cfg.latent_channels
                    && cfg.sample_size == args.size,
                "{}: vae/config.json has channels {:?}, {} latent channels, {} px; the preset needs {:?}, {}, {} px",
                dir.display(),
                cfg.block_out_channels,
                cfg.latent_channels,
                cfg.sample_size,
                vae_cfg.block_out_channels,
                vae_cfg.latent_channels,
                args.size
            );
            eprintln!("vae: reused from {}", dir.display());
            (vae_model, 0)
        }
        None => {
            let steps = args.vae_steps.unwrap_or(args.steps.div_ceil(2));
            (vae::train(&vae_cfg, steps, args.vae_batch, args.vae_lr, args.seed, &device)?, steps)
        }
    };
    let vae_ms = t.elapsed().as_secs_f64() * 1000.0 / vae_steps.max(1) as f64;
    let scaling = vae::scaling_factor(&vae_model, args.seed, args.size, 64, &device)?;
    let recon = vae::reconstruction_accuracy(&vae_model, args.seed, args.size, 64, &device)?;
    eprintln!("vae: scaling_factor {scaling:.4}, test reconstructions scored exact: {:.1} %", 100.0 * recon);
    let vae_json = vae::vae_config_json(&vae_size, args.size, scaling);

    let data = DiffusionData {
        vae: &vae_model,
        scaling_factor: scaling,
        tok: &tok,
        image: args.size,
        seed: args.seed,
        pool: args.pool,
        held_out_pairs: args.held_out_pairs,
        edits: args.pix2pix,
        edit_text: args.edit_text,
    };
    let t = Instant::now();
    let model =
        diffusion::train(&text_cfg, start_text, &unet_cfg, init_unet, &data, args.steps, args.batch, args.lr, &device)?;
    let unet_ms = t.elapsed().as_secs_f64() * 1000.0 / args.steps.max(1) as f64;

    let parts =
        Parts { tok: &tok, text_json, vae_json, unet_json, vae: &vae_model, model: &model, edit_text: args.edit_text };
    write(&args.out, &parts, args.f16)?;
    println!(
        "wrote {} ({} VAE steps at {vae_ms:.0} ms, {} UNet steps at {unet_ms:.0} ms; {:.0} s in all; VAE reconstruction exact {:.1} %)",
        args.out.display(),
        vae_steps,
        args.steps,
        start.elapsed().as_secs_f64(),
        100.0 * recon
    );
    Ok(())
}

/// What [`write`] stores.
pub struct Parts<'a> {
    pub tok: &'a CaptionTokenizer,
    pub text_json: Value,
    pub vae_json: Value,
    pub unet_json: Value,
    pub vae: &'a AutoencoderKL,
    pub model: &'a TextUnet,
    /// What its editing triples were conditioned on.
    pub edit_text: EditText,
}

fn put_json(path: &Path, v: &Value) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(v)?)
}

fn put_weights(path: &Path, tensors: &[NamedTensor], f16: bool) -> anyhow::Result<()> {
    write_atomic(path, &safetensors_bytes(tensors, f16))
}

/// Write the diffusers folder.
pub fn write(out: &Path, p: &Parts, f16: bool) -> anyhow::Result<()> {
    put_json(
        &out.join("model_index.json"),
        &json!({
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.30.0",
            "feature_extractor": [null, null],
            "requires_safety_checker": false,
            "safety_checker": [null, null],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "_genllava_edit_text": p.edit_text.name(),
        }),
    )?;
    put_json(&out.join("scheduler/scheduler_config.json"), &diffusion::scheduler_config_json())?;
    write_text(out, p.tok, &p.text_json, &p.model.text, f16)?;
    put_json(&out.join("vae/config.json"), &p.vae_json)?;
    put_weights(&out.join("vae/diffusion_pytorch_model.safetensors"), &named_tensors(p.vae, ""), f16)?;
    put_json(&out.join("unet/config.json"), &p.unet_json)?;
    put_weights(&out.join("unet/diffusion_pytorch_model.safetensors"), &named_tensors(&p.model.unet, ""), f16)?;
    Ok(())
}

/// The text half of a diffusers folder: `tokenizer/` and `text_encoder/` (a transformers
/// `CLIPTextModel`). `pretrain-vision --text-out` writes its text tower this way too.
pub fn write_text(
    out: &Path,
    tok: &CaptionTokenizer,
    config: &Value,
    text: &ClipTextModel,
    f16: bool,
) -> anyhow::Result<()> {
    write_atomic(&out.join("tokenizer/tokenizer.json"), tok.json()?.as_bytes())?;
    put_json(&out.join("tokenizer/tokenizer_config.json"), &tok.config_json())?;
    put_json(&out.join("text_encoder/config.json"), config)?;
    put_weights(&out.join("text_encoder/model.safetensors"), &named_tensors(text, "text_model."), f16)
}

/// A tokenizer and text encoder read back from `tokenizer/` and `text_encoder/` of `dir`,
/// with the encoder's `config.json`.
pub fn load_text(dir: &Path, device: &Device) -> anyhow::Result<(CaptionTokenizer, ClipTextModel, Value)> {
    let (tok, text, config, _) = load_text_with_words(dir, &[], 0, device)?;
    Ok((tok, text, config))
}

/// [`load_text`], with the `words` its tokenizer lacks appended to the vocabulary (in the
/// order given) and as many new rows of the token embedding (normal, std 0.02, drawn from
/// `seed`), `vocab_size` raised to match; also returns the words added.
pub fn load_text_with_words(
    dir: &Path,
    words: &[String],
    seed: u64,
    device: &Device,
) -> anyhow::Result<(CaptionTokenizer, ClipTextModel, Value, Vec<String>)> {
    let root = DirSource::open(dir)?;
    let sub = |d: &str| SubSource::new(&root, d);
    let config_text = text_of(&sub("text_encoder"), "config.json")?;
    let mut config: Value = serde_json::from_str(&config_text)
        .with_context(|| format!("{}: not JSON", sub("text_encoder").describe("config.json")))?;
    let text_config = ClipTextConfig::from_json(&config_text)?;
    let json = read_required(&sub("tokenizer"), "tokenizer.json")?;
    let inner = tokenizers::Tokenizer::from_bytes(&json)
        .map_err(|e| anyhow::anyhow!("{}: {e}", sub("tokenizer").describe("tokenizer.json")))?;
    let tok = CaptionTokenizer::from_tokenizer(inner, text_config.max_position_embeddings)?;
    let (tok, added) = tok.with_words(words.iter().map(String::as_str))?;
    let mut weights = load_weights(&sub("text_encoder"), "model")?;
    ClipTextModel::normalize_keys(&mut weights);
    let text_config = if added.is_empty() {
        text_config
    } else {
        let name = "text_model.embeddings.token_embedding.weight";
        let raw = weights.raw(name).with_context(|| format!("{}: no {name}", sub("text_encoder").describe("model")))?;
        let [rows, width] = raw.shape[..] else {
            anyhow::bail!(
                "{}: {name} has shape {:?}, not [vocab, hidden]",
                sub("text_encoder").describe("model"),
                raw.shape
            )
        };
        anyhow::ensure!(
            rows + added.len() == tok.vocab_size(),
            "{}: {rows} embedding rows for a tokenizer of {} words",
            sub("text_encoder").describe("model"),
            tok.vocab_size() - added.len()
        );
        let mut values = raw.to_f32();
        let mut rng = genllava::shapes::SplitMix64::derive(seed, &[0x70CE]);
        values.extend(super::normal_vec(&mut rng, added.len() * width).into_iter().map(|v| 0.02 * v));
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let grown = genllava::safetensors::RawTensor::owned(
            genllava::safetensors::Dtype::F32,
            vec![tok.vocab_size(), width],
            bytes,
        );
        weights.insert_raw(name, grown);
        config["vocab_size"] = json!(tok.vocab_size());
        ClipTextConfig::from_json(&config.to_string())?
    };
    let text = checked(weights, |vb| ClipTextModel::load(&text_config, &vb.pp("text_model")), device)?;
    Ok((tok, text, config, added))
}

/// What the editing triples of an InstructPix2Pix folder are conditioned on
/// (`model_index.json`'s `_genllava_edit_text`; diffusers skips keys starting with `_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EditText {
    /// The caption of the edited scene (the UNet redraws the scene described).
    #[default]
    Caption,
    /// The edit instruction itself, as InstructPix2Pix trains on it (the UNet finds in
    /// the source image what the instruction names).
    Instruction,
}

impl EditText {
    pub fn name(self) -> &'static str {
        match self {
            EditText::Caption => "caption",
            EditText::Instruction => "instruction",
        }
    }

    /// The conditioning text of an edit.
    pub fn text(self, instruction: &str, edited_caption: &str) -> String {
        match self {
            EditText::Caption => edited_caption.to_string(),
            EditText::Instruction => instruction.to_string(),
        }
    }

    /// What the folder `dir` was trained with (`caption` when it does not say).
    pub fn of_folder(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("model_index.json");
        let Ok(bytes) = std::fs::read(&path) else { return Ok(EditText::Caption) };
        let v: Value = serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))?;
        match v.get("_genllava_edit_text").and_then(Value::as_str) {
            None | Some("caption") => Ok(EditText::Caption),
            Some("instruction") => Ok(EditText::Instruction),
            Some(other) => anyhow::bail!(
                "{}: _genllava_edit_text is {other:?}; expected \"caption\" or \"instruction\"",
                path.display()
            ),
        }
    }
}

/// A folder loaded back through core's loaders.
pub struct LoadedSd {
    pub tok: CaptionTokenizer,
    pub text: ClipTextModel,
    pub vae: AutoencoderKL,
    pub vae_config: AutoencoderKLConfig,
    pub unet: UNet2DConditionModel,
    pub scheduler: SchedulerConfig,
    /// What its editing triples were conditioned on.
    pub edit_text: EditText,
}

fn text_of(src: &dyn FileSource, name: &str) -> anyhow::Result<String> {
    String::from_utf8(read_required(src, name)?).with_context(|| format!("{}: not UTF-8", src.describe(name)))
}

/// Weights of one component; every tensor must be used by its loader.
fn checked<T>(
    map: WeightMap,
    load: impl FnOnce(&VarBuilder) -> genllava::Result<T>,
    device: &Device,
) -> anyhow::Result<T> {
    let map = Arc::new(map);
    let module = load(&VarBuilder::from_map(map.clone(), device))?;
    let unused = map.unused();
    anyhow::ensure!(unused.is_empty(), "{}: tensors no module reads: {unused:?}", map.source);
    Ok(module)
}

/// The VAE of a diffusers folder; its shape must be the preset's (checked by the loader).
fn load_vae(dir: &Path, device: &Device) -> anyhow::Result<(AutoencoderKL, AutoencoderKLConfig)> {
    let root = DirSource::open(dir)?;
    let sub = SubSource::new(&root, "vae");
    let cfg = AutoencoderKLConfig::from_json(&text_of(&sub, "config.json")?)?;
    let vae = checked(load_weights(&sub, "diffusion_pytorch_model")?, |vb| AutoencoderKL::load(&cfg, vb), device)?;
    Ok((vae, cfg))
}

/// The UNet of a diffusers folder, which must have the configuration `want` (the preset's,
/// for the run's latents and text encoder). An InstructPix2Pix `want` (twice the latent
/// channels in) also takes the plain UNet of the same preset: its `conv_in` gets zero
/// weights for the source image, as InstructPix2Pix starts from Stable Diffusion.
fn load_unet(dir: &Path, want: &UNet2DConditionConfig, device: &Device) -> anyhow::Result<UNet2DConditionModel> {
    let root = DirSource::open(dir)?;
    let sub = SubSource::new(&root, "unet");
    let cfg = UNet2DConditionConfig::from_json(&text_of(&sub, "config.json")?)?;
    let plain = UNet2DConditionConfig { in_channels: want.out_channels, ..want.clone() };
    if want.in_channels == 2 * want.out_channels && format!("{cfg:?}") == format!("{plain:?}") {
        let unet =
            checked(load_weights(&sub, "diffusion_pytorch_model")?, |vb| UNet2DConditionModel::load(&cfg, vb), device)?;
        let [o, c, k, k2] = unet.conv_in.weight.dims();
        eprintln!("unet: {c} more input channels for the source image (zero weights)");
        return Ok(unet.with_image_input(burn::tensor::Tensor::zeros([o, c, k, k2], device))?);
    }
    anyhow::ensure!(
        format!("{cfg:?}") == format!("{want:?}"),
        "{}: this UNet ({:?} channels, {} latent channels, {:?} px latents, context {}) is not the one \
         this run trains ({:?}, {}, {:?} px, context {}): same --preset, --size and text encoder needed",
        sub.describe("config.json"),
        cfg.block_out_channels,
        cfg.in_channels,
        cfg.sample_size,
        cfg.cross_attention_dim,
        want.block_out_channels,
        want.in_channels,
        want.sample_size,
        want.cross_attention_dim
    );
    checked(load_weights(&sub, "diffusion_pytorch_model")?, |vb| UNet2DConditionModel::load(&cfg, vb), device)
}

/// Load a folder written by [`write`] (any SD v1 layout with a `tokenizer/tokenizer.json`).
pub fn load(dir: &Path, device: &Device) -> anyhow::Result<LoadedSd> {
    let root = DirSource::open(dir)?;
    let sub = |d: &str| SubSource::new(&root, d);

    let unet_config = UNet2DConditionConfig::from_json(&text_of(&sub("unet"), "config.json")?)?;
    let unet = checked(
        load_weights(&sub("unet"), "diffusion_pytorch_model")?,
        |vb| UNet2DConditionModel::load(&unet_config, vb),
        device,
    )?;
    let vae_config = AutoencoderKLConfig::from_json(&text_of(&sub("vae"), "config.json")?)?;
    let vae = checked(
        load_weights(&sub("vae"), "diffusion_pytorch_model")?,
        |vb| AutoencoderKL::load(&vae_config, vb),
        device,
    )?;
    let scheduler = SchedulerConfig::from_json(&text_of(&sub("scheduler"), "scheduler_config.json")?)?;
    let (tok, text, _) = load_text(dir, device)?;
    let edit_text = EditText::of_folder(dir)?;
    Ok(LoadedSd { tok, text, vae, vae_config, unet, scheduler, edit_text })
}
