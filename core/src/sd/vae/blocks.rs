//! The building blocks of the VAE's encoder and decoder, named and computed as
//! in diffusers (`ResnetBlock2D`, the mid block's attention, down/upsamplers).

use super::config::AutoencoderKLConfig;
use crate::error::Result;
use crate::nn::{Activation, conv2d, group_norm, linear};
use crate::weights::VarBuilder;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

/// The epsilon every VAE norm uses (diffusers hard-codes `1e-6`).
pub const NORM_EPS: f64 = 1e-6;

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

    /// `act(norm(x))`, fused into one kernel for SiLU (see [`crate::kernels`]).
    fn norm_act(&self, norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
        match self.act {
            Activation::Silu => crate::kernels::group_norm_silu(norm, x, true),
            _ => self.act.forward(norm.forward(x)),
        }
    }

    /// `x`: `[b, c_in, h, w]` → `[b, c_out, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = crate::kernels::conv2d(&self.conv1, self.norm_act(&self.norm1, x.clone()));
        let h = crate::kernels::conv2d(&self.conv2, self.norm_act(&self.norm2, h));
        let x = match &self.conv_shortcut {
            Some(c) => crate::kernels::conv2d(c, x),
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
        let t =
            crate::kernels::group_norm_silu(&self.group_norm, x.clone(), false).reshape([b, c, h * w]).swap_dims(1, 2);
        let q = crate::kernels::linear(&self.to_q, t.clone());
        let k = crate::kernels::linear(&self.to_k, t.clone());
        let v = crate::kernels::linear(&self.to_v, t);
        // One head over every pixel, as the UNet's attention runs (the scale folded into
        // `shaders/softmax.wgsl` on wgpu; queries in chunks where all scores would outgrow a
        // WebGPU binding, e.g. 96×96 latents: 340 MB).
        let head = |t: Tensor<3>| t.unsqueeze_dim::<4>(1);
        let attended = crate::sd::attention::scaled_dot_product_attention(head(q), head(k), head(v));
        let out = crate::kernels::linear(&self.to_out, attended.squeeze_dim::<3>(1));
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
        crate::kernels::conv2d(&self.conv, x.pad((0, 1, 0, 1), PadMode::Constant(0.0)))
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
        crate::kernels::conv2d(&self.conv, x.reshape([b, c, 2 * h, 2 * w]))
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

/// `n` resnets under `{prefix}.resnets.*`: the first maps `c_in` to `c_out`, the rest keep `c_out`.
pub fn resnets(
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
