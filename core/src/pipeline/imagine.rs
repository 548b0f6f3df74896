//! GenLLaVA's generation and editing, and the chat in which the model itself
//! chooses between a text answer and `[SOI][IMG]…[EOI]`.
//!
//! The language model is teacher-forced through `[SOI][IMG0…]`; the head maps
//! `e[IMG] + h[IMG]` to `U`, which conditions the UNet in place of CLIP text
//! states, with classifier-free guidance against the null embedding.

use super::understand::{Answer, UnderstandRequest, understand};
use crate::checkpoint::{self, FileSource, SubSource};
use crate::error::{Error, Result};
use crate::genllava::{self, EditMode, GenLlavaConfig, check_head};
use crate::head::{GenHead, GenHeadConfig};
use crate::image::{ImageProcessorConfig, Resample, RgbImage};
use crate::llava::{LlavaCheckpoint, expand_image_tokens, load_image_processor};
use crate::sampling::{Rng, SamplingConfig};
use crate::scheduler::SchedulerKind;
use crate::sd::pipeline::{Denoising, Sampling, StableDiffusion};
use crate::sd::pixels::{rgb_to_tensor, tensor_to_rgb};
use crate::template::{self, Turn};
use crate::tokenizer::{I2T, T2I, TextTokenizer};
use crate::weights::VarBuilder;
use burn::tensor::{Device, Tensor, TensorData};
use std::sync::Arc;

/// How to decode an image.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    pub steps: usize,
    pub guidance: f32,
    pub scheduler: SchedulerKind,
    /// Seed of the initial noise.
    pub seed: u64,
    /// How an edit reaches the UNet (the checkpoint's default when `None`).
    pub edit: Option<EditMode>,
}

/// A whole GenLLaVA model, ready to run.
pub struct GenLlava {
    pub llava: LlavaCheckpoint,
    pub head: GenHead,
    pub head_config: GenHeadConfig,
    pub config: GenLlavaConfig,
    pub sd: StableDiffusion,
    pub tokenizer: TextTokenizer,
    pub processor: Option<ImageProcessorConfig>,
    pub device: Device,
}

/// What the model said in chat: text, and an image when it chose to draw.
pub struct Reply {
    pub answer: Answer,
    pub image: Option<RgbImage>,
}

impl GenLlava {
    /// Load a GenLLaVA folder (see [`crate::genllava`]).
    pub fn load(src: &dyn FileSource, device: &Device) -> Result<Self> {
        let config = GenLlavaConfig::from_json(
            &src.describe("genllava.json"),
            &checkpoint::read_required(src, "genllava.json")?,
        )?;
        let llava = LlavaCheckpoint::load(src, device)?;
        let tokenizer = TextTokenizer::from_bytes(&checkpoint::read_required(src, "tokenizer.json")?)?;
        let n_img = config.task_tokens.img.len();
        if tokenizer.task_tokens(n_img).as_ref() != Some(&config.task_tokens) {
            return Err(Error::config(
                src.describe("genllava.json"),
                "task_tokens do not match the ids in tokenizer.json",
            ));
        }
        let head_src = SubSource::new(src, "gen_head");
        let head_json = checkpoint::read_required(&head_src, "config.json")?;
        let head_config = GenHeadConfig::from_json(&String::from_utf8_lossy(&head_json))?;
        check_head(&head_config, llava.config.text_config.hidden_size, n_img)?;
        let head_weights = Arc::new(checkpoint::load_weights(&head_src, "model")?);
        let head = GenHead::load(&head_config, &VarBuilder::from_map(head_weights, device))?;
        let sd = StableDiffusion::load(&SubSource::new(src, "sd"), device)?;
        if head_config.out_dim != sd.unet_config.cross_attention_dim {
            return Err(Error::config(
                src.describe("gen_head/config.json"),
                format!(
                    "out_dim {} != the UNet's cross_attention_dim {}",
                    head_config.out_dim, sd.unet_config.cross_attention_dim
                ),
            ));
        }
        let processor = load_image_processor(src)?;
        Ok(Self { llava, head, head_config, config, sd, tokenizer, processor, device: device.clone() })
    }

