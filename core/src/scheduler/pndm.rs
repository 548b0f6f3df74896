//! `PNDMScheduler` with `skip_prk_steps` (PLMS), Stable Diffusion v1.x's own.

use super::{
    PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, add_noise_alpha, alpha_at, round_half_even,
    spaced_timesteps,
};
use crate::error::{Error, Result};
use burn::tensor::Tensor;

/// Pseudo linear multi-step sampler, as diffusers' `PNDMScheduler.step_plms`.
#[derive(Debug, Clone)]
pub struct Pndm {
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    /// The PLMS timesteps: `N + 1` entries, the second one repeated.
    timesteps: Vec<f64>,
    step_ratio: i64,
    prediction: PredictionType,
    /// Past model outputs, newest last (at most 4 kept).
    ets: Vec<Tensor<4>>,
    /// The sample of the first step, reused by the second (`counter == 1`).
    cur_sample: Option<Tensor<4>>,
    counter: usize,
}

impl Pndm {
    /// Build for `steps` inference steps (diffusers `set_timesteps`).
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        if !cfg.skip_prk_steps.unwrap_or(false) {
            return Err(Error::config(
                "scheduler_config.json",
                "PNDM needs skip_prk_steps = true (the Runge-Kutta warm-up is not implemented)",
            ));
        }
        let alphas_cumprod = cfg.alphas_cumprod()?;
        let spacing = cfg.timestep_spacing.unwrap_or(TimestepSpacing::Leading);
        // `_timesteps` ascending; PLMS runs `[..-1] + [-2] + [-1]` reversed.
        let mut asc: Vec<f64> = spaced_timesteps(cfg, spacing, steps)?.into_iter().map(round_half_even).collect();
        asc.reverse();
        let n = asc.len();
        let mut timesteps = asc[..n - 1].to_vec();
        if n >= 2 {
            timesteps.push(asc[n - 2]);
        }
        timesteps.push(asc[n - 1]);
        timesteps.reverse();
        let final_alpha_cumprod = if cfg.set_alpha_to_one.unwrap_or(false) { 1.0 } else { alphas_cumprod[0] };
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
            step_ratio: (cfg.num_train_timesteps / steps) as i64,
            prediction: cfg.prediction_type,
            ets: Vec::new(),
            cur_sample: None,
            counter: 0,
        })
    }

    /// Formula (9) of the PNDM paper: x_{t-δ} from x_t and ε.
    fn prev_sample(&self, sample: Tensor<4>, t: i64, prev: i64, eps: Tensor<4>) -> Result<Tensor<4>> {
        let a_t = alpha_at(&self.alphas_cumprod, t)?;
        let a_prev = if prev >= 0 { alpha_at(&self.alphas_cumprod, prev)? } else { self.final_alpha_cumprod };
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let eps = match self.prediction {
            PredictionType::Epsilon => eps,
            PredictionType::VPrediction => {
                eps.mul_scalar(a_t.sqrt() as f32).add(sample.clone().mul_scalar(b_t.sqrt() as f32))
            }
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        Ok(sample.mul_scalar(sample_coeff as f32).sub(eps.mul_scalar(((a_prev - a_t) / denom) as f32)))
    }
}

impl Scheduler for Pndm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: Tensor<4>, t: f64, sample: Tensor<4>) -> Result<Tensor<4>> {
        let mut t = t.round() as i64;
        let mut prev = t - self.step_ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.clone());
        } else {
            prev = t;
            t += self.step_ratio;
        }
        let e = &self.ets;
        let k = e.len();
        let (eps, sample) = if k == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            (model_output, sample)
        } else if k == 1 && self.counter == 1 {
            let first = self.cur_sample.take().unwrap_or(sample);
            (model_output.add(e[0].clone()).div_scalar(2.0), first)
        } else if k == 2 {
            (e[1].clone().mul_scalar(3.0).sub(e[0].clone()).div_scalar(2.0), sample)
        } else if k == 3 {
            let eps =
                e[2].clone().mul_scalar(23.0).sub(e[1].clone().mul_scalar(16.0)).add(e[0].clone().mul_scalar(5.0));
            (eps.div_scalar(12.0), sample)
        } else {
            let eps =
                e[3].clone().mul_scalar(55.0).sub(e[2].clone().mul_scalar(59.0)).add(e[1].clone().mul_scalar(37.0));
            (eps.sub(e[0].clone().mul_scalar(9.0)).div_scalar(24.0), sample)
        };
        let out = self.prev_sample(sample, t, prev, eps)?;
        self.counter += 1;
        Ok(out)
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, t: f64) -> Result<Tensor<4>> {
        add_noise_alpha(&self.alphas_cumprod, original, noise, t)
    }

    fn set_begin_index(&mut self, _index: usize) {}
}
