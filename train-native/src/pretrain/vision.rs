//! `pretrain-vision`: the small SigLIP of the shapes world, standing in for the
//! paper's pretrained SigLIP-L. A vision tower (the LLaVA run's `vision_config`) and a
//! small CLIP-style text tower learn one embedding space from captioned world images
//! with SigLIP's sigmoid loss: every image–caption pair of a batch is a binary
//! classification, positive on the diagonal, `−log σ(z · (e^t · cos + b))` summed over
//! the pairs and divided by the batch (Zhai et al., 2023; `t` starts at ln 10, `b` at −10).
//! Only the vision tower is written, as a transformers `SiglipVisionModel` folder
//! (`config.json`, `model.safetensors` under `vision_model.`), which the LLaVA run loads
//! through `model.vision` and keeps frozen, as the paper keeps its SigLIP.

use super::text::{CaptionTokenizer, TextSize, caption_of, text_config, text_config_json};
use super::vae::scalar;
use super::{Progress, lr_at};
use crate::files::write_atomic;
use crate::train::config::TrainConfig;
use anyhow::Context;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use genllava::clip_text::ClipTextModel;
use genllava::export::{named_tensors, safetensors_bytes};
use genllava::image::{ImageProcessorConfig, RgbImage};
use genllava::shapes::dataset::{self, DatasetConfig, Split};
use genllava::shapes::{Colour, Kind, Scene, Size, SplitMix64, caption, render};
use genllava::siglip::{SiglipVision, SiglipVisionConfig};
use genllava::weights::VarBuilder;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;

/// Width of the shared embedding space.
const EMBED: usize = 64;
/// Caption rows (the longest caption is 28 tokens).
const MAX_LEN: usize = 32;
/// The text tower: it only has to tell captions apart.
const TEXT: TextSize = TextSize { hidden: 64, layers: 2, heads: 4 };

#[derive(clap::Args)]
pub struct VisionArgs {
    /// Output folder (a transformers `SiglipVisionModel`: config.json, model.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// The run config whose `model.init.vision_config` sets the tower's shape
    /// (default: the embedded shapes-world config of the main job).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Image–caption pairs per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate (AdamW, 5 % warm-up then cosine to a tenth).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of the world and of the initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Held-out test pairs for the retrieval score printed at the end.
    #[arg(long, default_value_t = 256)]
    pub eval: usize,
    /// Share of each batch that is a twin of another pair: the same scene with one
    /// shape's kind (half the time), colour, size or cell changed. Twins are hard
    /// negatives of each other; without them a few colours and cells tell most
    /// captions apart and the tower never learns to see kinds.
    #[arg(long, default_value_t = 0.5)]
    pub twins: f64,
    /// Weight of the conditioning term: the tokens the LLaVA projector reads (the run
    /// config's `vision_feature_layer`; of a list, the deepest) are pushed towards unit variance per feature
    /// (a hinge on each standard deviation) and no correlation between features (the
    /// squared off-diagonal covariances over the width), as VICReg does (Bardes et al.,
    /// 2022). A projector learns from well-conditioned tokens several times faster
    /// (README, "What the ablations show"); 0 turns the term off.
    #[arg(long, default_value_t = 1.0)]
    pub condition: f64,
    /// How the image embedding reads the tower's last hidden states: `flatten` (one
    /// projection of all of them side by side, weights per position) or `map` (SigLIP's
    /// attention pooling: learned queries attend over the tokens through one key and one
    /// value projection shared by every position, so where a thing is has to be in the
    /// tokens themselves, as a LLaVA decoder needs).
    #[arg(long, value_enum, default_value_t = Pool::Map)]
    pub pool: Pool,
    /// Also write the text tower, as the text half of a diffusers folder (`tokenizer/`,
    /// `text_encoder/`: a CLIPTextModel), for `pretrain-sd --text-from`.
    #[arg(long)]
    pub text_out: Option<PathBuf>,
}

/// The image side's pooling (see `--pool`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Flatten,
    Map,
}

/// Queries of the `map` pooling.
const POOL_QUERIES: usize = 4;
/// Heads of the `map` pooling.
const POOL_HEADS: usize = 4;

/// Multi-head attention pooling (SigLIP's MAP head without its MLP): `POOL_QUERIES`
/// learned queries attend over the tokens; keys and values come from projections shared
/// by all positions. `[b, n, d]` → `[b, POOL_QUERIES · d]`.
#[derive(Module, Debug)]
pub struct AttentionPool {
    pub queries: Param<Tensor<2>>,
    pub key: Linear,
    pub value: Linear,
    pub heads: usize,
}

