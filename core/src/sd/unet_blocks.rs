//! The convolutional blocks of the Stable Diffusion UNet, named as diffusers
//! names them: `ResnetBlock2D`, `Downsample2D`, `Upsample2D`, and the down /
//! mid / up blocks that chain them with the spatial transformers.

use crate::error::Result;
use crate::kernels::group_norm_silu;
use crate::nn::{conv2d, group_norm, linear};
use crate::sd::attention::{Transformer2DConfig, Transformer2DModel};
use crate::weights::VarBuilder;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

/// Norms, activations and sizes shared by every block of one UNet.
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    /// GroupNorm groups of resnets and transformers.
    pub groups: usize,
    /// GroupNorm epsilon of the resnets.
    pub eps: f64,
    /// Width of the time embedding fed to every resnet.
    pub temb_dim: usize,
    /// Width of the encoder hidden states the transformers attend to.
    pub context_dim: usize,
    /// Linear (true) or 1×1-conv (false) transformer projections.
    pub use_linear_projection: bool,
}

/// `GroupNorm → SiLU → conv1 (+ time_emb_proj(SiLU(temb))) → GroupNorm → SiLU →
/// conv2`, added to the input (through a 1×1 `conv_shortcut` when widths differ).
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Linear,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn load(vb: &VarBuilder, c_in: usize, c_out: usize, cfg: &BlockConfig) -> Result<Self> {
        let conv_shortcut =
            if c_in != c_out { Some(conv2d(&vb.pp("conv_shortcut"), c_in, c_out, 1, 1, 0)?) } else { None };
        Ok(Self {
            norm1: group_norm(&vb.pp("norm1"), cfg.groups, c_in, cfg.eps)?,
            conv1: conv2d(&vb.pp("conv1"), c_in, c_out, 3, 1, 1)?,
            time_emb_proj: linear(&vb.pp("time_emb_proj"), cfg.temb_dim, c_out, true)?,
            norm2: group_norm(&vb.pp("norm2"), cfg.groups, c_out, cfg.eps)?,
            conv2: conv2d(&vb.pp("conv2"), c_out, c_out, 3, 1, 1)?,
            conv_shortcut,
        })
    }

    /// `x`: `[b, c_in, h, w]`, `temb`: `[b, temb_dim]` → `[b, c_out, h, w]`.
    pub fn forward(&self, x: Tensor<4>, temb: Tensor<2>) -> Tensor<4> {
        let h = crate::kernels::conv2d(&self.conv1, group_norm_silu(&self.norm1, x.clone(), true));
        let [b, c, _, _] = h.dims();
        let t = crate::kernels::linear(&self.time_emb_proj, silu(temb)).reshape([b, c, 1, 1]);
        let h = crate::kernels::conv2d(&self.conv2, group_norm_silu(&self.norm2, h.add(t), true));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => crate::kernels::conv2d(conv, x),
            None => x,
        };
        shortcut.add(h)
    }
}

/// `downsamplers.0`: a 3×3 convolution with stride 2 and padding 1.
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    pub fn load(vb: &VarBuilder, c: usize) -> Result<Self> {
        Ok(Self { conv: conv2d(&vb.pp("conv"), c, c, 3, 2, 1)? })
    }

    /// `[b, c, h, w]` → `[b, c, ⌈h/2⌉, ⌈w/2⌉]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::kernels::conv2d(&self.conv, x)
    }
}

/// `upsamplers.0`: nearest-neighbour upsampling, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn load(vb: &VarBuilder, c: usize) -> Result<Self> {
        Ok(Self { conv: conv2d(&vb.pp("conv"), c, c, 3, 1, 1)? })
    }

    /// `[b, c, h, w]` → `[b, c, size[0], size[1]]`; `size` is twice the input except
    /// where the matching skip connection of an odd-sized latent is smaller.
    pub fn forward(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let up = if size == [2 * h, 2 * w] {
            // Exact 2× nearest: repeat every pixel into a 2×2 patch.
            x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w])
        } else {
            interpolate(x, InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size))
        };
        crate::kernels::conv2d(&self.conv, up)
    }
}

/// `CrossAttnDownBlock2D` (with `attentions`) or `DownBlock2D` (without).
#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsampler: Option<Downsample2D>,
}

/// Layout of one down or up block.
#[derive(Debug, Clone, Copy)]
pub struct BlockLayout {
    /// Resnets (and transformers, when `cross_attention`) in the block.
    pub layers: usize,
    /// Whether the block has spatial transformers.
    pub cross_attention: bool,
    /// Attention heads of the transformers.
    pub heads: usize,
    /// Transformer blocks per spatial transformer.
    pub transformer_layers: usize,
    /// Whether the block ends in a down/up-sampler.
    pub resample: bool,
}

