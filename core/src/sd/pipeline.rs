//! Stable Diffusion v1.x pipelines over a diffusers folder: text-to-image,
//! img2img and InstructPix2Pix with classifier-free guidance, the CLIP prompt
//! encoder and the VAE decode to pixels. The denoising loops themselves are
//! [`crate::diffusion`]'s; this file loads the parts and pairs the UNet with
//! the text embeddings.

use crate::checkpoint::{FileSource, SubSource, load_weights, read_required};
use crate::clip_text::{ClipTextConfig, ClipTextModel};
use crate::diffusion::{guided_step, initial_latents, pix2pix_image, pix2pix_step};
use crate::error::{Error, Result};
use crate::scheduler::{NoiseSource, Scheduler, SchedulerConfig, SchedulerKind, img2img_timesteps};
use crate::sd::clip_tokenizer::ClipTokenizer;
use crate::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::sd::vae::{AutoencoderKL, AutoencoderKLConfig, DiagonalGaussian};
use crate::weights::{VarBuilder, WeightMap};
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::sync::Arc;

/// A loaded Stable Diffusion pipeline (diffusers `StableDiffusionPipeline` layout).
/// Cloning shares the weights' storage, as Burn modules do.
#[derive(Clone)]
pub struct StableDiffusion {
    pub unet: UNet2DConditionModel,
    pub unet_config: UNet2DConditionConfig,
    pub vae: AutoencoderKL,
    pub vae_config: AutoencoderKLConfig,
    /// `text_encoder/`, if the folder has one.
    pub text_encoder: Option<ClipTextModel>,
    pub text_config: Option<ClipTextConfig>,
    /// `tokenizer/`, if the folder has one.
    pub tokenizer: Option<ClipTokenizer>,
    pub scheduler_config: SchedulerConfig,
    pub device: Device,
}

/// How to sample: steps, scheduler and guidance.
pub struct Sampling {
    /// Inference steps.
    pub steps: usize,
    /// Which scheduler to build from the folder's `scheduler_config.json`.
    pub scheduler: SchedulerKind,
    /// Classifier-free (text) guidance scale; at most 1 turns it off.
    pub guidance: f32,
    /// InstructPix2Pix image guidance (diffusers' default 1.5).
    pub image_guidance: f32,
    /// Fresh noise for Euler ancestral (required by it, unused otherwise).
    pub ancestral_noise: Option<NoiseSource>,
}

impl Sampling {
    /// `steps` of `scheduler` with text guidance `guidance`.
    pub fn new(steps: usize, scheduler: SchedulerKind, guidance: f32) -> Self {
        Self { steps, scheduler, guidance, image_guidance: 1.5, ancestral_noise: None }
    }
}

/// A denoising run taken apart, for callers that act between steps (the
/// browser reads a preview back and lets an abort in): [`Self::step`] until
/// [`Self::is_done`], then [`Self::finish`]. [`StableDiffusion::txt2img`] and
/// its siblings are this run straight through.
pub struct Denoising<'a> {
    sd: &'a StableDiffusion,
    scheduler: Box<dyn Scheduler>,
    timesteps: Vec<f64>,
    /// Steps taken so far.
    done: usize,
    latents: Tensor<4>,
    /// The UNet's text conditioning, batched as the guidance needs it.
    context: Tensor<3>,
    guidance: f32,
    /// InstructPix2Pix: the image half of the model input and the image guidance.
    pix2pix: Option<(Tensor<4>, f32)>,
}

