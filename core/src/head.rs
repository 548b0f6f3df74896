//! The generation head: the MGIE / GILL mapper from the LLM's [IMG] states to
//! the `L × 768` conditioning the Stable Diffusion UNet cross-attends to.
//!
//! `Linear(d_llm → d_model)`, then a PyTorch `nn.Transformer` (norm first,
//! ReLU, no masks, no positional encodings, a final LayerNorm after each
//! stack) whose encoder reads the projected [IMG] states and whose decoder
//! reads `L` learnable queries, then `Linear(d_model → out_dim)`. Parameter
//! names are those of a torch module `GenHead { in_proj, queries,
//! transformer, out_proj }`.

use crate::error::{Error, Result};
use crate::nn::{Activation, layer_norm, linear};
use crate::weights::{Fill, VarBuilder};
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

/// PyTorch's LayerNorm epsilon in `nn.Transformer`.
const LN_EPS: f64 = 1e-5;

/// Sizes of the generation head (`config.json` of its checkpoint folder).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct GenHeadConfig {
    /// Hidden size of the LLM whose [IMG] states come in.
    pub d_llm: usize,
    /// Width of the mapper transformer.
    #[serde(default = "d_model")]
    pub d_model: usize,
    /// Attention heads.
    #[serde(default = "heads")]
    pub heads: usize,
    /// Encoder layers.
    #[serde(default = "layers")]
    pub enc_layers: usize,
    /// Decoder layers.
    #[serde(default = "layers")]
    pub dec_layers: usize,
    /// Feed-forward width.
    #[serde(default = "ffn")]
    pub ffn: usize,
    /// Learnable queries L (the UNet's text length, 77).
    #[serde(default = "num_queries")]
    pub num_queries: usize,
    /// Output width (the UNet's cross-attention dim, 768 for SD v1.x).
    #[serde(default = "out_dim")]
    pub out_dim: usize,
    /// Number N of [IMG] tokens fed in.
    #[serde(default = "num_img_tokens")]
    pub num_img_tokens: usize,
    /// Feed-forward activation.
    #[serde(default = "relu")]
    pub activation: Activation,
}

fn d_model() -> usize {
    512
}
fn heads() -> usize {
    4
}
fn layers() -> usize {
    4
}
fn ffn() -> usize {
    2048
}
fn num_queries() -> usize {
    77
}
fn out_dim() -> usize {
    768
}
fn num_img_tokens() -> usize {
    16
}
fn relu() -> Activation {
    Activation::Relu
}

impl GenHeadConfig {
    /// Paper sizes over an LLM of width `d_llm` (4096 for Mistral-7B).
    pub fn new(d_llm: usize) -> Self {
        Self {
            d_llm,
            d_model: d_model(),
            heads: heads(),
            enc_layers: layers(),
            dec_layers: layers(),
            ffn: ffn(),
            num_queries: num_queries(),
            out_dim: out_dim(),
            num_img_tokens: num_img_tokens(),
            activation: relu(),
        }
    }

    /// The paper's head over Mistral-7B: 4096 → 512, 4+4 layers, 77 × 768.
    pub fn full() -> Self {
        Self::new(4096)
    }

    /// A CPU-sized head (also the parity fixture's sizes).
    pub fn tiny() -> Self {
        Self {
            d_model: 32,
            enc_layers: 2,
            dec_layers: 2,
            ffn: 64,
            num_queries: 7,
            out_dim: 16,
            num_img_tokens: 5,
            ..Self::new(32)
        }
    }

    /// Parse `config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(json).map_err(|e| Error::config("config.json", e.to_string()))?;
        if cfg.heads == 0 || !cfg.d_model.is_multiple_of(cfg.heads) {
            return Err(Error::config(
                "config.json",
                format!("d_model {} is not divisible by heads {}", cfg.d_model, cfg.heads),
            ));
        }
        Ok(cfg)
    }
}

