//! One decoder layer: pre-norm grouped-query self-attention with RoPE, then a
//! pre-norm SwiGLU MLP, each added to the residual stream.

use super::cache::{KvCache, Rope};
use super::config::LlamaConfig;
use crate::error::Result;
use crate::kernels;
use crate::nn::{Activation, RmsNorm, linear};
use crate::weights::VarBuilder;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Tensor};

/// Rotary tables and attention mask of one forward call, shared by all layers.
pub(crate) struct Positions {
    /// `[1, 1, seq, head_dim]`.
    pub cos: Tensor<4>,
    /// `[1, 1, seq, head_dim]`.
    pub sin: Tensor<4>,
    /// `[1, 1, seq, total]`, true where a query must not see a key; `None` when nothing is hidden.
    pub mask: Option<Tensor<4, Bool>>,
}

/// `LlamaAttention` / `MistralAttention` (`self_attn.{q,k,v,o}_proj`).
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// Load `{prefix}.{q,k,v,o}_proj`.
    pub fn load(cfg: &LlamaConfig, vb: &VarBuilder) -> Result<Self> {
        let (h, kv, d) = (cfg.num_attention_heads, cfg.num_key_value_heads(), cfg.head_dim());
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: linear(&vb.pp("q_proj"), cfg.hidden_size, h * d, bias)?,
            k_proj: linear(&vb.pp("k_proj"), cfg.hidden_size, kv * d, bias)?,
            v_proj: linear(&vb.pp("v_proj"), cfg.hidden_size, kv * d, bias)?,
            o_proj: linear(&vb.pp("o_proj"), h * d, cfg.hidden_size, bias)?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: d,
        })
    }

    /// `x`: `[batch, seq, hidden]` → `[batch, seq, hidden]`. With a cache, the new
    /// keys/values are appended to layer `layer` and attention covers all of them.
    pub(crate) fn forward(&self, x: Tensor<3>, pos: &Positions, cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let d = self.head_dim;
        let heads = |t: Tensor<3>, n: usize| t.reshape([b, s, n, d]).swap_dims(1, 2);
        let q = heads(kernels::linear(&self.q_proj, x.clone()), self.num_heads);
        let k = heads(kernels::linear(&self.k_proj, x.clone()), self.num_kv_heads);
        let v = heads(kernels::linear(&self.v_proj, x), self.num_kv_heads);
        let q = Rope::apply(q, &pos.cos, &pos.sin);
        let k = Rope::apply(k, &pos.cos, &pos.sin);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        let (k, v) = (self.repeat_kv(k), self.repeat_kv(v));
        let t = k.dims()[2];
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (d as f64).sqrt());
        let scores = match &pos.mask {
            Some(mask) => scores.mask_fill(mask.clone().expand([b, self.num_heads, s, t]), f32::NEG_INFINITY),
            None => scores,
        };
        let out = softmax(scores, 3).matmul(v);
        kernels::linear(&self.o_proj, out.swap_dims(1, 2).reshape([b, s, self.num_heads * d]))
    }

    /// `[batch, kv_heads, t, d]` → `[batch, heads, t, d]`, each kv head serving a
    /// consecutive group of query heads (transformers' `repeat_kv`).
    fn repeat_kv(&self, x: Tensor<4>) -> Tensor<4> {
        let groups = self.num_heads / self.num_kv_heads;
        if groups == 1 {
            return x;
        }
        let [b, kv, t, d] = x.dims();
        x.unsqueeze_dim::<5>(2).repeat_dim(2, groups).reshape([b, kv * groups, t, d])
    }
}

/// `LlamaMLP`: `down_proj(act(gate_proj(x)) * up_proj(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    #[module(skip)]
    pub act: Activation,
}

impl Mlp {
    /// Load `{prefix}.{gate,up,down}_proj`.
    pub fn load(cfg: &LlamaConfig, vb: &VarBuilder) -> Result<Self> {
        let (h, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: linear(&vb.pp("gate_proj"), h, i, bias)?,
            up_proj: linear(&vb.pp("up_proj"), h, i, bias)?,
            down_proj: linear(&vb.pp("down_proj"), i, h, bias)?,
            act: cfg.hidden_act,
        })
    }

    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = self.act.forward(kernels::linear(&self.gate_proj, x.clone()));
        kernels::linear(&self.down_proj, gate.mul(kernels::linear(&self.up_proj, x)))
    }
}

/// `LlamaDecoderLayer` (`layers.N`).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    /// Load `{prefix}.{input_layernorm,self_attn,post_attention_layernorm,mlp}`.
    pub fn load(cfg: &LlamaConfig, vb: &VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_layernorm: RmsNorm::load(&vb.pp("input_layernorm"), h, eps)?,
            self_attn: Attention::load(cfg, &vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::load(&vb.pp("post_attention_layernorm"), h, eps)?,
            mlp: Mlp::load(cfg, &vb.pp("mlp"))?,
        })
    }

    /// `x`: `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub(crate) fn forward(&self, x: Tensor<3>, pos: &Positions, cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let h = x.clone().add(self.self_attn.forward(self.input_layernorm.forward(x), pos, cache));
        h.clone().add(self.mlp.forward(self.post_attention_layernorm.forward(h)))
    }
}
