//! Diffusion schedulers with diffusers' exact timestep spacing and index
//! arithmetic: DDIM (eta 0), PNDM (PLMS, `skip_prk_steps`), Euler discrete
//! and Euler ancestral. The running state (PLMS history, step index) lives in
//! the scheduler value, apart from the UNet; the loop is in [`crate::diffusion`].

mod ddim;
mod euler;
mod pndm;

pub use ddim::Ddim;
pub use euler::{Euler, NoiseSource};
pub use pndm::Pndm;

use crate::error::{Error, Result};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How the training betas are laid out over `num_train_timesteps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end, T)`.
    #[serde(rename = "linear")]
    #[default]
    Linear,
    /// `linspace(sqrt(beta_start), sqrt(beta_end), T)²`, Stable Diffusion's.
    #[serde(rename = "scaled_linear")]
    ScaledLinear,
    /// Glide's cosine schedule.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
}

/// What the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum PredictionType {
    /// The added noise ε (SD v1.x).
    #[serde(rename = "epsilon")]
    #[default]
    Epsilon,
    /// The velocity `v = sqrt(ᾱ) ε - sqrt(1-ᾱ) x₀` (SD v2 768).
    #[serde(rename = "v_prediction")]
    VPrediction,
}

/// How `set_timesteps` picks inference timesteps out of the training ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TimestepSpacing {
    /// `arange(N) * (T // N) + steps_offset`.
    #[serde(rename = "leading")]
    Leading,
    /// `round(arange(T, 0, -T/N)) - 1`.
    #[serde(rename = "trailing")]
    Trailing,
    /// `round(linspace(0, T-1, N))`.
    #[serde(rename = "linspace")]
    Linspace,
}

/// diffusers' `scheduler/scheduler_config.json`. Fields whose default differs
/// between scheduler classes are `Option`s: `None` means "the default of the
/// class being built", as diffusers' `from_config` does for values the file
/// did not set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SchedulerConfig {
    /// The diffusers class the file names (`PNDMScheduler`, ...).
    #[serde(rename = "_class_name", default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Number of training diffusion steps T.
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    /// First beta of the schedule.
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// Last beta of the schedule.
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// Beta layout.
    #[serde(default)]
    pub beta_schedule: BetaSchedule,
    /// Explicit betas overriding the schedule.
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    /// Added to `leading` timesteps (1 for SD v1.x).
    #[serde(default)]
    pub steps_offset: usize,
    /// Use ᾱ = 1 past the last step (DDIM default true, PNDM false).
    #[serde(default)]
    pub set_alpha_to_one: Option<bool>,
    /// Clamp the predicted x₀ to ±`clip_sample_range` (DDIM default true).
    #[serde(default)]
    pub clip_sample: Option<bool>,
    /// Range of `clip_sample`.
    #[serde(default = "default_clip_range")]
    pub clip_sample_range: f64,
    /// PNDM: skip the Runge-Kutta warm-up and run PLMS only (default false).
    #[serde(default)]
    pub skip_prk_steps: Option<bool>,
    /// What the UNet predicts.
    #[serde(default)]
    pub prediction_type: PredictionType,
    /// Timestep spacing (DDIM/PNDM default leading, Euler linspace).
    #[serde(default)]
    pub timestep_spacing: Option<TimestepSpacing>,
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_clip_range() -> f64 {
    1.0
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            class_name: None,
            num_train_timesteps: default_train_steps(),
            beta_start: default_beta_start(),
            beta_end: default_beta_end(),
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            steps_offset: 0,
            set_alpha_to_one: None,
            clip_sample: None,
            clip_sample_range: default_clip_range(),
            skip_prk_steps: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: None,
        }
    }
}

