//! diffusers' `UNet2DConditionModel` in the Stable Diffusion v1.x layout
//! (`CrossAttnDownBlock2D` / `DownBlock2D`, `UNetMidBlock2DCrossAttn`,
//! `UpBlock2D` / `CrossAttnUpBlock2D`), loaded from `unet/config.json` and
//! `unet/diffusion_pytorch_model.safetensors` with the checkpoint's own key names.
//! With `in_channels: 8` it is the InstructPix2Pix UNet (noisy latent and source
//! latent concatenated along channels).

use crate::error::{Error, Result};
use crate::nn::{conv2d, group_norm, linear};
use crate::sd::unet_blocks::{BlockConfig, BlockLayout, DownBlock, MidBlock, UpBlock};
use crate::weights::VarBuilder;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::activation::silu;
use burn::tensor::{Tensor, TensorData};
use serde::Deserialize;

const CONFIG_FILE: &str = "unet/config.json";

/// A config value that is either one number for every block or one per block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    All(T),
    Each(Vec<T>),
}

impl<T: Copy> PerBlock<T> {
    /// One value per block; errors when a list has the wrong length.
    pub fn resolve(&self, blocks: usize, field: &str) -> Result<Vec<T>> {
        match self {
            PerBlock::All(v) => Ok(vec![*v; blocks]),
            PerBlock::Each(v) if v.len() == blocks => Ok(v.clone()),
            PerBlock::Each(v) => {
                Err(Error::config(CONFIG_FILE, format!("`{field}` has {} entries for {blocks} blocks", v.len())))
            }
        }
    }
}

/// `unet/config.json` of a Stable Diffusion v1.x style UNet. Field names and
/// defaults are diffusers'; fields this model does not need are ignored, and
/// features it does not implement are rejected by [`validate`](Self::validate).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UNet2DConditionConfig {
    /// Latent channels in (4; 8 for InstructPix2Pix).
    pub in_channels: usize,
    /// Channels of the noise prediction.
    pub out_channels: usize,
    /// Map the input from [0, 1] to [-1, 1] first.
    pub center_input_sample: bool,
    /// Put the cosine half of the sinusoidal time embedding first.
    pub flip_sin_to_cos: bool,
    /// `downscale_freq_shift` of the sinusoidal time embedding.
    pub freq_shift: f64,
    /// `CrossAttnDownBlock2D` or `DownBlock2D`, one per resolution.
    pub down_block_types: Vec<String>,
    /// Only `UNetMidBlock2DCrossAttn` is supported.
    pub mid_block_type: Option<String>,
    /// `UpBlock2D` or `CrossAttnUpBlock2D`, one per resolution (lowest first).
    pub up_block_types: Vec<String>,
    /// Width of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: PerBlock<usize>,
    /// Padding of the stride-2 downsampling convolutions (only 1 is supported).
    pub downsample_padding: usize,
    /// Output scale of the mid-block resnets (only 1 is supported).
    pub mid_block_scale_factor: f64,
    /// Activation of resnets and time embedding (only `silu` is supported).
    pub act_fn: String,
    /// GroupNorm groups.
    pub norm_num_groups: usize,
    /// GroupNorm epsilon of resnets and the output norm.
    pub norm_eps: f64,
    /// Width of the encoder hidden states (768 for SD 1.x).
    pub cross_attention_dim: usize,
    /// Transformer blocks per spatial transformer.
    pub transformer_layers_per_block: PerBlock<usize>,
    /// Despite its name, the number of attention HEADS per block in SD 1.x/2.x
    /// configs (a diffusers naming quirk kept for compatibility).
    pub attention_head_dim: PerBlock<usize>,
    /// Heads per block; when present it wins over `attention_head_dim`.
    pub num_attention_heads: Option<PerBlock<usize>>,
    /// Linear (SD 2.x) instead of 1×1-conv (SD 1.x) transformer projections.
    pub use_linear_projection: bool,
    /// Must be false (cross-attention-only transformers are not supported).
    pub only_cross_attention: PerBlock<bool>,
    /// Latent size the model was trained at (informational).
    pub sample_size: Option<usize>,
    /// Kernel of `conv_in` (only 3 is supported).
    pub conv_in_kernel: usize,
    /// Kernel of `conv_out` (only 3 is supported).
    pub conv_out_kernel: usize,
    /// Only `positional` time embeddings are supported.
    pub time_embedding_type: String,
    /// Only `default` (additive) time conditioning is supported.
    pub resnet_time_scale_shift: String,
    /// Must be absent (class-conditional UNets).
    pub class_embed_type: Option<String>,
    /// Must be absent (class embeddings).
    pub num_class_embeds: Option<usize>,
    /// Must be absent (SDXL-style added conditioning).
    pub addition_embed_type: Option<String>,
    /// Must be absent (projection of the encoder states).
    pub encoder_hid_dim: Option<usize>,
    /// Must be absent (LCM-style guidance embedding).
    pub time_cond_proj_dim: Option<usize>,
    /// Must be absent (custom time-embedding width).
    pub time_embedding_dim: Option<usize>,
    /// Must be false.
    pub dual_cross_attention: bool,
}

