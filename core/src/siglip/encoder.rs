//! The pre-norm transformer encoder shared by SigLIP and CLIP: per layer
//! `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.

use super::config::SiglipVisionConfig;
use crate::error::Result;
use crate::kernels;
use crate::nn::{self, Activation};
use crate::weights::VarBuilder;
use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// Multi-head self-attention with biased `q_proj`, `k_proj`, `v_proj`, `out_proj`.
#[derive(Module, Debug)]
pub struct VisionAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
}

impl VisionAttention {
    /// Load `{prefix}.{q,k,v,out}_proj`.
    pub fn load(cfg: &SiglipVisionConfig, vb: &VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            q_proj: nn::linear(&vb.pp("q_proj"), d, d, true)?,
            k_proj: nn::linear(&vb.pp("k_proj"), d, d, true)?,
            v_proj: nn::linear(&vb.pp("v_proj"), d, d, true)?,
            out_proj: nn::linear(&vb.pp("out_proj"), d, d, true)?,
            num_heads: cfg.num_attention_heads,
        })
    }

    /// `x`: `[batch, seq, hidden]` → `[batch, seq, hidden]`, no mask.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let hd = d / self.num_heads;
        let heads = |t: Tensor<3>| t.reshape([b, s, self.num_heads, hd]).swap_dims(1, 2);
        let q = heads(kernels::linear(&self.q_proj, x.clone()));
        let k = heads(kernels::linear(&self.k_proj, x.clone()));
        let v = heads(kernels::linear(&self.v_proj, x));
        // [b, heads, s, s]
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar((hd as f64).powf(-0.5));
        let out = softmax(scores, 3).matmul(v); // [b, heads, s, hd]
        kernels::linear(&self.out_proj, out.swap_dims(1, 2).reshape([b, s, d]))
    }
}

/// `fc1 → act → fc2`.
#[derive(Module, Debug)]
pub struct VisionMlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    pub act: Activation,
}

impl VisionMlp {
    /// Load `{prefix}.fc1`, `{prefix}.fc2`.
    pub fn load(cfg: &SiglipVisionConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: nn::linear(&vb.pp("fc1"), cfg.hidden_size, cfg.intermediate_size, true)?,
            fc2: nn::linear(&vb.pp("fc2"), cfg.intermediate_size, cfg.hidden_size, true)?,
            act: cfg.hidden_act,
        })
    }

    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        kernels::linear(&self.fc2, self.act.forward(kernels::linear(&self.fc1, x)))
    }
}

/// One encoder layer (`encoder.layers.N`).
#[derive(Module, Debug)]
pub struct VisionEncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: VisionAttention,
    pub layer_norm2: LayerNorm,
    pub mlp: VisionMlp,
}

impl VisionEncoderLayer {
    /// Load `{prefix}.{layer_norm1,self_attn,layer_norm2,mlp}`.
    pub fn load(cfg: &SiglipVisionConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            layer_norm1: nn::layer_norm(&vb.pp("layer_norm1"), cfg.hidden_size, cfg.layer_norm_eps)?,
            self_attn: VisionAttention::load(cfg, &vb.pp("self_attn"))?,
            layer_norm2: nn::layer_norm(&vb.pp("layer_norm2"), cfg.hidden_size, cfg.layer_norm_eps)?,
            mlp: VisionMlp::load(cfg, &vb.pp("mlp"))?,
        })
    }

    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

/// The layer stack (`encoder.layers`).
#[derive(Module, Debug)]
pub struct VisionEncoder {
    pub layers: Vec<VisionEncoderLayer>,
}

impl VisionEncoder {
    /// Load `{prefix}.layers.0 … layers.{num_hidden_layers-1}`.
    pub fn load(cfg: &SiglipVisionConfig, vb: &VarBuilder) -> Result<Self> {
        let vb = vb.pp("layers");
        let layers =
            (0..cfg.num_hidden_layers).map(|i| VisionEncoderLayer::load(cfg, &vb.pp(i))).collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// Run the first `n` layers: `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward_first(&self, mut x: Tensor<3>, n: usize) -> Tensor<3> {
        for layer in self.layers.iter().take(n) {
            x = layer.forward(x);
        }
        x
    }
}
