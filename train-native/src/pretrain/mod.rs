//! Pre-training the frozen components on the shapes world, the way the paper's were
//! pre-trained on the web: `data` writes the world to disk, `pretrain-sd` trains the
//! Stable Diffusion stand-in (tokenizer, CLIP text encoder, VAE, UNet) and writes it
//! as a diffusers folder, `eval-sd` scores its generations with the exact evaluator.

pub mod data;
pub mod diffusion;
pub mod eval;
pub mod export;
pub mod folder;
pub mod llm;
pub mod text;
pub mod vae;
pub mod vision;

use burn::tensor::{Device, Tensor, TensorData};
use genllava::shapes::SplitMix64;
use std::path::PathBuf;
use std::time::Instant;

/// Model sizes of `pretrain-sd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The shipped model: text 64 wide × 2 layers, VAE [16, 32, 32] (8×8×8 latents of
    /// 32×32 images), UNet [32, 64] with cross-attention at both levels.
    Small,
    /// A few thousand parameters, for tests.
    Tiny,
}

#[derive(clap::Args)]
pub struct PretrainArgs {
    /// Output folder (diffusers layout: unet/, vae/, text_encoder/, tokenizer/, scheduler/).
    #[arg(long)]
    pub out: PathBuf,
    /// UNet + text-encoder training steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// VAE training steps (default: half of `--steps`).
    #[arg(long)]
    pub vae_steps: Option<usize>,
    /// Images per UNet step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Images per VAE step.
    #[arg(long, default_value_t = 16)]
    pub vae_batch: usize,
    /// Peak learning rate (AdamW, 5 % warm-up then cosine to a tenth).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Peak learning rate of the VAE.
    #[arg(long, default_value_t = 2e-3)]
    pub vae_lr: f64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 32, value_parser = data::parse_size)]
    pub size: usize,
    /// Model sizes.
    #[arg(long, value_enum, default_value_t = Preset::Small)]
    pub preset: Preset,
    /// Seed of the world and of the training noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Store weights as f16 (half the size; core loads either).
    #[arg(long)]
    pub f16: bool,
    /// Distinct training scenes the UNet draws from (capped by steps × batch).
    #[arg(long, default_value_t = 2048)]
    pub pool: usize,
    /// Reuse the VAE of this diffusers folder (its `vae/`) instead of training one;
    /// `--vae-steps` is then ignored.
    #[arg(long)]
    pub vae_from: Option<PathBuf>,
    /// Condition on the text encoder and tokenizer of this folder (its `text_encoder/` and
    /// `tokenizer/`, as `pretrain-vision --text-out` writes them), kept frozen as Stable
    /// Diffusion keeps CLIP's, instead of training one jointly with the UNet.
    #[arg(long)]
    pub text_from: Option<PathBuf>,
    /// With `--text-from`: train that text encoder on with the UNet (same learning rate)
    /// instead of keeping it frozen.
    #[arg(long, requires = "text_from")]
    pub tune_text: bool,
    /// Start the UNet from the `unet/` of this diffusers folder (same preset and text
    /// encoder width) and train it `--steps` more, instead of from fresh weights.
    #[arg(long)]
    pub unet_from: Option<PathBuf>,
    /// Let the UNet also draw the held-out colour-shape pairs (one scene in four comes from
    /// the novel part of the world, at indices no evaluation uses), as Stable Diffusion was
    /// pre-trained on images of every pair; GenLLaVA's instruction data still never shows
    /// them, and no scene of the test split is drawn either way.
    #[arg(long)]
    pub held_out_pairs: bool,
    /// Train an InstructPix2Pix UNet: the source image's latents enter beside the noisy
    /// ones (twice the latent channels in). Half of each batch are editing triples (the
    /// edited image under its full caption, 5 % of sources dropped to zeros for image
    /// guidance), half captioned images with a zero source, so the one UNet both draws
    /// and edits. With `--unet-from`, a plain UNet starts it with zero weights for the
    /// source, as InstructPix2Pix starts from Stable Diffusion.
    #[arg(long)]
    pub pix2pix: bool,
    /// With `--pix2pix`: what the editing triples are conditioned on: the edited scene's
    /// caption, or the edit instruction itself as InstructPix2Pix does (its words join the
    /// vocabulary, with new embedding rows when `--text-from` brings one). The choice is
    /// written to `model_index.json`, where `eval-sd --edits` and training read it.
    #[arg(long, value_enum, default_value_t = folder::EditText::Caption)]
    pub edit_text: folder::EditText,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A diffusers folder written by `pretrain-sd` (or any SD v1 folder with a 32/64 px world).
    #[arg(long)]
    pub sd: PathBuf,
    /// Held-out captions to generate.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// DDIM steps.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 4.0)]
    pub guidance: f32,
    /// Which held-out split the captions come from.
    #[arg(long, value_enum, default_value_t = EvalSplit::Test)]
    pub split: EvalSplit,
    /// Seed of the world and of the initial noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the generated images (PNG) to this folder.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Score edits instead (an InstructPix2Pix UNet, `pretrain-sd --pix2pix`): each held-out
    /// editing triple's source image with the caption of its edited scene (or with its
    /// instruction, for a UNet trained with `--edit-text instruction`); exact when the
    /// asked change is there and the rest kept.
    #[arg(long)]
    pub edits: bool,
    /// InstructPix2Pix image guidance of `--edits`.
    #[arg(long, default_value_t = 1.5)]
    pub image_guidance: f32,
}

