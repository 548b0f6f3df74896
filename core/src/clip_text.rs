//! The CLIP text encoder Stable Diffusion conditions on: transformers'
//! `CLIPTextModel` (no projection head). Pre-norm transformer layers with a
//! causal mask and learned absolute positions; SD uses the last hidden state
//! after `final_layer_norm`.

use crate::error::{Error, Result};
use crate::kernels;
use crate::nn::{Activation, embedding, layer_norm, linear};
use crate::weights::{VarBuilder, WeightMap};
use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Int, Tensor};

/// `text_encoder/config.json` of a transformers `CLIPTextModel`; defaults are
/// transformers' `CLIPTextConfig` defaults. Unknown fields (`projection_dim`, ...)
/// are ignored: no projection head is loaded.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ClipTextConfig {
    /// Token vocabulary size.
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: usize,
    /// Width of the residual stream.
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    /// Transformer layers.
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    /// Longest token sequence (77 for SD).
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// MLP activation (`quick_gelu` for OpenAI CLIP, `gelu` for OpenCLIP).
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: Activation,
    /// Epsilon of every layer norm.
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Start-of-text token.
    #[serde(default = "defaults::bos_token_id")]
    pub bos_token_id: usize,
    /// End-of-text token (SD 1.x also pads with it).
    #[serde(default = "defaults::eos_token_id")]
    pub eos_token_id: usize,
    /// Padding token named by the config (the tokenizer decides what it pads with).
    #[serde(default = "defaults::pad_token_id")]
    pub pad_token_id: usize,
}

mod defaults {
    use crate::nn::Activation;
    pub fn vocab_size() -> usize {
        49408
    }
    pub fn hidden_size() -> usize {
        512
    }
    pub fn intermediate_size() -> usize {
        2048
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        8
    }
    pub fn max_position_embeddings() -> usize {
        77
    }
    pub fn hidden_act() -> Activation {
        Activation::QuickGelu
    }
    pub fn layer_norm_eps() -> f64 {
        1e-5
    }
    pub fn bos_token_id() -> usize {
        49406
    }
    pub fn eos_token_id() -> usize {
        49407
    }
    pub fn pad_token_id() -> usize {
        1
    }
}

impl ClipTextConfig {
    /// Parse and check `text_encoder/config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Self =
            serde_json::from_str(json).map_err(|e| Error::config("text_encoder/config.json", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the fields this implementation relies on.
    pub fn validate(&self) -> Result<()> {
        let (d, h) = (self.hidden_size, self.num_attention_heads);
        if d == 0 || h == 0 || d % h != 0 {
            return Err(Error::config(
                "text_encoder/config.json",
                format!("hidden_size {d} is not a positive multiple of num_attention_heads {h}"),
            ));
        }
        if self.vocab_size == 0 || self.max_position_embeddings == 0 || self.intermediate_size == 0 {
            return Err(Error::config(
                "text_encoder/config.json",
                "vocab_size, max_position_embeddings and intermediate_size must be positive",
            ));
        }
        Ok(())
    }
}

/// Token plus learned absolute position embeddings.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

/// Multi-head self-attention with a causal mask.
#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
}

impl ClipAttention {
    /// `x`: `[b, L, d]` → `[b, L, d]`; position `i` attends to positions `0..=i`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let (h, hd) = (self.num_heads, d / self.num_heads);
        // [b, L, d] -> [b, heads, L, head_dim]
        let heads = |t: Tensor<3>| t.reshape([b, l, h, hd]).swap_dims(1, 2);
        let q = heads(kernels::linear(&self.q_proj, x.clone()));
        let k = heads(kernels::linear(&self.k_proj, x.clone()));
        let v = heads(kernels::linear(&self.v_proj, x));
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (hd as f64).sqrt());
        let future: Tensor<4, Bool> =
            Tensor::<2, Bool>::tril_mask([l, l], 0, &scores.device()).unsqueeze::<4>().expand([b, h, l, l]);
        let probs = softmax(scores.mask_fill(future, f32::NEG_INFINITY), 3);
        let out = probs.matmul(v).swap_dims(1, 2).reshape([b, l, d]);
        kernels::linear(&self.out_proj, out)
    }
}