impl AttentionPool {
    fn init(d: usize, device: &Device) -> Self {
        let queries = Tensor::<2>::random([POOL_QUERIES, d], burn::tensor::Distribution::Normal(0.0, 0.02), device);
        Self {
            queries: Param::from_tensor(queries),
            key: LinearConfig::new(d, d).init(device),
            value: LinearConfig::new(d, d).init(device),
            heads: POOL_HEADS,
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, n, d] = x.dims();
        let (h, m) = (self.heads, POOL_QUERIES);
        let dh = d / h;
        let split = |t: Tensor<3>| t.reshape([b, n, h, dh]).swap_dims(1, 2);
        let (k, v) = (split(self.key.forward(x.clone())), split(self.value.forward(x)));
        let q = self.queries.val().reshape([1, m, h, dh]).swap_dims(1, 2).expand([b, h, m, dh]);
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f32).sqrt());
        let pooled = burn::tensor::activation::softmax(scores, 3).matmul(v);
        pooled.swap_dims(1, 2).reshape([b, m * d])
    }
}

/// Both towers, their projections, and the loss's temperature and bias.
#[derive(Module, Debug)]
pub struct Siglip {
    pub vision: SiglipVision,
    /// `--pool map`: the attention pooling in front of `vision_proj`.
    pub pool: Option<AttentionPool>,
    pub vision_proj: Linear,
    pub text: ClipTextModel,
    pub text_proj: Linear,
    /// `t`: the logit scale is `e^t`.
    pub log_scale: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

impl Siglip {
    fn init(
        vision: &SiglipVisionConfig,
        text: &genllava::clip_text::ClipTextConfig,
        pool: Pool,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let vb = VarBuilder::init(0.02, device);
        let d = vision.hidden_size;
        let (pool, pooled) = match pool {
            Pool::Flatten => (None, vision.num_positions() * d),
            Pool::Map => {
                anyhow::ensure!(
                    d.is_multiple_of(POOL_HEADS),
                    "--pool map needs a tower width divisible by {POOL_HEADS}"
                );
                (Some(AttentionPool::init(d, device)), POOL_QUERIES * d)
            }
        };
        Ok(Self {
            vision: SiglipVision::load(vision, &vb.pp("vision"))?,
            pool,
            vision_proj: LinearConfig::new(pooled, EMBED).init(device),
            text: ClipTextModel::load(text, &vb.pp("text"))?,
            text_proj: LinearConfig::new(text.hidden_size, EMBED).init(device),
            log_scale: Param::from_tensor(Tensor::from_floats([10f32.ln()], device)),
            bias: Param::from_tensor(Tensor::from_floats([-10f32], device)),
        })
    }

    /// Unit-length image embeddings `[b, EMBED]`: a projection of all the last hidden
    /// states side by side, or of their attention pooling (`--pool map`). (A mean over
    /// positions would average away where things are, which half the captions are about,
    /// and most patches are background.)
    fn embed_images(&self, pixels: Tensor<4>) -> anyhow::Result<Tensor<2>> {
        Ok(self.embed_images_reading(pixels, None)?.0)
    }

    /// [`Self::embed_images`], plus `hidden_states[read]` (the tokens a LLaVA projector
    /// reads) when asked, from the same forward pass.
    fn embed_images_reading(
        &self,
        pixels: Tensor<4>,
        read: Option<usize>,
    ) -> anyhow::Result<(Tensor<2>, Option<Tensor<3>>)> {
        let mut hidden = self.vision.hidden_states(pixels)?;
        let tokens = read.map(|i| hidden[i].clone());
        let states = self.vision.post_layernorm.forward(hidden.pop().context("a tower without hidden states")?);
        let [b, n, d] = states.dims();
        let pooled = match &self.pool {
            Some(pool) => pool.forward(states),
            None => states.reshape([b, n * d]),
        };
        Ok((unit(self.vision_proj.forward(pooled)), tokens))
    }

    /// Unit-length caption embeddings `[b, EMBED]`: the state at each row's first
    /// end token (the causal encoder has read the whole caption there), as CLIP pools.
    fn embed_captions(&self, ids: Tensor<2, Int>, at_end: Tensor<2>) -> anyhow::Result<Tensor<2>> {
        let states = self.text.forward(ids)?;
        let pooled = states.mul(at_end.unsqueeze_dim::<3>(2)).sum_dim(1).squeeze_dim::<2>(1);
        Ok(unit(self.text_proj.forward(pooled)))
    }

