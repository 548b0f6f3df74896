//! Token-by-token decoding after a prompt with every step's logits read back
//! without blocking (a browser cannot wait on the GPU): the loop shared by a chat
//! answer and a described edit's words. The awaits are also where an abort gets in.

use crate::js::err;
use burn::tensor::{Device, Tensor};
use genllava::llama::{Generator, KvCache, Llama, logits_vec};
use genllava::llava::LlavaCheckpoint;
use genllava::pipeline::Prompt;
use genllava::sampling::SamplingConfig;
use wasm_bindgen::JsError;

/// Read `logits` (any shape, the last position's row last) back to the CPU.
pub async fn read_logits<const D: usize>(logits: Tensor<D>) -> Result<Vec<f32>, JsError> {
    let data = logits
        .into_data_async()
        .await
        .map_err(|e| JsError::new(&format!("reading the logits back failed: {e:?}")))?;
    logits_vec(data).map_err(err)
}

/// A decoding run: the prompt is prefilled at the start; then [`next`](Self::next)
/// chooses a token from the pending logits and [`feed`](Self::feed) runs it through
/// the model, making the following logits pending.
pub struct AsyncDecoder<'m> {
    lm: &'m Llama,
    cache: KvCache,
    generator: Generator,
    pending: Option<Tensor<3>>,
}

impl<'m> AsyncDecoder<'m> {
    /// Prefill `prompt` into a fresh cache of `ckpt`'s language model; the run ends on
    /// the model's end of sequence or after `sampling.max_new_tokens`.
    pub fn start(
        ckpt: &'m LlavaCheckpoint,
        prompt: Prompt,
        sampling: &SamplingConfig,
        device: &Device,
    ) -> Result<Self, JsError> {
        let lm = &ckpt.model.language_model;
        let mut cache = ckpt.model.new_cache(&ckpt.config, device);
        let generator = Generator::new(&prompt.text_ids, &ckpt.config.text_config.eos_token_ids(), sampling);
        let pending = Some(generator.prefill(lm, &mut cache, prompt.embeds).map_err(err)?);
        Ok(Self { lm, cache, generator, pending })
    }

    /// The next token, chosen from the pending logits read back without blocking.
    pub async fn next(&mut self) -> Result<u32, JsError> {
        let logits = self.pending.take().ok_or_else(|| JsError::new("decoder: feed the last token before the next"))?;
        Ok(self.generator.choose(&read_logits(logits).await?).id)
    }

    /// Whether the run has ended (end of sequence or the token limit).
    pub fn done(&self) -> bool {
        self.generator.done()
    }

    /// Run `id` (the token [`next`](Self::next) chose) through the model.
    pub fn feed(&mut self, id: u32) -> Result<(), JsError> {
        self.pending = Some(self.generator.step(self.lm, &mut self.cache, id).map_err(err)?);
        Ok(())
    }
}
