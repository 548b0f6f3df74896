//! Loss terms over a micro-batch. Today: next-token cross-entropy on the
//! assistant tokens (the understanding and text path, and the `[IMG]` tokens
//! once generation samples carry them). The generation terms (diffusion MSE
//! through the frozen UNet, alignment MSE to CLIP text states) plug in beside
//! [`cross_entropy`] and are summed with the weights of `TrainConfig::loss` in
//! the trainer.

use super::data::Sample;
use super::tokenize::Encoded;
use anyhow::Context;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use genllava::image::ImageProcessorConfig;
use genllava::llama::Rope;
use genllava::llava::{Llava, LlavaConfig};

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
    let b = batch.samples.len();
    let lm = &model.language_model;
    let hidden = lm.forward(embeds, &mut Rope::for_config(&ctx.config.text_config, ctx.device));
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
