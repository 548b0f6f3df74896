//! The Mistral / Llama decoder (`LlamaForCausalLM`, `MistralForCausalLM`):
//! token embedding, pre-norm decoder layers (RMSNorm, RoPE, grouped-query
//! attention with causal and optional sliding-window mask, SwiGLU MLP), final
//! norm, and the language-model head (own matrix or tied to the embedding).
//!
//! The API is shaped for composition: a VLM embeds ids with
//! [`Llama::embed_tokens`], splices image features into the embeddings, runs
//! [`Llama::forward_embeds`] with a [`KvCache`], and turns hidden states into
//! logits with [`Llama::logits`]. Running state (cache, RoPE tables) lives
//! outside the module.

mod attention;
mod cache;
mod config;
mod generate;

pub use attention::{Attention, DecoderLayer, Mlp};
pub use cache::{KvCache, Rope};
pub use config::{LlamaConfig, RopeParameters, TokenIds};
pub use generate::{Generated, Generator, Token, generate, last_logits, last_logits_tensor, logits_vec};

use crate::error::Result;
use crate::nn::{RmsNorm, embedding, linear};
use crate::weights::VarBuilder;
use attention::Positions;
use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// The decoder stack plus its head.
#[derive(Module, Debug)]
pub struct Llama {
    /// `embed_tokens.weight` `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// `layers.N`.
    pub layers: Vec<DecoderLayer>,
    /// Final RMSNorm (`norm`).
    pub norm: RmsNorm,
    /// `lm_head`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    /// Mistral's attention window (keys per query, itself included).
    pub sliding_window: Option<usize>,
}

impl Llama {
    /// Load from `vb` pointing at the decoder prefix (`model.` of a CausalLM:
    /// `embed_tokens`, `layers.N…`, `norm`) and `lm_head` pointing at the head
    /// (`lm_head` of a CausalLM); the head builder is not read when the config ties
    /// the embeddings.
    pub fn load(cfg: &LlamaConfig, vb: &VarBuilder, lm_head: &VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let (v, h) = (cfg.vocab_size, cfg.hidden_size);
        // Checkpoint order, so the first mismatch reported is the first tensor.
        let embed_tokens = embedding(&vb.pp("embed_tokens"), v, h)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(cfg, &vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: RmsNorm::load(&vb.pp("norm"), h, cfg.rms_norm_eps)?,
            lm_head: if cfg.tie_word_embeddings { None } else { Some(linear(lm_head, h, v, false)?) },
            sliding_window: cfg.sliding_window,
        })
    }

    /// Number of token ids the head scores.
    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.weight.dims()[0]
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.embed_tokens.weight.dims()[1]
    }

    /// Token embeddings: `ids` `[batch, seq]` → `[batch, seq, hidden]`.
    pub fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embed_tokens.forward(ids)
    }

    /// Run the decoder on `embeds` `[batch, seq, hidden]` at positions
    /// `cache.len()..cache.len() + seq`, appending to the cache. Returns the hidden
    /// states after the final norm, `[batch, seq, hidden]`.
    pub fn forward_embeds(&self, embeds: Tensor<3>, cache: &mut KvCache) -> Tensor<3> {
        let seq = embeds.dims()[1];
        let offset = cache.len();
        let pos = self.positions(&mut cache.rope, offset, seq, &embeds.device());
        let mut x = embeds;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, &pos, Some((&mut *cache, i)));
        }
        cache.advance(seq);
        self.norm.forward(x)
    }

    /// The same without a cache, from position 0 (training, scoring):
    /// `[batch, seq, hidden]` → hidden states after the final norm.
    pub fn forward(&self, embeds: Tensor<3>, rope: &mut Rope) -> Tensor<3> {
        let seq = embeds.dims()[1];
        let pos = self.positions(rope, 0, seq, &embeds.device());
        let x = self.layers.iter().fold(embeds, |x, layer| layer.forward(x, &pos, None));
        self.norm.forward(x)
    }

    /// Next-token logits: `hidden` `[batch, seq, hidden]` → `[batch, seq, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => crate::kernels::linear(head, hidden),
            None => {
                let [b, s, h] = hidden.dims();
                let w = self.embed_tokens.weight.val(); // [vocab, hidden]
                let v = w.dims()[0];
                hidden.reshape([b * s, h]).matmul(w.transpose()).reshape([b, s, v])
            }
        }
    }

    /// RoPE tables and mask for `seq` new positions after `offset` cached ones.
    fn positions(&self, rope: &mut Rope, offset: usize, seq: usize, device: &Device) -> Positions {
        let (cos, sin) = rope.tables(offset, seq);
        Positions { cos, sin, mask: attention_mask(offset, seq, self.sliding_window, device) }
    }
}

