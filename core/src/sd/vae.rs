//! The Stable Diffusion VAE: diffusers' `AutoencoderKL` with `DownEncoderBlock2D`
//! / `UpDecoderBlock2D` blocks. Images in `[-1, 1]` are encoded to a diagonal
//! Gaussian over latents at 1/2^(n-1) resolution, and latents decoded back.
//!
//! The latents the UNet sees are `scaling_factor * (z - shift_factor)`; this
//! module works on *unscaled* latents and leaves that scaling to the caller
//! (see [`AutoencoderKLConfig::scaling_factor`]).

use crate::error::{Error, Result};
use crate::nn::{Activation, conv2d, group_norm, linear};
use crate::weights::VarBuilder;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::ops::PadMode;

/// The epsilon every VAE norm uses (diffusers hard-codes `1e-6`).
const NORM_EPS: f64 = 1e-6;

/// `vae/config.json` of a diffusers `AutoencoderKL`. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct AutoencoderKLConfig {
    /// Image channels in (3 for RGB).
    #[serde(default = "defaults::three")]
    pub in_channels: usize,
    /// Image channels out (3 for RGB).
    #[serde(default = "defaults::three")]
    pub out_channels: usize,
    /// Encoder block kinds; only `DownEncoderBlock2D` exists for this VAE.
    #[serde(default = "defaults::down_blocks")]
    pub down_block_types: Vec<String>,
    /// Decoder block kinds; only `UpDecoderBlock2D` exists for this VAE.
    #[serde(default = "defaults::up_blocks")]
    pub up_block_types: Vec<String>,
    /// Channels of each encoder block (the decoder uses them reversed).
    #[serde(default = "defaults::block_out_channels")]
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block; decoder blocks have one more.
    #[serde(default = "defaults::one")]
    pub layers_per_block: usize,
    /// Activation inside the resnets (the conv-out activation is always SiLU).
    #[serde(default = "defaults::silu")]
    pub act_fn: Activation,
    /// Channels of the latent `z`.
    #[serde(default = "defaults::four")]
    pub latent_channels: usize,
    /// Groups of every group norm.
    #[serde(default = "defaults::thirty_two")]
    pub norm_num_groups: usize,
    /// Image size the VAE was trained at (informational).
    #[serde(default = "defaults::thirty_two")]
    pub sample_size: usize,
    /// Multiply `z` by this before the UNet and divide by it before [`AutoencoderKL::decode`]
    /// (0.18215 for SD 1.x/2.x). Not applied by this module.
    #[serde(default = "defaults::scaling_factor")]
    pub scaling_factor: f64,
    /// Subtracted from `z` before scaling (SD3/Flux VAEs); `None` for SD 1.x. Not applied here.
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// Whether the 1×1 `quant_conv` follows the encoder.
    #[serde(default = "defaults::yes")]
    pub use_quant_conv: bool,
    /// Whether the 1×1 `post_quant_conv` precedes the decoder.
    #[serde(default = "defaults::yes")]
    pub use_post_quant_conv: bool,
    /// Whether the mid blocks hold a self-attention layer.
    #[serde(default = "defaults::yes")]
    pub mid_block_add_attention: bool,
}

mod defaults {
    use crate::nn::Activation;
    pub fn one() -> usize {
        1
    }
    pub fn three() -> usize {
        3
    }
    pub fn four() -> usize {
        4
    }
    pub fn thirty_two() -> usize {
        32
    }
    pub fn yes() -> bool {
        true
    }
    pub fn silu() -> Activation {
        Activation::Silu
    }
    pub fn scaling_factor() -> f64 {
        0.18215
    }
    pub fn block_out_channels() -> Vec<usize> {
        vec![64]
    }
    pub fn down_blocks() -> Vec<String> {
        vec!["DownEncoderBlock2D".into()]
    }
    pub fn up_blocks() -> Vec<String> {
        vec!["UpDecoderBlock2D".into()]
    }
}

impl AutoencoderKLConfig {
    /// Parse and check `vae/config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(json).map_err(|e| Error::config("vae/config.json", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the fields this implementation relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::config("vae/config.json", why));
        let n = self.block_out_channels.len();
        if n == 0 {
            return bad("block_out_channels is empty".into());
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "{} down and {} up block types for {n} block_out_channels",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        if let Some(t) = self.down_block_types.iter().find(|t| *t != "DownEncoderBlock2D") {
            return bad(format!("unsupported down block type `{t}` (only DownEncoderBlock2D)"));
        }
        if let Some(t) = self.up_block_types.iter().find(|t| *t != "UpDecoderBlock2D") {
            return bad(format!("unsupported up block type `{t}` (only UpDecoderBlock2D)"));
        }
        let g = self.norm_num_groups;
        if g == 0 || self.block_out_channels.iter().any(|c| *c == 0 || c % g != 0) {
            return bad(format!(
                "block_out_channels {:?} not divisible by norm_num_groups {g}",
                self.block_out_channels
            ));
        }
        if self.layers_per_block == 0 || self.latent_channels == 0 || self.in_channels == 0 || self.out_channels == 0 {
            return bad("layers_per_block, latent_channels, in_channels and out_channels must be positive".into());
        }
        Ok(())
    }
}

