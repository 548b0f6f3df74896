//! The training loop: per step, draw `global_batch` samples from the mixture,
//! encode them, accumulate the gradients of `global_batch / micro_batch`
//! forward/backward passes, clip the global norm, take an AdamW step at the
//! scheduled learning rate, log, evaluate and checkpoint.

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::data::{Dataset, MixtureSampler, Sample, splitmix64};
use super::eval::{self, EvalResult};
use super::loss::{self, Frozen, GenContext, LossContext, MicroBatch};
use super::metrics::{MetricsLog, Progress, StepMetrics};
use super::model::{Bundle, GenModel};
use super::optim;
use super::tokenize::{self, Encoded};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use genllava::template::ChatFormat;
use std::time::Instant;

/// A run in progress.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub bundle: Bundle,
    pub optim: ModuleOptimizer,
    pub state: TrainState,
    pub sampler: MixtureSampler,
    /// Held-out sets (per task and split).
    pub eval_sets: Vec<Box<dyn Dataset>>,
    pub device: Device,
    pub evals: Vec<EvalResult>,
    /// The frozen diffusion decoder of a GenLLaVA run.
    pub frozen: Option<Frozen>,
    /// Further devices of a data-parallel run (`train --devices`), each with its own copy
    /// of the frozen decoder; `device` is the first, where the weights, the optimizer and
    /// the summed gradients live.
    pub replicas: Vec<Replica>,
}

