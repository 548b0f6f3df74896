//! Held-out evaluation through the inference pipeline itself: greedy answers
//! scored by exact match, plus the held-out cross-entropy.

use super::data::{Dataset, Sample};
use super::loss::{self, LossContext, MicroBatch};
use super::model::Bundle;
use super::tokenize;
use genllava::llava::LlavaCheckpoint;
use genllava::pipeline::{UnderstandRequest, understand};
use genllava::sampling::SamplingConfig;
use genllava::template::{self, ChatFormat};

/// Scores of one evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalResult {
    pub step: usize,
    /// Exact-match accuracy of greedy answers.
    pub accuracy: f64,
    /// Held-out cross-entropy per target token.
    pub ce: f64,
    pub samples: usize,
    /// A few (expected, answered) pairs for the report.
    pub examples: Vec<(String, String)>,
}

/// Evaluate `bundle` (any device; the model is put in inference mode here) on the
/// first `n` samples of `set`.
pub fn evaluate(
    bundle: &Bundle,
    set: &dyn Dataset,
    n: usize,
    step: usize,
    max_len: usize,
) -> anyhow::Result<EvalResult> {
    let model = burn::module::Module::valid(&bundle.model);
    let device = model.language_model.embed_tokens.weight.device();
    let samples: Vec<Sample> = (0..n.min(set.len())).map(|i| set.get(i)).collect::<anyhow::Result<_>>()?;
    let cfg = &bundle.config;
    let encoded = samples
        .iter()
        .map(|s| {
            tokenize::encode(
                &bundle.tokenizer,
                ChatFormat::Vicuna,
                s,
                cfg.image_token_index,
                cfg.image_seq_len(),
                max_len,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pad_id = bundle.tokenizer.token_id("<pad>").unwrap_or(0);
    let ctx = LossContext { config: cfg, processor: &bundle.processor, pad_id, device: &device };
    let (mut nll, mut count) = (0.0, 0usize);
    for (s, e) in samples.iter().zip(&encoded) {
        if e.targets() == 0 {
            continue;
        }
        let (sum, c) = loss::cross_entropy(&model, &ctx, &MicroBatch { samples: vec![s], encoded: vec![e] })?;
        nll += f64::from(sum.into_scalar::<f32>());
        count += c;
    }
    let ckpt = LlavaCheckpoint { config: cfg.clone(), model, unused: Vec::new() };
    let sampling = SamplingConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        seed: 0,
        max_new_tokens: 24,
        logprobs: 0,
    };
    let (mut right, mut asked, mut examples) = (0usize, 0usize, Vec::new());
    for s in &samples {
        let Some(last) = s.turns.iter().rposition(|t| t.role == "assistant") else { continue };
        let prompt = template::render(ChatFormat::Vicuna, None, &s.turns[..last], tokenize::EOS);
        let req = UnderstandRequest {
            prompt: &prompt,
            image: s.image.as_ref(),
            pad_to_square: false,
            sampling: &sampling,
            stop: &[],
            stop_ids: &[],
        };
        let answer = understand(&ckpt, &bundle.tokenizer, Some(&bundle.processor), &req, &device, &mut |_| true)?;
        let expected = s.turns[last].text.trim().to_string();
        let got = answer.text.trim().to_string();
        right += usize::from(got == expected);
        asked += 1;
        if examples.len() < 4 {
            examples.push((expected, got));
        }
    }
    Ok(EvalResult {
        step,
        accuracy: if asked > 0 { right as f64 / asked as f64 } else { 0.0 },
        ce: if count > 0 { nll / count as f64 } else { 0.0 },
        samples: asked,
        examples,
    })
}
