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

/// Logits of the last position of `hidden` `[1, seq, hidden]`, still on the device: `[1, 1, vocab]`.
pub fn last_logits_tensor(model: &Llama, hidden: Tensor<3>) -> Result<Tensor<3>> {
    let seq = hidden.dims()[1];
    if seq == 0 {
        return Err(Error::input("hidden", "empty sequence"));
    }
    Ok(model.logits(hidden.narrow(1, seq - 1, 1)))
}

/// Read-back logits as `f32`s (from `try_into_data` natively, `into_data_async` in the browser).
pub fn logits_vec(data: TensorData) -> Result<Vec<f32>> {
    data.convert::<f32>().try_to_vec::<f32>().map_err(|e| Error::Readback(format!("{e:?}")))
}

/// Logits of the last position of `hidden` `[1, seq, hidden]`, read back to the CPU.
pub fn last_logits(model: &Llama, hidden: Tensor<3>) -> Result<Vec<f32>> {
    let data = last_logits_tensor(model, hidden)?.try_into_data().map_err(|e| Error::Readback(format!("{e:?}")))?;
    logits_vec(data)
}

/// The generation loop taken apart, for callers that read the logits back
/// themselves (the browser, where reads are asynchronous):
/// [`prefill`](Self::prefill) → read → [`choose`](Self::choose) →
/// [`step`](Self::step) → read → … until [`done`](Self::done).
pub struct Generator {
    cfg: SamplingConfig,
    eos: Vec<u32>,
    rng: Rng,
    history: Vec<u32>,
    out: Generated,
}

impl Generator {
    /// A run after a prompt with ids `prompt_ids` (for the repetition penalty), ending on any of `eos`.
    pub fn new(prompt_ids: &[u32], eos: &[u32], cfg: &SamplingConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            eos: eos.to_vec(),
            rng: Rng::new(cfg.seed),
            history: prompt_ids.to_vec(),
            out: Generated { tokens: Vec::new(), hit_eos: false },
        }
    }

    /// Append `embeds` `[1, seq, hidden]` (the prompt) to `cache`; returns the
    /// next-token logits `[1, 1, vocab]` on the device.
    pub fn prefill(&self, model: &Llama, cache: &mut KvCache, embeds: Tensor<3>) -> Result<Tensor<3>> {
        let [batch, seq, _] = embeds.dims();
        if batch != 1 || seq == 0 {
            return Err(Error::input(
                "embeds",
                format!("generation needs one non-empty sequence, got [{batch}, {seq}, _]"),
            ));
        }
        last_logits_tensor(model, model.forward_embeds(embeds, cache))
    }

    /// Pick the next token from read-back `logits` `[vocab]` and record it.
    pub fn choose(&mut self, logits: &[f32]) -> &Token {
        let id = sample(logits, &self.history, &self.cfg, &mut self.rng);
        self.history.push(id);
        self.out.hit_eos = self.eos.contains(&id);
        self.out.tokens.push(Token { id, top_logprobs: top_logprobs(logits, self.cfg.logprobs) });
        &self.out.tokens[self.out.tokens.len() - 1]
    }

    /// Whether the last chosen token ended the run (EOS or the token budget).
    pub fn done(&self) -> bool {
        self.out.hit_eos || self.out.tokens.len() >= self.cfg.max_new_tokens
    }

    /// Feed token `id` through the decoder; returns the next logits `[1, 1, vocab]` on the device.
    pub fn step(&self, model: &Llama, cache: &mut KvCache, id: u32) -> Result<Tensor<3>> {
        let device = model.embed_tokens.weight.device();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![id as i64], [1, 1]), &device);
        last_logits_tensor(model, model.forward_embeds(model.embed_tokens(ids), cache))
    }

    /// The ids generated so far.
    pub fn ids(&self) -> Vec<u32> {
        self.out.ids()
    }

    /// The result so far.
    pub fn finish(self) -> Generated {
        self.out
    }
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
    let mut generator = Generator::new(prompt_ids, eos, cfg);
    let mut logits = generator.prefill(model, cache, embeds)?;
    if cfg.max_new_tokens == 0 {
        return Ok(generator.finish());
    }
    loop {
        let data = logits.try_into_data().map_err(|e| Error::Readback(format!("{e:?}")))?;
        let token = generator.choose(&logits_vec(data)?).clone();
        let go_on = on_token(&token, &generator.ids());
        if generator.done() || !go_on {
            return Ok(generator.finish());
        }
        logits = generator.step(model, cache, token.id)?;
    }
}
