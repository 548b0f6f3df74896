//! Building blocks loaded through a [`VarBuilder`] with PyTorch semantics:
//! PyTorch stores a linear weight as `[out, in]`, Burn as `[in, out]`, so the
//! loaders transpose once here and nowhere else.

use crate::error::Result;
use crate::weights::{Fill, VarBuilder};
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, GroupNorm, LayerNorm, LayerNormConfig, Linear, PaddingConfig2d};
use burn::tensor::Tensor;

/// `nn.Linear(d_in, d_out, bias)` from `{prefix}.weight` `[d_out, d_in]` and `{prefix}.bias`.
pub fn linear(vb: &VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
    let weight = vb.get("weight", [d_out, d_in])?.transpose();
    let bias = if bias {
        Some(vb.param("bias", [d_out], Fill::Zeros)?)
    } else {
        None
    };
    Ok(Linear {
        weight: Param::from_tensor(weight),
        bias,
    })
}

/// `nn.LayerNorm(d, eps)` from `{prefix}.weight` and `{prefix}.bias`.
pub fn layer_norm(vb: &VarBuilder, d: usize, eps: f64) -> Result<LayerNorm> {
    let mut ln = LayerNormConfig::new(d).with_epsilon(eps).init(vb.device());
    ln.gamma = vb.param("weight", [d], Fill::Ones)?;
    ln.beta = Some(vb.param("bias", [d], Fill::Zeros)?);
    Ok(ln)
}

/// `nn.GroupNorm(groups, channels, eps)` with affine weights.
pub fn group_norm(vb: &VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<GroupNorm> {
    Ok(GroupNorm {
        gamma: Some(vb.param("weight", [channels], Fill::Ones)?),
        beta: Some(vb.param("bias", [channels], Fill::Zeros)?),
        num_groups: groups,
        num_channels: channels,
        epsilon: eps,
        affine: true,
    })
}

/// `nn.Embedding(n, d)` from `{prefix}.weight` `[n, d]`.
pub fn embedding(vb: &VarBuilder, n: usize, d: usize) -> Result<Embedding> {
    Ok(Embedding {
        weight: vb.param("weight", [n, d], Fill::Normal)?,
    })
}

/// `nn.Conv2d(c_in, c_out, k, stride, padding)` with bias.
pub fn conv2d(
    vb: &VarBuilder,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
) -> Result<Conv2d> {
    Ok(Conv2d {
        weight: vb.param("weight", [c_out, c_in, k, k], Fill::Normal)?,
        bias: Some(vb.param("bias", [c_out], Fill::Zeros)?),
        stride: [stride, stride],
        kernel_size: [k, k],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(padding, padding, padding, padding),
    })
}

/// RMSNorm as Llama/Mistral define it: `x / sqrt(mean(x²) + eps) * weight`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    /// Load `{prefix}.weight` `[d]`.
    pub fn load(vb: &VarBuilder, d: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.param("weight", [d], Fill::Ones)?,
            eps,
        })
    }

    /// `x`: `[..., d]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let var = x.clone().powi_scalar(2).mean_dim(D - 1);
        let x = x.div(var.add_scalar(self.eps).sqrt());
        let d = self.weight.dims()[0];
        let mut shape = [1usize; D];
        shape[D - 1] = d;
        x.mul(self.weight.val().reshape(shape))
    }
}

/// `gelu_pytorch_tanh`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, with the tanh
/// argument clamped to ±20 (where tanh is ±1 in f32 anyway): some WebGPU
/// implementations (SwiftShader among them) return NaN for tanh of large arguments.
fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    const SQRT_2_OVER_PI: f64 = core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * SQRT_2_OVER_PI;
    (x * (inner.clamp(-20.0, 20.0).tanh() + 1)) * 0.5
}

/// The activations that checkpoint configs name (`hidden_act`, `act_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
pub enum Activation {
    #[serde(rename = "gelu")]
    #[default]
    Gelu,
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    #[serde(rename = "silu", alias = "swish")]
    Silu,
    #[serde(rename = "relu")]
    Relu,
}

impl Activation {
    /// Apply elementwise.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        use burn::tensor::activation as a;
        match self {
            Activation::Gelu => a::gelu(x),
            Activation::GeluTanh => gelu_tanh(x),
            Activation::QuickGelu => x.clone().mul(a::sigmoid(x.mul_scalar(1.702))),
            Activation::Silu => a::silu(x),
            Activation::Relu => a::relu(x),
        }
    }
}