fn transformer_config(c: usize, layout: &BlockLayout, cfg: &BlockConfig) -> Transformer2DConfig {
    Transformer2DConfig {
        channels: c,
        heads: layout.heads,
        layers: layout.transformer_layers,
        context_dim: cfg.context_dim,
        groups: cfg.groups,
        use_linear_projection: cfg.use_linear_projection,
    }
}

impl DownBlock {
    pub fn load(vb: &VarBuilder, c_in: usize, c_out: usize, layout: &BlockLayout, cfg: &BlockConfig) -> Result<Self> {
        let resnets = (0..layout.layers)
            .map(|i| ResnetBlock2D::load(&vb.pp("resnets").pp(i), if i == 0 { c_in } else { c_out }, c_out, cfg))
            .collect::<Result<Vec<_>>>()?;
        let attentions = if layout.cross_attention {
            let tcfg = transformer_config(c_out, layout, cfg);
            (0..layout.layers)
                .map(|i| Transformer2DModel::load(&vb.pp("attentions").pp(i), &tcfg))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let downsampler =
            if layout.resample { Some(Downsample2D::load(&vb.pp("downsamplers").pp(0), c_out)?) } else { None };
        Ok(Self { resnets, attentions, downsampler })
    }

    /// `x`: `[b, c_in, h, w]` → the block output and every intermediate state the
    /// up path consumes as skip connections (one per resnet, plus the downsampled map).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: Tensor<2>,
        context: Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x, context.clone());
            }
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsampler {
            x = down.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs.
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
}

impl MidBlock {
    /// One transformer (`layers = 1`, as in every SD UNet).
    pub fn load(vb: &VarBuilder, c: usize, heads: usize, transformer_layers: usize, cfg: &BlockConfig) -> Result<Self> {
        let layout = BlockLayout { layers: 1, cross_attention: true, heads, transformer_layers, resample: false };
        let tcfg = transformer_config(c, &layout, cfg);
        let resnets =
            (0..2).map(|i| ResnetBlock2D::load(&vb.pp("resnets").pp(i), c, c, cfg)).collect::<Result<Vec<_>>>()?;
        let attentions = vec![Transformer2DModel::load(&vb.pp("attentions").pp(0), &tcfg)?];
        Ok(Self { resnets, attentions })
    }

    /// `[b, c, h, w]` → `[b, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>, temb: Tensor<2>, context: Tensor<3>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, temb.clone());
        for (attn, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = resnet.forward(attn.forward(x, context.clone()), temb.clone());
        }
        x
    }
}

/// `CrossAttnUpBlock2D` (with `attentions`) or `UpBlock2D` (without): each resnet
/// takes the running map concatenated with one skip connection.
#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub upsampler: Option<Upsample2D>,
}

impl UpBlock {
    /// `c_prev`: width coming from below; `c_skip_last`: width of the skip the
    /// last resnet takes (the input width of the matching down block); `c_out`:
    /// this block's width.
    pub fn load(
        vb: &VarBuilder,
        c_prev: usize,
        c_skip_last: usize,
        c_out: usize,
        layout: &BlockLayout,
        cfg: &BlockConfig,
    ) -> Result<Self> {
        let n = layout.layers;
        let resnets = (0..n)
            .map(|i| {
                let c_skip = if i == n - 1 { c_skip_last } else { c_out };
                let c_in = if i == 0 { c_prev } else { c_out };
                ResnetBlock2D::load(&vb.pp("resnets").pp(i), c_in + c_skip, c_out, cfg)
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = if layout.cross_attention {
            let tcfg = transformer_config(c_out, layout, cfg);
            (0..n).map(|i| Transformer2DModel::load(&vb.pp("attentions").pp(i), &tcfg)).collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let upsampler = if layout.resample { Some(Upsample2D::load(&vb.pp("upsamplers").pp(0), c_out)?) } else { None };
        Ok(Self { resnets, attentions, upsampler })
    }

    /// `x`: `[b, c_prev, h, w]`; pops one skip per resnet from `skips`, then
    /// upsamples to `up_size` (the spatial size of the next skip) when the block has an upsampler.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: Tensor<2>,
        context: Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
        up_size: Option<[usize; 2]>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            if let Some(skip) = skips.pop() {
                x = Tensor::cat(vec![x, skip], 1);
            }
            x = resnet.forward(x, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x, context.clone());
            }
        }
        if let Some(up) = &self.upsampler {
            let [_, _, h, w] = x.dims();
            x = up.forward(x, up_size.unwrap_or([2 * h, 2 * w]));
        }
        x
    }
}