/// One more device of a data-parallel run.
pub struct Replica {
    pub device: Device,
    pub frozen: Option<Frozen>,
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
        if self.eval_sets.is_empty() {
            return Ok(());
        }
        let r = eval::evaluate(
            &self.bundle,
            &self.eval_sets,
            &self.cfg,
            self.state.step,
            self.frozen.as_ref().map(|f| &f.sd),
            false,
        )?;
        eprintln!("\n{}", r.summary());
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
                self.bundle.generation.as_ref().map(|g| &g.config.task_tokens),
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
        let mut batch = self.next_batch()?;
        // Shortest first, so that the passes below pad little (a stable sort: ties keep
        // their draw order, and the step stays a function of the data stream).
        batch.sort_by_key(|(_, e)| e.ids.len());
        let total_targets: usize = batch.iter().map(|(_, e)| e.targets()).sum();
        let lr = optim::lr_at(self.state.step, self.cfg.steps, self.cfg.warmup_ratio, self.cfg.lr);
        let pad_id = self.bundle.tokenizer.token_id("<pad>").unwrap_or(0);
        let img: Vec<u32> =
            self.bundle.generation.as_ref().map(|g| g.config.task_tokens.img.clone()).unwrap_or_default();
        // Per sample: its length and whether it trains the generation path.
        let costs: Vec<(usize, bool)> =
            batch.iter().map(|(s, e)| (e.ids.len(), self.frozen.is_some() && loss::is_image_row(s, e, &img))).collect();
        let total_images = costs.iter().filter(|&&(_, image)| image).count();
        let w = &self.cfg.loss;
        let (mut ce_sum, mut diffusion_sum, mut align_sum) = (0.0, 0.0, 0.0);
        let mut grad_norm = 0.0;
        if total_targets > 0 || total_images > 0 {
            let mut acc = GradientsAccumulator::<GenModel>::new();
            let (config, processor) = (&self.bundle.config, &self.bundle.processor);
            let model = &self.bundle.model;
            let rng = self.state.rng;
            // Worker `j` of a group runs on device `j mod D` (the first is the main one).
            let main = &self.device;
            let devices: Vec<(&Device, Option<&Frozen>)> = std::iter::once((&self.device, self.frozen.as_ref()))
                .chain(self.replicas.iter().map(|r| (&r.device, r.frozen.as_ref())))
                .collect();
            // One micro-batch's weighted loss terms and gradients.
            let micro = |k: usize,
                         chunk: &[(Sample, Encoded)],
                         model: &GenModel,
                         (device, frozen): (&Device, Option<&Frozen>)|
             -> anyhow::Result<(f64, f64, f64, GradientsParams)> {
                let ctx = LossContext { config, processor, pad_id, device };
                let mb = MicroBatch {
                    samples: chunk.iter().map(|(s, _)| s).collect(),
                    encoded: chunk.iter().map(|(_, e)| e).collect(),
                };
                let genr = match (&model.head, frozen) {
                    (Some(head), Some(frozen)) => Some(GenContext {
                        head,
                        img: &img,
                        frozen,
                        seed: splitmix64(rng ^ k as u64),
                        diffusion: w.diffusion > 0.0,
                        align: w.align > 0.0,
                        to_llm: w.gen_to_llm,
                    }),
                    _ => None,
                };
                let l = loss::losses(&model.llava, &ctx, &mb, genr.as_ref())?;
                let scalar = |t: &burn::tensor::Tensor<1>| f64::from(t.clone().into_scalar::<f32>());
                let mut total = l.nll.mul_scalar(w.ce / total_targets.max(1) as f64);
                let ce = scalar(&total);
                let (mut diffusion, mut align) = (0.0, 0.0);
                if let Some(d) = l.diffusion {
                    let d = d.mul_scalar(w.diffusion / total_images as f64);
                    diffusion = scalar(&d);
                    total = total.add(d);
                }
                if let Some(a) = l.align {
                    let a = a.mul_scalar(w.align / total_images as f64);
                    align = scalar(&a);
                    total = total.add(a);
                }
                let grads = GradientsParams::from_grads(total.backward(), model);
                // A replica's gradients join the sum on the main device.
                let grads = if device == main { grads } else { grads.to_device(main, model) };
                Ok((ce, diffusion, align, grads))
            };
            // The micro-batches run side by side on their own threads (most of a small
            // model's kernels use one core; a data-parallel run has one group member per
            // device and share); their gradients are summed in order, so the step is the
            // same whatever the thread count.
            let passes = batch.len().div_ceil(self.cfg.micro_batch);
            let chunks: Vec<&[(Sample, Encoded)]> =
                balanced_passes(&costs, passes).into_iter().map(|r| &batch[r]).collect();
            let parallel = self.cfg.parallel_micro_batches * devices.len();
            for (g, group) in chunks.chunks(parallel).enumerate() {
                let results: Vec<anyhow::Result<_>> = if group.len() == 1 {
                    vec![micro(g * parallel, group[0], model, devices[0])]
                } else {
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = group
                            .iter()
                            .enumerate()
                            .map(|(j, chunk)| {
                                let micro = &micro;
                                let on = devices[j % devices.len()];
                                let local = worker_model(model, on.0, chunk, &img, on.1.is_some());
                                scope.spawn(move || micro(g * parallel + j, chunk, &local, on))
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a micro-batch thread panicked"))))
                            .collect()
                    })
                };
                for r in results {
                    let (ce, diffusion, align, grads) = r?;
                    ce_sum += ce;
                    diffusion_sum += diffusion;
                    align_sum += align;
                    acc.accumulate(model, grads);
                }
            }
            let (grads, norm) = optim::clip_global(&self.bundle.model, acc.grads(), self.cfg.clip_norm);
            grad_norm = norm;
            // The step takes the model by value; the clone only bumps reference counts.
            match (&self.bundle.model.head, self.cfg.head_lr_scale) {
                (Some(head), scale) if scale != 1.0 => {
                    let mut grads = grads;
                    let head_grads = optim::take_grads(head, &mut grads);
                    let model = self.optim.step(lr, self.bundle.model.clone(), grads);
                    self.bundle.model = self.optim.step(lr * scale, model, head_grads);
                }
                _ => self.bundle.model = self.optim.step(lr, self.bundle.model.clone(), grads),
            }
        }
        self.state.step += 1;
        self.state.samples_seen += batch.len() as u64;
        self.state.tokens_seen += total_targets as u64;
        let per = |sum: f64, weight: f64| if weight > 0.0 { sum / weight } else { 0.0 };
        Ok(StepMetrics {
            step: self.state.step,
            loss: ce_sum + diffusion_sum + align_sum,
            ce: per(ce_sum, w.ce),
            diffusion: per(diffusion_sum, w.diffusion),
            align: per(align_sum, w.align),
            images: total_images,
            lr,
            grad_norm,
            samples: batch.len(),
            targets: total_targets,
            samples_per_s: 0.0,
            tokens_per_s: 0.0,
        })
    }
}

/// Padded token slots one image target costs a pass besides its tokens: its trip
/// through the frozen VAE encoder and UNet, forward and back (about an eighth of a
/// main-job step goes to its dozen or so image targets).
const IMAGE_TARGET_COST: usize = 32;