/// diffusers' defaults (the SD 1.x sizes, except `cross_attention_dim` 1280).
impl Default for UNet2DConditionConfig {
    fn default() -> Self {
        Self {
            in_channels: 4,
            out_channels: 4,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
                .map(String::from)
                .to_vec(),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
                .map(String::from)
                .to_vec(),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerBlock::All(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            act_fn: "silu".into(),
            norm_num_groups: 32,
            norm_eps: 1e-5,
            cross_attention_dim: 1280,
            transformer_layers_per_block: PerBlock::All(1),
            attention_head_dim: PerBlock::All(8),
            num_attention_heads: None,
            use_linear_projection: false,
            only_cross_attention: PerBlock::All(false),
            sample_size: None,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            time_embedding_type: "positional".into(),
            resnet_time_scale_shift: "default".into(),
            class_embed_type: None,
            num_class_embeds: None,
            addition_embed_type: None,
            encoder_hid_dim: None,
            time_cond_proj_dim: None,
            time_embedding_dim: None,
            dual_cross_attention: false,
        }
    }
}

/// The per-block numbers a config resolves to.
#[derive(Debug, Clone)]
struct Resolved {
    layers: Vec<usize>,
    heads: Vec<usize>,
    transformer_layers: Vec<usize>,
    down_cross: Vec<bool>,
    up_cross: Vec<bool>,
}

impl UNet2DConditionConfig {
    /// Parse and validate `unet/config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(json).map_err(|e| Error::config(CONFIG_FILE, e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Width of the time embedding (`4 · block_out_channels[0]`).
    pub fn time_embed_dim(&self) -> usize {
        4 * self.block_out_channels.first().copied().unwrap_or(0)
    }

    /// Attention heads of each down block (`num_attention_heads`, else the
    /// misnamed `attention_head_dim`).
    pub fn heads(&self) -> Result<Vec<usize>> {
        let n = self.block_out_channels.len();
        match &self.num_attention_heads {
            Some(h) => h.resolve(n, "num_attention_heads"),
            None => self.attention_head_dim.resolve(n, "attention_head_dim"),
        }
    }

    /// Reject configs this implementation would otherwise compute wrongly.
    pub fn validate(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }

