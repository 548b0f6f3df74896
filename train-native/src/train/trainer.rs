//! The training loop: per step, draw `global_batch` samples from the mixture,
//! encode them, accumulate the gradients of `global_batch / micro_batch`
//! forward/backward passes, clip the global norm, take an AdamW step at the
//! scheduled learning rate, log, evaluate and checkpoint.

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::data::{Dataset, MixtureSampler, Sample, splitmix64};
use super::eval::{self, EvalResult};
use super::loss::{self, LossContext, MicroBatch};
use super::metrics::{MetricsLog, Progress, StepMetrics};
use super::model::Bundle;
use super::optim;
use super::tokenize::{self, Encoded};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use genllava::llava::Llava;
use genllava::template::ChatFormat;
use std::time::Instant;

/// A run in progress.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub bundle: Bundle,
    pub optim: ModuleOptimizer,
    pub state: TrainState,
    pub sampler: MixtureSampler,
    pub eval_set: Option<Box<dyn Dataset>>,
    pub device: Device,
    pub evals: Vec<EvalResult>,
}

impl Trainer {
    /// Run from `state.step` to `cfg.steps`, checkpointing on the way and at the end.
    pub fn run(&mut self) -> anyhow::Result<()> {
        let mut log = MetricsLog::open(&self.cfg.out_dir.join("metrics.jsonl"), self.state.step)?;
        let progress = Progress::new(self.state.step, self.cfg.steps);
        let mut saved_at = None;
        while self.state.step < self.cfg.steps {
            let started = Instant::now();
            let m = self.step()?;
            let secs = started.elapsed().as_secs_f64();
            self.state.elapsed_s += secs;
            let m = StepMetrics { samples_per_s: m.samples as f64 / secs, tokens_per_s: m.targets as f64 / secs, ..m };
            log.write(&m)?;
            progress.update(&m);
            let step = self.state.step;
            if self.cfg.eval_every > 0 && step.is_multiple_of(self.cfg.eval_every) {
                self.evaluate()?;
            }
            if self.cfg.checkpoint_every > 0 && step.is_multiple_of(self.cfg.checkpoint_every) {
                checkpoint::save(&self.cfg, &self.bundle, &self.optim, &self.state)?;
                saved_at = Some(step);
            }
        }
        progress.finish();
        if saved_at != Some(self.state.step) {
            checkpoint::save(&self.cfg, &self.bundle, &self.optim, &self.state)?;
        }
        if self.evals.last().map(|e| e.step) != Some(self.state.step) {
            self.evaluate()?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> anyhow::Result<()> {
        let Some(set) = &self.eval_set else { return Ok(()) };
        let r =
            eval::evaluate(&self.bundle, set.as_ref(), self.cfg.eval_samples, self.state.step, self.cfg.max_seq_len)?;
        eprintln!("\neval at step {}: accuracy {:.3}, ce {:.4} over {} samples", r.step, r.accuracy, r.ce, r.samples);
        let path = self.cfg.out_dir.join("eval.jsonl");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        std::io::Write::write_all(&mut f, format!("{}\n", serde_json::to_string(&r)?).as_bytes())?;
        self.evals.push(r);
        Ok(())
    }

    /// Draw and encode the next global batch, dropping (and counting) samples
    /// without any assistant token.
    fn next_batch(&mut self) -> anyhow::Result<Vec<(Sample, Encoded)>> {
        let cfg = &self.bundle.config;
        let mut kept = Vec::with_capacity(self.cfg.global_batch);
        for _ in 0..self.cfg.global_batch {
            let pos = self.state.sample_pos;
            self.state.sample_pos += 1;
            let sample = self.sampler.get(pos)?;
            let enc = tokenize::encode(
                &self.bundle.tokenizer,
                ChatFormat::Vicuna,
                &sample,
                cfg.image_token_index,
                cfg.image_seq_len(),
                self.cfg.max_seq_len,
            )?;
            self.state.truncated += u64::from(enc.truncated);
            if enc.targets() == 0 {
                self.state.skipped_no_target += 1;
                if self.state.skipped_no_target <= 5 {
                    log::warn!(
                        "sample at stream position {pos} has no assistant token after encoding (truncated: {}): skipped",
                        enc.truncated
                    );
                }
                continue;
            }
            kept.push((sample, enc));
        }
        Ok(kept)
    }

    /// One optimizer step.
    fn step(&mut self) -> anyhow::Result<StepMetrics> {
        // Every random draw of the step (none yet on this path; noise and condition
        // dropout of the generation losses) comes from a seed the checkpoint restores.
        self.state.rng = splitmix64(self.state.rng);
        self.device.seed(self.state.rng);
        let batch = self.next_batch()?;
        let total_targets: usize = batch.iter().map(|(_, e)| e.targets()).sum();
        let lr = optim::lr_at(self.state.step, self.cfg.steps, self.cfg.warmup_ratio, self.cfg.lr);
        let pad_id = self.bundle.tokenizer.token_id("<pad>").unwrap_or(0);
        let mut ce_sum = 0.0;
        let mut grad_norm = 0.0;
        if total_targets > 0 {
            let mut acc = GradientsAccumulator::<Llava>::new();
            let ctx = LossContext {
                config: &self.bundle.config,
                processor: &self.bundle.processor,
                pad_id,
                device: &self.device,
            };
            for chunk in batch.chunks(self.cfg.micro_batch) {
                let mb = MicroBatch {
                    samples: chunk.iter().map(|(s, _)| s).collect(),
                    encoded: chunk.iter().map(|(_, e)| e).collect(),
                };
                let (nll, _) = loss::cross_entropy(&self.bundle.model, &ctx, &mb)?;
                let scaled = nll.mul_scalar(self.cfg.loss.ce / total_targets as f64);
                ce_sum += f64::from(scaled.clone().into_scalar::<f32>());
                let grads = GradientsParams::from_grads(scaled.backward(), &self.bundle.model);
                acc.accumulate(&self.bundle.model, grads);
            }
            let (grads, norm) = optim::clip_global(&self.bundle.model, acc.grads(), self.cfg.clip_norm);
            grad_norm = norm;
            // The step takes the model by value; the clone only bumps reference counts.
            self.bundle.model = self.optim.step(lr, self.bundle.model.clone(), grads);
        }
        self.state.step += 1;
        self.state.samples_seen += batch.len() as u64;
        self.state.tokens_seen += total_targets as u64;
        let ce = if self.cfg.loss.ce > 0.0 { ce_sum / self.cfg.loss.ce } else { 0.0 };
        Ok(StepMetrics {
            step: self.state.step,
            loss: ce_sum,
            ce,
            lr,
            grad_norm,
            samples: batch.len(),
            targets: total_targets,
            samples_per_s: 0.0,
            tokens_per_s: 0.0,
        })
    }
}
