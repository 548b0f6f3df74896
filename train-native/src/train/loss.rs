//! Loss terms over a micro-batch, from one pass of the decoder: next-token
//! cross-entropy on the assistant tokens (the `[IMG]` tokens included) and, for
//! the samples that answer with an image, the generation terms of the paper:
//! the denoising MSE of the frozen UNet conditioned on the head's `U` (MGIE) and
//! the alignment MSE between `U` and the frozen text encoder's states of the
//! target caption (GILL). The trainer weights them with `TrainConfig::loss`.

use super::data::Sample;
use super::tokenize::Encoded;
use anyhow::Context;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use genllava::genllava::{head_input, img_positions};
use genllava::image::ImageProcessorConfig;
use genllava::llama::Rope;
use genllava::llava::{Llava, LlavaConfig};
use genllava::sd::pipeline::StableDiffusion;
use genllava::sd::pixels::rgb_to_tensor;
use genllava::shapes::SplitMix64;

/// A micro-batch ready for the model: samples and their encodings, in order.
pub struct MicroBatch<'a> {
    pub samples: Vec<&'a Sample>,
    pub encoded: Vec<&'a Encoded>,
}

/// What the model needs besides its weights.
pub struct LossContext<'a> {
    pub config: &'a LlavaConfig,
    pub processor: &'a ImageProcessorConfig,
    pub pad_id: u32,
    pub device: &'a Device,
}

/// The input embeddings `[b, max_len, hidden]` of a micro-batch (right-padded
/// with `pad_id`; the causal mask keeps padding out of every real position) and
/// the padded length.
pub fn embed_batch(model: &Llava, ctx: &LossContext, batch: &MicroBatch) -> anyhow::Result<(Tensor<3>, usize)> {
    let len = batch.encoded.iter().map(|e| e.ids.len()).max().context("empty micro-batch")?;
    let with_image: Vec<usize> = (0..batch.samples.len()).filter(|&i| batch.encoded[i].has_image).collect();
    let features = if with_image.is_empty() {
        None
    } else {
        let pixels = with_image
            .iter()
            .map(|&i| {
                let img =
                    batch.samples[i].image.as_ref().context("the text has <image> but the sample has no image")?;
                Ok(ctx.processor.preprocess(img, false)?.to_tensor(ctx.device))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Some(model.image_features(ctx.config, Tensor::cat(pixels, 0))?)
    };
    let mut rows = Vec::with_capacity(batch.samples.len());
    for (i, enc) in batch.encoded.iter().enumerate() {
        let mut ids = enc.ids.clone();
        ids.resize(len, ctx.pad_id);
        let f = match (&features, with_image.iter().position(|&j| j == i)) {
            (Some(f), Some(k)) => Some(f.clone().narrow(0, k, 1)),
            _ => None,
        };
        rows.push(model.embed(ctx.config, &ids, f, ctx.device)?);
    }
    Ok((Tensor::cat(rows, 0), len))
}

/// Summed next-token negative log-likelihood over the target tokens of the
/// micro-batch, `[1]`, and the number of targets. Divide by the step's total
/// target count so that accumulating micro-batches gives the step's token mean.
pub fn cross_entropy(model: &Llava, ctx: &LossContext, batch: &MicroBatch) -> anyhow::Result<(Tensor<1>, usize)> {
    let (embeds, len) = embed_batch(model, ctx, batch)?;
    let hidden = model.language_model.forward(embeds, &mut Rope::for_config(&ctx.config.text_config, ctx.device));
    nll_of(model, ctx, batch, hidden, len)
}

fn nll_of(
    model: &Llava,
    ctx: &LossContext,
    batch: &MicroBatch,
    hidden: Tensor<3>,
    len: usize,
) -> anyhow::Result<(Tensor<1>, usize)> {
    let b = batch.samples.len();
    let lm = &model.language_model;
    let logits = lm.logits(hidden.narrow(1, 0, len - 1)); // [b, len-1, vocab]
    let mut targets = Vec::with_capacity(b * (len - 1));
    let mut weights = Vec::with_capacity(b * (len - 1));
    for enc in &batch.encoded {
        for t in 1..len {
            let on = t < enc.ids.len() && enc.mask[t];
            targets.push(if t < enc.ids.len() { enc.ids[t] as i64 } else { 0 });
            weights.push(if on { 1f32 } else { 0.0 });
        }
    }
    let count = weights.iter().filter(|&&w| w > 0.0).count();
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [b, len - 1, 1]), ctx.device);
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [b, len - 1]), ctx.device);
    let logp = log_softmax(logits, 2).gather(2, targets).reshape([b, len - 1]);
    Ok((logp.mul(weights).sum().neg(), count))
}

