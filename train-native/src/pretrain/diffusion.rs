//! The text-conditioned latent-diffusion UNet (diffusers `UNet2DConditionModel`),
//! trained jointly with the text encoder on Stable Diffusion's objective: predict the
//! noise ε added to scaled VAE latents at a uniformly drawn timestep of the
//! scaled-linear schedule (β 0.00085 → 0.012, 1000 steps), with 10 % of the captions
//! replaced by the empty one so the model also learns the unconditional branch of
//! classifier-free guidance.

use super::text::{CaptionTokenizer, caption_of};
use super::vae::scalar;
use super::{Images, Progress, lr_at, normal, normal_vec};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use genllava::clip_text::{ClipTextConfig, ClipTextModel};
use genllava::scheduler::{BetaSchedule, SchedulerConfig};
use genllava::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use genllava::sd::vae::AutoencoderKL;
use genllava::shapes::SplitMix64;
use genllava::shapes::dataset::{self, DatasetConfig, Split};
use genllava::weights::VarBuilder;
use serde_json::{Value, json};

/// Share of captions dropped to the empty caption during training.
pub const CAPTION_DROPOUT: f32 = 0.1;

/// Size of the UNet.
#[derive(Debug, Clone)]
pub struct UnetSize {
    /// Width per level (every level has cross-attention).
    pub channels: Vec<usize>,
    /// GroupNorm groups.
    pub groups: usize,
    /// Attention heads per level.
    pub heads: usize,
    /// Resnets per down block.
    pub layers: usize,
}

/// `unet/config.json` in diffusers' field names.
pub fn unet_config_json(size: &UnetSize, latent_channels: usize, latent_side: usize, context_dim: usize) -> Value {
    let n = size.channels.len();
    json!({
        "_class_name": "UNet2DConditionModel",
        "sample_size": latent_side,
        "in_channels": latent_channels,
        "out_channels": latent_channels,
        "center_input_sample": false,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "down_block_types": vec!["CrossAttnDownBlock2D"; n],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": vec!["CrossAttnUpBlock2D"; n],
        "block_out_channels": size.channels,
        "layers_per_block": size.layers,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "act_fn": "silu",
        "norm_num_groups": size.groups,
        "norm_eps": 1e-5,
        "cross_attention_dim": context_dim,
        "attention_head_dim": size.heads,
        "use_linear_projection": false,
    })
}

/// `scheduler/scheduler_config.json`: Stable Diffusion's DDIM settings.
pub fn scheduler_config_json() -> Value {
    json!({
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
        "set_alpha_to_one": false,
        "clip_sample": false,
        "prediction_type": "epsilon",
    })
}

/// The text encoder and UNet trained as one module (one optimizer, one backward).
#[derive(Module, Debug)]
pub struct TextUnet {
    pub text: ClipTextModel,
    pub unet: UNet2DConditionModel,
}

impl TextUnet {
    /// Fresh weights for both, or the UNet given (`init_unet`, already on `device`).
    pub fn init(
        text: &ClipTextConfig,
        unet: &UNet2DConditionConfig,
        init_unet: Option<UNet2DConditionModel>,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let vb = VarBuilder::init(0.03, device);
        let text = ClipTextModel::load(text, &vb)?;
        let unet = match init_unet {
            Some(u) => u,
            None => UNet2DConditionModel::load(unet, &vb)?,
        };
        Ok(Self { text, unet })
    }
}

/// Token rows `[b, L]` of `captions` on `device`.
pub fn ids_tensor(tok: &CaptionTokenizer, captions: &[String], device: &Device) -> anyhow::Result<Tensor<2, Int>> {
    let mut flat = Vec::with_capacity(captions.len() * tok.max_len);
    for c in captions {
        flat.extend(tok.encode(c)?.into_iter().map(i64::from));
    }
    Ok(Tensor::from_data(TensorData::new(flat, [captions.len(), tok.max_len]), device))
}