impl SchedulerConfig {
    /// Parse `scheduler_config.json`; unknown fields are ignored.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::config("scheduler_config.json", e.to_string()))
    }

    /// Stable Diffusion v1.4's own scheduler config (PNDM, scaled linear
    /// betas 0.00085..0.012, `steps_offset` 1, `skip_prk_steps`).
    pub fn sd_v1() -> Self {
        Self {
            class_name: Some("PNDMScheduler".into()),
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            set_alpha_to_one: Some(false),
            clip_sample: Some(false),
            skip_prk_steps: Some(true),
            ..Self::default()
        }
    }

    /// Training betas, one per training timestep.
    pub fn betas(&self) -> Result<Vec<f64>> {
        let t = self.num_train_timesteps;
        if t < 2 {
            return Err(Error::config("scheduler_config.json", "num_train_timesteps must be at least 2"));
        }
        if let Some(b) = &self.trained_betas {
            if b.len() != t {
                return Err(Error::config(
                    "scheduler_config.json",
                    format!("{} trained_betas for {t} timesteps", b.len()),
                ));
            }
            return Ok(b.clone());
        }
        let lin = |a: f64, b: f64| (0..t).map(move |i| a + (b - a) * i as f64 / (t - 1) as f64);
        Ok(match self.beta_schedule {
            BetaSchedule::Linear => lin(self.beta_start, self.beta_end).collect(),
            BetaSchedule::ScaledLinear => lin(self.beta_start.sqrt(), self.beta_end.sqrt()).map(|b| b * b).collect(),
            BetaSchedule::SquaredCosCapV2 => {
                let f = |x: f64| ((x + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..t)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                        (1.0 - f(t2) / f(t1)).min(0.999)
                    })
                    .collect()
            }
        })
    }

    /// ᾱ_t = Π (1 - β), one per training timestep.
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>> {
        let mut acc = 1.0;
        Ok(self
            .betas()?
            .into_iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect())
    }

    /// Which scheduler the file's `_class_name` names.
    pub fn kind(&self) -> Result<SchedulerKind> {
        match self.class_name.as_deref() {
            Some("DDIMScheduler") => Ok(SchedulerKind::Ddim),
            Some("PNDMScheduler") | None => Ok(SchedulerKind::Pndm),
            Some("EulerDiscreteScheduler") => Ok(SchedulerKind::Euler),
            Some("EulerAncestralDiscreteScheduler") => Ok(SchedulerKind::EulerAncestral),
            Some(other) => Err(Error::config("scheduler_config.json", format!("unsupported scheduler `{other}`"))),
        }
    }
}

/// The schedulers this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `DDIMScheduler` with eta 0.
    Ddim,
    /// `PNDMScheduler` (PLMS).
    Pndm,
    /// `EulerDiscreteScheduler`.
    Euler,
    /// `EulerAncestralDiscreteScheduler`.
    EulerAncestral,
}

impl SchedulerKind {
    /// `ddim`, `pndm`, `euler` or `euler_ancestral`.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "ddim" => SchedulerKind::Ddim,
            "pndm" => SchedulerKind::Pndm,
            "euler" => SchedulerKind::Euler,
            "euler_ancestral" => SchedulerKind::EulerAncestral,
            other => {
                return Err(Error::config(
                    "scheduler",
                    format!("unknown scheduler `{other}` (ddim, pndm, euler, euler_ancestral)"),
                ));
            }
        })
    }
}

impl SchedulerKind {
    /// Build this scheduler from `cfg` for `steps` inference steps. Euler
    /// ancestral draws its fresh noise from `noise` (required for it, ignored
    /// by the others).
    pub fn build(self, cfg: &SchedulerConfig, steps: usize, noise: Option<NoiseSource>) -> Result<Box<dyn Scheduler>> {
        Ok(match self {
            SchedulerKind::Ddim => Box::new(Ddim::new(cfg, steps)?),
            SchedulerKind::Pndm => Box::new(Pndm::new(cfg, steps)?),
            SchedulerKind::Euler => Box::new(Euler::new(cfg, steps)?),
            SchedulerKind::EulerAncestral => {
                let noise = noise.ok_or_else(|| Error::input("noise", "Euler ancestral needs a noise source"))?;
                Box::new(Euler::ancestral(cfg, steps, noise)?)
            }
        })
    }
}

/// One diffusion sampler: the timesteps it visits and the update per step.
pub trait Scheduler {
    /// The timesteps to run, in order (the value the UNet is given).
    fn timesteps(&self) -> &[f64];

    /// Scale of the initial Gaussian latents (1 unless the scheduler says otherwise).
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// Scale the UNet input at timestep `t` (identity unless the scheduler says otherwise).
    fn scale_model_input(&self, x: Tensor<4>, _t: f64) -> Result<Tensor<4>> {
        Ok(x)
    }

    /// One denoising step from `sample` at `t` given the model output.
    fn step(&mut self, model_output: Tensor<4>, t: f64, sample: Tensor<4>) -> Result<Tensor<4>>;

    /// [`step`](Self::step) on the UNet output `pred`: for the batch `[uncond; cond]`
    /// combined with classifier-free guidance `g` first (`u + g (c - u)`) when
    /// `guidance` is `Some(g)`, as is otherwise. A scheduler may fuse the two.
    fn step_guided(&mut self, pred: Tensor<4>, guidance: Option<f32>, t: f64, sample: Tensor<4>) -> Result<Tensor<4>> {
        let eps = match guidance {
            Some(g) => guide(pred, g)?,
            None => pred,
        };
        self.step(eps, t, sample)
    }

    /// Noise `original` to the level of timestep `t` (img2img start).
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, t: f64) -> Result<Tensor<4>>;

    /// Start stepping at position `index` of `timesteps()` (img2img).
    fn set_begin_index(&mut self, index: usize);

    /// Model evaluations per timestep entry (1 for all schedulers here).
    fn order(&self) -> usize {
        1
    }
}