/// Share of image samples whose `U` is replaced by the null condition (the
/// unconditional branch classifier-free guidance needs; the same null the
/// pipeline guides against).
pub const CONDITION_DROPOUT: f64 = 0.1;

/// The frozen diffusion decoder and what the generation losses need from it.
pub struct Frozen {
    /// On the inner (non-autodiff) device: its weights are constants, while the
    /// gradient flows through its activations back to `U`.
    pub sd: StableDiffusion,
    /// The null condition `[1, L, D]`.
    pub null: Tensor<3>,
    /// ᾱ_t of the training schedule.
    pub alphas: Vec<f64>,
    /// Pixel side of the decoder's images.
    pub pixels: usize,
    /// What the decoder's edits are conditioned on, hence the alignment target of an edit:
    /// the edited scene's caption, or the instruction.
    pub edit_text: crate::pretrain::folder::EditText,
}

impl Frozen {
    /// Load the Stable Diffusion folder `dir` onto the inner device of `device`;
    /// the null condition is fitted to the head's `l` queries.
    pub fn load(dir: &std::path::Path, l: usize, device: &Device) -> anyhow::Result<Self> {
        let inner = device.clone().inner();
        let sd = StableDiffusion::load(&crate::files::DirSource::open(dir)?, &inner)
            .with_context(|| format!("the frozen diffusion decoder {}", dir.display()))?;
        let null = genllava::genllava::fit_rows(sd.null_embedding()?, l);
        let alphas = sd.scheduler_config.alphas_cumprod()?;
        let pixels = sd.unet_config.sample_size.unwrap_or(8) * sd.vae_scale();
        let edit_text = crate::pretrain::folder::EditText::of_folder(dir)?;
        Ok(Self { sd, null, alphas, pixels, edit_text })
    }

    /// The caption's text states fitted to `l` rows: the alignment target.
    pub fn caption_states(&self, caption: &str, l: usize) -> anyhow::Result<Tensor<3>> {
        Ok(genllava::genllava::fit_rows(self.sd.encode_prompt(caption)?, l))
    }
}

/// What the generation losses read besides the model.
pub struct GenContext<'a> {
    pub head: &'a genllava::head::GenHead,
    /// Ids of the `[IMG]` tokens.
    pub img: &'a [u32],
    pub frozen: &'a Frozen,
    /// Seed of this micro-batch's timesteps, noise and condition dropout.
    pub seed: u64,
    /// Compute the denoising term (skipped when its weight is 0).
    pub diffusion: bool,
    /// Compute the alignment term (skipped when its weight is 0).
    pub align: bool,
    /// Share of the generation terms' gradient that flows into the LLM
    /// (`LossWeights::gen_to_llm`).
    pub to_llm: f64,
}

/// The loss terms of one micro-batch (sums: the trainer divides by the step's counts).
pub struct Losses {
    /// Summed NLL of the target tokens, `[1]`.
    pub nll: Tensor<1>,
    /// Summed per-sample denoising MSE over the image samples, `[1]`.
    pub diffusion: Option<Tensor<1>>,
    /// Summed per-sample alignment MSE over the image samples, `[1]`.
    pub align: Option<Tensor<1>>,
    /// Number of image samples.
    pub images: usize,
}

/// Whether a micro-batch row trains the generation path: it has a target image and
/// every `[IMG]` token survived truncation.
pub fn is_image_row(sample: &Sample, enc: &Encoded, img: &[u32]) -> bool {
    sample.target_image.is_some() && img.iter().all(|t| enc.ids.contains(t))
}

