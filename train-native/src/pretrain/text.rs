//! The caption side of the Stable Diffusion stand-in: a word-level tokenizer trained on
//! the shapes-world captions, and the config of the tiny CLIP text encoder.
//!
//! The text encoder has no objective of its own: it is trained jointly with the UNet
//! through the denoising loss (see [`super::diffusion`]), the simplest way to get an
//! embedding that carries exactly what the images need (Imagen and SD show that a frozen
//! text encoder works, but we have no pretrained one to freeze).
//!
//! Rows are `[<|startoftext|>, words…, <|endoftext|>, <|endoftext|>…]`, `max_len` long,
//! exactly what core's CLIP tokenizer builds from the written `tokenizer/` folder.

use anyhow::Context;
use genllava::clip_text::ClipTextConfig;
use genllava::shapes::dataset::{self, DatasetConfig, Split};
use serde_json::{Value, json};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{AddedToken, Tokenizer};

pub const BOS: &str = "<|startoftext|>";
pub const EOS: &str = "<|endoftext|>";
pub const UNK: &str = "<|unk|>";

/// The trained tokenizer plus the special ids rows are built with.
pub struct CaptionTokenizer {
    pub inner: Tokenizer,
    pub bos: u32,
    pub eos: u32,
    /// Row length, special tokens included (the text encoder's positions).
    pub max_len: usize,
    /// The same tokenizer as core reads it back (row building shared with inference).
    rows: genllava::sd::clip_tokenizer::ClipTokenizer,
}

impl CaptionTokenizer {
    /// Train a word-level vocabulary on `n` train captions of the world (`seed`).
    /// Lower-cased, split on whitespace and punctuation; specials get ids 0, 1, 2.
    pub fn train(seed: u64, n: usize, max_len: usize) -> anyhow::Result<Self> {
        let cfg = DatasetConfig { seed, image_size: 32, textured: false, ..DatasetConfig::default() };
        let captions: Vec<String> = (0..n).map(|i| caption_of(&dataset::generation(&cfg, Split::Train, i))).collect();
        let model = WordLevel::builder().unk_token(UNK.into()).build().map_err(anyhow::Error::msg)?;
        let mut inner = Tokenizer::new(model);
        inner.with_normalizer(Some(Lowercase));
        inner.with_pre_tokenizer(Some(Whitespace {}));
        let specials: Vec<AddedToken> = [BOS, EOS, UNK].iter().map(|s| AddedToken::from(*s, true)).collect();
        let trainer = WordLevelTrainer::builder()
            .show_progress(false)
            .special_tokens(specials)
            .build()
            .map_err(anyhow::Error::msg)?;
        let mut trainer: TrainerWrapper = trainer.into();
        inner.train(&mut trainer, captions.iter()).map_err(anyhow::Error::msg)?;
        Self::from_tokenizer(inner, max_len)
    }

    /// Wrap a loaded tokenizer whose vocabulary has the special tokens.
    pub fn from_tokenizer(inner: Tokenizer, max_len: usize) -> anyhow::Result<Self> {
        let id = |s: &str| inner.token_to_id(s).with_context(|| format!("{s} missing from the vocabulary"));
        let (bos, eos) = (id(BOS)?, id(EOS)?);
        let rows = genllava::sd::clip_tokenizer::ClipTokenizer::from_parts(inner.clone(), bos, eos, eos, max_len);
        Ok(Self { bos, eos, max_len, inner, rows })
    }

    /// This tokenizer with `words` (lower-cased) appended to its vocabulary, those it lacks
    /// taking the next ids in the order given; returns the words added. A text encoder
    /// for it needs as many more embedding rows (`folder::load_text_with_words` adds them).
    pub fn with_words<'w>(&self, words: impl IntoIterator<Item = &'w str>) -> anyhow::Result<(Self, Vec<String>)> {
        let mut json: Value = serde_json::from_str(&self.json()?)?;
        let vocab = json["model"]["vocab"].as_object_mut().context("tokenizer.json: the model has no vocab")?;
        let mut next = vocab.values().filter_map(Value::as_u64).max().map_or(0, |m| m + 1);
        let mut added = Vec::new();
        for w in words {
            let w = w.to_lowercase();
            if !vocab.contains_key(&w) {
                vocab.insert(w.clone(), json!(next));
                next += 1;
                added.push(w);
            }
        }
        let inner: Tokenizer = json.to_string().parse().map_err(anyhow::Error::msg)?;
        Ok((Self::from_tokenizer(inner, self.max_len)?, added))
    }

    /// Vocabulary size, specials included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One padded row of ids for `text` (cut before `<|endoftext|>` when too long),
    /// exactly as core's CLIP tokenizer builds them at inference.
    pub fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        Ok(self.rows.encode(text)?)
    }

    /// `tokenizer/tokenizer.json`.
    pub fn json(&self) -> anyhow::Result<String> {
        self.inner.to_string(true).map_err(anyhow::Error::msg)
    }

    /// `tokenizer/tokenizer_config.json`: the special tokens and row length.
    pub fn config_json(&self) -> Value {
        json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": EOS,
            "unk_token": UNK,
            "model_max_length": self.max_len,
        })
    }
}

/// The caption (the gpt turn) of a generation record.
pub fn caption_of(sample: &dataset::Sample) -> String {
    sample.record["conversations"][1]["value"].as_str().unwrap_or_default().to_string()
}

/// Size of the text encoder.
#[derive(Debug, Clone, Copy)]
pub struct TextSize {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
}

/// `text_encoder/config.json` (transformers `CLIPTextConfig` field names).
pub fn text_config_json(size: TextSize, tok: &CaptionTokenizer) -> Value {
    json!({
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": tok.vocab_size(),
        "hidden_size": size.hidden,
        "intermediate_size": 4 * size.hidden,
        "projection_dim": size.hidden,
        "num_hidden_layers": size.layers,
        "num_attention_heads": size.heads,
        "max_position_embeddings": tok.max_len,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "bos_token_id": tok.bos,
        "eos_token_id": tok.eos,
        "pad_token_id": tok.eos,
        "torch_dtype": "float32",
    })
}

/// The parsed text-encoder config (through core's parser, so the file is known good).
pub fn text_config(json: &Value) -> anyhow::Result<ClipTextConfig> {
    Ok(ClipTextConfig::from_json(&json.to_string())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words the vocabulary lacks get the next ids, in order, once; known words keep theirs.
    #[test]
    fn with_words_appends_only_the_missing_words() {
        let tok = CaptionTokenizer::train(0, 50, 16).unwrap();
        let n = tok.vocab_size();
        let circle = tok.inner.token_to_id("circle").unwrap();
        let (grown, added) = tok.with_words(["remove", "the", "Move", "remove"]).unwrap();
        assert_eq!(added, ["remove", "move"]);
        assert_eq!(grown.vocab_size(), n + 2);
        let ids = grown.encode("remove the circle").unwrap();
        assert_eq!(ids[1..4], [n as u32, grown.inner.token_to_id("the").unwrap(), circle]);
        assert_eq!(grown.inner.token_to_id("move"), Some(n as u32 + 1));
    }
}
