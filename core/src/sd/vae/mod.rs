//! The Stable Diffusion VAE: diffusers' `AutoencoderKL` with `DownEncoderBlock2D`
//! / `UpDecoderBlock2D` blocks. Images in `[-1, 1]` are encoded to a diagonal
//! Gaussian over latents at 1/2^(n-1) resolution, and latents decoded back.
//!
//! The latents the UNet sees are `scaling_factor * (z - shift_factor)`; this
//! module works on *unscaled* latents and leaves that scaling to the caller
//! (see [`AutoencoderKLConfig::scaling_factor`]).

mod blocks;
mod config;

pub use blocks::{
    DownEncoderBlock2D, Downsample2D, MidBlock, ResnetBlock2D, SpatialAttention, UpDecoderBlock2D, Upsample2D,
};
pub use config::AutoencoderKLConfig;

use crate::error::{Error, Result};
use crate::nn::{conv2d, group_norm};
use crate::weights::VarBuilder;
use blocks::{NORM_EPS, resnets};
use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

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
        let mut x = crate::kernels::conv2d(&self.conv_in, x);
        for block in &self.down_blocks {
            for r in &block.resnets {
                x = r.forward(x);
            }
            for d in &block.downsamplers {
                x = d.forward(x);
            }
        }
        let x = self.mid_block.forward(x);
        crate::kernels::conv2d(&self.conv_out, crate::kernels::group_norm_silu(&self.conv_norm_out, x, true))
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
        let mut x = self.mid_block.forward(crate::kernels::conv2d(&self.conv_in, z));
        for block in &self.up_blocks {
            for r in &block.resnets {
                x = r.forward(x);
            }
            for u in &block.upsamplers {
                x = u.forward(x);
            }
        }
        crate::kernels::conv2d(&self.conv_out, crate::kernels::group_norm_silu(&self.conv_norm_out, x, true))
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