    /// The pairwise logits `[b, b]` (images × captions).
    fn logits(&self, images: Tensor<2>, captions: Tensor<2>) -> Tensor<2> {
        let scale = self.log_scale.val().exp().unsqueeze_dim::<2>(0);
        let bias = self.bias.val().unsqueeze_dim::<2>(0);
        images.matmul(captions.transpose()).mul(scale).add(bias)
    }
}

fn unit(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-6);
    x.div(norm)
}

/// A batch of world pairs: preprocessed pixels, caption ids and end-token masks.
struct Pairs {
    pixels: Tensor<4>,
    ids: Tensor<2, Int>,
    at_end: Tensor<2>,
}

struct World<'a> {
    cfg: DatasetConfig,
    processor: ImageProcessorConfig,
    tok: &'a CaptionTokenizer,
}

/// `scene` with one attribute of one shape changed (the kind half the time, else the
/// colour, size or cell), still a scene of `split`; `None` when no such change is found.
fn twin(scene: &Scene, split: Split, rng: &mut SplitMix64) -> Option<Scene> {
    for _ in 0..64 {
        let i = rng.below(scene.shapes.len().max(1));
        let s = *scene.shapes.get(i)?;
        let mut t = s;
        match if rng.chance(0.5) { 0 } else { 1 + rng.below(3) } {
            0 => t.kind = Kind::ALL[rng.below(Kind::ALL.len())],
            1 => t.colour = Colour::ALL[rng.below(Colour::ALL.len())],
            2 => t.size = Size::ALL[rng.below(Size::ALL.len())],
            _ => t.cell = *rng.pick(&scene.free_cells())?,
        }
        if t == s {
            continue;
        }
        let mut shapes = scene.shapes.clone();
        shapes[i] = t;
        let changed = Scene::new(shapes);
        if split.admits(&changed) {
            return Some(changed);
        }
    }
    None
}

impl World<'_> {
    /// Pairs of world samples `indices` of `split`; a `twins` share of them (rounded
    /// down, every other pair) replaced by a one-attribute twin of the pair before it.
    fn pairs(
        &self,
        split: Split,
        indices: impl Iterator<Item = usize>,
        twins: f64,
        rng: &mut SplitMix64,
        device: &Device,
    ) -> anyhow::Result<Pairs> {
        let indices: Vec<usize> = indices.collect();
        let n_twins = ((indices.len() as f64 * twins.clamp(0.0, 0.5)) as usize).min(indices.len() / 2);
        let (mut pixels, mut ids, mut at_end) = (Vec::new(), Vec::new(), Vec::new());
        let mut n = 0;
        let mut previous: Option<Scene> = None;
        for (k, &i) in indices.iter().enumerate() {
            let twin_of = if k % 2 == 1 && k / 2 < n_twins { previous.take() } else { None };
            let (caption, img) = match twin_of.and_then(|scene| twin(&scene, split, rng)) {
                Some(scene) => {
                    let opts = dataset::render_options(&self.cfg, rng);
                    (caption(&scene), render(&scene, &opts))
                }
                None => {
                    let mut sample = dataset::generation(&self.cfg, split, i);
                    let img = sample.images.remove(0);
                    previous = Some(img.scene);
                    (caption_of(&sample), img.rgb)
                }
            };
            let side = self.cfg.image_size;
            let rgb = RgbImage::new(side, side, img)?;
            pixels.push(self.processor.preprocess(&rgb, false)?.to_tensor(device));
            let row = self.tok.encode(&caption)?;
            let end = row.iter().position(|&t| t == self.tok.eos).context("a caption row without an end token")?;
            at_end.extend((0..row.len()).map(|k| if k == end { 1f32 } else { 0.0 }));
            ids.extend(row.into_iter().map(i64::from));
            n += 1;
        }
        Ok(Pairs {
            pixels: Tensor::cat(pixels, 0),
            ids: Tensor::from_data(TensorData::new(ids, [n, MAX_LEN]), device),
            at_end: Tensor::from_data(TensorData::new(at_end, [n, MAX_LEN]), device),
        })
    }
}