/// All loss terms of a micro-batch from one decoder pass.
pub fn losses(
    model: &Llava,
    ctx: &LossContext,
    batch: &MicroBatch,
    genr: Option<&GenContext>,
) -> anyhow::Result<Losses> {
    let (embeds, len) = embed_batch(model, ctx, batch)?;
    let hidden =
        model.language_model.forward(embeds.clone(), &mut Rope::for_config(&ctx.config.text_config, ctx.device));
    let (nll, _) = nll_of(model, ctx, batch, hidden.clone(), len)?;
    let mut out = Losses { nll, diffusion: None, align: None, images: 0 };
    let Some(genr) = genr else { return Ok(out) };
    let rows: Vec<usize> =
        (0..batch.samples.len()).filter(|&i| is_image_row(batch.samples[i], batch.encoded[i], genr.img)).collect();
    if rows.is_empty() {
        return Ok(out);
    }
    let g = rows.len();
    let index = Tensor::<1, Int>::from_data(
        TensorData::new(rows.iter().map(|&i| i as i64).collect::<Vec<_>>(), [g]),
        ctx.device,
    );
    let ids: Vec<Vec<u32>> = rows.iter().map(|&i| batch.encoded[i].ids.clone()).collect();
    let pos = img_positions(&ids, genr.img, ctx.device)?;
    let hidden = scale_gradient(hidden.select(0, index.clone()), genr.to_llm);
    let u = genr.head.forward(head_input(embeds.select(0, index), hidden, pos));
    let f = genr.frozen;
    out.images = g;
    // Alignment: U against the text encoder's states of the target caption.
    if genr.align {
        out.align = Some(alignment(batch, &rows, &u, f)?);
    }
    if genr.diffusion {
        out.diffusion = Some(denoising(batch, &rows, u, f, genr.seed)?);
    }
    Ok(out)
}

/// `x` unchanged in the forward pass, with the gradient flowing back through it
/// multiplied by `share` (0: none, 1: all).
pub fn scale_gradient<const D: usize>(x: Tensor<D>, share: f64) -> Tensor<D> {
    if share >= 1.0 {
        x
    } else if share <= 0.0 {
        x.detach()
    } else {
        x.clone().detach().mul_scalar(1.0 - share).add(x.mul_scalar(share))
    }
}

