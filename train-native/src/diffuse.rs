//! `diffuse`: run Stable Diffusion's text-to-image loop on given embeddings
//! and noise (safetensors files), and `generate-sd`: plain text-to-image from a
//! prompt with the folder's CLIP text encoder and seeded noise.

use crate::device::DeviceArg;
use crate::files;
use anyhow::{Context, bail};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use genllava::safetensors::{self, TensorOut};
use genllava::scheduler::SchedulerKind;
use genllava::sd::pipeline::{Sampling, StableDiffusion};
use genllava::sd::pixels::{encode_png, tensor_to_rgb};
use std::path::{Path, PathBuf};

/// The schedulers the command line offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchedulerArg {
    Ddim,
    Pndm,
    Euler,
}

impl From<SchedulerArg> for SchedulerKind {
    fn from(s: SchedulerArg) -> Self {
        match s {
            SchedulerArg::Ddim => SchedulerKind::Ddim,
            SchedulerArg::Pndm => SchedulerKind::Pndm,
            SchedulerArg::Euler => SchedulerKind::Euler,
        }
    }
}

#[derive(clap::Args)]
pub struct DiffuseArgs {
    /// Stable Diffusion folder (diffusers layout: unet/, vae/, [text_encoder/, tokenizer/], scheduler/).
    #[arg(long)]
    pub sd: PathBuf,
    /// Safetensors file with the prompt embeddings `cond` [B, L, D] (or its only tensor).
    #[arg(long)]
    pub cond: PathBuf,
    /// Safetensors file with the initial noise `noise` [B, C, h, w] (or its only tensor).
    #[arg(long)]
    pub noise: PathBuf,
    /// Safetensors file with the negative embeddings `uncond` [B, L, D]; default: the empty prompt.
    #[arg(long)]
    pub uncond: Option<PathBuf>,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Scheduler.
    #[arg(long, value_enum, default_value_t = SchedulerArg::Pndm)]
    pub scheduler: SchedulerArg,
    /// Classifier-free guidance scale (at most 1: off).
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f32,
    /// Output image (PNG); a batch writes IMG.png, IMG-1.png, ...
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the final latents as safetensors (`latents`, f32).
    #[arg(long)]
    pub out_latents: Option<PathBuf>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
}

#[derive(clap::Args)]
pub struct GenerateSdArgs {
    /// Stable Diffusion folder (diffusers layout, with text_encoder/ and tokenizer/).
    #[arg(long)]
    pub sd: PathBuf,
    /// What to draw.
    #[arg(long)]
    pub prompt: String,
    /// What not to draw (default: the empty prompt).
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Output image (PNG).
    #[arg(long)]
    pub out: PathBuf,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f32,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Scheduler.
    #[arg(long, value_enum, default_value_t = SchedulerArg::Pndm)]
    pub scheduler: SchedulerArg,
    /// Image height in pixels (default: the UNet's sample size × 8).
    #[arg(long)]
    pub height: Option<usize>,
    /// Image width in pixels (default: the UNet's sample size × 8).
    #[arg(long)]
    pub width: Option<usize>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
}

/// `train-native diffuse …`.
pub fn run(args: DiffuseArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let cond: Tensor<3> = read_tensor(&args.cond, "cond", &device)?;
    let noise: Tensor<4> = read_tensor(&args.noise, "noise", &device)?;
    let uncond: Option<Tensor<3>> = args.uncond.as_deref().map(|p| read_tensor(p, "uncond", &device)).transpose()?;
    let sd = load(&args.sd, &device)?;
    let uncond = match uncond {
        Some(u) => u,
        None => {
            let null = sd.null_embedding().with_context(|| format!("{}: no --uncond given", args.sd.display()))?;
            let [b, ..] = cond.dims();
            null.repeat_dim(0, b)
        }
    };
    let sampling = Sampling::new(args.steps, args.scheduler.into(), args.guidance);
    let latents = sd.txt2img(cond, uncond, noise, sampling, |i, _| log::info!("step {i}"))?;
    if let Some(path) = &args.out_latents {
        write_latents(path, latents.clone())?;
    }
    write_images(&args.out, sd.decode_latents(latents)?)
}

/// `train-native generate-sd …`.
pub fn run_generate(args: GenerateSdArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let sd = load(&args.sd, &device)?;
    let cond = sd.encode_prompt(&args.prompt)?;
    let uncond = sd.encode_prompt(&args.negative_prompt)?;
    let scale = sd.vae_scale();
    let default = sd.unet_config.sample_size.unwrap_or(64) * scale;
    let (h, w) = (args.height.unwrap_or(default), args.width.unwrap_or(default));
    if h == 0 || w == 0 || h % scale != 0 || w % scale != 0 {
        bail!("--height and --width must be positive multiples of {scale}, got {h}x{w}");
    }
    device.seed(args.seed);
    let noise =
        Tensor::<4>::random([1, sd.latent_channels(), h / scale, w / scale], Distribution::Normal(0.0, 1.0), &device);
    let sampling = Sampling::new(args.steps, args.scheduler.into(), args.guidance);
    let latents = sd.txt2img(cond, uncond, noise, sampling, |i, _| log::info!("step {i}"))?;
    write_images(&args.out, sd.decode_latents(latents)?)
}

fn load(dir: &Path, device: &Device) -> anyhow::Result<StableDiffusion> {
    Ok(StableDiffusion::load(files::open_model(dir, device)?.as_ref(), device)?)
}

/// The tensor `name` of a safetensors file, or its only tensor, as a `D`-d f32 tensor.
fn read_tensor<const D: usize>(path: &Path, name: &str, device: &Device) -> anyhow::Result<Tensor<D>> {
    let bytes = files::read(path)?;
    let tensors = safetensors::parse(&path.display().to_string(), bytes)?;
    let raw = match tensors.get(name) {
        Some(t) => t,
        None if tensors.len() == 1 => tensors.values().next().expect("one tensor"),
        None => bail!(
            "{}: no tensor `{name}` (found {})",
            path.display(),
            tensors.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    let shape: [usize; D] = raw.shape.clone().try_into().map_err(|_| {
        anyhow::anyhow!("{}: `{name}` has shape {:?}, expected {D} dimensions", path.display(), raw.shape)
    })?;
    Ok(Tensor::from_data(TensorData::new(raw.to_f32(), shape), device))
}

fn write_latents(path: &Path, latents: Tensor<4>) -> anyhow::Result<()> {
    let shape = latents.dims().to_vec();
    let data: Vec<f32> = latents
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the latents back: {e:?}"))?;
    files::write_atomic(path, &safetensors::serialize(&[TensorOut { name: "latents", shape, data: &data }]))
}

/// One PNG per batch item: `out`, then `out-1`, `out-2`, … beside it.
fn write_images(out: &Path, images: Tensor<4>) -> anyhow::Result<()> {
    for (i, img) in tensor_to_rgb(images)?.iter().enumerate() {
        let path = if i == 0 {
            out.to_path_buf()
        } else {
            let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
            out.with_file_name(format!("{stem}-{i}.png"))
        };
        files::write_atomic(&path, &encode_png(img)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