/// The conditioning term of `--condition` on tokens `[b, n, d]`, every token a sample:
/// `mean_j relu(1 - std_j) + sum_{i≠j} cov_ij² / d`. Zero exactly when the features are
/// uncorrelated with standard deviations of at least 1.
fn conditioning_loss(tokens: Tensor<3>) -> Tensor<1> {
    let [b, n, d] = tokens.dims();
    let rows = b * n;
    let x = tokens.reshape([rows, d]);
    let centred = x.clone().sub(x.mean_dim(0));
    let cov = centred.clone().transpose().matmul(centred).div_scalar(rows.saturating_sub(1).max(1) as f32);
    let eye = Tensor::<2>::eye(d, &cov.device());
    let std = cov.clone().mul(eye.clone()).sum_dim(1).add_scalar(1e-4).sqrt();
    let spread = std.neg().add_scalar(1.0).clamp_min(0.0).mean();
    let off = cov.mul(eye.neg().add_scalar(1.0)).powi_scalar(2).sum().div_scalar(d as f32);
    spread.add(off)
}

/// The sigmoid loss of a batch: mean over images of the summed pair losses.
fn sigmoid_loss(logits: Tensor<2>) -> Tensor<1> {
    let b = logits.dims()[0];
    let device = logits.device();
    let signs = Tensor::<2>::eye(b, &device).mul_scalar(2.0).sub_scalar(1.0);
    log_sigmoid(logits.mul(signs)).sum().neg().div_scalar(b as f32)
}

/// Top-1 retrieval accuracy over `n` held-out pairs, image → caption and caption → image.
fn retrieval(model: &Siglip, world: &World, n: usize, device: &Device) -> anyhow::Result<(f64, f64)> {
    let pairs = world.pairs(Split::Test, 0..n, 0.0, &mut SplitMix64::new(0), device)?;
    let logits = model.logits(model.embed_images(pairs.pixels)?, model.embed_captions(pairs.ids, pairs.at_end)?);
    let hits = |t: Tensor<2, Int>| -> f64 {
        let v: Vec<i64> = t.into_data().try_into_vec_as::<i64>().unwrap_or_default();
        v.iter().enumerate().filter(|(i, p)| **p == *i as i64).count() as f64 / n.max(1) as f64
    };
    let i2t = hits(logits.clone().argmax(1));
    let t2i = hits(logits.argmax(0).transpose());
    Ok((i2t, t2i))
}

/// Share of `n` held-out images that score their own caption above the caption of
/// their one-attribute twin (see [`twin`]): how well the tower sees every attribute.
fn twin_accuracy(model: &Siglip, world: &World, n: usize, device: &Device) -> anyhow::Result<f64> {
    let mut rng = SplitMix64::new(1);
    let pairs = world.pairs(Split::Test, 0..2 * n, 0.5, &mut rng, device)?;
    let logits = model.logits(model.embed_images(pairs.pixels)?, model.embed_captions(pairs.ids, pairs.at_end)?);
    let v: Vec<f32> = logits.into_data().try_into_vec_as::<f32>().unwrap_or_default();
    let m = 2 * n;
    let wins = (0..n).filter(|&j| v.get(2 * j * m + 2 * j) > v.get(2 * j * m + 2 * j + 1)).count();
    Ok(wins as f64 / n.max(1) as f64)
}

/// The tower's shape (`model.init.vision_config` of the run config) and the hidden state
/// its projector reads (`model.init.vision_feature_layer`, LLaVA's −2 when absent).
fn vision_config(args: &VisionArgs) -> anyhow::Result<(Value, SiglipVisionConfig, i64)> {
    let cfg = TrainConfig::load(args.config.as_deref(), &[])?;
    let init = cfg.model.init.as_ref().context("the run config has no model.init to take vision_config from")?;
    let json = init.get("vision_config").cloned().context("model.init has no vision_config")?;
    let parsed = SiglipVisionConfig::from_value(json.clone())?;
    let layer = match init.get("vision_feature_layer") {
        None => -2,
        Some(v) => {
            let layers: genllava::llava::FeatureLayer = serde_json::from_value(v.clone())
                .context("model.init.vision_feature_layer must be an integer or a list of integers")?;
            deepest_layer(&layers, &parsed)?
        }
    };
    Ok((json, parsed, layer))
}