/// Everything the joint training step needs besides the model.
pub struct DiffusionData<'a> {
    pub vae: &'a AutoencoderKL,
    pub scaling_factor: f64,
    pub tok: &'a CaptionTokenizer,
    pub image: usize,
    pub seed: u64,
    /// Distinct training scenes to draw from (at most).
    pub pool: usize,
    /// Whether one scene in [`HELD_OUT_EVERY`] shows a held-out colour-shape pair.
    pub held_out_pairs: bool,
    /// InstructPix2Pix: every other pool entry is an editing triple (the edited image
    /// under its caption, the source image's latents beside the noisy ones); the
    /// others get a zero source.
    pub edits: bool,
    /// What the editing triples are conditioned on.
    pub edit_text: super::folder::EditText,
}

/// Share of editing triples whose source image is dropped to zeros during training
/// (InstructPix2Pix's image-conditioning dropout, for its image guidance).
pub const IMAGE_DROPOUT: f32 = 0.05;

/// With [`DiffusionData::held_out_pairs`], pool scene `i` comes from the novel part of the
/// world when `i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1` (about as often as a world with
/// every pair shows one of the three held-out ones: 30 % of scenes of one to three shapes).
pub const HELD_OUT_EVERY: usize = 4;

/// Novel-split record indices of the pool start here, far beyond any evaluation's.
const POOL_NOVEL_BASE: usize = 1 << 40;

/// Generation sample `i` of the UNet's training pool.
fn pool_sample(world: &DatasetConfig, held_out_pairs: bool, i: usize) -> dataset::Sample {
    pool_draw(world, held_out_pairs, i, dataset::generation)
}

/// Sample `i` of `task` for the pool: from the novel part of the world one time in
/// [`HELD_OUT_EVERY`] with `held_out_pairs`, else from train.
fn pool_draw(
    world: &DatasetConfig,
    held_out_pairs: bool,
    i: usize,
    task: fn(&DatasetConfig, Split, usize) -> dataset::Sample,
) -> dataset::Sample {
    if held_out_pairs && i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 {
        task(world, Split::Novel, POOL_NOVEL_BASE + i)
    } else {
        task(world, Split::Train, i)
    }
}

/// Pool entry `i`: (text, image drawn, source image). With `edits`, odd entries are
/// editing triples (under the caption of the edited scene, or the instruction, as
/// `edit_text` says), even ones captioned images.
fn pool_entry(world: &DatasetConfig, data: &DiffusionData, i: usize) -> (String, Vec<u8>, Option<Vec<u8>>) {
    if data.edits && i % 2 == 1 {
        let mut s = pool_draw(world, data.held_out_pairs, i / 2, dataset::editing);
        let target = s.images.remove(1);
        let source = s.images.remove(0);
        let instruction = s.record["edit_prompt"].as_str().unwrap_or_default();
        let text = data.edit_text.text(instruction, &genllava::shapes::caption(&target.scene));
        (text, target.rgb, Some(source.rgb))
    } else {
        let i = if data.edits { i / 2 } else { i };
        let mut s = pool_sample(world, data.held_out_pairs, i);
        (caption_of(&s), s.images.remove(0).rgb, None)
    }
}

/// Every word of the first `pool` editing instructions of the world (`seed`) in order of
/// first use, each once: what a vocabulary learnt from captions must add to read them.
pub fn instruction_words(seed: u64, pool: usize, held_out_pairs: bool) -> Vec<String> {
    let world = DatasetConfig { seed, image_size: 32, textured: false, ..DatasetConfig::default() };
    let mut words: Vec<String> = Vec::new();
    for i in 0..pool {
        let s = pool_draw(&world, held_out_pairs, i, dataset::editing);
        for w in s.record["edit_prompt"].as_str().unwrap_or_default().split_whitespace() {
            let w = w.to_lowercase();
            if !words.contains(&w) {
                words.push(w);
            }
        }
    }
    words
}

/// Where the text encoder of a UNet run starts, and whether it learns.
pub enum TextStart {
    /// Fresh weights, trained jointly with the UNet.
    Fresh,
    /// This encoder, kept as it is (Stable Diffusion keeps its pre-trained CLIP text encoder).
    Frozen(ClipTextModel),
    /// This encoder, trained on with the UNet at the same learning rate.
    Tuned(ClipTextModel),
}

