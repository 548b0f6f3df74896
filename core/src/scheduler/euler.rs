//! `EulerDiscreteScheduler` and `EulerAncestralDiscreteScheduler` (k-diffusion
//! samplers over σ = sqrt((1 - ᾱ) / ᾱ)).

use super::{PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, spaced_timesteps};
use crate::error::{Error, Result};
use burn::tensor::{Device, Tensor};

/// Fresh standard-normal noise of a given shape, for ancestral sampling. The
/// caller owns the seed (e.g. a closure over a seeded RNG).
pub type NoiseSource = Box<dyn FnMut([usize; 4], &Device) -> Tensor<4>>;

/// Euler sampler; ancestral when built with [`Euler::ancestral`].
pub struct Euler {
    /// The timesteps as float32 values, descending.
    timesteps: Vec<f64>,
    /// σ per timestep plus a final 0.
    sigmas: Vec<f64>,
    spacing: TimestepSpacing,
    prediction: PredictionType,
    step_index: Option<usize>,
    begin_index: Option<usize>,
    /// Noise for the ancestral step; `None` for the deterministic sampler.
    noise: Option<NoiseSource>,
}

impl Euler {
    /// Deterministic `EulerDiscreteScheduler` (s_churn 0) for `steps` steps.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        let alphas_cumprod = cfg.alphas_cumprod()?;
        let spacing = cfg.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let timesteps: Vec<f64> = spaced_timesteps(cfg, spacing, steps)?.into_iter().map(|t| t as f32 as f64).collect();
        let train: Vec<f64> = alphas_cumprod.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
        // np.interp(timesteps, arange(T), sigmas), clamped at the ends.
        let interp = |t: f64| {
            let last = train.len() - 1;
            let t = t.clamp(0.0, last as f64);
            let lo = (t.floor() as usize).min(last);
            let hi = (lo + 1).min(last);
            let w = t - lo as f64;
            train[lo] + (train[hi] - train[lo]) * w
        };
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t) as f32 as f64).collect();
        sigmas.push(0.0);
        Ok(Self {
            timesteps,
            sigmas,
            spacing,
            prediction: cfg.prediction_type,
            step_index: None,
            begin_index: None,
            noise: None,
        })
    }

    /// `EulerAncestralDiscreteScheduler` drawing its noise from `noise`.
    pub fn ancestral(cfg: &SchedulerConfig, steps: usize, noise: NoiseSource) -> Result<Self> {
        Ok(Self { noise: Some(noise), ..Self::new(cfg, steps)? })
    }

    /// σ per timestep plus the final 0.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// diffusers `index_for_timestep`: the second match if `t` repeats.
    fn index_for(&self, t: f64) -> Result<usize> {
        let hits: Vec<usize> = (0..self.timesteps.len()).filter(|&i| self.timesteps[i] == t).collect();
        let pos = usize::from(hits.len() > 1);
        hits.get(pos).copied().ok_or_else(|| Error::input("timestep", format!("{t} is not on the schedule")))
    }

    /// Step index in effect at `t`: the running one, else the begin index,
    /// else the position of `t`.
    fn current_index(&self, t: f64) -> Result<usize> {
        match (self.step_index, self.begin_index) {
            (Some(i), _) | (None, Some(i)) => Ok(i),
            (None, None) => self.index_for(t),
        }
    }

    fn sigma(&self, i: usize) -> Result<f64> {
        self.sigmas.get(i).copied().ok_or_else(|| Error::input("step", format!("step {i} is past the schedule")))
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        let max = self.sigmas.iter().cloned().fold(0.0, f64::max);
        match self.spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max as f32,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f32,
        }
    }

    fn scale_model_input(&self, x: Tensor<4>, t: f64) -> Result<Tensor<4>> {
        let sigma = self.sigma(self.current_index(t)?)?;
        Ok(x.div_scalar((sigma * sigma + 1.0).sqrt() as f32))
    }

    fn step(&mut self, model_output: Tensor<4>, t: f64, sample: Tensor<4>) -> Result<Tensor<4>> {
        let i = self.current_index(t)?;
        let (sigma, sigma_next) = (self.sigma(i)?, self.sigma(i + 1)?);
        let x0 = match self.prediction {
            PredictionType::Epsilon => sample.clone().sub(model_output.clone().mul_scalar(sigma as f32)),
            PredictionType::VPrediction => {
                let c = -sigma / (sigma * sigma + 1.0).sqrt();
                model_output.clone().mul_scalar(c as f32).add(sample.clone().div_scalar((sigma * sigma + 1.0) as f32))
            }
        };
        let derivative = sample.clone().sub(x0).div_scalar(sigma as f32);
        let out = match self.noise.as_mut() {
            None => sample.add(derivative.mul_scalar((sigma_next - sigma) as f32)),
            Some(noise) => {
                let up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma)).sqrt();
                let down = (sigma_next * sigma_next - up * up).max(0.0).sqrt();
                let z = noise(model_output.dims(), &model_output.device());
                sample.add(derivative.mul_scalar((down - sigma) as f32)).add(z.mul_scalar(up as f32))
            }
        };
        self.step_index = Some(i + 1);
        Ok(out)
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, t: f64) -> Result<Tensor<4>> {
        let i = match (self.begin_index, self.step_index) {
            (None, _) => self.index_for(t)?,
            (Some(_), Some(s)) => s,
            (Some(b), None) => b,
        };
        Ok(original.add(noise.mul_scalar(self.sigma(i)? as f32)))
    }

    fn set_begin_index(&mut self, index: usize) {
        self.begin_index = Some(index);
    }
}
