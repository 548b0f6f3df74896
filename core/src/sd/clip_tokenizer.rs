//! The CLIP BPE tokenizer of Stable Diffusion's `tokenizer/` folder, as
//! transformers' `CLIPTokenizer` builds it: from `tokenizer.json` when present,
//! otherwise from `vocab.json` + `merges.txt` (what SD v1.x ships) with CLIP's
//! normaliser (NFC, collapse whitespace, lowercase), pre-tokenizer (CLIP's
//! split regex, then byte-level) and a BPE whose word ends carry `</w>`.
//! Prompts are wrapped in `<|startoftext|> … <|endoftext|>`, truncated and
//! padded to the model length, as the SD pipelines call it
//! (`padding="max_length", truncation=True`).

use crate::checkpoint::{FileSource, read_required};
use crate::error::{Error, Result};
use std::collections::HashMap;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormSeq};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSeq;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// CLIP's word-splitting pattern (transformers `CLIPTokenizer`).
const CLIP_SPLIT: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

/// A CLIP tokenizer that returns fixed-length id rows for the text encoder.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    /// `<|startoftext|>`.
    pub bos: u32,
    /// `<|endoftext|>`.
    pub eos: u32,
    /// What rows are padded with (`<|endoftext|>` in SD v1.x, `!` in SD 2).
    pub pad: u32,
    /// Row length, special tokens included (77 for SD).
    pub max_len: usize,
}

/// The special-token names of `tokenizer_config.json` / `special_tokens_map.json`.
struct Specials {
    bos: String,
    eos: String,
    pad: String,
    max_len: Option<usize>,
}

impl ClipTokenizer {
    /// Load from a `tokenizer/` folder; `max_positions` is the text encoder's
    /// `max_position_embeddings`, which caps the row length. Returns `None`
    /// when the folder has neither `tokenizer.json` nor `vocab.json`.
    pub fn load(src: &dyn FileSource, max_positions: usize) -> Result<Option<Self>> {
        let specials = Specials::read(src)?;
        let max_len = specials.max_len.map_or(max_positions, |m| m.min(max_positions));
        let inner = if let Some(json) = src.read("tokenizer.json")? {
            let mut t = Tokenizer::from_bytes(&json)
                .map_err(|e| Error::Tokenizer(format!("{}: {e}", src.describe("tokenizer.json"))))?;
            // Padding and truncation are done here, around the special tokens.
            t.with_padding(None);
            t.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
            t
        } else if let Some(vocab) = src.read("vocab.json")? {
            let merges = read_required(src, "merges.txt")?;
            let merges = String::from_utf8(merges)
                .map_err(|_| Error::Tokenizer(format!("{}: not UTF-8", src.describe("merges.txt"))))?;
            Self::build_bpe(&vocab, &merges, &specials.eos)
                .map_err(|e| Error::Tokenizer(format!("{}: {e}", src.describe("vocab.json"))))?
        } else {
            return Ok(None);
        };
        Self::new(inner, &specials, max_len).map(Some)
    }

    /// Build from `vocab.json` and `merges.txt` contents with a row length of `max_len`.
    pub fn from_vocab_merges(vocab_json: &[u8], merges_txt: &str, max_len: usize) -> Result<Self> {
        let specials = Specials::default();
        let inner = Self::build_bpe(vocab_json, merges_txt, &specials.eos).map_err(Error::Tokenizer)?;
        Self::new(inner, &specials, max_len)
    }

    fn new(mut inner: Tokenizer, specials: &Specials, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(Error::Tokenizer(format!("row length {max_len} leaves no room for the special tokens")));
        }
        let names = [&specials.bos, &specials.eos, &specials.pad];
        let added: Vec<AddedToken> = names.iter().map(|n| AddedToken::from(n.to_string(), true)).collect();
        inner.add_special_tokens(&added);
        let id = |name: &str| {
            inner
                .token_to_id(name)
                .ok_or_else(|| Error::Tokenizer(format!("special token `{name}` is not in the vocabulary")))
        };
        Ok(Self { bos: id(&specials.bos)?, eos: id(&specials.eos)?, pad: id(&specials.pad)?, inner, max_len })
    }

    /// transformers' `CLIPTokenizer` pipeline around a BPE of `vocab` and `merges`.
    fn build_bpe(vocab_json: &[u8], merges_txt: &str, unk: &str) -> std::result::Result<Tokenizer, String> {
        let vocab: HashMap<String, u32> =
            serde_json::from_slice(vocab_json).map_err(|e| format!("invalid vocabulary JSON: {e}"))?;
        let merges = merges_txt
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| {
                l.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| format!("merges.txt: line `{l}` is not a pair"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token(unk.into())
            .build()
            .map_err(|e| format!("cannot build the BPE: {e}"))?;
        let mut t = Tokenizer::new(bpe);
        let whitespace = Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(|e| e.to_string())?;
        t.with_normalizer(Some(NormalizerWrapper::Sequence(NormSeq::new(vec![
            NFC.into(),
            whitespace.into(),
            Lowercase.into(),
        ]))));
        let split = Split::new(SplitPattern::Regex(CLIP_SPLIT.into()), SplitDelimiterBehavior::Removed, true)
            .map_err(|e| e.to_string())?;
        t.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(PreSeq::new(vec![
            split.into(),
            ByteLevel::new(false, true, true).into(),
        ]))));
        Ok(t)
    }

    /// Wrap a tokenizer with the ids rows are built from.
    pub fn from_parts(inner: Tokenizer, bos: u32, eos: u32, pad: u32, max_len: usize) -> Self {
        Self { inner, bos, eos, pad, max_len }
    }

    /// `[bos, tokens…, eos, pad…]`, exactly `max_len` ids (long prompts are cut
    /// before `eos`, as `truncation=True` does).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
        let body = enc.get_ids();
        let body = &body[..body.len().min(self.max_len - 2)];
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.bos);
        ids.extend_from_slice(body);
        ids.push(self.eos);
        ids.resize(self.max_len, self.pad);
        Ok(ids)
    }

    /// The wrapped `tokenizers` tokenizer (no padding or truncation set).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

impl Default for Specials {
    fn default() -> Self {
        Self { bos: BOS.into(), eos: EOS.into(), pad: EOS.into(), max_len: None }
    }
}

impl Specials {
    /// `tokenizer_config.json`, then `special_tokens_map.json`, then CLIP's defaults.
    fn read(src: &dyn FileSource) -> Result<Self> {
        let mut s = Self::default();
        for file in ["special_tokens_map.json", "tokenizer_config.json"] {
            let Some(bytes) = src.read(file)? else { continue };
            let json: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::config(src.describe(file), format!("invalid JSON: {e}")))?;
            let name = |key: &str| {
                let v = json.get(key)?;
                v.as_str().or_else(|| v.get("content")?.as_str()).map(str::to_string)
            };
            s.bos = name("bos_token").unwrap_or(s.bos);
            s.eos = name("eos_token").unwrap_or(s.eos);
            s.pad = name("pad_token").unwrap_or(s.pad);
            // transformers writes a huge sentinel when no length was set.
            if let Some(m) = json.get("model_max_length").and_then(|v| v.as_f64()).filter(|m| *m >= 2.0 && *m < 1e9) {
                s.max_len = Some(m as usize);
            }
        }
        Ok(s)
    }
}