/// A diagonal Gaussian over latents, what [`AutoencoderKL::encode`] returns
/// (diffusers' `DiagonalGaussianDistribution`). Both tensors are `[b, latent, h, w]`.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    /// Mean of the distribution.
    pub mean: Tensor<4>,
    /// Log-variance, clamped to `[-30, 20]` as diffusers does.
    pub logvar: Tensor<4>,
}

impl DiagonalGaussian {
    /// The most likely latent (the mean).
    pub fn mode(&self) -> Tensor<4> {
        self.mean.clone()
    }

    /// Standard deviation `exp(logvar / 2)`.
    pub fn std(&self) -> Tensor<4> {
        self.logvar.clone().mul_scalar(0.5).exp()
    }

    /// `mean + std * noise`, with `noise` standard normal of the same shape.
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone().add(self.std().mul(noise))
    }
}

/// diffusers `ResnetBlock2D` without time embedding:
/// `shortcut(x) + conv2(act(norm2(conv1(act(norm1(x))))))`.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    /// 1×1 projection when the channel count changes.
    pub conv_shortcut: Option<Conv2d>,
    #[module(skip)]
    pub act: Activation,
}

impl ResnetBlock2D {
    /// Load `{prefix}.norm1`, `conv1`, `norm2`, `conv2` and, when `c_in != c_out`, `conv_shortcut`.
    pub fn load(vb: &VarBuilder, c_in: usize, c_out: usize, groups: usize, act: Activation) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(&vb.pp("norm1"), groups, c_in, NORM_EPS)?,
            conv1: conv2d(&vb.pp("conv1"), c_in, c_out, 3, 1, 1)?,
            norm2: group_norm(&vb.pp("norm2"), groups, c_out, NORM_EPS)?,
            conv2: conv2d(&vb.pp("conv2"), c_out, c_out, 3, 1, 1)?,
            conv_shortcut: if c_in != c_out {
                Some(conv2d(&vb.pp("conv_shortcut"), c_in, c_out, 1, 1, 0)?)
            } else {
                None
            },
            act,
        })
    }

    /// `x`: `[b, c_in, h, w]` → `[b, c_out, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(self.act.forward(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(self.act.forward(self.norm2.forward(h)));
        let x = match &self.conv_shortcut {
            Some(c) => c.forward(x),
            None => x,
        };
        x.add(h)
    }
}

/// Single-head self-attention over the spatial positions, with a group norm
/// in front and a residual around it (diffusers `Attention` as the VAE builds it).
#[derive(Module, Debug)]
pub struct SpatialAttention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// Checkpoint key `to_out.0` (`to_out.1` is a dropout).
    pub to_out: Linear,
}

impl SpatialAttention {
    /// Load `{prefix}.group_norm`, `to_q`, `to_k`, `to_v`, `to_out.0`.
    pub fn load(vb: &VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            group_norm: group_norm(&vb.pp("group_norm"), groups, channels, NORM_EPS)?,
            to_q: linear(&vb.pp("to_q"), channels, channels, true)?,
            to_k: linear(&vb.pp("to_k"), channels, channels, true)?,
            to_v: linear(&vb.pp("to_v"), channels, channels, true)?,
            to_out: linear(&vb.pp("to_out").pp(0), channels, channels, true)?,
        })
    }

    /// `x`: `[b, c, h, w]` → `[b, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        // [b, c, h, w] -> [b, h*w, c]: one token per pixel.
        let t = self.group_norm.forward(x.clone()).reshape([b, c, h * w]).swap_dims(1, 2);
        let q = self.to_q.forward(t.clone());
        let k = self.to_k.forward(t.clone());
        let v = self.to_v.forward(t);
        let scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(1.0 / (c as f64).sqrt());
        let out = self.to_out.forward(softmax(scores, 2).matmul(v));
        out.swap_dims(1, 2).reshape([b, c, h, w]).add(x)
    }
}

/// diffusers `UNetMidBlock2D` without time embedding: resnet, then (attention, resnet) pairs.
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<SpatialAttention>,
}