    fn resolve(&self) -> Result<Resolved> {
        let bad = |why: String| Err(Error::config(CONFIG_FILE, why));
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "{} block_out_channels, {} down_block_types, {} up_block_types: need the same non-zero count",
                n,
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        let kind = |name: &String, cross: &str, plain: &str| match name.as_str() {
            s if s == cross => Ok(true),
            s if s == plain => Ok(false),
            other => Err(Error::config(
                CONFIG_FILE,
                format!("unsupported block type `{other}` (expected {cross} or {plain})"),
            )),
        };
        let down_cross = self
            .down_block_types
            .iter()
            .map(|t| kind(t, "CrossAttnDownBlock2D", "DownBlock2D"))
            .collect::<Result<Vec<_>>>()?;
        let up_cross = self
            .up_block_types
            .iter()
            .map(|t| kind(t, "CrossAttnUpBlock2D", "UpBlock2D"))
            .collect::<Result<Vec<_>>>()?;
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return bad(format!("unsupported mid_block_type {:?}", self.mid_block_type));
        }
        if self.only_cross_attention.resolve(n, "only_cross_attention")?.contains(&true) {
            return bad("only_cross_attention = true is not supported".into());
        }
        let checks = [
            (self.act_fn == "silu", "act_fn must be silu"),
            (self.downsample_padding == 1, "downsample_padding must be 1"),
            (self.mid_block_scale_factor == 1.0, "mid_block_scale_factor must be 1"),
            (self.conv_in_kernel == 3 && self.conv_out_kernel == 3, "conv_in_kernel and conv_out_kernel must be 3"),
            (self.time_embedding_type == "positional", "time_embedding_type must be positional"),
            (self.resnet_time_scale_shift == "default", "resnet_time_scale_shift must be default"),
            (self.class_embed_type.is_none() && self.num_class_embeds.is_none(), "class embeddings are not supported"),
            (
                self.addition_embed_type.is_none() && self.encoder_hid_dim.is_none(),
                "addition / encoder_hid embeddings are not supported",
            ),
            (
                self.time_cond_proj_dim.is_none() && self.time_embedding_dim.is_none(),
                "custom time embeddings are not supported",
            ),
            (!self.dual_cross_attention, "dual_cross_attention is not supported"),
            (self.norm_num_groups > 0, "norm_num_groups must be positive"),
        ];
        if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
            return bad((*why).into());
        }
        let heads = self.heads()?;
        for (i, (&c, &h)) in self.block_out_channels.iter().zip(&heads).enumerate() {
            if c == 0 || c % self.norm_num_groups != 0 || h == 0 || c % h != 0 {
                return bad(format!(
                    "block {i}: {c} channels must be a positive multiple of norm_num_groups {} and of {h} heads",
                    self.norm_num_groups
                ));
            }
        }
        Ok(Resolved {
            layers: self.layers_per_block.resolve(n, "layers_per_block")?,
            heads,
            transformer_layers: self.transformer_layers_per_block.resolve(n, "transformer_layers_per_block")?,
            down_cross,
            up_cross,
        })
    }
}

/// `time_embedding`: `linear_1 → SiLU → linear_2`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    /// `[b, d_in]` → `[b, d_out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        crate::kernels::linear(&self.linear_2, silu(crate::kernels::linear(&self.linear_1, x)))
    }
}

/// diffusers' `get_timestep_embedding`: `timesteps` `[b]` → `[b, dim]`, sines then
/// cosines of `t · exp(-ln(10000) · i / (dim/2 − freq_shift))` (cosines first
/// when `flip_sin_to_cos`), zero-padded when `dim` is odd.
pub fn timestep_embedding(timesteps: Tensor<1>, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Tensor<2> {
    let half = dim / 2;
    let denom = (half as f64 - freq_shift) as f32;
    // Same f32 arithmetic order as PyTorch: exp(-ln(10000) · i / denom).
    let freqs: Vec<f32> = (0..half).map(|i| ((-(10000f64.ln() as f32) * i as f32) / denom).exp()).collect();
    let device = timesteps.device();
    let freqs = Tensor::<2>::from_data(TensorData::new(freqs, [1, half]), &device);
    let b = timesteps.dims()[0];
    let args = timesteps.reshape([b, 1]).mul(freqs);
    let (sin, cos) = (args.clone().sin(), args.cos());
    let mut emb = if flip_sin_to_cos { Tensor::cat(vec![cos, sin], 1) } else { Tensor::cat(vec![sin, cos], 1) };
    if dim % 2 == 1 {
        emb = Tensor::cat(vec![emb, Tensor::zeros([b, 1], &device)], 1);
    }
    emb
}

/// The conditional denoising UNet of Stable Diffusion.
#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    pub time_embedding: TimestepEmbedding,
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    pub in_channels: usize,
    pub cross_attention_dim: usize,
    pub time_proj_dim: usize,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub center_input_sample: bool,
}

