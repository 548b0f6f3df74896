//! `chat`: load a LLaVA/GenLLaVA checkpoint and answer a prompt, streaming.

use crate::device::DeviceArg;
use crate::files;
use anyhow::Context;
use genllava::llava::LlavaCheckpoint;
use genllava::pipeline::{UnderstandRequest, understand};
use genllava::sampling::SamplingConfig;
use genllava::tokenizer::TextTokenizer;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// Model folder (Hugging Face LLaVA layout: config.json, *.safetensors, tokenizer.json);
    /// default: the shipped GenLLaVA of the shapes world (`train-native/assets/genllava-shapes`,
    /// whose prompts read `[I2T]USER: <image>\nWhat colour is the square? ASSISTANT:`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Image file (PNG or JPEG) placed where the prompt says `<image>`.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The prompt, taken as written: include the conversation template yourself.
    #[arg(long)]
    pub prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the K most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Repetition penalty (1: none).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Random seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Report the K most likely tokens and their log-probabilities per step.
    #[arg(long, default_value_t = 0)]
    pub logprobs: usize,
    /// Stop when the text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// After the streamed text, print one JSON object {"ids", "text", "logprobs"}.
    #[arg(long)]
    pub json: bool,
    /// Pad the image to a square with the mean colour before resizing (original LLaVA).
    #[arg(long)]
    pub pad_to_square: bool,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
}

/// `train-native chat …`.
pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let model = crate::imagine::model_dir(args.model.as_deref())?;
    let src = files::open_model(&model, &device)?;
    let ckpt = LlavaCheckpoint::load(src.as_ref(), &device)?;
    let tokenizer = TextTokenizer::from_bytes(&genllava::checkpoint::read_required(src.as_ref(), "tokenizer.json")?)
        .with_context(|| format!("{}", model.join("tokenizer.json").display()))?;
    let processor = genllava::llava::load_image_processor(src.as_ref())?;
    let image = match &args.image {
        Some(p) => Some(genllava::image::RgbImage::decode(&files::read(p)?).with_context(|| p.display().to_string())?),
        None => None,
    };
    let sampling = SamplingConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        logprobs: args.logprobs,
    };
    let req = UnderstandRequest {
        prompt: &args.prompt,
        image: image.as_ref(),
        pad_to_square: args.pad_to_square,
        sampling: &sampling,
        stop: &args.stop,
        stop_ids: &[],
    };
    let mut out = std::io::stdout().lock();
    let result = understand(&ckpt, &tokenizer, processor.as_ref(), &req, &device, &mut |delta: &str| {
        let _ = out.write_all(delta.as_bytes());
        let _ = out.flush();
        true
    })?;
    writeln!(out)?;
    if args.json {
        let logprobs: Vec<Vec<(u32, f32)>> = result.tokens.iter().map(|t| t.top_logprobs.clone()).collect();
        let obj = serde_json::json!({"ids": result.ids(), "text": result.text, "logprobs": logprobs});
        writeln!(out, "{obj}")?;
    }
    Ok(())
}