impl MidBlock {
    /// Load `{prefix}.resnets.{0,1}` and, with `attention`, `{prefix}.attentions.0`.
    pub fn load(vb: &VarBuilder, channels: usize, cfg: &AutoencoderKLConfig) -> Result<Self> {
        let (g, act) = (cfg.norm_num_groups, cfg.act_fn);
        let resnets = (0..2)
            .map(|i| ResnetBlock2D::load(&vb.pp("resnets").pp(i), channels, channels, g, act))
            .collect::<Result<Vec<_>>>()?;
        let attentions = if cfg.mid_block_add_attention {
            vec![SpatialAttention::load(&vb.pp("attentions").pp(0), channels, g)?]
        } else {
            Vec::new()
        };
        Ok(Self { resnets, attentions })
    }

    /// `x`: `[b, c, h, w]` → `[b, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut resnets = self.resnets.iter();
        let mut x = match resnets.next() {
            Some(first) => first.forward(x),
            None => x,
        };
        // Attention `i` sits between resnets `i` and `i + 1`.
        for (i, resnet) in resnets.enumerate() {
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x);
            }
            x = resnet.forward(x);
        }
        x
    }
}

/// diffusers `Downsample2D` as the VAE uses it: pad right and bottom by one, then a
/// stride-2 3×3 convolution without padding.
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    /// `x`: `[b, c, h, w]` → `[b, c, ceil(h/2), ceil(w/2)]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // (left, right, top, bottom)
        self.conv.forward(x.pad((0, 1, 0, 1), PadMode::Constant(0.0)))
    }
}

/// diffusers `Upsample2D`: nearest-neighbour ×2, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    /// `x`: `[b, c, h, w]` → `[b, c, 2h, 2w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let x: Tensor<6> = x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]);
        self.conv.forward(x.reshape([b, c, 2 * h, 2 * w]))
    }
}

/// diffusers `DownEncoderBlock2D`: resnets, then an optional downsampler.
#[derive(Module, Debug)]
pub struct DownEncoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty for the last block; one entry (`downsamplers.0`) otherwise.
    pub downsamplers: Vec<Downsample2D>,
}

/// diffusers `UpDecoderBlock2D`: resnets, then an optional upsampler.
#[derive(Module, Debug)]
pub struct UpDecoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty for the last block; one entry (`upsamplers.0`) otherwise.
    pub upsamplers: Vec<Upsample2D>,
}

fn resnets(
    vb: &VarBuilder,
    n: usize,
    c_in: usize,
    c_out: usize,
    cfg: &AutoencoderKLConfig,
) -> Result<Vec<ResnetBlock2D>> {
    (0..n)
        .map(|i| {
            let c = if i == 0 { c_in } else { c_out };
            ResnetBlock2D::load(&vb.pp("resnets").pp(i), c, c_out, cfg.norm_num_groups, cfg.act_fn)
        })
        .collect()
}

/// The VAE encoder: image → Gaussian moments `[b, 2 * latent, h', w']`.
#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock2D>,
    pub mid_block: MidBlock,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    /// Load from `encoder.*`.
    pub fn load(cfg: &AutoencoderKLConfig, vb: &VarBuilder) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let last = ch.len() - 1;
        let mut down_blocks = Vec::with_capacity(ch.len());
        for (i, &c_out) in ch.iter().enumerate() {
            let c_in = if i == 0 { ch[0] } else { ch[i - 1] };
            let vb = vb.pp("down_blocks").pp(i);
            let downsamplers = if i < last {
                vec![Downsample2D { conv: conv2d(&vb.pp("downsamplers").pp(0).pp("conv"), c_out, c_out, 3, 2, 0)? }]
            } else {
                Vec::new()
            };
            down_blocks.push(DownEncoderBlock2D {
                resnets: resnets(&vb, cfg.layers_per_block, c_in, c_out, cfg)?,
                downsamplers,
            });
        }
        Ok(Self {
            conv_in: conv2d(&vb.pp("conv_in"), cfg.in_channels, ch[0], 3, 1, 1)?,
            down_blocks,
            mid_block: MidBlock::load(&vb.pp("mid_block"), ch[last], cfg)?,
            conv_norm_out: group_norm(&vb.pp("conv_norm_out"), cfg.norm_num_groups, ch[last], NORM_EPS)?,
            conv_out: conv2d(&vb.pp("conv_out"), ch[last], 2 * cfg.latent_channels, 3, 1, 1)?,
        })
    }

    /// `x`: `[b, in_channels, H, W]` → `[b, 2 * latent, H / 2^(n-1), W / 2^(n-1)]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv_in.forward(x);
        for block in &self.down_blocks {
            for r in &block.resnets {
                x = r.forward(x);
            }
            for d in &block.downsamplers {
                x = d.forward(x);
            }
        }
        let x = self.mid_block.forward(x);
        self.conv_out.forward(silu(self.conv_norm_out.forward(x)))
    }
}