/// Held-out splits for `eval-sd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    /// Unseen scenes of seen (colour, kind) pairs.
    Test,
    /// Scenes with a held-out (colour, kind) pair.
    Novel,
}

/// A batch of square RGB images.
pub struct Images {
    pub rgb: Vec<Vec<u8>>,
    pub side: usize,
}

impl Images {
    /// `[b, 3, side, side]` in `[-1, 1]`.
    pub fn tensor(&self, device: &Device) -> Tensor<4> {
        let s = self.side;
        let mut v = Vec::with_capacity(self.rgb.len() * 3 * s * s);
        for img in &self.rgb {
            for c in 0..3 {
                v.extend((0..s * s).map(|p| f32::from(img[3 * p + c]) / 127.5 - 1.0));
            }
        }
        Tensor::from_data(TensorData::new(v, [self.rgb.len(), 3, s, s]), device)
    }

    /// The inverse of [`Self::tensor`] (clamped, rounded).
    pub fn from_tensor(t: Tensor<4>) -> Self {
        let [b, _, h, w] = t.dims();
        let v: Vec<f32> = t.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        let rgb = (0..b)
            .map(|i| {
                let mut img = vec![0u8; 3 * h * w];
                for c in 0..3 {
                    for p in 0..h * w {
                        let x = v.get(((i * 3 + c) * h * w) + p).copied().unwrap_or(0.0);
                        img[3 * p + c] = ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                    }
                }
                img
            })
            .collect();
        Self { rgb, side: w }
    }
}

/// Standard-normal tensor of `shape` from `rng` (Box–Muller), reproducible across backends.
pub fn normal<const D: usize>(rng: &mut SplitMix64, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(normal_vec(rng, shape.iter().product()), shape), device)
}

/// `n` standard-normal values from `rng` (Box–Muller).
pub fn normal_vec(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let u1 = rng.unit().max(1e-7);
        let u2 = rng.unit();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f32::consts::TAU * u2;
        v.push(r * a.cos());
        v.push(r * a.sin());
    }
    v.truncate(n);
    v
}

/// Learning rate at `step` of `steps`: linear warm-up over 5 %, cosine decay to `peak / 10`.
pub fn lr_at(peak: f64, step: usize, steps: usize) -> f64 {
    let warm = (steps / 20).max(1);
    if step < warm {
        return peak * (step + 1) as f64 / warm as f64;
    }
    let p = (step - warm) as f64 / (steps - warm).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

/// Step timing and periodic log lines.
pub struct Progress {
    name: &'static str,
    steps: usize,
    start: Instant,
    every: usize,
}

impl Progress {
    pub fn new(name: &'static str, steps: usize) -> Self {
        Self { name, steps, start: Instant::now(), every: (steps / 20).max(1) }
    }

    /// Log after `step` (every 5 % and at the end); `metric` is only computed then.
    pub fn step(&mut self, step: usize, metric: impl FnOnce() -> String) {
        if (step + 1).is_multiple_of(self.every) || step + 1 == self.steps || step == 0 {
            eprintln!(
                "{} step {}/{}: {} ({:.0} ms/step)",
                self.name,
                step + 1,
                self.steps,
                metric(),
                self.ms_per_step(step + 1)
            );
        }
    }

    /// Mean wall time per step so far.
    pub fn ms_per_step(&self, done: usize) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0 / done.max(1) as f64
    }
}