impl Denoising<'_> {
    /// How many steps the run has in all (img2img: after the strength cut).
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// How many steps are done.
    pub fn steps_done(&self) -> usize {
        self.done
    }

    /// Whether every step is done.
    pub fn is_done(&self) -> bool {
        self.done >= self.timesteps.len()
    }

    /// The current latents `[b, latent, h, w]` (scaled as the UNet sees them).
    pub fn latents(&self) -> &Tensor<4> {
        &self.latents
    }

    /// Take the next step (an error once done); returns the new latents.
    pub fn step(&mut self) -> Result<&Tensor<4>> {
        let t = *self
            .timesteps
            .get(self.done)
            .ok_or_else(|| Error::input("step", format!("all {} steps are done", self.timesteps.len())))?;
        let unet = &self.sd.unet;
        let context = &self.context;
        // An InstructPix2Pix UNet drawing without a source image gets the image
        // half as zeros: the image-unconditional branch it was trained with.
        let blank = self.pix2pix.is_none() && self.sd.image_conditioned();
        let mut predict = |x: Tensor<4>, t: f64| {
            let x = if blank { Tensor::cat(vec![x.clone(), x.zeros_like()], 1) } else { x };
            unet.forward_at(x, t as f32, context.clone())
        };
        let latents = self.latents.clone();
        self.latents = match &self.pix2pix {
            None => guided_step(self.scheduler.as_mut(), t, latents, self.guidance, &mut predict)?,
            Some((image, image_g)) => {
                pix2pix_step(self.scheduler.as_mut(), t, latents, image, self.guidance, *image_g, &mut predict)?
            }
        };
        self.done += 1;
        Ok(&self.latents)
    }

    /// Run the remaining steps; `on_step(i, latents)` after each (`i` from 0).
    pub fn run(mut self, mut on_step: impl FnMut(usize, &Tensor<4>)) -> Result<Tensor<4>> {
        while !self.is_done() {
            let i = self.done;
            on_step(i, self.step()?);
        }
        Ok(self.finish())
    }

    /// The latents as they are now (the final ones once [`Self::is_done`]).
    pub fn finish(self) -> Tensor<4> {
        self.latents
    }
}

impl StableDiffusion {
    /// Load `unet/`, `vae/`, `text_encoder/` and `tokenizer/` (both optional)
    /// and `scheduler/scheduler_config.json` (SD v1.4's when absent). Weights
    /// may be f32, f16 or bf16, one file or sharded, or diffusers' `.fp16` variant.
    pub fn load(src: &dyn FileSource, device: &Device) -> Result<Self> {
        let unet_src = SubSource::new(src, "unet");
        let unet_config = UNet2DConditionConfig::from_json(&read_text(&unet_src, "config.json")?)?;
        let weights = component_weights(&unet_src, "diffusion_pytorch_model")?;
        let unet = UNet2DConditionModel::load(&unet_config, &VarBuilder::from_map(Arc::new(weights), device))?;

        let vae_src = SubSource::new(src, "vae");
        let vae_config = AutoencoderKLConfig::from_json(&read_text(&vae_src, "config.json")?)?;
        let weights = component_weights(&vae_src, "diffusion_pytorch_model")?;
        let vae = AutoencoderKL::load(&vae_config, &VarBuilder::from_map(Arc::new(weights), device))?;

        let text_src = SubSource::new(src, "text_encoder");
        let (text_encoder, text_config) = match text_src.read("config.json")? {
            None => (None, None),
            Some(bytes) => {
                let cfg = ClipTextConfig::from_json(&utf8(&text_src, "config.json", bytes)?)?;
                let mut weights = component_weights(&text_src, "model")?;
                ClipTextModel::normalize_keys(&mut weights);
                let vb = VarBuilder::from_map(Arc::new(weights), device).pp("text_model");
                (Some(ClipTextModel::load(&cfg, &vb)?), Some(cfg))
            }
        };
        let max_positions = text_config.as_ref().map_or(77, |c| c.max_position_embeddings);
        let tokenizer = ClipTokenizer::load(&SubSource::new(src, "tokenizer"), max_positions)?;

        let sched_src = SubSource::new(src, "scheduler");
        let scheduler_config = match sched_src.read("scheduler_config.json")? {
            Some(bytes) => SchedulerConfig::from_json(&utf8(&sched_src, "scheduler_config.json", bytes)?)?,
            None => SchedulerConfig::sd_v1(),
        };

        if let Some(cfg) = &text_config
            && cfg.hidden_size != unet_config.cross_attention_dim
        {
            return Err(Error::config(
                src.describe("text_encoder/config.json"),
                format!(
                    "hidden_size {} != unet cross_attention_dim {}",
                    cfg.hidden_size, unet_config.cross_attention_dim
                ),
            ));
        }
        Ok(Self {
            unet,
            unet_config,
            vae,
            vae_config,
            text_encoder,
            text_config,
            tokenizer,
            scheduler_config,
            device: device.clone(),
        })
    }