/// The VAE decoder: latent → image.
#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpDecoderBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    /// Load from `decoder.*`.
    pub fn load(cfg: &AutoencoderKLConfig, vb: &VarBuilder) -> Result<Self> {
        let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let last = rev.len() - 1;
        let mut up_blocks = Vec::with_capacity(rev.len());
        for (i, &c_out) in rev.iter().enumerate() {
            let c_in = if i == 0 { rev[0] } else { rev[i - 1] };
            let vb = vb.pp("up_blocks").pp(i);
            let upsamplers = if i < last {
                vec![Upsample2D { conv: conv2d(&vb.pp("upsamplers").pp(0).pp("conv"), c_out, c_out, 3, 1, 1)? }]
            } else {
                Vec::new()
            };
            up_blocks.push(UpDecoderBlock2D {
                resnets: resnets(&vb, cfg.layers_per_block + 1, c_in, c_out, cfg)?,
                upsamplers,
            });
        }
        Ok(Self {
            conv_in: conv2d(&vb.pp("conv_in"), cfg.latent_channels, rev[0], 3, 1, 1)?,
            mid_block: MidBlock::load(&vb.pp("mid_block"), rev[0], cfg)?,
            up_blocks,
            conv_norm_out: group_norm(&vb.pp("conv_norm_out"), cfg.norm_num_groups, rev[last], NORM_EPS)?,
            conv_out: conv2d(&vb.pp("conv_out"), rev[last], cfg.out_channels, 3, 1, 1)?,
        })
    }

    /// `z`: `[b, latent, h, w]` → `[b, out_channels, h * 2^(n-1), w * 2^(n-1)]`.
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut x = self.mid_block.forward(self.conv_in.forward(z));
        for block in &self.up_blocks {
            for r in &block.resnets {
                x = r.forward(x);
            }
            for u in &block.upsamplers {
                x = u.forward(x);
            }
        }
        self.conv_out.forward(silu(self.conv_norm_out.forward(x)))
    }
}

/// diffusers `AutoencoderKL`, keys exactly as in `diffusion_pytorch_model.safetensors`.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub decoder: Decoder,
    /// 1×1 conv on the moments (absent when `use_quant_conv` is false).
    pub quant_conv: Option<Conv2d>,
    /// 1×1 conv on the latent before decoding (absent when `use_post_quant_conv` is false).
    pub post_quant_conv: Option<Conv2d>,
    pub in_channels: usize,
    pub latent_channels: usize,
}

impl AutoencoderKL {
    /// Load every VAE tensor from `vb` (the root of the VAE checkpoint).
    pub fn load(cfg: &AutoencoderKLConfig, vb: &VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let l = cfg.latent_channels;
        Ok(Self {
            encoder: Encoder::load(cfg, &vb.pp("encoder"))?,
            decoder: Decoder::load(cfg, &vb.pp("decoder"))?,
            quant_conv: if cfg.use_quant_conv {
                Some(conv2d(&vb.pp("quant_conv"), 2 * l, 2 * l, 1, 1, 0)?)
            } else {
                None
            },
            post_quant_conv: if cfg.use_post_quant_conv {
                Some(conv2d(&vb.pp("post_quant_conv"), l, l, 1, 1, 0)?)
            } else {
                None
            },
            in_channels: cfg.in_channels,
            latent_channels: l,
        })
    }

    /// Encode images `x`: `[b, in_channels, H, W]` with values in `[-1, 1]` into the
    /// latent distribution over `[b, latent, H / 2^(n-1), W / 2^(n-1)]` (unscaled:
    /// multiply a sample by `scaling_factor` before handing it to the UNet).
    pub fn encode(&self, x: Tensor<4>) -> Result<DiagonalGaussian> {
        let c = x.dims()[1];
        if c != self.in_channels {
            return Err(Error::input("image", format!("{c} channels, the VAE takes {}", self.in_channels)));
        }
        let mut moments = self.encoder.forward(x);
        if let Some(q) = &self.quant_conv {
            moments = q.forward(moments);
        }
        let l = self.latent_channels;
        let mean = moments.clone().narrow(1, 0, l);
        let logvar = moments.narrow(1, l, l).clamp(-30.0, 20.0);
        Ok(DiagonalGaussian { mean, logvar })
    }

    /// Decode unscaled latents `z`: `[b, latent, h, w]` (divide the UNet's latents by
    /// `scaling_factor` first) into images `[b, out_channels, h * 2^(n-1), w * 2^(n-1)]`,
    /// roughly in `[-1, 1]`.
    pub fn decode(&self, z: Tensor<4>) -> Result<Tensor<4>> {
        let c = z.dims()[1];
        if c != self.latent_channels {
            return Err(Error::input("latent", format!("{c} channels, the VAE takes {}", self.latent_channels)));
        }
        let z = match &self.post_quant_conv {
            Some(p) => p.forward(z),
            None => z,
        };
        Ok(self.decoder.forward(z))
    }
}