/// `nn.MultiheadAttention(d, heads, batch_first=True)` with its packed
/// `in_proj_weight` `[3d, d]` (stored here transposed, `[d, 3d]`).
#[derive(Module, Debug)]
pub struct MultiheadAttention {
    pub in_proj_weight: Param<Tensor<2>>,
    pub in_proj_bias: Param<Tensor<1>>,
    pub out_proj: Linear,
    #[module(skip)]
    pub heads: usize,
}

impl MultiheadAttention {
    fn load(vb: &VarBuilder, d: usize, heads: usize) -> Result<Self> {
        let w = vb.get_with("in_proj_weight", [3 * d, d], Fill::Normal)?.transpose();
        Ok(Self {
            in_proj_weight: Param::from_tensor(w),
            in_proj_bias: vb.param("in_proj_bias", [3 * d], Fill::Zeros)?,
            out_proj: linear(&vb.pp("out_proj"), d, d, true)?,
            heads,
        })
    }

    /// `query` `[b, lq, d]` attends to `kv` `[b, lk, d]` (no mask) → `[b, lq, d]`.
    pub fn forward(&self, query: Tensor<3>, kv: Tensor<3>) -> Tensor<3> {
        let [b, lq, d] = query.dims();
        let lk = kv.dims()[1];
        let (h, hd) = (self.heads, d / self.heads);
        let w = self.in_proj_weight.val();
        let bias = self.in_proj_bias.val();
        let proj = |x: Tensor<3>, i: usize, len: usize| {
            let wi = w.clone().narrow(1, i * d, d).unsqueeze::<3>();
            let bi = bias.clone().narrow(0, i * d, d).reshape([1, 1, d]);
            x.matmul(wi).add(bi).reshape([b, len, h, hd]).swap_dims(1, 2)
        };
        let q = proj(query, 0, lq);
        let k = proj(kv.clone(), 1, lk);
        let v = proj(kv, 2, lk);
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f64).sqrt());
        let out = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, lq, d]);
        crate::kernels::linear(&self.out_proj, out)
    }
}

/// `linear2(act(linear1(x)))`.
#[derive(Module, Debug)]
pub struct FeedForward {
    pub linear1: Linear,
    pub linear2: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl FeedForward {
    fn load(vb: &VarBuilder, cfg: &GenHeadConfig) -> Result<Self> {
        Ok(Self {
            linear1: linear(&vb.pp("linear1"), cfg.d_model, cfg.ffn, true)?,
            linear2: linear(&vb.pp("linear2"), cfg.ffn, cfg.d_model, true)?,
            activation: cfg.activation,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.activation.forward(crate::kernels::linear(&self.linear1, x));
        crate::kernels::linear(&self.linear2, h)
    }
}

/// `nn.TransformerEncoderLayer(norm_first=True)`.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub self_attn: MultiheadAttention,
    pub ff: FeedForward,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
}

impl EncoderLayer {
    fn load(vb: &VarBuilder, cfg: &GenHeadConfig) -> Result<Self> {
        Ok(Self {
            self_attn: MultiheadAttention::load(&vb.pp("self_attn"), cfg.d_model, cfg.heads)?,
            ff: FeedForward::load(vb, cfg)?,
            norm1: layer_norm(&vb.pp("norm1"), cfg.d_model, LN_EPS)?,
            norm2: layer_norm(&vb.pp("norm2"), cfg.d_model, LN_EPS)?,
        })
    }

    /// `x`: `[b, n, d]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.norm1.forward(x.clone());
        let x = x.add(self.self_attn.forward(h.clone(), h));
        x.clone().add(self.ff.forward(self.norm2.forward(x)))
    }
}

/// `nn.TransformerDecoderLayer(norm_first=True)`.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: MultiheadAttention,
    pub multihead_attn: MultiheadAttention,
    pub ff: FeedForward,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub norm3: LayerNorm,
}

