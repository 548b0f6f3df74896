//! Understanding: tokenize the prompt as written, expand `<image>` to the
//! tower's feature count, splice the projected features, and decode.

use crate::error::{Error, Result};
use crate::image::{ImageProcessorConfig, RgbImage};
use crate::llama::{self, Token};
use crate::llava::{LlavaCheckpoint, expand_image_tokens};
use crate::sampling::SamplingConfig;
use crate::tokenizer::{StreamDecoder, TextTokenizer};
use burn::tensor::{Device, Tensor};

/// What to answer.
pub struct UnderstandRequest<'a> {
    /// The prompt, template included; `<image>` marks the image.
    pub prompt: &'a str,
    pub image: Option<&'a RgbImage>,
    /// Pad the image to a square with the mean colour first (original LLaVA's `pad`).
    pub pad_to_square: bool,
    pub sampling: &'a SamplingConfig,
    /// Stop once the text contains any of these (the stop string is cut off).
    pub stop: &'a [String],
    /// Stop after any of these ids (kept as the last token, not printed): e.g. `[SOI]`.
    pub stop_ids: &'a [u32],
}

/// The generated answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub tokens: Vec<Token>,
    pub text: String,
    /// Whether decoding ended on an end-of-sequence token.
    pub hit_eos: bool,
}

impl Answer {
    /// The generated ids.
    pub fn ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.id).collect()
    }
}

/// A prompt ready for the decoder.
pub struct Prompt {
    /// `[1, seq, hidden]`: token embeddings with the image features spliced in.
    pub embeds: Tensor<3>,
    /// The prompt's text ids (image positions left out), for the repetition penalty.
    pub text_ids: Vec<u32>,
}

/// Tokenize `prompt` as written, check it against `image`, expand `<image>` to
/// the tower's feature count and splice the projected features.
pub fn prepare(
    ckpt: &LlavaCheckpoint,
    tokenizer: &TextTokenizer,
    processor: Option<&ImageProcessorConfig>,
    prompt: &str,
    image: Option<&RgbImage>,
    pad_to_square: bool,
    device: &Device,
) -> Result<Prompt> {
    let cfg = &ckpt.config;
    let ids = tokenizer.encode(prompt, true)?;
    let has_image_token = ids.contains(&cfg.image_token_index);
    let features = match (image, has_image_token) {
        (Some(img), true) => {
            let processor = processor.ok_or_else(|| Error::input("image", "the model folder has no image processor config"))?;
            let pixels = processor.preprocess(img, pad_to_square)?.to_tensor(device);
            Some(ckpt.model.image_features(cfg, pixels)?)
        }
        (Some(_), false) => return Err(Error::input("prompt", "an image was given but the prompt has no `<image>`")),
        (None, true) => return Err(Error::input("prompt", "the prompt has `<image>` but no image was given")),
        (None, false) => None,
    };
    let ids = expand_image_tokens(&ids, cfg.image_token_index, cfg.image_seq_len());
    let embeds = ckpt.model.embed(cfg, &ids, features, device)?;
    let text_ids = ids.iter().copied().filter(|&i| i != cfg.image_token_index).collect();
    Ok(Prompt { embeds, text_ids })
}

/// Run the model; `on_text` receives text deltas as they become printable and
/// may return `false` to stop (abort).
pub fn understand(
    ckpt: &LlavaCheckpoint,
    tokenizer: &TextTokenizer,
    processor: Option<&ImageProcessorConfig>,
    req: &UnderstandRequest,
    device: &Device,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Answer> {
    let cfg = &ckpt.config;
    let Prompt { embeds, text_ids } = prepare(ckpt, tokenizer, processor, req.prompt, req.image, req.pad_to_square, device)?;
    let mut cache = ckpt.model.new_cache(cfg, device);
    let eos = cfg.text_config.eos_token_ids();
    let mut stream = StreamDecoder::default();
    let mut text = String::new();
    let mut failure = None;
    let generated =
        llama::generate(&ckpt.model.language_model, &mut cache, embeds, &text_ids, &eos, req.sampling, |tok, _| {
            if eos.contains(&tok.id) || req.stop_ids.contains(&tok.id) {
                return false;
            }
            match stream.push(tokenizer, tok.id) {
                Ok(Some(delta)) => {
                    text.push_str(&delta);
                    if let Some(cut) = req.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                        let keep = delta.len().saturating_sub(text.len() - cut);
                        on_text(&delta[..keep]);
                        text.truncate(cut);
                        return false;
                    }
                    on_text(&delta)
                }
                Ok(None) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Answer { text, hit_eos: generated.hit_eos, tokens: generated.tokens })
}
