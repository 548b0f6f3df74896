//! The tiny VAE (diffusers `AutoencoderKL`): L1 + L2 reconstruction of shapes-world
//! images (plain backgrounds) from a sampled latent, plus a small KL term
//! that keeps the latent Gaussian-like. The latent scale is measured afterwards and
//! written as `scaling_factor`, as Stable Diffusion did (0.18215).

use super::{Images, Progress, lr_at, normal};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use genllava::sd::vae::{AutoencoderKL, AutoencoderKLConfig};
use genllava::shapes::SplitMix64;
use genllava::shapes::dataset::{self, DatasetConfig, Split};
use genllava::weights::VarBuilder;
use serde_json::{Value, json};

/// Weight of the per-element KL against the per-element reconstruction error.
const KL_WEIGHT: f64 = 1e-4;

/// Size of the VAE.
#[derive(Debug, Clone)]
pub struct VaeSize {
    /// Width per level; `n` levels shrink the image `2^(n-1)` times.
    pub channels: Vec<usize>,
    /// GroupNorm groups (divides every width).
    pub groups: usize,
    pub latent_channels: usize,
    /// Whether the mid blocks have self-attention.
    pub attention: bool,
}

/// `vae/config.json` in diffusers' field names.
pub fn vae_config_json(size: &VaeSize, image: usize, scaling_factor: f64) -> Value {
    let n = size.channels.len();
    json!({
        "_class_name": "AutoencoderKL",
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": vec!["DownEncoderBlock2D"; n],
        "up_block_types": vec!["UpDecoderBlock2D"; n],
        "block_out_channels": size.channels,
        "layers_per_block": 1,
        "act_fn": "silu",
        "latent_channels": size.latent_channels,
        "norm_num_groups": size.groups,
        "sample_size": image,
        "scaling_factor": scaling_factor,
        "mid_block_add_attention": size.attention,
    })
}

/// World images for the VAE, on the plain white background the UNet generates on
/// (the textured backgrounds cost capacity this tiny model cannot spare).
fn batch(seed: u64, image: usize, first: usize, b: usize) -> Images {
    let plain = DatasetConfig { seed, image_size: image, textured: false, ..DatasetConfig::default() };
    let rgb = (first..first + b).map(|i| dataset::generation(&plain, Split::Train, i).images.remove(0).rgb).collect();
    Images { rgb, side: image }
}

/// Train a fresh VAE for `steps` steps of `b` images; returns the model on `device`'s
/// inner (non-autodiff) backend.
pub fn train(
    cfg: &AutoencoderKLConfig,
    steps: usize,
    b: usize,
    lr: f64,
    seed: u64,
    device: &Device,
) -> anyhow::Result<AutoencoderKL> {
    let ad = device.clone().autodiff();
    let mut vae = AutoencoderKL::load(cfg, &VarBuilder::init(0.03, &ad))?;
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut rng = SplitMix64::derive(seed, &[0xAE]);
    let mut progress = Progress::new("vae", steps);
    let image = cfg.sample_size;
    for step in 0..steps {
        let x = batch(seed, image, step * b, b).tensor(&ad);
        let dist = vae.encode(x.clone())?;
        let noise = normal(&mut rng, dist.mean.dims(), &ad);
        let recon = vae.decode(dist.sample(noise))?;
        let diff = recon.sub(x);
        let rec = diff.clone().abs().mean().add(diff.powi_scalar(2).mean());
        let var = dist.logvar.clone().exp();
        let kl = dist.mean.powi_scalar(2).add(var).sub_scalar(1.0).sub(dist.logvar).mean().mul_scalar(0.5);
        let loss = rec.clone().add(kl.mul_scalar(KL_WEIGHT));
        let grads = GradientsParams::from_grads(loss.backward(), &vae);
        vae = optim.step(lr_at(lr, step, steps), vae, grads);
        progress.step(step, || format!("recon {:.4}", scalar(rec.clone())));
    }
    Ok(vae.valid())
}

/// The value of a one-element tensor.
/// The first value of `t`; NaN when the device failed to compute it.
pub fn scalar<const D: usize>(t: Tensor<D>) -> f32 {
    t.try_into_data()
        .ok()
        .and_then(|d| d.try_into_vec_as::<f32>().ok())
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN)
}

/// `1 / std` of the latent means of `n` plain-background train images (what the UNet sees).
pub fn scaling_factor(vae: &AutoencoderKL, seed: u64, image: usize, n: usize, device: &Device) -> anyhow::Result<f64> {
    let cfg = DatasetConfig { seed, image_size: image, textured: false, ..DatasetConfig::default() };
    let rgb = (0..n).map(|i| dataset::generation(&cfg, Split::Train, i).images.remove(0).rgb).collect();
    let z = vae.encode(Images { rgb, side: image }.tensor(device))?.mean;
    let mean = scalar(z.clone().mean());
    let var = scalar(z.sub_scalar(mean).powi_scalar(2).mean());
    Ok(1.0 / f64::from(var.max(1e-8)).sqrt())
}

/// Share of `n` held-out test images whose reconstruction still parses to the right
/// scene: the ceiling of what any UNet can reach through this VAE.
pub fn reconstruction_accuracy(
    vae: &AutoencoderKL,
    seed: u64,
    image: usize,
    n: usize,
    device: &Device,
) -> anyhow::Result<f64> {
    let cfg = DatasetConfig { seed, image_size: image, textured: false, ..DatasetConfig::default() };
    let samples: Vec<_> = (0..n).map(|i| dataset::generation(&cfg, Split::Test, i)).collect();
    let rgb = samples.iter().map(|s| s.images[0].rgb.clone()).collect();
    let z = vae.encode(Images { rgb, side: image }.tensor(device))?.mean;
    let out = Images::from_tensor(vae.decode(z)?);
    let good = samples
        .iter()
        .zip(&out.rgb)
        .filter(|(s, rgb)| genllava::shapes::score_generation(rgb, image, image, &super::text::caption_of(s)))
        .count();
    Ok(good as f64 / n.max(1) as f64)
}