/// Classifier-free guidance on the UNet output for the batch `[uncond; cond]`:
/// `u + g (c - u)`.
pub fn guide(pred: Tensor<4>, guidance: f32) -> Result<Tensor<4>> {
    let mut parts = pred.chunk(2, 0).into_iter();
    let (uncond, cond) = (parts.next(), parts.next());
    let (uncond, cond) = uncond.zip(cond).ok_or_else(|| Error::input("predict", "cannot split CFG batch"))?;
    Ok(uncond.clone().add(cond.sub(uncond).mul_scalar(guidance)))
}

/// img2img: the timesteps diffusers' `StableDiffusionImg2ImgPipeline.get_timesteps`
/// keeps for `strength` in `[0, 1]`, after telling the scheduler where it
/// begins. Returns the kept timesteps; their first one is the level the
/// init latents are noised to with [`Scheduler::add_noise`].
pub fn img2img_timesteps(scheduler: &mut dyn Scheduler, steps: usize, strength: f64) -> Result<Vec<f64>> {
    if !(0.0..=1.0).contains(&strength) {
        return Err(Error::input("strength", format!("{strength} is not in [0, 1]")));
    }
    let init = ((steps as f64 * strength) as usize).min(steps);
    let start = (steps - init) * scheduler.order();
    scheduler.set_begin_index(start);
    Ok(scheduler.timesteps().get(start..).unwrap_or_default().to_vec())
}

/// The `N` inference timesteps of `spacing`, descending, as diffusers'
/// `set_timesteps` computes them (integers except Euler's float linspace).
pub(crate) fn spaced_timesteps(cfg: &SchedulerConfig, spacing: TimestepSpacing, n: usize) -> Result<Vec<f64>> {
    let t = cfg.num_train_timesteps;
    if n == 0 || n > t {
        return Err(Error::input("steps", format!("{n} inference steps for {t} training timesteps")));
    }
    let mut out: Vec<f64> = match spacing {
        TimestepSpacing::Linspace => {
            // numpy: `arange(n) * ((stop - start) / (n - 1))`, last set to `stop`.
            let step = if n == 1 { 0.0 } else { (t - 1) as f64 / (n - 1) as f64 };
            let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step).collect();
            v[n - 1] = if n == 1 { 0.0 } else { (t - 1) as f64 };
            v
        }
        TimestepSpacing::Leading => (0..n).map(|i| (i * (t / n) + cfg.steps_offset) as f64).collect(),
        TimestepSpacing::Trailing => {
            let ratio = t as f64 / n as f64;
            // np.arange(T, 0, -ratio): T - i * ratio while > 0.
            let mut v: Vec<f64> = (0..).map(|i| t as f64 - i as f64 * ratio).take_while(|x| *x > 0.0).collect();
            v.iter_mut().for_each(|x| *x = round_half_even(*x) - 1.0);
            v.reverse();
            v
        }
    };
    out.reverse();
    Ok(out)
}

/// numpy's `round` (half to even).
pub(crate) fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - x.signum() } else { r }
}

/// ᾱ at an integer timestep, erroring outside the training range.
pub(crate) fn alpha_at(alphas_cumprod: &[f64], t: i64) -> Result<f64> {
    usize::try_from(t)
        .ok()
        .and_then(|i| alphas_cumprod.get(i).copied())
        .ok_or_else(|| Error::input("timestep", format!("{t} is outside 0..{}", alphas_cumprod.len())))
}

/// `sqrt(ᾱ) x₀ + sqrt(1 - ᾱ) ε` at integer timestep `t` (DDIM/PNDM `add_noise`).
pub(crate) fn add_noise_alpha(
    alphas_cumprod: &[f64],
    original: Tensor<4>,
    noise: Tensor<4>,
    t: f64,
) -> Result<Tensor<4>> {
    let a = alpha_at(alphas_cumprod, t.round() as i64)?;
    Ok(original.mul_scalar(a.sqrt() as f32).add(noise.mul_scalar((1.0 - a).sqrt() as f32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_and_trailing_spacing_match_diffusers() {
        let cfg = SchedulerConfig::sd_v1();
        let lead = spaced_timesteps(&cfg, TimestepSpacing::Leading, 6).unwrap();
        assert_eq!(lead, vec![831.0, 665.0, 499.0, 333.0, 167.0, 1.0]);
        let trail = spaced_timesteps(&cfg, TimestepSpacing::Trailing, 6).unwrap();
        assert_eq!(trail, vec![999.0, 832.0, 666.0, 499.0, 332.0, 166.0]);
    }

    #[test]
    fn parses_sd_config_and_ignores_unknown_fields() {
        let json = r#"{"_class_name":"PNDMScheduler","_diffusers_version":"0.7.0.dev0","beta_end":0.012,
            "beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,
            "set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"trained_betas":null,"clip_sample":false}"#;
        assert_eq!(SchedulerConfig::from_json(json).unwrap(), SchedulerConfig::sd_v1());
    }
}
