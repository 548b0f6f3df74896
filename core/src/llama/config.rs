//! `config.json` of `LlamaForCausalLM` / `MistralForCausalLM`.

use crate::error::{Error, Result};
use crate::nn::Activation;
use serde::Deserialize;

/// The decoder hyper-parameters, field names as in Hugging Face's `config.json`.
/// Defaults are those of transformers' `LlamaConfig` / `MistralConfig`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LlamaConfig {
    /// Number of token ids (rows of `embed_tokens`, columns of `lm_head`).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP (`gate_proj` / `up_proj` outputs).
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); `None` means one per query head.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; `None` means `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base frequency in the legacy top-level form (transformers < 5).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// RoPE settings in the transformers ≥ 5 form: `{"rope_theta": …, "rope_type": "default"}`.
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// Legacy name of RoPE scaling settings; only `null` or type `default` is supported.
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// Longest sequence the model was trained for (informational; RoPE tables grow on demand).
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Mistral's sliding attention window: a query sees itself and the `w - 1` keys before it.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Whether `lm_head` reuses the `embed_tokens` matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Activation of the MLP gate (`silu` for every Llama/Mistral).
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    /// Whether q/k/v/o projections carry biases (Llama's `attention_bias`).
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the MLP projections carry biases (Llama's `mlp_bias`).
    #[serde(default)]
    pub mlp_bias: bool,
    /// Beginning-of-sequence token id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id(s): a number or a list in `config.json`.
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

/// RoPE settings (`rope_parameters` of transformers ≥ 5, `rope_scaling` before).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeParameters {
    /// Base frequency.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Scaling kind; only `default` (plain RoPE) is implemented.
    #[serde(default = "default_rope_type", alias = "type")]
    pub rope_type: String,
}

/// One token id or several (`eos_token_id` may be either).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> Activation {
    Activation::Silu
}
fn default_rope_type() -> String {
    "default".to_string()
}

/// transformers' default RoPE base.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

impl LlamaConfig {
    /// Parse and validate `config.json` text.
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(json).map_err(|e| Error::config("config.json", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the relations between fields that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::config("config.json", why));
        if self.num_attention_heads == 0 || self.num_key_value_heads() == 0 {
            return bad("num_attention_heads and num_key_value_heads must be positive".into());
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads()) {
            return bad(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.num_key_value_heads()
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size ({}) is not a multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!("head_dim ({}) must be even for RoPE", self.head_dim()));
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window must be positive or null".into());
        }
        for p in [&self.rope_parameters, &self.rope_scaling].into_iter().flatten() {
            if p.rope_type != "default" {
                return bad(format!("rope_type `{}` is not supported (only `default`)", p.rope_type));
            }
        }
        Ok(())
    }

    /// Key/value heads (defaults to the query heads).
    pub fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// RoPE base: `rope_parameters.rope_theta`, else top-level `rope_theta`, else 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters.as_ref().and_then(|p| p.rope_theta).or(self.rope_theta).unwrap_or(DEFAULT_ROPE_THETA)
    }

    /// End-of-sequence ids (empty when the config names none).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_token_id.as_ref().map(TokenIds::to_vec).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = r#"{"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
        "sliding_window": null, "tie_word_embeddings": false, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2}"#;

    #[test]
    fn legacy_form() {
        let c = LlamaConfig::from_json(LEGACY).expect("parses");
        assert_eq!(c.rope_theta(), 1e6);
        assert_eq!(c.head_dim(), 128);
        assert_eq!(c.num_key_value_heads(), 8);
        assert_eq!(c.sliding_window, None);
        assert_eq!(c.eos_token_ids(), vec![2]);
    }

    #[test]
    fn v5_form_and_defaults() {
        let c = LlamaConfig::from_json(
            r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
            "eos_token_id": [2, 3]}"#,
        )
        .expect("parses");
        assert_eq!(c.rope_theta(), 5e5);
        assert_eq!(c.num_key_value_heads(), 2);
        assert_eq!(c.head_dim(), 4);
        assert_eq!(c.eos_token_ids(), vec![2, 3]);
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.hidden_act, Activation::Silu);
    }

    #[test]
    fn rejects_bad_configs() {
        let gqa = LEGACY.replace("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5");
        assert!(matches!(LlamaConfig::from_json(&gqa), Err(Error::Config { .. })));
        let scaled = LEGACY.replace("\"rope_theta\": 1000000.0", "\"rope_scaling\": {\"type\": \"yarn\"}");
        assert!(matches!(LlamaConfig::from_json(&scaled), Err(Error::Config { .. })));
        assert!(LlamaConfig::from_json("{").is_err());
    }
}
