//! The chat and image options the page sends, checked before anything runs.

use genllava::genllava::DiffusionDefaults;
use genllava::pipeline::ImageOptions;
use genllava::sampling::SamplingConfig;
use genllava::scheduler::SchedulerKind;

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

/// Most denoising steps one image may ask for.
pub const MAX_STEPS: usize = 1000;

/// What the page may set for [`crate::Engine::generate`] and [`crate::Engine::edit`];
/// `None`: the model's default from `genllava.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageRequest {
    /// Denoising steps, `1..=MAX_STEPS`.
    pub steps: Option<usize>,
    /// Classifier-free guidance scale, `0..=100` (at most 1 turns it off).
    pub guidance: Option<f32>,
    /// Seed of the initial noise.
    pub seed: u64,
    /// img2img strength of an edit, `(0, 1]` (a model that edits by img2img).
    pub strength: Option<f32>,
    /// InstructPix2Pix image guidance of an edit, `0..=100` (a model that edits that way).
    pub image_guidance: Option<f32>,
    /// `ddim`, `pndm` or `euler`.
    pub scheduler: Option<SchedulerKind>,
}

impl ImageRequest {
    /// Build from the number fields present and the scheduler's name, rejecting
    /// out-of-range values.
    pub fn from_fields(
        get: impl Fn(&str) -> Result<Option<f64>, String>,
        scheduler: Option<String>,
    ) -> Result<Self, String> {
        let mut o = Self::default();
        if let Some(v) = get("steps")? {
            let steps = whole("steps", v, MAX_STEPS as f64)? as usize;
            if steps == 0 {
                return Err("option `steps` must be at least 1".into());
            }
            o.steps = Some(steps);
        }
        if let Some(v) = get("guidance")? {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return Err(format!("option `guidance` must be between 0 and 100, got {v}"));
            }
            o.guidance = Some(v as f32);
        }
        if let Some(v) = get("seed")? {
            o.seed = whole("seed", v, 9_007_199_254_740_991.0)? as u64;
        }
        if let Some(v) = get("strength")? {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("option `strength` must be in (0, 1], got {v}"));
            }
            o.strength = Some(v as f32);
        }
        if let Some(v) = get("imageGuidance")? {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return Err(format!("option `imageGuidance` must be between 0 and 100, got {v}"));
            }
            o.image_guidance = Some(v as f32);
        }
        o.scheduler = match scheduler.as_deref() {
            None => None,
            Some(name @ ("ddim" | "pndm" | "euler")) => {
                Some(SchedulerKind::from_name(name).map_err(|e| e.to_string())?)
            }
            Some(other) => return Err(format!("option `scheduler` must be ddim, pndm or euler, got `{other}`")),
        };
        Ok(o)
    }

    /// The core options, the model's `defaults` filling what the page left out.
    pub fn resolve(&self, defaults: &DiffusionDefaults) -> Result<ImageOptions, String> {
        let scheduler = match self.scheduler {
            Some(s) => s,
            None => SchedulerKind::from_name(&defaults.scheduler).map_err(|e| e.to_string())?,
        };
        Ok(ImageOptions {
            steps: self.steps.unwrap_or(defaults.steps),
            guidance: self.guidance.unwrap_or(defaults.guidance),
            scheduler,
            seed: self.seed,
            edit: Some(
                defaults
                    .edit
                    .with_setting(self.strength, self.image_guidance, ("option `strength`", "option `imageGuidance`"))
                    .map_err(|e| e.to_string())?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genllava::genllava::EditMode;

    fn parse(fields: &[(&str, f64)]) -> Result<ChatOptions, String> {
        ChatOptions::from_fields(|k| Ok(fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)))
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn defaults_and_values() {
        assert_eq!(parse(&[]).unwrap(), ChatOptions::default());
        let o = parse(&[("max_new_tokens", 8.0), ("temperature", 0.7), ("top_p", 0.9), ("seed", 42.0)]).unwrap();
        assert_eq!((o.max_new_tokens, o.seed), (8, 42));
        assert_eq!(o.sampling().temperature, 0.7);
        assert_eq!(o.sampling().top_p, 0.9);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
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

    fn image(fields: &[(&str, f64)], scheduler: Option<&str>) -> Result<ImageRequest, String> {
        ImageRequest::from_fields(
            |k| Ok(fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)),
            scheduler.map(Into::into),
        )
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn image_options_fill_from_the_model() {
        let defaults = DiffusionDefaults { steps: 25, guidance: 4.0, scheduler: "ddim".into(), ..Default::default() };
        let o = image(&[], None).unwrap().resolve(&defaults).unwrap();
        let model_edit = Some(EditMode::Img2Img { strength: 0.75 });
        assert_eq!((o.steps, o.guidance, o.seed, o.scheduler, o.edit), (25, 4.0, 0, SchedulerKind::Ddim, model_edit));
        let o = image(&[("steps", 3.0), ("guidance", 1.0), ("seed", 7.0), ("strength", 0.5)], Some("euler"))
            .unwrap()
            .resolve(&defaults)
            .unwrap();
        assert_eq!((o.steps, o.guidance, o.seed, o.scheduler), (3, 1.0, 7, SchedulerKind::Euler));
        assert_eq!(o.edit, Some(EditMode::Img2Img { strength: 0.5 }));
        // Each edit setting only for the model that edits that way.
        let p2p = DiffusionDefaults { edit: EditMode::Pix2Pix { image_guidance: 1.5 }, ..defaults.clone() };
        let o = image(&[("imageGuidance", 2.0)], None).unwrap().resolve(&p2p).unwrap();
        assert_eq!(o.edit, Some(EditMode::Pix2Pix { image_guidance: 2.0 }));
        let e = image(&[("strength", 0.5)], None).unwrap().resolve(&p2p).unwrap_err();
        assert!(e.contains("strength") && e.contains("InstructPix2Pix"), "{e}");
        let e = image(&[("imageGuidance", 2.0)], None).unwrap().resolve(&defaults).unwrap_err();
        assert!(e.contains("imageGuidance") && e.contains("img2img"), "{e}");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn image_options_reject_bad_values() {
        for bad in
            [("steps", 0.0), ("steps", 2.5), ("steps", 5000.0), ("guidance", -1.0), ("strength", 0.0), ("imageGuidance", -1.0), ("seed", -1.0)]
        {
            let e = image(&[bad], None).unwrap_err();
            assert!(e.contains(bad.0), "{e}");
        }
        assert!(image(&[], Some("euler_ancestral")).unwrap_err().contains("ddim, pndm or euler"));
    }
}