/// `[1, 1, seq, offset + seq]`, true where query `i` (position `offset + i`) must not
/// see key `j`: the future, and with a window `w` keys at or before `offset + i - w`
/// (transformers' `kv_idx > q_idx - sliding_window`). `None` when nothing is hidden.
fn attention_mask(offset: usize, seq: usize, window: Option<usize>, device: &Device) -> Option<Tensor<4, Bool>> {
    let total = offset + seq;
    let hidden = |i: usize, j: usize| {
        let q = offset + i;
        j > q || window.is_some_and(|w| j + w <= q)
    };
    let mask: Vec<bool> = (0..seq).flat_map(|i| (0..total).map(move |j| hidden(i, j))).collect();
    if !mask.iter().any(|&m| m) {
        return None;
    }
    Some(Tensor::<2, Bool>::from_data(TensorData::new(mask, [seq, total]), device).unsqueeze::<4>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_rows(offset: usize, seq: usize, window: Option<usize>) -> Vec<Vec<bool>> {
        let total = offset + seq;
        match attention_mask(offset, seq, window, &Device::flex()) {
            None => vec![vec![false; total]; seq],
            Some(m) => {
                let v: Vec<bool> = m.into_data().try_to_vec().expect("bool data");
                v.chunks(total).map(|c| c.to_vec()).collect()
            }
        }
    }

    #[test]
    fn causal_and_window_masks() {
        let causal = mask_rows(0, 3, None);
        assert_eq!(causal[0], vec![false, true, true]);
        assert_eq!(causal[2], vec![false, false, false]);
        // Window 2: position 3 sees positions 2 and 3 only.
        let win = mask_rows(2, 2, Some(2));
        assert_eq!(win[1], vec![true, true, false, false]);
        assert_eq!(win[0], vec![true, false, false, true]);
        // One new token with no window hides nothing.
        assert!(attention_mask(5, 1, None, &Device::flex()).is_none());
    }

    #[test]
    fn init_and_incremental_match_full() {
        let cfg = LlamaConfig::from_json(
            r#"{"vocab_size": 20, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "sliding_window": 3}"#,
        )
        .expect("config");
        let device = Device::flex();
        let vb = VarBuilder::init(0.5, &device);
        let model = Llama::load(&cfg, &vb, &vb.pp("lm_head")).expect("init");
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 7, 3, 9, 2], [1, 6]), &device);
        let embeds = model.embed_tokens(ids);
        let full = model.forward(embeds.clone(), &mut Rope::for_config(&cfg, &device));
        let mut cache = KvCache::new(&cfg, &device);
        let mut parts = vec![model.forward_embeds(embeds.clone().narrow(1, 0, 4), &mut cache)];
        for t in 4..6 {
            parts.push(model.forward_embeds(embeds.clone().narrow(1, t, 1), &mut cache));
        }
        assert_eq!(cache.len(), 6);
        let step: Vec<f32> = Tensor::cat(parts, 1).into_data().try_to_vec().expect("f32");
        let full: Vec<f32> = full.into_data().try_to_vec().expect("f32");
        let diff = step.iter().zip(&full).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-4, "incremental differs by {diff}");
    }
}