    /// Latent channels the sampler works on (the VAE's).
    pub fn latent_channels(&self) -> usize {
        self.vae_config.latent_channels
    }

    /// Channels of the noise text-to-image and img2img start from: the UNet's
    /// input, less the image half of an image-conditioned one.
    fn sampled_channels(&self) -> usize {
        if self.image_conditioned() { self.latent_channels() } else { self.unet_config.in_channels }
    }

    /// Whether the UNet also reads a source image (InstructPix2Pix: twice the
    /// latent channels in). Text-to-image and img2img then give it a zero image.
    pub fn image_conditioned(&self) -> bool {
        self.unet_config.in_channels == 2 * self.latent_channels()
    }

    /// How many times smaller than the image the latents are (8 for SD).
    pub fn vae_scale(&self) -> usize {
        1 << (self.vae_config.block_out_channels.len() - 1)
    }

    /// Token ids of `text`, padded to the model length: `[max_len]`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .as_ref()
            .ok_or_else(|| Error::input("prompt", "this pipeline has no tokenizer/ folder"))?
            .encode(text)
    }

    /// CLIP last hidden state of token rows `ids` (`[b][L]`): `[b, L, hidden]`.
    pub fn encode_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor<3>> {
        let te = self
            .text_encoder
            .as_ref()
            .ok_or_else(|| Error::input("prompt", "this pipeline has no text_encoder/ folder"))?;
        let l = ids.first().map_or(0, Vec::len);
        if ids.iter().any(|r| r.len() != l) {
            return Err(Error::input("input_ids", "rows of different lengths"));
        }
        let vocab = te.embeddings.token_embedding.weight.dims()[0];
        if let Some(bad) = ids.iter().flatten().find(|&&i| i as usize >= vocab) {
            return Err(Error::input("input_ids", format!("token {bad} is outside the vocabulary of {vocab}")));
        }
        let flat: Vec<i64> = ids.iter().flatten().map(|&i| i64::from(i)).collect();
        let t = Tensor::<2, Int>::from_data(TensorData::new(flat, [ids.len(), l]), &self.device);
        te.forward(t)
    }

    /// The prompt embedding the UNet conditions on: `[1, max_len, hidden]`
    /// (CLIP's last hidden state, padded as SD pipelines pad).
    pub fn encode_prompt(&self, text: &str) -> Result<Tensor<3>> {
        self.encode_ids(&[self.tokenize(text)?])
    }

    /// The embedding of the empty prompt, the unconditional branch of CFG.
    pub fn null_embedding(&self) -> Result<Tensor<3>> {
        self.encode_prompt("")
    }

    /// Build the scheduler `sampling` names for its steps (takes its ancestral noise).
    pub fn scheduler(&self, sampling: &mut Sampling) -> Result<Box<dyn Scheduler>> {
        sampling.scheduler.build(&self.scheduler_config, sampling.steps, sampling.ancestral_noise.take())
    }

    /// Text-to-image: denoise `noise` (`[b, latent, h, w]`, standard normal)
    /// under `cond`/`uncond` (`[b, L, cross_attention_dim]` each) and return
    /// the final latents `[b, latent, h, w]` (scaled as the UNet sees them).
    pub fn txt2img(
        &self,
        cond: Tensor<3>,
        uncond: Tensor<3>,
        noise: Tensor<4>,
        sampling: Sampling,
        on_step: impl FnMut(usize, &Tensor<4>),
    ) -> Result<Tensor<4>> {
        self.start_txt2img(cond, uncond, noise, sampling)?.run(on_step)
    }

    /// [`Self::txt2img`] taken apart: the denoising, ready for its first step.
    pub fn start_txt2img(
        &self,
        cond: Tensor<3>,
        uncond: Tensor<3>,
        noise: Tensor<4>,
        mut sampling: Sampling,
    ) -> Result<Denoising<'_>> {
        self.check_inputs(&cond, &uncond, &noise, self.sampled_channels())?;
        let scheduler = self.scheduler(&mut sampling)?;
        let latents = initial_latents(scheduler.as_ref(), noise);
        let timesteps = scheduler.timesteps().to_vec();
        let context = self.cfg_context(cond, uncond, sampling.guidance);
        Ok(self.denoising(scheduler, timesteps, latents, context, sampling.guidance))
    }

    /// img2img: noise `image_latents` (`[b, latent, h, w]`, already multiplied
    /// by `scaling_factor`, see [`Self::encode_image`]) with `noise` to the
    /// level `strength` in `[0, 1]` picks, then denoise the remaining steps.
    #[allow(clippy::too_many_arguments)]
    pub fn img2img(
        &self,
        cond: Tensor<3>,
        uncond: Tensor<3>,
        image_latents: Tensor<4>,
        noise: Tensor<4>,
        strength: f64,
        sampling: Sampling,
        on_step: impl FnMut(usize, &Tensor<4>),
    ) -> Result<Tensor<4>> {
        self.start_img2img(cond, uncond, image_latents, noise, strength, sampling)?.run(on_step)
    }

    /// [`Self::img2img`] taken apart: the denoising, ready for its first step.
    pub fn start_img2img(
        &self,
        cond: Tensor<3>,
        uncond: Tensor<3>,
        image_latents: Tensor<4>,
        noise: Tensor<4>,
        strength: f64,
        mut sampling: Sampling,
    ) -> Result<Denoising<'_>> {
        self.check_inputs(&cond, &uncond, &noise, self.sampled_channels())?;
        if image_latents.dims() != noise.dims() {
            return Err(Error::input(
                "image_latents",
                format!("shape {:?} differs from the noise {:?}", image_latents.dims(), noise.dims()),
            ));
        }
        let mut scheduler = self.scheduler(&mut sampling)?;
        let timesteps = img2img_timesteps(scheduler.as_mut(), sampling.steps, strength)?;
        let first = *timesteps
            .first()
            .ok_or_else(|| Error::input("strength", format!("{strength} leaves no denoising step")))?;
        let latents = scheduler.add_noise(image_latents, noise, first)?;
        let context = self.cfg_context(cond, uncond, sampling.guidance);
        Ok(self.denoising(scheduler, timesteps, latents, context, sampling.guidance))
    }

    /// InstructPix2Pix (`StableDiffusionInstructPix2PixPipeline`): edit `image`
    /// (`[b, 3, H, W]` in `[0, 1]`) as `cond` says, starting from `noise`
    /// (`[b, latent, H/8, W/8]`). Needs a UNet with `2 × latent` input channels.
    /// The image latents are the VAE mode, unscaled, as diffusers uses them.
    pub fn pix2pix(
        &self,
        cond: Tensor<3>,
        uncond: Tensor<3>,
        image: Tensor<4>,
        noise: Tensor<4>,
        sampling: Sampling,
        on_step: impl FnMut(usize, &Tensor<4>),
    ) -> Result<Tensor<4>> {
        self.start_pix2pix(cond, uncond, image, noise, sampling)?.run(on_step)
    }

    /// [`Self::pix2pix`] taken apart: the denoising, ready for its first step.
    pub fn start_pix2pix(
        &self,
        cond: Tensor<3>,
        uncond: Tensor<3>,
        image: Tensor<4>,
        noise: Tensor<4>,
        mut sampling: Sampling,
    ) -> Result<Denoising<'_>> {
        let c = self.latent_channels();
        if self.unet_config.in_channels != 2 * c {
            return Err(Error::input(
                "unet",
                format!(
                    "InstructPix2Pix needs {} UNet input channels, this one has {}",
                    2 * c,
                    self.unet_config.in_channels
                ),
            ));
        }
        self.check_inputs(&cond, &uncond, &noise, c)?;
        let image_latents = self.encode_image(image)?.mode();
        let scheduler = self.scheduler(&mut sampling)?;
        let latents = initial_latents(scheduler.as_ref(), noise);
        let timesteps = scheduler.timesteps().to_vec();
        let (text_g, image_g) = (sampling.guidance, sampling.image_guidance);
        let image = pix2pix_image(&latents, image_latents, text_g, image_g)?;
        let cfg = text_g > 1.0 && image_g >= 1.0;
        let context = if cfg { Tensor::cat(vec![cond, uncond.clone(), uncond], 0) } else { cond };
        Ok(Denoising {
            pix2pix: Some((image, image_g)),
            ..self.denoising(scheduler, timesteps, latents, context, text_g)
        })
    }

    /// The VAE's latent distribution of images `[b, 3, H, W]` in `[0, 1]`
    /// (unscaled; multiply by `scaling_factor` for img2img).
    pub fn encode_image(&self, image: Tensor<4>) -> Result<DiagonalGaussian> {
        self.vae.encode(image.mul_scalar(2.0).sub_scalar(1.0))
    }

    /// Latents as the UNet sees them (`[b, latent, h, w]`) → images
    /// `[b, 3, 8h, 8w]` in `[0, 1]`: `÷ scaling_factor`, VAE decode, `x / 2 + 0.5`.
    pub fn decode_latents(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        let z = latents.div_scalar(self.vae_config.scaling_factor as f32);
        Ok(self.vae.decode(z)?.div_scalar(2.0).add_scalar(0.5).clamp(0.0, 1.0))
    }

    /// A run over `timesteps` from `latents` under `context`, ready for its first step.
    fn denoising(
        &self,
        scheduler: Box<dyn Scheduler>,
        timesteps: Vec<f64>,
        latents: Tensor<4>,
        context: Tensor<3>,
        guidance: f32,
    ) -> Denoising<'_> {
        Denoising { sd: self, scheduler, timesteps, done: 0, latents, context, guidance, pix2pix: None }
    }

    /// `[uncond; cond]` when guidance is on, else `cond`.
    fn cfg_context(&self, cond: Tensor<3>, uncond: Tensor<3>, guidance: f32) -> Tensor<3> {
        if guidance > 1.0 { Tensor::cat(vec![uncond, cond], 0) } else { cond }
    }

    fn check_inputs(&self, cond: &Tensor<3>, uncond: &Tensor<3>, noise: &Tensor<4>, channels: usize) -> Result<()> {
        let d = self.unet_config.cross_attention_dim;
        let [b, l, dc] = cond.dims();
        if dc != d || l == 0 || b == 0 {
            return Err(Error::input("cond", format!("shape {:?}, expected [batch, length, {d}]", cond.dims())));
        }
        if uncond.dims() != cond.dims() {
            return Err(Error::input(
                "uncond",
                format!("shape {:?} differs from cond {:?}", uncond.dims(), cond.dims()),
            ));
        }
        let [bn, c, h, w] = noise.dims();
        if bn != b || c != channels || h == 0 || w == 0 {
            return Err(Error::input(
                "noise",
                format!("shape {:?}, expected [{b}, {channels}, height, width]", noise.dims()),
            ));
        }
        Ok(())
    }
}