/// `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    pub act: Activation,
}

/// One pre-norm transformer layer.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: ClipAttention,
    pub layer_norm2: LayerNorm,
    pub mlp: ClipMlp,
}

impl ClipEncoderLayer {
    fn load(cfg: &ClipTextConfig, vb: &VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let attn = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        Ok(Self {
            layer_norm1: layer_norm(&vb.pp("layer_norm1"), d, eps)?,
            self_attn: ClipAttention {
                q_proj: linear(&attn.pp("q_proj"), d, d, true)?,
                k_proj: linear(&attn.pp("k_proj"), d, d, true)?,
                v_proj: linear(&attn.pp("v_proj"), d, d, true)?,
                out_proj: linear(&attn.pp("out_proj"), d, d, true)?,
                num_heads: cfg.num_attention_heads,
            },
            layer_norm2: layer_norm(&vb.pp("layer_norm2"), d, eps)?,
            mlp: ClipMlp {
                fc1: linear(&mlp.pp("fc1"), d, cfg.intermediate_size, true)?,
                fc2: linear(&mlp.pp("fc2"), cfg.intermediate_size, d, true)?,
                act: cfg.hidden_act,
            },
        })
    }

    /// `x`: `[b, L, d]` → `[b, L, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone().add(self.self_attn.forward(self.layer_norm1.forward(x)));
        let h = kernels::linear(&self.mlp.fc1, self.layer_norm2.forward(x.clone()));
        x.add(kernels::linear(&self.mlp.fc2, self.mlp.act.forward(h)))
    }
}

/// The stack of encoder layers (checkpoint `encoder.layers.*`).
#[derive(Module, Debug)]
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
}

/// transformers `CLIPTextTransformer` (the `text_model` of `CLIPTextModel`).
#[derive(Module, Debug)]
pub struct ClipTextModel {
    pub embeddings: ClipTextEmbeddings,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
}

impl ClipTextModel {
    /// Load from `vb`, which points at the `text_model` prefix of the checkpoint
    /// (`vb.pp("text_model")` on the root; see [`ClipTextModel::normalize_keys`]).
    pub fn load(cfg: &ClipTextConfig, vb: &VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ClipEncoderLayer::load(cfg, &vb.pp("encoder").pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: ClipTextEmbeddings {
                token_embedding: embedding(&emb.pp("token_embedding"), cfg.vocab_size, d)?,
                position_embedding: embedding(&emb.pp("position_embedding"), cfg.max_position_embeddings, d)?,
            },
            encoder: ClipEncoder { layers },
            final_layer_norm: layer_norm(&vb.pp("final_layer_norm"), d, cfg.layer_norm_eps)?,
        })
    }

    /// Put the keys of a text-encoder checkpoint under `text_model.`: SD's
    /// `text_encoder/model.safetensors` already has them there, while
    /// `CLIPTextModel.save_pretrained` of transformers ≥ 5 writes them bare.
    pub fn normalize_keys(map: &mut WeightMap) {
        for top in ["embeddings.", "encoder.", "final_layer_norm."] {
            map.rename_prefix(top, &format!("text_model.{top}"));
        }
    }

    /// `ids`: `[b, L]` token ids (each below `vocab_size`, `L <= max_position_embeddings`)
    /// → last hidden state after `final_layer_norm`, `[b, L, hidden_size]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        let [_, l] = ids.dims();
        let max = self.embeddings.position_embedding.weight.dims()[0];
        if l == 0 || l > max {
            return Err(Error::input("input_ids", format!("{l} tokens; the text encoder takes 1 to {max}")));
        }
        let positions = self.embeddings.position_embedding.weight.val().narrow(0, 0, l).unsqueeze::<3>();
        let mut x = self.embeddings.token_embedding.forward(ids).add(positions);
        for layer in &self.encoder.layers {
            x = layer.forward(x);
        }
        Ok(self.final_layer_norm.forward(x))
    }
}