impl UNet2DConditionModel {
    /// Load (or, with [`VarBuilder::init`], initialise) every weight under `vb`
    /// (the root of `diffusion_pytorch_model.safetensors`).
    pub fn load(cfg: &UNet2DConditionConfig, vb: &VarBuilder) -> Result<Self> {
        let r = cfg.resolve()?;
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let c0 = ch[0];
        let temb_dim = cfg.time_embed_dim();
        let bc = BlockConfig {
            groups: cfg.norm_num_groups,
            eps: cfg.norm_eps,
            temb_dim,
            context_dim: cfg.cross_attention_dim,
            use_linear_projection: cfg.use_linear_projection,
        };
        let te = vb.pp("time_embedding");
        let time_embedding = TimestepEmbedding {
            linear_1: linear(&te.pp("linear_1"), c0, temb_dim, true)?,
            linear_2: linear(&te.pp("linear_2"), temb_dim, temb_dim, true)?,
        };

        let mut down_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let layout = BlockLayout {
                layers: r.layers[i],
                cross_attention: r.down_cross[i],
                heads: r.heads[i],
                transformer_layers: r.transformer_layers[i],
                resample: i + 1 < n,
            };
            let c_in = if i == 0 { c0 } else { ch[i - 1] };
            down_blocks.push(DownBlock::load(&vb.pp("down_blocks").pp(i), c_in, ch[i], &layout, &bc)?);
        }
        let mid_block =
            MidBlock::load(&vb.pp("mid_block"), ch[n - 1], r.heads[n - 1], r.transformer_layers[n - 1], &bc)?;

