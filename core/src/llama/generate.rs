//! The autoregressive loop: prefill the prompt embeddings, then read back the
//! last logits, pick a token on the CPU, embed it and run one step, until EOS,
//! the token budget, or the caller says stop. A VLM prefills with spliced image
//! embeddings; the loop itself only ever embeds text tokens.

use super::{KvCache, Llama};
use crate::error::{Error, Result};
use crate::sampling::{Rng, SamplingConfig, sample, top_logprobs};
use burn::tensor::{Int, Tensor, TensorData};

/// One generated token, as handed to the caller's callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The chosen id.
    pub id: u32,
    /// The `cfg.logprobs` most likely `(id, log-probability)` of the raw
    /// (unpenalised, untempered) distribution the token was drawn from, best first.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Every generated token in order (an EOS that ended the run included).
    pub tokens: Vec<Token>,
    /// Whether the run ended on an EOS id (rather than the budget or the callback).
    pub hit_eos: bool,
}

impl Generated {
    /// Just the ids.
    pub fn ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.id).collect()
    }
}

/// Logits of the last position of `hidden` `[1, seq, hidden]`, read back to the CPU.
pub fn last_logits(model: &Llama, hidden: Tensor<3>) -> Result<Vec<f32>> {
    let seq = hidden.dims()[1];
    if seq == 0 {
        return Err(Error::input("hidden", "empty sequence"));
    }
    let logits = model.logits(hidden.narrow(1, seq - 1, 1));
    let data = logits
        .try_into_data()
        .map_err(|e| Error::Readback(format!("{e:?}")))?;
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Readback(format!("{e:?}")))
}

/// Generate after `embeds` `[1, seq, hidden]` (the prompt, appended to `cache`).
///
/// `prompt_ids` are the prompt's token ids for the repetition penalty (image
/// positions have none and are simply left out). Stops after `cfg.max_new_tokens`,
/// after any id in `eos`, or when `on_token` returns `false`; `on_token` sees each
/// token and all generated ids so far.
pub fn generate(
    model: &Llama,
    cache: &mut KvCache,
    embeds: Tensor<3>,
    prompt_ids: &[u32],
    eos: &[u32],
    cfg: &SamplingConfig,
    mut on_token: impl FnMut(&Token, &[u32]) -> bool,
) -> Result<Generated> {
    let [batch, seq, _] = embeds.dims();
    if batch != 1 || seq == 0 {
        return Err(Error::input(
            "embeds",
            format!("generation needs one non-empty sequence, got [{batch}, {seq}, _]"),
        ));
    }
    let device = embeds.device();
    let mut rng = Rng::new(cfg.seed);
    let mut history = prompt_ids.to_vec();
    let mut out = Generated {
        tokens: Vec::new(),
        hit_eos: false,
    };
    let mut generated = Vec::new();
    let mut hidden = model.forward_embeds(embeds, cache);
    while out.tokens.len() < cfg.max_new_tokens {
        let logits = last_logits(model, hidden)?;
        let id = sample(&logits, &history, cfg, &mut rng);
        let token = Token {
            id,
            top_logprobs: top_logprobs(&logits, cfg.logprobs),
        };
        history.push(id);
        generated.push(id);
        let go_on = on_token(&token, &generated);
        out.tokens.push(token);
        if eos.contains(&id) {
            out.hit_eos = true;
            break;
        }
        if !go_on || out.tokens.len() >= cfg.max_new_tokens {
            break;
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![id as i64], [1, 1]), &device);
        hidden = model.forward_embeds(model.embed_tokens(ids), cache);
    }
    Ok(out)
}