/// The deepest of the hidden states a projector reads (`vision_feature_layer`, one or
/// several, negative ones counted from the last): the one the conditioning term shapes.
/// A list that adds shallower states (the patch embeddings, say) beside it leaves them as
/// they come.
fn deepest_layer(layers: &genllava::llava::FeatureLayer, cfg: &SiglipVisionConfig) -> anyhow::Result<i64> {
    let resolved = layers
        .layers()
        .into_iter()
        .map(|layer| match cfg.hidden_state_index(layer) {
            Ok(index) => Ok((index, layer)),
            Err(_) => Err(anyhow::anyhow!(
                "model.init.vision_feature_layer: {layer} is not one of the tower's {} hidden states",
                cfg.num_hidden_layers + 1
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    resolved
        .into_iter()
        .max_by_key(|&(index, _)| index)
        .map(|(_, layer)| layer)
        .context("model.init.vision_feature_layer is an empty list")
}

pub fn run(args: VisionArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch >= 2, "--batch must be at least 2 (the loss contrasts pairs)");
    let start = Instant::now();
    let device = Device::flex();
    device.seed(args.seed);
    let ad = device.clone().autodiff();
    anyhow::ensure!(args.condition >= 0.0 && args.condition.is_finite(), "--condition must be a weight ≥ 0");
    let (mut json, vcfg, feature_layer) = vision_config(&args)?;
    let tok = CaptionTokenizer::train(args.seed, 4000, MAX_LEN)?;
    let text_json = text_config_json(TEXT, &tok);
    let tcfg = text_config(&text_json)?;
    let processor_json = crate::train::model::processor_json(vcfg.image_size);
    let processor = ImageProcessorConfig::from_json(&processor_json["image_processor"].to_string())?;
    // The LLaVA run's understanding images: textured backgrounds, the world's default side.
    let world_cfg = DatasetConfig { seed: args.seed, textured: true, ..DatasetConfig::default() };
    let world = World { cfg: world_cfg, processor, tok: &tok };

    let mut model = Siglip::init(&vcfg, &tcfg, args.pool, &ad)?;
    let read = model.vision.hidden_state_index(feature_layer).context("model.init.vision_feature_layer")?;
    let read = (args.condition > 0.0).then_some(read);
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let mut rng = SplitMix64::derive(args.seed, &[0x5161]);
    let mut progress = Progress::new("siglip", args.steps);
    for step in 0..args.steps {
        let picks: Vec<usize> = (0..args.batch).map(|_| rng.below(1 << 30)).collect();
        let pairs = world.pairs(Split::Train, picks.into_iter(), args.twins, &mut rng, &ad)?;
        let (images, tokens) = model.embed_images_reading(pairs.pixels, read)?;
        let captions = model.embed_captions(pairs.ids, pairs.at_end)?;
        let mut loss = sigmoid_loss(model.logits(images, captions));
        if let Some(tokens) = tokens {
            loss = loss.add(conditioning_loss(tokens).mul_scalar(args.condition));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr_at(args.lr, step, args.steps), model, grads);
        progress.step(step, || format!("loss {:.4}", scalar(loss.clone())));
    }
    let model = model.valid();
    let (i2t, t2i) = retrieval(&model, &world, args.eval, &device)?;
    let twins = twin_accuracy(&model, &world, args.eval, &device)?;

    json["architectures"] = serde_json::json!(["SiglipVisionModel"]);
    json["model_type"] = "siglip_vision_model".into();
    write_atomic(&args.out.join("config.json"), &serde_json::to_vec_pretty(&json)?)?;
    let tensors = named_tensors(&model.vision, "vision_model.");
    write_atomic(&args.out.join("model.safetensors"), &safetensors_bytes(&tensors, false))?;
    if let Some(dir) = &args.text_out {
        super::folder::write_text(dir, &tok, &text_json, &model.text, false)?;
    }
    println!(
        "wrote {} ({} steps of {} pairs at {:.0} ms; {:.0} s in all); held-out retrieval top-1 of {}: image→caption {:.1} %, caption→image {:.1} %; own caption above its one-attribute twin's: {:.1} %",
        args.out.display(),
        args.steps,
        args.batch,
        progress.ms_per_step(args.steps),
        start.elapsed().as_secs_f64(),
        args.eval,
        100.0 * i2t,
        100.0 * t2i,
        100.0 * twins
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use genllava::shapes::Shape;

    #[test]
    fn attention_pooling_weighs_tokens_not_positions() {
        let device = Device::flex();
        device.seed(3);
        let pool = AttentionPool::init(8, &device);
        let x = Tensor::<3>::random([2, 5, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let pooled = pool.forward(x.clone());
        assert_eq!(pooled.dims(), [2, POOL_QUERIES * 8]);
        // The same tokens in another order pool to the same vector: nothing is tied to a
        // position, so a tower pooled this way must put where things are into its tokens.
        let order = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 0, 4, 1, 2], [5]), &device);
        let shuffled = pool.forward(x.select(1, order));
        let diff = scalar(pooled.sub(shuffled).abs().max());
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn conditioning_loss_is_zero_only_for_uncorrelated_unit_features() {
        let device = Device::flex();
        let tokens = |v: [f32; 8]| Tensor::<3>::from_data(TensorData::new(v.to_vec(), [1, 4, 2]), &device);
        // Uncorrelated, standard deviations 2/√3 > 1: nothing to pay.
        let white = scalar(conditioning_loss(tokens([1., 1., 1., -1., -1., 1., -1., -1.])));
        assert!(white.abs() < 1e-6, "{white}");
        // The two features are one (covariance 10/3 off the diagonal): 2 · (10/3)² / 2.
        let tied = scalar(conditioning_loss(tokens([1., 1., 2., 2., -1., -1., -2., -2.])));
        assert!((tied - 100.0 / 9.0).abs() < 1e-3, "{tied}");
        // Uncorrelated but too small (std 0.1 each): the hinge 1 − 0.1 per feature, averaged.
        let small =
            scalar(conditioning_loss(tokens([0.1, 0.0, -0.1, 0.0, 0.0, 0.1, 0.0, -0.1].map(|v| v * 1.5f32.sqrt()))));
        assert!((small - 0.9).abs() < 2e-3, "{small}");
    }

    #[test]
    fn the_conditioned_layer_is_the_deepest_one_the_projector_reads() {
        use genllava::llava::FeatureLayer;
        let cfg = SiglipVisionConfig { num_hidden_layers: 3, ..SiglipVisionConfig::siglip_default() };
        assert_eq!(deepest_layer(&FeatureLayer::One(-2), &cfg).expect("one"), -2);
        assert_eq!(deepest_layer(&FeatureLayer::Many(vec![-4, -2]), &cfg).expect("two"), -2);
        assert_eq!(deepest_layer(&FeatureLayer::Many(vec![3, 0]), &cfg).expect("positive"), 3);
        let err = deepest_layer(&FeatureLayer::Many(vec![-2, -5]), &cfg).unwrap_err();
        assert!(format!("{err:#}").contains("-5 is not one of the tower's 4 hidden states"), "{err:#}");
        assert!(deepest_layer(&FeatureLayer::Many(vec![]), &cfg).is_err());
    }

    #[test]
    fn sigmoid_loss_prefers_matching_pairs() {
        let device = Device::flex();
        let good = Tensor::<2>::from_data(TensorData::new(vec![5f32, -5.0, -5.0, 5.0], [2, 2]), &device);
        let bad = Tensor::<2>::from_data(TensorData::new(vec![-5f32, 5.0, 5.0, -5.0], [2, 2]), &device);
        let (g, b) = (scalar(sigmoid_loss(good)), scalar(sigmoid_loss(bad)));
        // Each of the 4 pairs costs −log σ(±5): 0.0067 when right, 5.0067 when wrong; 2 images.
        assert!((g - 2.0 * 0.006715).abs() < 1e-4, "{g}");
        assert!((b - 2.0 * 5.006715).abs() < 1e-3, "{b}");
    }

    #[test]
    fn twins_change_one_attribute_of_one_shape_within_the_split() {
        let mut rng = SplitMix64::new(5);
        let (mut kinds, mut n) = (0, 0);
        for _ in 0..200 {
            let scene = dataset::random_scene(&mut rng, Split::Train, 3);
            let Some(t) = twin(&scene, Split::Train, &mut rng) else { continue };
            assert!(Split::Train.admits(&t), "{t:?}");
            assert_eq!(t.shapes.len(), scene.shapes.len());
            let moved = scene.shapes.iter().filter(|s| t.at(s.cell).is_none()).count();
            let changed: Vec<(&Shape, &Shape)> =
                scene.shapes.iter().filter_map(|s| t.at(s.cell).filter(|u| *u != s).map(|u| (s, u))).collect();
            match (moved, changed.as_slice()) {
                (1, []) => {}
                (0, [(a, b)]) => {
                    let diffs = [a.kind != b.kind, a.colour != b.colour, a.size != b.size];
                    assert_eq!(diffs.iter().filter(|d| **d).count(), 1, "{a:?} → {b:?}");
                    kinds += usize::from(a.kind != b.kind);
                }
                other => panic!("{scene:?} → {t:?}: {other:?}"),
            }
            n += 1;
        }
        assert!(n > 150 && kinds > n / 4, "{n} twins, {kinds} of them by kind");
    }
}
