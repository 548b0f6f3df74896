//! The chat options the page sends, checked before anything runs.

use genllava::sampling::SamplingConfig;

/// Most tokens one answer may ask for.
pub const MAX_NEW_TOKENS_LIMIT: usize = 4096;

/// Generation settings of one chat call.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOptions {
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0` is greedy.
    pub temperature: f32,
    /// Nucleus sampling threshold (`1` disables).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (`0` disables).
    pub top_k: usize,
    /// Repetition penalty (`1` disables).
    pub repetition_penalty: f32,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for ChatOptions {
    fn default() -> Self {
        Self { max_new_tokens: 128, temperature: 0.0, top_p: 1.0, top_k: 0, repetition_penalty: 1.0, seed: 0 }
    }
}

/// A whole number in `0..=max`, or why not.
fn whole(name: &str, v: f64, max: f64) -> Result<f64, String> {
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 || v > max {
        return Err(format!("option `{name}` must be a whole number from 0 to {max}, got {v}"));
    }
    Ok(v)
}

impl ChatOptions {
    /// Build from the fields present (`None`: default), rejecting out-of-range values.
    pub fn from_fields(get: impl Fn(&str) -> Result<Option<f64>, String>) -> Result<Self, String> {
        let mut o = Self::default();
        if let Some(v) = get("max_new_tokens")? {
            o.max_new_tokens = whole("max_new_tokens", v, MAX_NEW_TOKENS_LIMIT as f64)? as usize;
        }
        if let Some(v) = get("temperature")? {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return Err(format!("option `temperature` must be between 0 and 100, got {v}"));
            }
            o.temperature = v as f32;
        }
        if let Some(v) = get("top_p")? {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("option `top_p` must be in (0, 1], got {v}"));
            }
            o.top_p = v as f32;
        }
        if let Some(v) = get("top_k")? {
            o.top_k = whole("top_k", v, 1e9)? as usize;
        }
        if let Some(v) = get("repetition_penalty")? {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("option `repetition_penalty` must be positive, got {v}"));
            }
            o.repetition_penalty = v as f32;
        }
        if let Some(v) = get("seed")? {
            // Integers a JS number holds exactly.
            o.seed = whole("seed", v, 9_007_199_254_740_991.0)? as u64;
        }
        Ok(o)
    }

    /// The core sampling settings.
    pub fn sampling(&self) -> SamplingConfig {
        SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            max_new_tokens: self.max_new_tokens,
            logprobs: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(fields: &[(&str, f64)]) -> Result<ChatOptions, String> {
        ChatOptions::from_fields(|k| Ok(fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)))
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse(&[]).unwrap(), ChatOptions::default());
        let o = parse(&[("max_new_tokens", 8.0), ("temperature", 0.7), ("top_p", 0.9), ("seed", 42.0)]).unwrap();
        assert_eq!((o.max_new_tokens, o.seed), (8, 42));
        assert_eq!(o.sampling().temperature, 0.7);
        assert_eq!(o.sampling().top_p, 0.9);
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            ("max_new_tokens", -1.0),
            ("max_new_tokens", 1.5),
            ("max_new_tokens", 1e7),
            ("temperature", f64::NAN),
            ("temperature", -0.1),
            ("top_p", 0.0),
            ("top_p", 1.5),
            ("seed", -3.0),
            ("repetition_penalty", 0.0),
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert!(e.contains(bad.0), "{e}");
        }
    }
}