/// Split a step's samples, sorted by token length (`costs`: length, whether the
/// sample is an image target), into `passes` consecutive non-empty runs, one per
/// forward/backward pass, so that the costliest pass — rows × its longest row, plus
/// [`IMAGE_TARGET_COST`] per image target — is as cheap as it can be. Passes run side
/// by side, so the costliest one sets the step's time; cutting a length-sorted batch
/// keeps short samples from being padded to long ones.
fn balanced_passes(costs: &[(usize, bool)], passes: usize) -> Vec<std::ops::Range<usize>> {
    let n = costs.len();
    let passes = passes.clamp(1, n.max(1));
    if n == 0 {
        return vec![0..0];
    }
    let images: Vec<usize> = std::iter::once(0)
        .chain(costs.iter().scan(0, |acc, &(_, image)| {
            *acc += usize::from(image);
            Some(*acc)
        }))
        .collect();
    let cost = |a: usize, b: usize| {
        (b - a) * costs[a..b].iter().map(|&(len, _)| len).max().unwrap_or(0)
            + IMAGE_TARGET_COST * (images[b] - images[a])
    };
    // best[p][i]: the least costliest pass over the first i samples cut into p runs;
    // cut[p][i]: where the last of those runs starts.
    let mut best = vec![vec![usize::MAX; n + 1]; passes + 1];
    let mut cut = vec![vec![0; n + 1]; passes + 1];
    best[0][0] = 0;
    for p in 1..=passes {
        for i in p..=n {
            for k in (p - 1)..i {
                if best[p - 1][k] == usize::MAX {
                    continue;
                }
                let c = best[p - 1][k].max(cost(k, i));
                if c < best[p][i] {
                    best[p][i] = c;
                    cut[p][i] = k;
                }
            }
        }
    }
    let mut ranges = Vec::with_capacity(passes);
    let mut end = n;
    for p in (1..=passes).rev() {
        let start = cut[p][end];
        ranges.push(start..end);
        end = start;
    }
    ranges.reverse();
    ranges
}

/// A worker thread's copy of `model` on `device` for one micro-batch: its own autodiff
/// leaves (same parameter ids, same weights; no copy on the main device) for every part
/// the micro-batch uses, since Burn's autodiff graphs of threads that share leaves merge,
/// and then a backward on one thread and an op on another can deadlock on the graph
/// locks. Parts it does not use (the vision side without input images, the head without
/// image targets) stay the shared, untouched originals: a leaf that no backward reaches
/// stays registered in Burn's graph store, and an understanding-only run that forked its
/// unused head at every step slowed from 0.45 s to 0.94 s per step in 600 steps.
fn worker_model(
    model: &GenModel,
    device: &Device,
    chunk: &[(Sample, Encoded)],
    img: &[u32],
    generation: bool,
) -> GenModel {
    let images_in = chunk.iter().any(|(_, e)| e.has_image);
    let images_out = generation && chunk.iter().any(|(s, e)| loss::is_image_row(s, e, img));
    let llava = &model.llava;
    GenModel {
        llava: genllava::llava::Llava {
            vision_tower: if images_in { llava.vision_tower.clone().fork(device) } else { llava.vision_tower.clone() },
            multi_modal_projector: if images_in {
                llava.multi_modal_projector.clone().fork(device)
            } else {
                llava.multi_modal_projector.clone()
            },
            language_model: llava.language_model.clone().fork(device),
        },
        head: model.head.as_ref().map(|h| if images_out { h.clone().fork(device) } else { h.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use super::{IMAGE_TARGET_COST, balanced_passes};

    /// The passes cover the batch in order, none empty, and the costliest is the least
    /// any cut gives (checked against every two-way cut).
    #[test]
    fn passes_cover_the_batch_and_balance_the_padding() {
        let lens = [19, 41, 41, 50, 50, 57, 58, 58, 59, 61, 67, 68, 74, 74, 76, 110];
        let costs: Vec<(usize, bool)> = lens.iter().enumerate().map(|(i, &l)| (l, i < 3)).collect();
        let cost = |r: &std::ops::Range<usize>| {
            r.len() * costs[r.clone()].iter().map(|c| c.0).max().unwrap()
                + IMAGE_TARGET_COST * costs[r.clone()].iter().filter(|c| c.1).count()
        };
        let two = balanced_passes(&costs, 2);
        assert_eq!(two.len(), 2);
        assert_eq!((two[0].start, two[0].end, two[1].end), (0, two[1].start, lens.len()));
        let got = two.iter().map(cost).max().unwrap();
        let least = (1..lens.len()).map(|k| cost(&(0..k)).max(cost(&(k..lens.len())))).min().unwrap();
        assert_eq!(got, least);
        // The long outlier gets a short pass: padding 16 rows to 110 would cost 1760.
        assert!(got < 1200, "costliest pass {got}");
        for passes in [1, 3, 5, 16, 40] {
            let r = balanced_passes(&costs, passes);
            assert_eq!(r.len(), passes.min(lens.len()));
            assert_eq!(r.first().unwrap().start, 0);
            assert_eq!(r.last().unwrap().end, lens.len());
            assert!(r.windows(2).all(|w| w[0].end == w[1].start) && r.iter().all(|x| !x.is_empty()));
        }
        assert_eq!(balanced_passes(&[], 2), vec![0..0]);
    }
}