    fn eos_text(&self) -> String {
        let eos = self.llava.config.text_config.eos_token_ids();
        eos.first().and_then(|&id| self.tokenizer.decode(&[id], false).ok()).unwrap_or_default()
    }

    /// The prompt of a conversation, led by a task token.
    pub fn prompt(&self, task: &str, turns: &[Turn]) -> String {
        self.config.prompt(task, turns, &self.eos_text())
    }

    /// Answer in chat. The model may answer with an image (`[SOI]`), which is
    /// then drawn with `image_options`.
    pub fn chat(
        &self,
        turns: &[Turn],
        image: Option<&RgbImage>,
        sampling: &SamplingConfig,
        image_options: &ImageOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Reply> {
        let prompt = self.prompt(I2T, turns);
        let soi = self.config.task_tokens.soi;
        let req = UnderstandRequest {
            prompt: &prompt,
            image,
            pad_to_square: self.config.pad_to_square,
            sampling,
            stop: &[],
            stop_ids: &[soi],
        };
        let answer = understand(&self.llava, &self.tokenizer, self.processor.as_ref(), &req, &self.device, on_text)?;
        if answer.ids().last() != Some(&soi) {
            return Ok(Reply { answer, image: None });
        }
        let run = self.start_reply_drawing(&prompt, &answer.ids(), image, image_options)?;
        let drawn = self.finish_drawing(run, on_step)?;
        Ok(Reply { answer, image: Some(drawn) })
    }

    /// The drawing of a chat answer: `answer_ids` ended in `[SOI]` after
    /// `prompt` (the understanding prompt [`Self::chat`] renders, `<image>` for
    /// `image`). The model is teacher-forced through the `[IMG]` tokens and the
    /// head's `U` conditions the decoder; step the returned run, then decode.
    pub fn start_reply_drawing(
        &self,
        prompt: &str,
        answer_ids: &[u32],
        image: Option<&RgbImage>,
        options: &ImageOptions,
    ) -> Result<Denoising<'_>> {
        let why = "it does not end in [SOI]: the model did not choose to draw";
        let u = self.answer_condition(prompt, answer_ids, image, why)?;
        self.start_draw(u, None, options)
    }

    /// Text-to-image with the paper's generation template.
    pub fn generate(
        &self,
        description: &str,
        options: &ImageOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<RgbImage> {
        self.finish_drawing(self.start_generate(description, options)?, on_step)
    }

    /// [`Self::generate`] up to its first denoising step: step the returned run,
    /// then [`Self::decode`] its latents.
    pub fn start_generate(&self, description: &str, options: &ImageOptions) -> Result<Denoising<'_>> {
        let prompt = self.prompt(T2I, &[Turn::user(template::generation(description))]);
        let mut ids = self.prompt_ids(&prompt)?;
        ids.extend(self.image_answer());
        let u = self.condition(&ids, None)?;
        self.start_draw(u, None, options)
    }

    /// Edit `image` as `instruction` says, with the paper's editing template.
    pub fn edit(
        &self,
        image: &RgbImage,
        instruction: &str,
        options: &ImageOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<RgbImage> {
        self.finish_drawing(self.start_edit(image, instruction, options)?, on_step)
    }

    /// [`Self::edit`] up to its first denoising step (see [`Self::start_generate`]).
    pub fn start_edit(&self, image: &RgbImage, instruction: &str, options: &ImageOptions) -> Result<Denoising<'_>> {
        let prompt = self.edit_prompt(instruction);
        let answer = self.edit_answer(&prompt, image)?;
        self.start_edit_answer(&prompt, &answer, image, options)
    }

    /// The prompt of an edit (Figure A1 e), led by `[T2I]`.
    pub fn edit_prompt(&self, instruction: &str) -> String {
        self.prompt(T2I, &[Turn::user(template::editing(instruction))])
    }

    /// Most tokens an edit's description may take before `[SOI]` is forced.
    pub const DESCRIPTION_TOKENS: usize = 128;

