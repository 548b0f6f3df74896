//! Text tokenization through the `tokenizers` crate (HF `tokenizer.json`), with
//! GenLLaVA's task tokens and `[IMG]` tokens and streaming detokenization.

use crate::error::{Error, Result};
use tokenizers::{AddedToken, Tokenizer};

/// The task tokens of the paper and the N image tokens.
pub const I2T: &str = "[I2T]";
pub const T2I: &str = "[T2I]";
pub const SOI: &str = "[SOI]";
pub const EOI: &str = "[EOI]";

/// The name of the i-th image token (`[IMG0]` … `[IMG15]`).
pub fn img_token(i: usize) -> String {
    format!("[IMG{i}]")
}

/// Ids of the GenLLaVA special tokens in one vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskTokens {
    pub i2t: u32,
    pub t2i: u32,
    pub soi: u32,
    pub eoi: u32,
    /// The N `[IMG]` tokens, in order.
    pub img: Vec<u32>,
}

/// A tokenizer plus the ids the model needs to know about.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Parse a `tokenizer.json`.
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let inner = Tokenizer::from_bytes(json).map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        Ok(Self { inner })
    }

    /// Wrap an already built tokenizer.
    pub fn from_tokenizer(inner: Tokenizer) -> Self {
        Self { inner }
    }

    /// The wrapped tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Serialise back to `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Encode text; `add_special` applies the post-processor (e.g. the BOS token).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special).map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decode ids to text.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| Error::Tokenizer(format!("decoding: {e}")))
    }

    /// The id of a token string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Add the task tokens and `n_img` image tokens as special tokens (no-op for
    /// those already present) and return their ids. New ids follow the vocabulary,
    /// so the embedding matrix must grow to [`Self::vocab_size`].
    pub fn add_task_tokens(&mut self, n_img: usize) -> TaskTokens {
        let mut names = vec![I2T.to_string(), T2I.to_string(), SOI.to_string(), EOI.to_string()];
        names.extend((0..n_img).map(img_token));
        let added: Vec<AddedToken> = names
            .iter()
            .filter(|n| self.inner.token_to_id(n).is_none())
            .map(|n| AddedToken::from(n.clone(), true))
            .collect();
        self.inner.add_special_tokens(&added);
        self.task_tokens(n_img).expect("task tokens were just added")
    }

    /// The ids of the task tokens if the vocabulary has them all.
    pub fn task_tokens(&self, n_img: usize) -> Option<TaskTokens> {
        let id = |t: &str| self.inner.token_to_id(t);
        Some(TaskTokens {
            i2t: id(I2T)?,
            t2i: id(T2I)?,
            soi: id(SOI)?,
            eoi: id(EOI)?,
            img: (0..n_img).map(|i| id(&img_token(i))).collect::<Option<_>>()?,
        })
    }
}

/// Turns a growing list of token ids into text deltas, so that tokens whose
/// bytes only make sense together (byte fallback, merges across spaces) are
/// printed once complete.
#[derive(Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    printed: usize,
}

impl StreamDecoder {
    /// Push one id; returns the new text, if any became printable.
    pub fn push(&mut self, tok: &TextTokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = tok.decode(&self.ids, true)?;
        if text.len() > self.printed && !text.ends_with('\u{FFFD}') && text.is_char_boundary(self.printed) {
            let delta = text[self.printed..].to_string();
            self.printed = text.len();
            return Ok(Some(delta));
        }
        Ok(None)
    }

    /// All text so far.
    pub fn text(&self, tok: &TextTokenizer) -> Result<String> {
        tok.decode(&self.ids, true)
    }
}