/// Train text encoder + UNet for `steps` steps of `b` captioned images; returns them
/// on the inner (non-autodiff) backend of `device`. The text encoder (of config `text`)
/// starts as `start_text` says; with `init_unet`, the UNet starts from those weights
/// (continued training) instead of fresh ones.
#[allow(clippy::too_many_arguments)]
pub fn train(
    text: &ClipTextConfig,
    start_text: TextStart,
    unet: &UNet2DConditionConfig,
    init_unet: Option<UNet2DConditionModel>,
    data: &DiffusionData,
    steps: usize,
    b: usize,
    lr: f64,
    device: &Device,
) -> anyhow::Result<TextUnet> {
    let ad = device.clone().autodiff();
    let init_unet = init_unet.map(|u| crate::train::model::stable_params(u, &ad));
    let mut model = TextUnet::init(text, unet, init_unet, &ad)?;
    match start_text {
        TextStart::Fresh => {}
        TextStart::Frozen(t) => model.text = t.fork(&ad).no_grad(),
        TextStart::Tuned(t) => {
            model.text = t;
            // One id per position over both parts (the optimizer keys its state by id).
            model = crate::train::model::stable_params(model, &ad);
        }
    }
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let alphas = SchedulerConfig {
        beta_start: 0.00085,
        beta_end: 0.012,
        beta_schedule: BetaSchedule::ScaledLinear,
        ..SchedulerConfig::default()
    }
    .alphas_cumprod()?;
    let pool = LatentPool::encode(data, pool_size(steps, b, data.pool), device)?;
    let mut rng = SplitMix64::derive(data.seed, &[0xD1F]);
    let mut progress = Progress::new("unet", steps);
    for step in 0..steps {
        let picks: Vec<usize> = (0..b).map(|_| rng.below(pool.captions.len())).collect();
        let captions: Vec<String> = picks
            .iter()
            .map(|&i| if rng.chance(CAPTION_DROPOUT) { String::new() } else { pool.captions[i].clone() })
            .collect();
        let x0 = pool.sample(&picks, data.scaling_factor, &mut rng, &ad);
        let source = data.edits.then(|| pool.sources(&picks, &mut rng, &ad));

        let ts: Vec<usize> = (0..b).map(|_| rng.below(alphas.len())).collect();
        let coef = |f: fn(f64) -> f64| {
            let v: Vec<f32> = ts.iter().map(|&t| f(alphas[t]) as f32).collect();
            Tensor::<4>::from_data(TensorData::new(v, [b, 1, 1, 1]), &ad)
        };
        let (signal, sigma) = (coef(f64::sqrt), coef(|a| (1.0 - a).sqrt()));
        let eps = normal(&mut rng, x0.dims(), &ad);
        let xt = x0.mul(signal).add(eps.clone().mul(sigma));
        let t = Tensor::<1>::from_data(TensorData::new(ts.iter().map(|&t| t as f32).collect::<Vec<_>>(), [b]), &ad);

        let context = model.text.forward(ids_tensor(data.tok, &captions, &ad)?)?;
        let xt = match source {
            Some(src) => Tensor::cat(vec![xt, src], 1),
            None => xt,
        };
        let pred = model.unet.forward(xt, t, context)?;
        let loss = pred.sub(eps).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr_at(lr, step, steps), model, grads);
        progress.step(step, || format!("loss {:.4}", scalar(loss.clone())));
    }
    Ok(model.valid())
}

/// Distinct training images the UNet sees: every draw of a step, up to `cap`.
fn pool_size(steps: usize, b: usize, cap: usize) -> usize {
    (steps * b).min(cap).max(1)
}

/// Train captions with the VAE posterior of their images, encoded once up front
/// (re-sampled at every draw, as if encoded afresh).
struct LatentPool {
    captions: Vec<String>,
    /// Per sample: posterior mean and standard deviation, `latent · side²` each.
    mean: Vec<Vec<f32>>,
    std: Vec<Vec<f32>>,
    /// Per sample: the source image's posterior mean (unscaled, as InstructPix2Pix
    /// feeds it), for editing triples.
    source: Vec<Option<Vec<f32>>>,
    shape: [usize; 3],
}