/// Summed per-sample MSE between `U` and the caption states of the targets (of the
/// instructions, for edits, where the decoder edits from instructions).
fn alignment(batch: &MicroBatch, rows: &[usize], u: &Tensor<3>, f: &Frozen) -> anyhow::Result<Tensor<1>> {
    let [_, l, d] = u.dims();
    let captions = rows
        .iter()
        .map(|&i| {
            let s = &batch.samples[i];
            let instruction = match f.edit_text {
                crate::pretrain::folder::EditText::Instruction => s.instruction.as_deref(),
                crate::pretrain::folder::EditText::Caption => None,
            };
            let caption =
                instruction.or(s.target_caption.as_deref()).context("an image sample has no target caption")?;
            f.caption_states(caption, l)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(u.clone().sub(Tensor::cat(captions, 0)).powi_scalar(2).sum().div_scalar((l * d) as f64))
}

/// Summed per-sample denoising MSE: the frozen UNet predicts the noise added to
/// the targets' latents at random timesteps, conditioned on `U` (or, with
/// probability [`CONDITION_DROPOUT`], on the null condition).
fn denoising(batch: &MicroBatch, rows: &[usize], u: Tensor<3>, f: &Frozen, seed: u64) -> anyhow::Result<Tensor<1>> {
    let g = rows.len();
    let inner = f.null.device();
    // The decoder's pixel size.
    let fit = |img: &genllava::image::RgbImage| -> anyhow::Result<genllava::image::RgbImage> {
        Ok(if img.width == f.pixels && img.height == f.pixels {
            img.clone()
        } else {
            img.resize(f.pixels, f.pixels, genllava::image::Resample::Bicubic)?
        })
    };
    let images = rows
        .iter()
        .map(|&i| fit(batch.samples[i].target_image.as_ref().context("image sample without target image")?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let x0 = f.sd.encode_image(rgb_to_tensor(&images, &inner)?)?.mode().mul_scalar(f.sd.vae_config.scaling_factor);
    let [_, c, h, w] = x0.dims();
    // An InstructPix2Pix decoder also reads the source: an edit's input image
    // (unscaled latents, as its pipeline feeds them), zeros for a generation.
    let source = if f.sd.image_conditioned() {
        let sources = rows.iter().filter_map(|&i| batch.samples[i].image.as_ref()).map(fit);
        let sources = sources.collect::<anyhow::Result<Vec<_>>>()?;
        let latents =
            if sources.is_empty() { None } else { Some(f.sd.encode_image(rgb_to_tensor(&sources, &inner)?)?.mode()) };
        let mut next = 0;
        let parts = rows.iter().map(|&i| match (&batch.samples[i].image, &latents) {
            (Some(_), Some(l)) => {
                next += 1;
                l.clone().slice(next - 1..next)
            }
            _ => Tensor::zeros([1, c, h, w], &inner),
        });
        Some(Tensor::cat(parts.collect(), 0))
    } else {
        None
    };
    let mut rng = SplitMix64::new(seed);
    let ts: Vec<usize> = (0..g).map(|_| rng.below(f.alphas.len())).collect();
    let keep: Vec<f32> = (0..g).map(|_| if rng.chance(CONDITION_DROPOUT as f32) { 0.0 } else { 1.0 }).collect();
    let coef = |h: fn(f64) -> f64| {
        let v: Vec<f32> = ts.iter().map(|&t| h(f.alphas[t]) as f32).collect();
        Tensor::<4>::from_data(TensorData::new(v, [g, 1, 1, 1]), &inner)
    };
    let eps = genllava::pipeline::gaussian([g, c, h, w], rng.next_u64(), &inner);
    let xt = x0.mul(coef(f64::sqrt)).add(eps.clone().mul(coef(|a| (1.0 - a).sqrt())));
    let t = Tensor::<1>::from_data(TensorData::new(ts.iter().map(|&t| t as f32).collect::<Vec<_>>(), [g]), &inner);
    let keep = Tensor::<3>::from_data(TensorData::new(keep, [g, 1, 1]), &inner);
    let null = f.null.clone().repeat_dim(0, g);
    let cond = u.mul(keep.clone()).add(null.mul(keep.neg().add_scalar(1.0)));
    let xt = match source {
        Some(src) => Tensor::cat(vec![xt, src], 1),
        None => xt,
    };
    let pred = f.sd.unet.forward(xt, t, cond)?;
    Ok(pred.sub(eps).powi_scalar(2).sum().div_scalar((c * h * w) as f64))
}

#[cfg(test)]
mod tests {
    use super::scale_gradient;
    use burn::tensor::{Device, Tensor};

    /// The forward value is `x`; the gradient through it is scaled by the share.
    #[test]
    fn scale_gradient_keeps_the_value_and_scales_the_gradient() {
        let device = Device::flex().autodiff();
        for share in [0.0, 0.25, 1.0] {
            let x = Tensor::<2>::from_floats([[1.5, -2.0], [0.5, 3.0]], &device).require_grad();
            let y = scale_gradient(x.clone().mul_scalar(3.0), share);
            let value: Vec<f32> = y.clone().into_data().try_to_vec::<f32>().expect("f32");
            assert_eq!(value, vec![4.5, -6.0, 1.5, 9.0]);
            // (+ 0·Σx keeps the output tracked when the share cuts the whole gradient.)
            let grads = y.sum().add(x.clone().sum().mul_scalar(0.0)).backward();
            let g: Vec<f32> =
                x.grad(&grads).map(|g| g.into_data().try_to_vec::<f32>().expect("f32")).unwrap_or(vec![0.0; 4]);
            for v in g {
                assert!((v - 3.0 * share as f32).abs() < 1e-6, "share {share}: gradient {v}");
            }
        }
    }
}
