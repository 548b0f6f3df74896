//! Choosing the next token from logits on the CPU: greedy or seeded sampling
//! with temperature, top-k, top-p and repetition penalty, applied in the order
//! transformers' `generate` applies them (penalty, temperature, top-k, top-p),
//! plus the log-probabilities of the unmodified distribution for reporting.

use serde::{Deserialize, Serialize};

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Softmax temperature; `0` means greedy (argmax), ignoring top-k and top-p.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (`0` disables).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (`1` disables).
    pub top_p: f32,
    /// Penalty for tokens already in the history, as HF's `repetition_penalty` (`1` disables).
    pub repetition_penalty: f32,
    /// Seed of the sampling RNG.
    pub seed: u64,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// How many top log-probabilities to report per generated token (`0` = none).
    pub logprobs: usize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            max_new_tokens: 256,
            logprobs: 0,
        }
    }
}

/// The sampler's seeded generator.
pub type Rng = crate::rng::SplitMix64;

/// HF's `RepetitionPenaltyLogitsProcessor`: for every distinct token of `history`,
/// divide a positive logit by `penalty` and multiply a negative one.
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &t in history {
        let t = t as usize;
        if t < logits.len() && !seen[t] {
            seen[t] = true;
            let l = logits[t];
            logits[t] = if l < 0.0 { l * penalty } else { l / penalty };
        }
    }
}

/// The index of the largest logit (the first on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// `log_softmax(logits)`, computed in f64 for stability.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let lse = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
    logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
}

/// The `k` most likely `(id, log-probability)` of the raw distribution, best first
/// (what HF reports for greedy decoding through `output_scores`).
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let lp = log_softmax(logits);
    let mut ids: Vec<u32> = (0..lp.len() as u32).collect();
    ids.sort_by(|&a, &b| lp[b as usize].total_cmp(&lp[a as usize]).then(a.cmp(&b)));
    ids.into_iter().take(k).map(|i| (i, lp[i as usize])).collect()
}

/// Pick the next token from `logits` `[vocab]`, given the ids so far (`history`,
/// prompt included) for the repetition penalty.
pub fn sample(logits: &[f32], history: &[u32], cfg: &SamplingConfig, rng: &mut Rng) -> u32 {
    let mut logits = logits.to_vec();
    apply_repetition_penalty(&mut logits, history, cfg.repetition_penalty);
    if cfg.temperature <= 0.0 || logits.len() <= 1 {
        return argmax(&logits);
    }
    // Candidates sorted by logit, best first.
    let mut ids: Vec<usize> = (0..logits.len()).filter(|&i| !logits[i].is_nan()).collect();
    if ids.is_empty() {
        return 0;
    }
    ids.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if cfg.top_k > 0 && cfg.top_k < ids.len() {
        // HF keeps every token tied with the k-th.
        let kth = logits[ids[cfg.top_k - 1]];
        ids.retain(|&i| logits[i] >= kth);
    }
    let t = cfg.temperature as f64;
    let max = logits[ids[0]] as f64;
    let mut probs: Vec<f64> = ids.iter().map(|&i| ((logits[i] as f64 - max) / t).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if cfg.top_p < 1.0 {
        let mut cum = 0.0;
        let keep = probs
            .iter()
            .position(|&p| {
                cum += p;
                cum >= cfg.top_p as f64
            })
            .map_or(probs.len(), |i| i + 1);
        ids.truncate(keep);
        probs.truncate(keep);
    }
    let mut u = rng.next_f64() * probs.iter().sum::<f64>();
    for (&i, &p) in ids.iter().zip(&probs) {
        if u < p {
            return i as u32;
        }
        u -= p;
    }
    ids[ids.len() - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(logits: &[f32], cfg: &SamplingConfig, n: usize) -> Vec<u32> {
        let mut rng = Rng::new(cfg.seed);
        (0..n).map(|_| sample(logits, &[], cfg, &mut rng)).collect()
    }

    #[test]
    fn greedy_picks_argmax() {
        let cfg = SamplingConfig::default();
        assert_eq!(sample(&[0.1, 3.0, -1.0, 2.9], &[], &cfg, &mut Rng::new(1)), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0, 0.5]), 1);
    }

    #[test]
    fn top_k_restricts_support() {
        let cfg = SamplingConfig { temperature: 5.0, top_k: 2, seed: 3, ..Default::default() };
        let got = sampled(&[1.0, 4.0, 0.0, 3.9, 2.0], &cfg, 500);
        assert!(got.iter().all(|&t| t == 1 || t == 3));
        assert!(got.contains(&1) && got.contains(&3));
    }

    #[test]
    fn top_p_restricts_support() {
        // Probabilities ≈ 0.66, 0.24, 0.09, 0.01: top_p 0.8 keeps the first two.
        let logits = [2.0f32, 1.0, 0.0, -2.0];
        let cfg = SamplingConfig { temperature: 1.0, top_p: 0.8, seed: 9, ..Default::default() };
        let got = sampled(&logits, &cfg, 500);
        assert!(got.iter().all(|&t| t <= 1));
        assert!(got.contains(&0) && got.contains(&1));
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 7) % 13) as f32 * 0.3).collect();
        let cfg = SamplingConfig { temperature: 1.0, seed: 42, ..Default::default() };
        let a = sampled(&logits, &cfg, 64);
        assert_eq!(a, sampled(&logits, &cfg, 64));
        let other = SamplingConfig { seed: 43, ..cfg };
        assert_ne!(a, sampled(&logits, &other, 64));
    }

    #[test]
    fn repetition_penalty_math() {
        let mut l = vec![2.0f32, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1, 0], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
        // The penalty can flip a greedy choice.
        let cfg = SamplingConfig { repetition_penalty: 2.0, ..Default::default() };
        assert_eq!(sample(&[2.0, 1.5], &[0], &cfg, &mut Rng::new(0)), 1);
    }

    #[test]
    fn logprobs_of_raw_distribution() {
        let top = top_logprobs(&[0.0, (2.0f32).ln(), f32::NEG_INFINITY], 2);
        assert_eq!(top[0].0, 1);
        assert!((top[0].1 - (2.0f32 / 3.0).ln()).abs() < 1e-6);
        assert!((top[1].1 - (1.0f32 / 3.0).ln()).abs() < 1e-6);
        let total: f32 = log_softmax(&[1.0, 2.0, 3.0]).iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
