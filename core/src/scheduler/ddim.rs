//! `DDIMScheduler` with eta 0 (deterministic).

use super::{
    PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, add_noise_alpha, alpha_at, guide, round_half_even,
    spaced_timesteps,
};
use crate::error::Result;
use crate::kernels::{self, DdimCoefficients};
use burn::tensor::Tensor;

/// DDIM sampler (Song et al.), eta 0, as diffusers' `DDIMScheduler`.
#[derive(Debug, Clone)]
pub struct Ddim {
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<f64>,
    /// `T // N`: the distance to the previous timestep.
    step_ratio: i64,
    prediction: PredictionType,
    clip: Option<f64>,
}

impl Ddim {
    /// Build for `steps` inference steps (diffusers `set_timesteps`).
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        let alphas_cumprod = cfg.alphas_cumprod()?;
        let spacing = cfg.timestep_spacing.unwrap_or(TimestepSpacing::Leading);
        let timesteps = spaced_timesteps(cfg, spacing, steps)?.into_iter().map(round_half_even).collect();
        let final_alpha_cumprod = if cfg.set_alpha_to_one.unwrap_or(true) { 1.0 } else { alphas_cumprod[0] };
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
            step_ratio: (cfg.num_train_timesteps / steps) as i64,
            prediction: cfg.prediction_type,
            clip: cfg.clip_sample.unwrap_or(true).then_some(cfg.clip_sample_range),
        })
    }
}

impl Ddim {
    /// `(ᾱ_t, ᾱ_prev)` of the step from timestep `t`.
    fn alphas(&self, t: f64) -> Result<(f64, f64)> {
        let t = t.round() as i64;
        let prev = t - self.step_ratio;
        let a_t = alpha_at(&self.alphas_cumprod, t)?;
        let a_prev = if prev >= 0 { alpha_at(&self.alphas_cumprod, prev)? } else { self.final_alpha_cumprod };
        Ok((a_t, a_prev))
    }

    /// The step from `t` as the linear map [`kernels::guided_ddim_step`] runs.
    pub fn coefficients(&self, t: f64) -> Result<DdimCoefficients> {
        let (a_t, a_prev) = self.alphas(t)?;
        let (sa, sb) = (a_t.sqrt(), (1.0 - a_t).sqrt());
        let (x0_sample, x0_output, eps_sample, eps_output) = match self.prediction {
            PredictionType::Epsilon => (1.0 / sa, -sb / sa, 0.0, 1.0),
            PredictionType::VPrediction => (sa, -sb, sb, sa),
        };
        Ok(DdimCoefficients {
            x0_sample: x0_sample as f32,
            x0_output: x0_output as f32,
            eps_sample: eps_sample as f32,
            eps_output: eps_output as f32,
            prev_x0: a_prev.sqrt() as f32,
            prev_eps: (1.0 - a_prev).sqrt() as f32,
            clip: self.clip.map(|r| r as f32),
        })
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: Tensor<4>, t: f64, sample: Tensor<4>) -> Result<Tensor<4>> {
        let (a_t, a_prev) = self.alphas(t)?;
        let b_t = 1.0 - a_t;
        let (x0, eps) = match self.prediction {
            PredictionType::Epsilon => {
                let x0 = sample.sub(model_output.clone().mul_scalar(b_t.sqrt() as f32)).div_scalar(a_t.sqrt() as f32);
                (x0, model_output)
            }
            PredictionType::VPrediction => {
                let x0 = sample
                    .clone()
                    .mul_scalar(a_t.sqrt() as f32)
                    .sub(model_output.clone().mul_scalar(b_t.sqrt() as f32));
                let eps = model_output.mul_scalar(a_t.sqrt() as f32).add(sample.mul_scalar(b_t.sqrt() as f32));
                (x0, eps)
            }
        };
        let x0 = match self.clip {
            Some(r) => x0.clamp(-r as f32, r as f32),
            None => x0,
        };
        // eta = 0: no variance term, direction sqrt(1 - ᾱ_prev) ε.
        Ok(x0.mul_scalar(a_prev.sqrt() as f32).add(eps.mul_scalar((1.0 - a_prev).sqrt() as f32)))
    }

    /// On wgpu, guidance and the update run as one kernel (`shaders/ddim_step.wgsl`).
    fn step_guided(&mut self, pred: Tensor<4>, guidance: Option<f32>, t: f64, sample: Tensor<4>) -> Result<Tensor<4>> {
        if kernels::wgsl_active(&sample.device()) {
            return kernels::guided_ddim_step(pred, guidance, sample, self.coefficients(t)?);
        }
        let eps = match guidance {
            Some(g) => guide(pred, g)?,
            None => pred,
        };
        self.step(eps, t, sample)
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, t: f64) -> Result<Tensor<4>> {
        add_noise_alpha(&self.alphas_cumprod, original, noise, t)
    }

    fn set_begin_index(&mut self, _index: usize) {}
}
