//! The attention side of the Stable Diffusion UNet, named as diffusers names it:
//! `Attention` (`to_q`, `to_k`, `to_v`, `to_out.0`), the GEGLU `FeedForward`
//! (`ff.net.0.proj`, `ff.net.2`), `BasicTransformerBlock` and the spatial
//! `Transformer2DModel` that wraps them between a GroupNorm and two projections.

use crate::error::Result;
use crate::kernels;
use crate::nn::{conv2d, group_norm, layer_norm, linear};
use crate::weights::VarBuilder;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, softmax};

/// Scaled dot-product attention, `softmax(q kᵀ / √d) v`, as plain tensor ops.
///
/// `q`: `[batch, heads, n_q, d]`, `k` and `v`: `[batch, heads, n_kv, d]`; returns
/// `[batch, heads, n_q, d]`. On wgpu with the WGSL kernels the softmax is
/// `shaders/softmax.wgsl` with the scale folded in ([`crate::kernels::softmax_scaled`]),
/// and the two matmuls go through [`crate::kernels::matmul`] (Burn's, or `shaders/matmul.wgsl`
/// on the adapters where that is faster).
///
/// Where the scores of all queries would exceed [`SCORES_MAX_BYTES`] (SD's first
/// self-attention at 64×64 latents: 2 × 8 heads × 4096² f32 is 1 GiB), the queries run in
/// chunks whose scores fit: each row's softmax still sees every key, so the result is
/// the same, and no buffer outgrows what a WebGPU adapter binds by default.
pub fn scaled_dot_product_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [b, h, nq, d] = q.dims();
    let nk = k.dims()[2];
    let row_bytes = b * h * nk * core::mem::size_of::<f32>();
    let chunk = (SCORES_MAX_BYTES / row_bytes.max(1)).max(1);
    let k_t = k.swap_dims(2, 3);
    let scale = 1.0 / (d as f32).sqrt();
    // With the WGSL kernels the scale folds into one fused softmax over the scores;
    // elsewhere scaling q (n × d) is cheaper than scaling the scores (n × n_kv).
    let fused = kernels::wgsl_active(&q.device());
    let attend = |q: Tensor<4>| match fused {
        true => kernels::matmul(kernels::softmax_scaled(kernels::matmul(q, k_t.clone()), scale), v.clone()),
        false => softmax(q.mul_scalar(scale).matmul(k_t.clone()), 3).matmul(v.clone()),
    };
    if chunk >= nq {
        return attend(q);
    }
    let parts = (0..nq).step_by(chunk).map(|start| attend(q.clone().narrow(2, start, chunk.min(nq - start))));
    Tensor::cat(parts.collect(), 2)
}

/// The largest attention-score tensor [`scaled_dot_product_attention`] builds at once:
/// WebGPU's default `maxStorageBufferBindingSize` (128 MiB).
pub const SCORES_MAX_BYTES: usize = 128 << 20;

/// diffusers `Attention` without biases on q/k/v (the UNet's setting).
#[derive(Module, Debug)]
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// `to_out.0` (`to_out.1` is dropout).
    pub to_out: Linear,
    pub heads: usize,
}

impl Attention {
    /// `query_dim` is the width of the queries and the output, `context_dim`
    /// that of the keys/values (`query_dim` for self-attention).
    pub fn load(vb: &VarBuilder, query_dim: usize, context_dim: usize, heads: usize, head_dim: usize) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: linear(&vb.pp("to_q"), query_dim, inner, false)?,
            to_k: linear(&vb.pp("to_k"), context_dim, inner, false)?,
            to_v: linear(&vb.pp("to_v"), context_dim, inner, false)?,
            to_out: linear(&vb.pp("to_out").pp(0), inner, query_dim, true)?,
            heads,
        })
    }

    /// `x`: `[batch, n, query_dim]`, `context`: `[batch, m, context_dim]`
    /// (`None` = self-attention) → `[batch, n, query_dim]`.
    pub fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>) -> Tensor<3> {
        let context = context.unwrap_or_else(|| x.clone());
        let q = self.split_heads(kernels::linear(&self.to_q, x));
        let k = self.split_heads(kernels::linear(&self.to_k, context.clone()));
        let v = self.split_heads(kernels::linear(&self.to_v, context));
        let [b, h, n, d] = q.dims();
        let out = scaled_dot_product_attention(q, k, v).swap_dims(1, 2).reshape([b, n, h * d]);
        kernels::linear(&self.to_out, out)
    }

    /// `[b, n, heads * d]` → `[b, heads, n, d]`.
    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, inner] = x.dims();
        x.reshape([b, n, self.heads, inner / self.heads]).swap_dims(1, 2)
    }
}

/// `FeedForward` with the GEGLU activation: `net.2(h * gelu(gate))` where
/// `[h, gate] = net.0.proj(x)` split in halves.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `net.0.proj`: `dim → 2 · inner`.
    pub proj_in: Linear,
    /// `net.2`: `inner → dim`.
    pub proj_out: Linear,
}