fn utf8(src: &dyn FileSource, name: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::config(src.describe(name), "not UTF-8"))
}

fn read_text(src: &dyn FileSource, name: &str) -> Result<String> {
    utf8(src, name, read_required(src, name)?)
}

/// The weights of one component: `{stem}.safetensors`, its `.fp16` variant,
/// or either sharded (`{stem}.safetensors.index.json`, `…index.fp16.json`).
pub fn component_weights(src: &dyn FileSource, stem: &str) -> Result<WeightMap> {
    if let Some(map) = src.weights(stem)? {
        return Ok(map);
    }
    for name in [format!("{stem}.safetensors"), format!("{stem}.fp16.safetensors")] {
        if let Some(bytes) = src.read(&name)? {
            return WeightMap::from_safetensors(&src.describe(&name), bytes);
        }
    }
    let index = format!("{stem}.safetensors.index.json");
    if src.read(&index)?.is_some() {
        return load_weights(src, stem);
    }
    let fp16_index = format!("{stem}.safetensors.index.fp16.json");
    if src.read(&fp16_index)?.is_some() {
        return load_weights(&Alias { inner: src, from: index, to: fp16_index }, stem);
    }
    Err(Error::config(
        src.describe(&format!("{stem}.safetensors")),
        "no weights: neither this file, its .fp16 variant nor a sharded index exists",
    ))
}

/// A source that serves `to` under the name `from` (the fp16 shard index).
struct Alias<'a> {
    inner: &'a dyn FileSource,
    from: String,
    to: String,
}

impl FileSource for Alias<'_> {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read(if name == self.from { &self.to } else { name })
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(if name == self.from { &self.to } else { name })
    }
    fn weights(&self, stem: &str) -> Result<Option<WeightMap>> {
        self.inner.weights(stem)
    }
}