        let mut up_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let level = n - 1 - i; // the down block this up block mirrors
            let layout = BlockLayout {
                layers: r.layers[level] + 1,
                cross_attention: r.up_cross[i],
                heads: r.heads[level],
                transformer_layers: r.transformer_layers[level],
                resample: i + 1 < n,
            };
            let c_prev = ch[(level + 1).min(n - 1)];
            let c_skip_last = ch[level.saturating_sub(1)];
            up_blocks.push(UpBlock::load(&vb.pp("up_blocks").pp(i), c_prev, c_skip_last, ch[level], &layout, &bc)?);
        }

        Ok(Self {
            time_embedding,
            conv_in: conv2d(&vb.pp("conv_in"), cfg.in_channels, c0, 3, 1, 1)?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(&vb.pp("conv_norm_out"), cfg.norm_num_groups, c0, cfg.norm_eps)?,
            conv_out: conv2d(&vb.pp("conv_out"), c0, cfg.out_channels, 3, 1, 1)?,
            in_channels: cfg.in_channels,
            cross_attention_dim: cfg.cross_attention_dim,
            time_proj_dim: c0,
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
            center_input_sample: cfg.center_input_sample,
        })
    }

    /// Predict the noise.
    ///
    /// - `sample`: `[b, in_channels, h, w]` noisy latents (for InstructPix2Pix the
    ///   noisy latent and the source-image latent concatenated on channels);
    /// - `timesteps`: `[b]`, or `[1]` for one timestep shared by the batch;
    /// - `encoder_hidden_states`: `[b, seq, cross_attention_dim]`.
    ///
    /// Returns `[b, out_channels, h, w]`.
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: Tensor<1>,
        encoder_hidden_states: Tensor<3>,
    ) -> Result<Tensor<4>> {
        let [b, c, h, w] = sample.dims();
        if c != self.in_channels || h == 0 || w == 0 {
            return Err(Error::input(
                "sample",
                format!("shape {:?}, expected [batch, {}, height, width]", sample.dims(), self.in_channels),
            ));
        }
        let [be, seq, d] = encoder_hidden_states.dims();
        if be != b || d != self.cross_attention_dim || seq == 0 {
            return Err(Error::input(
                "encoder_hidden_states",
                format!("shape {:?}, expected [{b}, seq, {}]", encoder_hidden_states.dims(), self.cross_attention_dim),
            ));
        }
        let timesteps = match timesteps.dims()[0] {
            n if n == b => timesteps,
            1 => timesteps.expand([b]),
            n => {
                return Err(Error::input("timesteps", format!("{n} timesteps for a batch of {b}")));
            }
        };
        let sample = if self.center_input_sample { sample.mul_scalar(2.0).sub_scalar(1.0) } else { sample };

        let temb = self.time_embedding.forward(timestep_embedding(
            timesteps,
            self.time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
        ));
        let mut x = crate::kernels::conv2d(&self.conv_in, sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(x, temb.clone(), encoder_hidden_states.clone(), &mut skips);
        }
        x = self.mid_block.forward(x, temb.clone(), encoder_hidden_states.clone());
        for block in &self.up_blocks {
            // The upsampler targets the size of the skip the next block starts with,
            // which is 2× except for odd latent sizes.
            let next = skips.len().checked_sub(block.resnets.len() + 1).and_then(|i| skips.get(i));
            let up_size = next.map(|s| {
                let [_, _, sh, sw] = s.dims();
                [sh, sw]
            });
            x = block.forward(x, temb.clone(), encoder_hidden_states.clone(), &mut skips, up_size);
        }
        Ok(crate::kernels::conv2d(&self.conv_out, crate::kernels::group_norm_silu(&self.conv_norm_out, x, true)))
    }

    /// This UNet made an InstructPix2Pix one: `conv_in` also reads a source
    /// image's latents, through `image_weight` (`[c_out, c_img, k, k]`; zeros, as
    /// InstructPix2Pix initialises it, keep every prediction as it was). The
    /// config's `in_channels` becomes [`Self::in_channels`] after this.
    pub fn with_image_input(mut self, image_weight: Tensor<4>) -> Result<Self> {
        let w = self.conv_in.weight.val();
        let [o, _, k, k2] = w.dims();
        let [oi, ci, ki, ki2] = image_weight.dims();
        if (oi, ki, ki2) != (o, k, k2) || ci == 0 {
            return Err(Error::input(
                "image_weight",
                format!("shape {:?}, expected [{o}, image channels, {k}, {k2}]", image_weight.dims()),
            ));
        }
        self.conv_in.weight = burn::module::Param::from_tensor(Tensor::cat(vec![w, image_weight], 1));
        self.in_channels += ci;
        Ok(self)
    }

    /// [`forward`](Self::forward) with one scalar timestep for the whole batch.
    pub fn forward_at(&self, sample: Tensor<4>, timestep: f32, encoder_hidden_states: Tensor<3>) -> Result<Tensor<4>> {
        let t = Tensor::from_data(TensorData::new(vec![timestep], [1]), &sample.device());
        self.forward(sample, t, encoder_hidden_states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn timestep_embedding_layout() {
        let device = Device::flex();
        let t = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 2.0], [2]), &device);
        // dim 4: freqs [1, 10000^(-1/2)] with freq_shift 0.
        let emb: Vec<f32> = timestep_embedding(t.clone(), 4, false, 0.0).into_data().try_to_vec::<f32>().expect("f32");
        let f1 = 0.01f32;
        let want = [0.0, 0.0, 1.0, 1.0, 2f32.sin(), (2.0 * f1).sin(), 2f32.cos(), (2.0 * f1).cos()];
        for (a, b) in emb.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{emb:?} vs {want:?}");
        }
        let flipped: Vec<f32> = timestep_embedding(t, 5, true, 0.0).into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(flipped.len(), 10);
        assert!((flipped[0] - 1.0).abs() < 1e-6 && flipped[2].abs() < 1e-6 && flipped[4] == 0.0, "{flipped:?}");
    }

    #[test]
    fn per_block_lists_must_match_the_block_count() {
        let err = UNet2DConditionConfig::from_json(r#"{"attention_head_dim": [8, 8]}"#).expect_err("length");
        assert!(err.to_string().contains("attention_head_dim"), "{err}");
    }
}
