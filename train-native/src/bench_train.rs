//! `bench --train`: the training step of a config (the main job's by default) timed
//! under several pass layouts, side by side in one run, on the same samples.
//!
//! Each layout trains `steps` steps from the same start into a scratch folder (no
//! evaluation, one final checkpoint) through the real trainer; the table gives the
//! median seconds per step after the warm-up steps and the ratio to the config's own
//! layout. A layout is `micro_batch` (samples per pass, on average) and
//! `parallel_micro_batches` (passes at once, each on its own thread).

use crate::device::DeviceArg;
use crate::train::{self, ConfigArgs, TrainArgs};
use std::fmt::Write as _;
use std::path::Path;

/// Steps left out of the timing at the start of each run (allocator and caches warm up).
const WARMUP_STEPS: usize = 5;

/// The layouts timed besides the config's own: `(micro_batch, parallel_micro_batches)`.
const LAYOUTS: [(usize, usize); 4] = [(32, 1), (16, 2), (8, 4), (4, 8)];

/// Median seconds per step of the run's `metrics.jsonl`, the warm-up steps left out.
fn median_step_seconds(metrics: &Path) -> anyhow::Result<f64> {
    let mut secs: Vec<f64> = train::metrics::read_metrics(metrics)
        .iter()
        .filter(|m| m.step > WARMUP_STEPS && m.samples_per_s > 0.0)
        .map(|m| m.samples as f64 / m.samples_per_s)
        .collect();
    if secs.is_empty() {
        anyhow::bail!("{}: no timed steps after the {WARMUP_STEPS} warm-up steps", metrics.display());
    }
    secs.sort_by(f64::total_cmp);
    Ok(secs[secs.len() / 2])
}

/// Time the layouts; returns the markdown table.
pub fn run(device: DeviceArg, config: &ConfigArgs, steps: usize) -> anyhow::Result<String> {
    if steps <= WARMUP_STEPS {
        anyhow::bail!("--steps {steps}: give more than the {WARMUP_STEPS} warm-up steps");
    }
    let base = config.load()?;
    let own = (base.micro_batch, base.parallel_micro_batches);
    let mut layouts = vec![own];
    layouts.extend(LAYOUTS.iter().copied().filter(|&l| l != own && base.global_batch.is_multiple_of(l.0)));
    let scratch = std::env::temp_dir().join(format!("genllava-bench-train-{}", std::process::id()));
    let mut rows = Vec::new();
    for (i, &(micro, parallel)) in layouts.iter().enumerate() {
        let out = scratch.join(format!("layout-{i}"));
        let mut overrides = config.overrides.clone();
        overrides.extend([
            format!("steps={steps}"),
            format!("micro_batch={micro}"),
            format!("parallel_micro_batches={parallel}"),
            "eval_every=0".into(),
            "eval_samples=0".into(),
            "eval_images=0".into(),
            "checkpoint_every=0".into(),
            format!("out_dir={}", out.display()),
        ]);
        eprintln!("bench --train: {micro} samples per pass, {parallel} at once …");
        let args = TrainArgs {
            config: ConfigArgs { config: config.config.clone(), overrides },
            resume: false,
            print_config: false,
            device,
            devices: None,
            understanding_only: false,
        };
        let ran = train::run(args).and_then(|()| median_step_seconds(&out.join("metrics.jsonl")));
        let _ = std::fs::remove_dir_all(&out);
        rows.push((micro, parallel, ran?));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let first = rows[0].2;
    let mut md = String::new();
    writeln!(
        md,
        "Training step, {} samples, {:?}: median of steps {}–{steps} ({} warm-up steps left out)\n",
        base.global_batch,
        device,
        WARMUP_STEPS + 1,
        WARMUP_STEPS
    )?;
    writeln!(md, "| samples per pass | passes per step | at once | s / step | samples / s | speed vs the config's |")?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for (k, &(micro, parallel, secs)) in rows.iter().enumerate() {
        let mark = if k == 0 { " (the config's)" } else { "" };
        writeln!(
            md,
            "| {micro}{mark} | {} | {parallel} | {secs:.3} | {:.1} | {:.2}× |",
            base.global_batch / micro,
            base.global_batch as f64 / secs,
            first / secs
        )?;
    }
    Ok(md)
}