impl LatentPool {
    fn encode(data: &DiffusionData, n: usize, device: &Device) -> anyhow::Result<Self> {
        let world =
            DatasetConfig { seed: data.seed, image_size: data.image, textured: false, ..DatasetConfig::default() };
        let mut pool =
            Self { captions: Vec::new(), mean: Vec::new(), std: Vec::new(), source: Vec::new(), shape: [0; 3] };
        let start = std::time::Instant::now();
        let rows = |t: Tensor<4>| -> Vec<Vec<f32>> {
            let [b, c, h, w] = t.dims();
            let v = t.into_data().try_into_vec_as::<f32>().unwrap_or_default();
            v.chunks(c * h * w).take(b).map(<[f32]>::to_vec).collect()
        };
        for first in (0..n).step_by(64) {
            let entries: Vec<_> = (first..n.min(first + 64)).map(|i| pool_entry(&world, data, i)).collect();
            let mut rgb = Vec::with_capacity(entries.len());
            // Pool indices of the editing triples of this chunk, and their sources.
            let (mut at, mut sources) = (Vec::new(), Vec::new());
            for (caption, image, source) in entries {
                if let Some(src) = source {
                    at.push(pool.captions.len());
                    sources.push(src);
                }
                pool.captions.push(caption);
                pool.source.push(None);
                rgb.push(image);
            }
            let dist = data.vae.encode(Images { rgb, side: data.image }.tensor(device))?;
            let [_, c, h, w] = dist.mean.dims();
            pool.shape = [c, h, w];
            pool.mean.extend(rows(dist.mean.clone()));
            pool.std.extend(rows(dist.std()));
            if !sources.is_empty() {
                let means = rows(data.vae.encode(Images { rgb: sources, side: data.image }.tensor(device))?.mean);
                for (i, mean) in at.into_iter().zip(means) {
                    pool.source[i] = Some(mean);
                }
            }
        }
        eprintln!("unet: encoded {n} training images in {:.1} s", start.elapsed().as_secs_f64());
        Ok(pool)
    }

    /// Source latents `[picks, c, h, w]` of the picks (unscaled posterior means): zeros
    /// for captioned images, and for editing triples with probability [`IMAGE_DROPOUT`].
    fn sources(&self, picks: &[usize], rng: &mut SplitMix64, device: &Device) -> Tensor<4> {
        let [c, h, w] = self.shape;
        let mut v = Vec::with_capacity(picks.len() * c * h * w);
        for &i in picks {
            match &self.source[i] {
                Some(mean) if !rng.chance(IMAGE_DROPOUT) => v.extend_from_slice(mean),
                _ => v.extend(std::iter::repeat_n(0.0, c * h * w)),
            }
        }
        Tensor::from_data(TensorData::new(v, [picks.len(), c, h, w]), device)
    }

    /// Scaled latents `[picks, c, h, w]`: `scale · (mean + std · ε)`.
    fn sample(&self, picks: &[usize], scale: f64, rng: &mut SplitMix64, device: &Device) -> Tensor<4> {
        let [c, h, w] = self.shape;
        let noise = normal_vec(rng, picks.len() * c * h * w);
        let mut v = Vec::with_capacity(noise.len());
        for (k, &i) in picks.iter().enumerate() {
            let e = &noise[k * c * h * w..(k + 1) * c * h * w];
            v.extend(self.mean[i].iter().zip(&self.std[i]).zip(e).map(|((m, s), e)| (m + s * e) * scale as f32));
        }
        Tensor::from_data(TensorData::new(v, [picks.len(), c, h, w]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genllava::shapes::dataset::is_held_out;

    #[test]
    fn held_out_pairs_fill_one_pool_scene_in_four_and_never_the_test_split() {
        let world = DatasetConfig { seed: 0, image_size: 32, textured: false, ..DatasetConfig::default() };
        let scenes =
            |held: bool| -> Vec<_> { (0..64).map(|i| pool_sample(&world, held, i).images.remove(0).scene).collect() };
        let (plain, mixed) = (scenes(false), scenes(true));
        for (i, (p, m)) in plain.iter().zip(&mixed).enumerate() {
            assert!(Split::Train.admits(p), "scene {i} without the flag is a train scene");
            assert!(!Split::Test.admits(m), "scene {i} is a test-split scene");
            let novel = m.shapes.iter().any(is_held_out);
            assert_eq!(novel, i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1, "scene {i}");
            if !novel {
                assert_eq!(p, m, "scene {i}: the train scenes are the same with and without the flag");
            }
        }
    }
}