impl FeedForward {
    /// diffusers' default `mult = 4`: `inner = 4 · dim`.
    pub fn load(vb: &VarBuilder, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj_in: linear(&vb.pp("net").pp(0).pp("proj"), dim, 2 * inner, true)?,
            proj_out: linear(&vb.pp("net").pp(2), inner, dim, true)?,
        })
    }

    /// `[b, n, dim]` → `[b, n, dim]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = kernels::linear(&self.proj_in, x);
        let inner = y.dims()[2] / 2;
        let (h, gate) = (y.clone().narrow(2, 0, inner), y.narrow(2, inner, inner));
        kernels::linear(&self.proj_out, h.mul(gelu(gate)))
    }
}

/// Self-attention, cross-attention and GEGLU feed-forward, each pre-LayerNorm
/// with a residual.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    /// `dim = heads · head_dim`; keys/values of `attn2` come from `context_dim`.
    pub fn load(vb: &VarBuilder, dim: usize, heads: usize, head_dim: usize, context_dim: usize) -> Result<Self> {
        Ok(Self {
            norm1: layer_norm(&vb.pp("norm1"), dim, 1e-5)?,
            attn1: Attention::load(&vb.pp("attn1"), dim, dim, heads, head_dim)?,
            norm2: layer_norm(&vb.pp("norm2"), dim, 1e-5)?,
            attn2: Attention::load(&vb.pp("attn2"), dim, context_dim, heads, head_dim)?,
            norm3: layer_norm(&vb.pp("norm3"), dim, 1e-5)?,
            ff: FeedForward::load(&vb.pp("ff"), dim)?,
        })
    }

    /// `x`: `[b, n, dim]`, `context`: `[b, m, context_dim]` → `[b, n, dim]`.
    pub fn forward(&self, x: Tensor<3>, context: Tensor<3>) -> Tensor<3> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None).add(x);
        let x = self.attn2.forward(self.norm2.forward(x.clone()), Some(context)).add(x);
        self.ff.forward(self.norm3.forward(x.clone())).add(x)
    }
}

/// `proj_in` / `proj_out` of a [`Transformer2DModel`]: a 1×1 convolution on the
/// feature map (SD 1.x) or a linear layer on the flattened tokens (SD 2.x,
/// `use_linear_projection`).
#[derive(Module, Debug)]
pub enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

impl Projection {
    fn load(vb: &VarBuilder, d_in: usize, d_out: usize, use_linear: bool) -> Result<Self> {
        Ok(if use_linear {
            Self::Linear(linear(vb, d_in, d_out, true)?)
        } else {
            Self::Conv(conv2d(vb, d_in, d_out, 1, 1, 0)?)
        })
    }
}

/// The spatial transformer: GroupNorm, `proj_in`, `transformer_blocks`,
/// `proj_out`, plus the input as residual.
#[derive(Module, Debug)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
}

/// What a [`Transformer2DModel`] needs beyond its weights.
#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    /// Channels in and out (`= heads · head_dim`).
    pub channels: usize,
    pub heads: usize,
    pub layers: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub use_linear_projection: bool,
}

impl Transformer2DModel {
    pub fn load(vb: &VarBuilder, cfg: &Transformer2DConfig) -> Result<Self> {
        let c = cfg.channels;
        let head_dim = c / cfg.heads;
        let transformer_blocks = (0..cfg.layers)
            .map(|i| {
                BasicTransformerBlock::load(&vb.pp("transformer_blocks").pp(i), c, cfg.heads, head_dim, cfg.context_dim)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: group_norm(&vb.pp("norm"), cfg.groups, c, 1e-6)?,
            proj_in: Projection::load(&vb.pp("proj_in"), c, c, cfg.use_linear_projection)?,
            transformer_blocks,
            proj_out: Projection::load(&vb.pp("proj_out"), c, c, cfg.use_linear_projection)?,
        })
    }

    /// `x`: `[b, c, h, w]`, `context`: `[b, m, context_dim]` → `[b, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>, context: Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let to_tokens = |t: Tensor<4>| t.reshape([b, c, h * w]).swap_dims(1, 2);
        let norm = crate::kernels::group_norm_silu(&self.norm, x.clone(), false);
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(crate::kernels::conv2d(conv, norm)),
            Projection::Linear(lin) => kernels::linear(lin, to_tokens(norm)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context.clone());
        }
        let to_map = |t: Tensor<3>| t.swap_dims(1, 2).reshape([b, c, h, w]);
        let out = match &self.proj_out {
            Projection::Conv(conv) => crate::kernels::conv2d(conv, to_map(tokens)),
            Projection::Linear(lin) => to_map(kernels::linear(lin, tokens)),
        };
        out.add(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn chunked_attention_equals_one_pass() {
        // 4096 queries × 8193 keys of f32 scores is 128 MiB + 128 KiB: two chunks.
        let device = Device::flex();
        let q = Tensor::<4>::random([1, 1, 4096, 8], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<4>::random([1, 1, 8193, 8], Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<4>::random([1, 1, 8193, 8], Distribution::Normal(0.0, 1.0), &device);
        const { assert!(4096 * 8193 * 4 > SCORES_MAX_BYTES) };
        let chunked = scaled_dot_product_attention(q.clone(), k.clone(), v.clone());
        let scores = q.mul_scalar(1.0 / 8f64.sqrt()).matmul(k.swap_dims(2, 3));
        let whole = softmax(scores, 3).matmul(v);
        assert_eq!(chunked.dims(), [1, 1, 4096, 8]);
        let diff: f32 = chunked.sub(whole).abs().max().into_scalar();
        assert!(diff <= 1e-6, "chunked vs one pass: {diff:e}");
    }
}