    /// How an edit's description is decoded (greedy, [`Self::DESCRIPTION_TOKENS`] at most),
    /// or None for a model that does not describe its edits: its answer is `[SOI]` alone.
    pub fn description_sampling(&self) -> Option<SamplingConfig> {
        self.config
            .describe_edits
            .then(|| SamplingConfig { max_new_tokens: Self::DESCRIPTION_TOKENS, ..SamplingConfig::default() })
    }

    /// The answer to an edit's `prompt` up to and including `[SOI]`: `[SOI]` alone,
    /// or, for a model that describes its edits ([`GenLlavaConfig::describe_edits`]),
    /// its greedy description of the edited image first (see [`Self::close_description`]).
    pub fn edit_answer(&self, prompt: &str, image: &RgbImage) -> Result<Vec<u32>> {
        let soi = self.config.task_tokens.soi;
        let Some(sampling) = self.description_sampling() else {
            return Ok(vec![soi]);
        };
        let req = UnderstandRequest {
            prompt,
            image: Some(image),
            pad_to_square: self.config.pad_to_square,
            sampling: &sampling,
            stop: &[],
            stop_ids: &[soi],
        };
        let answer = understand(&self.llava, &self.tokenizer, self.processor.as_ref(), &req, &self.device, &mut |_| true)?;
        Ok(self.close_description(answer.ids()))
    }

    /// A generated description made an image answer's start: it ends in `[SOI]`
    /// (added when the model stopped at its end of sequence, dropped, or ran out of tokens).
    pub fn close_description(&self, mut ids: Vec<u32>) -> Vec<u32> {
        let soi = self.config.task_tokens.soi;
        if ids.last() == Some(&soi) {
            return ids;
        }
        let eos = self.llava.config.text_config.eos_token_ids();
        if ids.last().is_some_and(|id| eos.contains(id)) {
            ids.pop();
        }
        ids.push(soi);
        ids
    }

    /// The words of an edit answer (its description; empty for `[SOI]` alone).
    pub fn answer_text(&self, answer: &[u32]) -> Result<String> {
        let words = answer.strip_suffix(&[self.config.task_tokens.soi]).unwrap_or(answer);
        self.tokenizer.decode(words, true)
    }