impl DecoderLayer {
    fn load(vb: &VarBuilder, cfg: &GenHeadConfig) -> Result<Self> {
        Ok(Self {
            self_attn: MultiheadAttention::load(&vb.pp("self_attn"), cfg.d_model, cfg.heads)?,
            multihead_attn: MultiheadAttention::load(&vb.pp("multihead_attn"), cfg.d_model, cfg.heads)?,
            ff: FeedForward::load(vb, cfg)?,
            norm1: layer_norm(&vb.pp("norm1"), cfg.d_model, LN_EPS)?,
            norm2: layer_norm(&vb.pp("norm2"), cfg.d_model, LN_EPS)?,
            norm3: layer_norm(&vb.pp("norm3"), cfg.d_model, LN_EPS)?,
        })
    }

    /// `x`: `[b, l, d]` queries, `memory`: `[b, n, d]` encoder output.
    fn forward(&self, x: Tensor<3>, memory: Tensor<3>) -> Tensor<3> {
        let h = self.norm1.forward(x.clone());
        let x = x.add(self.self_attn.forward(h.clone(), h));
        let x = x.clone().add(self.multihead_attn.forward(self.norm2.forward(x), memory));
        x.clone().add(self.ff.forward(self.norm3.forward(x)))
    }
}

/// `nn.TransformerEncoder` / `nn.TransformerDecoder` layers with their final norm.
#[derive(Module, Debug)]
pub struct Transformer {
    pub encoder_layers: Vec<EncoderLayer>,
    pub encoder_norm: LayerNorm,
    pub decoder_layers: Vec<DecoderLayer>,
    pub decoder_norm: LayerNorm,
}

impl Transformer {
    fn load(vb: &VarBuilder, cfg: &GenHeadConfig) -> Result<Self> {
        let (enc, dec) = (vb.pp("encoder"), vb.pp("decoder"));
        Ok(Self {
            encoder_layers: (0..cfg.enc_layers)
                .map(|i| EncoderLayer::load(&enc.pp("layers").pp(i), cfg))
                .collect::<Result<_>>()?,
            encoder_norm: layer_norm(&enc.pp("norm"), cfg.d_model, LN_EPS)?,
            decoder_layers: (0..cfg.dec_layers)
                .map(|i| DecoderLayer::load(&dec.pp("layers").pp(i), cfg))
                .collect::<Result<_>>()?,
            decoder_norm: layer_norm(&dec.pp("norm"), cfg.d_model, LN_EPS)?,
        })
    }

    /// `src` `[b, n, d]`, `tgt` `[b, l, d]` → `[b, l, d]`.
    pub fn forward(&self, src: Tensor<3>, tgt: Tensor<3>) -> Tensor<3> {
        let memory = self.encoder_layers.iter().fold(src, |x, layer| layer.forward(x));
        let memory = self.encoder_norm.forward(memory);
        let out = self.decoder_layers.iter().fold(tgt, |x, layer| layer.forward(x, memory.clone()));
        self.decoder_norm.forward(out)
    }
}

/// The generation head: [IMG] states in, UNet conditioning out.
#[derive(Module, Debug)]
pub struct GenHead {
    pub in_proj: Linear,
    /// Learnable decoder queries `[1, L, d_model]`.
    pub queries: Param<Tensor<3>>,
    pub transformer: Transformer,
    pub out_proj: Linear,
}

impl GenHead {
    /// Load from the head's weights (or initialise with `VarBuilder::init`).
    pub fn load(cfg: &GenHeadConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            in_proj: linear(&vb.pp("in_proj"), cfg.d_llm, cfg.d_model, true)?,
            queries: vb.param("queries", [1, cfg.num_queries, cfg.d_model], Fill::Normal)?,
            transformer: Transformer::load(&vb.pp("transformer"), cfg)?,
            out_proj: linear(&vb.pp("out_proj"), cfg.d_model, cfg.out_dim, true)?,
        })
    }

    /// `x`: `[b, N, d_llm]` (e[IMG] + h[IMG]) → `[b, L, out_dim]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let b = x.dims()[0];
        let src = crate::kernels::linear(&self.in_proj, x);
        let tgt = self.queries.val().repeat_dim(0, b);
        crate::kernels::linear(&self.out_proj, self.transformer.forward(src, tgt))
    }
}