    /// An edit of `image` whose answer to `prompt` ([`Self::edit_prompt`]) is
    /// `answer` (ending in `[SOI]`, [`Self::edit_answer`]): the model is
    /// teacher-forced through the `[IMG]` tokens and the decoder edits `image` on the
    /// head's `U`; step the returned run, then decode.
    pub fn start_edit_answer(
        &self,
        prompt: &str,
        answer: &[u32],
        image: &RgbImage,
        options: &ImageOptions,
    ) -> Result<Denoising<'_>> {
        let u = self.answer_condition(prompt, answer, Some(image), "an edit's answer must end in [SOI]")?;
        self.start_draw(u, Some(image), options)
    }

    /// `U` of an image answer: `prompt`'s ids (its `<image>` filled from `image`), the
    /// `answer` (which must end in `[SOI]`, else an error saying `why`), the `[IMG]` tokens.
    fn answer_condition(&self, prompt: &str, answer: &[u32], image: Option<&RgbImage>, why: &str) -> Result<Tensor<3>> {
        if answer.last() != Some(&self.config.task_tokens.soi) {
            return Err(Error::input("answer", why));
        }
        let mut ids = self.prompt_ids(prompt)?;
        ids.extend(answer);
        ids.extend(&self.config.task_tokens.img);
        let features = image.map(|i| self.features(i)).transpose()?;
        self.condition(&ids, features)
    }

    /// `[SOI][IMG…]` (the `[EOI]` follows the image and is not needed to draw it).
    pub fn image_answer(&self) -> Vec<u32> {
        let mut a = self.config.image_answer();
        a.pop();
        a
    }

    /// Prompt ids with `<image>` expanded to the tower's feature count.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let cfg = &self.llava.config;
        Ok(expand_image_tokens(&self.tokenizer.encode(prompt, true)?, cfg.image_token_index, cfg.image_seq_len()))
    }

    /// Projected features of one image `[1, n, d]`.
    pub fn features(&self, image: &RgbImage) -> Result<Tensor<3>> {
        let processor =
            self.processor.as_ref().ok_or_else(|| Error::input("image", "the model has no image processor config"))?;
        let pixels = processor.preprocess(image, self.config.pad_to_square)?.to_tensor(&self.device);
        self.llava.model.image_features(&self.llava.config, pixels)
    }

    /// `U` for ids ending in the `[IMG]` tokens; `features` fill the `<image>` positions.
    pub fn condition(&self, ids: &[u32], features: Option<Tensor<3>>) -> Result<Tensor<3>> {
        let cfg = &self.llava.config;
        let has_image = ids.contains(&cfg.image_token_index);
        let features = if has_image { features } else { None };
        let embeds = self.llava.model.embed(cfg, ids, features, &self.device)?;
        genllava::condition(&self.llava.model, cfg, &self.head, embeds, ids, &self.config.task_tokens.img)
    }

    /// The null conditioning of guidance (and of conditioning dropout in
    /// training): the text encoder's empty prompt fitted to the head's `L`
    /// positions (cut, or its last row repeated), or zeros without a text encoder.
    pub fn null_condition(&self) -> Result<Tensor<3>> {
        let l = self.head_config.num_queries;
        if self.sd.text_encoder.is_none() {
            return Ok(Tensor::zeros([1, l, self.head_config.out_dim], &self.device));
        }
        Ok(genllava::fit_rows(self.sd.null_embedding()?, l))
    }

    /// The diffusion decoder on `u`, ready for its first step; with a `source`
    /// image, an edit of it.
    pub fn start_draw(&self, u: Tensor<3>, source: Option<&RgbImage>, o: &ImageOptions) -> Result<Denoising<'_>> {
        let uncond = self.null_condition()?;
        let side = self.sd.unet_config.sample_size.unwrap_or(8);
        let noise = gaussian([1, self.sd.latent_channels(), side, side], o.seed, &self.device);
        let sampling = Sampling::new(o.steps, o.scheduler, o.guidance);
        let source = match source {
            None => return self.sd.start_txt2img(u, uncond, noise, sampling),
            Some(img) => {
                let px = side * self.sd.vae_scale();
                rgb_to_tensor(&[img.resize(px, px, Resample::Bicubic)?], &self.device)?
            }
        };
        match o.edit.unwrap_or(self.config.diffusion.edit) {
            EditMode::Img2Img { strength } => {
                let latents = self.sd.encode_image(source)?.mode().mul_scalar(self.sd.vae_config.scaling_factor as f32);
                self.sd.start_img2img(u, uncond, latents, noise, strength as f64, sampling)
            }
            EditMode::Pix2Pix { image_guidance } => {
                let mut sampling = sampling;
                sampling.image_guidance = image_guidance;
                self.sd.start_pix2pix(u, uncond, source, noise, sampling)
            }
        }
    }

    /// Images `[b, 3, H, W]` in `[0, 1]` of latents (a finished run's, or a
    /// preview of a run in progress), still on the device.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        self.sd.decode_latents(latents)
    }

    /// Run the remaining steps of `run` (`on_step(done, total)` after each),
    /// decode and read the image back.
    pub fn finish_drawing(&self, run: Denoising<'_>, on_step: &mut dyn FnMut(usize, usize)) -> Result<RgbImage> {
        let total = run.steps();
        let latents = run.run(|i, _| on_step(i + 1, total))?;
        let images = tensor_to_rgb(self.decode(latents)?)?;
        images.into_iter().next().ok_or_else(|| Error::input("latents", "decoded no image"))
    }
}

/// Standard normal noise from a seed, the same on every backend (drawn on the CPU).
pub fn gaussian(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        // Box-Muller: two uniforms → two normals.
        let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
        let u2 = rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        v.push((r * (std::f64::consts::TAU * u2).cos()) as f32);
        v.push((r * (std::f64::consts::TAU * u2).sin()) as f32);
    }
    v.truncate(n);
    Tensor::from_data(TensorData::new(v, shape), device)
}
