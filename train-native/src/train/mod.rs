//! `train`: GenLLaVA's single-stage instruction tuning, natively.
//!
//! Today the LLaVA path trains (projector + LLM, vision frozen) with
//! cross-entropy on the assistant tokens over a [`data::Dataset`] mixture;
//! checkpoints are HF LLaVA folders plus the optimizer and loop state, and a
//! run resumes bit-exactly from the last one (`--resume`).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod report;
pub mod shapes;
pub mod synthetic;
pub mod tokenize;
pub mod trainer;

use crate::device::DeviceArg;
use anyhow::Context;
use checkpoint::TrainState;
use config::TrainConfig;
use data::{Dataset, MixtureSampler};
use std::path::PathBuf;

/// `--config FILE` and `--set KEY=VALUE`: the training config of `train` and `eval`.
#[derive(clap::Args, Default)]
pub struct ConfigArgs {
    /// Training config (JSON; every field optional, see `TrainConfig`); default: the embedded
    /// one, the main job's.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config field: `--set lr=1e-3 --set mixture.text=0.1 --set eval_samples=512`
    /// (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    /// The config file (or the embedded default) with the overrides applied, validated.
    pub fn load(&self) -> anyhow::Result<TrainConfig> {
        TrainConfig::load(self.config.as_deref(), &self.overrides)
    }
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Continue from `OUT/latest` when it exists (its saved config, plus `--set`); start fresh otherwise.
    #[arg(long)]
    pub resume: bool,
    /// Print the effective config and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Data-parallel training over several devices of `--device`'s kind, comma-separated,
    /// the first holding the weights and optimizer: CUDA indices (`0,1,2,3`) or wgpu
    /// adapters (`default`, `cpu`, `discrete:N`, `integrated:N`, `virtual:N`). Each step's
    /// micro-batches are dealt round-robin to the devices (`parallel_micro_batches` at a
    /// time on each), their gradients summed on the first: the same step as on one device.
    #[arg(long)]
    pub devices: Option<String>,
    /// The paper's ablation: the same run on understanding data alone (`mixture.text`,
    /// `mixture.generation` and `mixture.editing` set to 0 after any `--set`; every other
    /// setting, the seed and the held-out evaluation unchanged), written to `OUT_DIR-understanding-only` unless
    /// `--set out_dir=…` says where. Compare its `report.md` with the full run's.
    #[arg(long)]
    pub understanding_only: bool,
}

/// The overrides of `--understanding-only`: the given `--set`s, then the other tasks'
/// shares set to 0, and the run's folder beside the full run's unless one is given.
fn understanding_only(config: &ConfigArgs) -> anyhow::Result<Vec<String>> {
    let full = config.load()?;
    let mut overrides = config.overrides.clone();
    overrides.extend(["mixture.text=0", "mixture.generation=0", "mixture.editing=0"].map(String::from));
    // The key as `config::apply_override` reads it (trimmed, before the first `=`).
    if !config.overrides.iter().any(|o| o.split_once('=').is_some_and(|(key, _)| key.trim() == "out_dir")) {
        let mut dir = full.out_dir.into_os_string();
        dir.push("-understanding-only");
        overrides.push(format!("out_dir={}", PathBuf::from(dir).display()));
    }
    Ok(overrides)
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// GenLLaVA (or LLaVA) folder to score; default: the shipped model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The training config whose held-out sets and evaluation sizes to use (with the
    /// embedded one, the same questions and images the main job's report scores).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Also write the full result (per set and per question category) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write every question asked with the model's answer here, one JSON object per
    /// line (set, category, question, expected, answered, correct); for a model that describes
    /// its edits, every edit too (the instruction, the data's description and the model's).
    #[arg(long)]
    pub answers: Option<PathBuf>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
}

/// `train-native eval …`: the held-out evaluation the training run ends with, of any
/// model folder: `eval_samples` questions per understanding set, `eval_images` pictures
/// per generation and editing set, per split; markdown tables on stdout.
pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let cfg = args.config.load()?;
    let dir = args.model.clone().unwrap_or_else(crate::imagine::default_model);
    if !dir.is_dir() {
        anyhow::bail!("--model {}: not a model folder", dir.display());
    }
    let device = args.device.device()?;
    let bundle = model::load(&dir, &device)?;
    let (_, held) = data_sets(&cfg, bundle.config.vision_config.image_size)?;
    eprintln!(
        "scoring {} on {} held-out sets (data seed {}: {} questions per understanding set, {} pictures per image set)",
        dir.display(),
        held.len(),
        cfg.seed,
        cfg.eval_samples,
        cfg.eval_images
    );
    let mut r = eval::evaluate(&bundle, &held, &cfg, 0, None, args.answers.is_some())?;
    let answers = std::mem::take(&mut r.answers);
    println!("| model | {}", report::SCORE_COLUMNS);
    println!("| {} | {}", dir.display(), report::score_cells(&r));
    print!("{}", report::eval_tables(&r, "this evaluation")?);
    if let Some(path) = &args.json {
        crate::files::write_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.answers {
        let mut lines = String::new();
        for a in &answers {
            lines += &serde_json::to_string(a)?;
            lines.push('\n');
        }
        crate::files::write_atomic(path, lines.as_bytes())?;
        eprintln!("wrote {} ({} answers)", path.display(), answers.len());
    }
    Ok(())
}

/// Training sets (one per kind) and the held-out sets (one per kind and split).
pub(crate) type DataSets = (Vec<Box<dyn Dataset>>, Vec<Box<dyn Dataset>>);

pub(crate) fn data_sets(cfg: &TrainConfig, image_size: usize) -> anyhow::Result<DataSets> {
    let boxed = |sets: Vec<shapes::ShapesSet>| sets.into_iter().map(|s| Box::new(s) as Box<dyn Dataset>);
    let (seed, size) = (cfg.seed, cfg.data.size);
    match cfg.data.source.as_str() {
        "colours" => Ok((
            vec![Box::new(synthetic::Colours { len: size, size: image_size, seed })],
            vec![Box::new(synthetic::Colours { len: size, size: image_size, seed: seed ^ 0xE7A1 })],
        )),
        "shapes" => {
            use genllava::shapes::Split;
            let turns = cfg.data.turns;
            let train = boxed(shapes::ShapesSet::all(Split::Train, seed, image_size, size, &cfg.data, turns)).collect();
            // Held out: one question per image, scored by exact match.
            let held = [Split::Test, Split::Novel]
                .into_iter()
                .flat_map(|split| boxed(shapes::ShapesSet::all(split, seed, image_size, size, &cfg.data, 1)))
                .collect();
            Ok((train, held))
        }
        other => anyhow::bail!("data.source `{other}` is unknown (available: shapes, colours)"),
    }
}

/// Whether a fresh model is a GenLLaVA: as configured, else when the data asks for images.
fn wants_generation(cfg: &TrainConfig, sets: &[Box<dyn Dataset>]) -> bool {
    cfg.model.generation.unwrap_or_else(|| {
        sets.iter().any(|s| matches!(s.kind(), data::Kind::Generation | data::Kind::Editing))
            && (cfg.mixture.generation > 0.0 || cfg.mixture.editing > 0.0)
    })
}

/// The text a fresh tokenizer is trained on: every distinct conversation shape
/// of the data, rendered as the model will see it.
pub(crate) fn tokenizer_corpus(sets: &[Box<dyn Dataset>]) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for set in sets {
        for i in 0..set.len().min(2048) {
            let s = set.get(i)?;
            texts.push(tokenize::render_with_spans(genllava::template::ChatFormat::Vicuna, &s.turns).0);
        }
    }
    Ok(texts)
}

/// `train-native train …`.
pub fn run(mut args: TrainArgs) -> anyhow::Result<()> {
    if args.understanding_only {
        args.config.overrides = understanding_only(&args.config)?;
    }
    let given = args.config.load()?;
    let (device, replicas) = match &args.devices {
        None => (args.device.device()?, Vec::new()),
        Some(list) => {
            let mut all = args.device.devices(list)?;
            let first = all.remove(0);
            (first, all)
        }
    };
    let device = device.autodiff();
    let replicas: Vec<burn::tensor::Device> = replicas.into_iter().map(|d| d.autodiff()).collect();
    let latest = if args.resume { checkpoint::latest(&given.out_dir)? } else { None };
    let mut trainer = match latest {
        Some(dir) => {
            eprintln!("resuming from {}", dir.display());
            let restored = checkpoint::load(&dir, &device)?;
            // The saved config, with this invocation's overrides on top.
            let mut value = serde_json::to_value(&restored.config)?;
            for o in &args.config.overrides {
                config::apply_override(&mut value, o)?;
            }
            let cfg: TrainConfig = serde_json::from_value(value).context("config after --set overrides")?;
            cfg.validate()?;
            let mut bundle = restored.bundle;
            model::resolve_sd_dir(&mut bundle, &cfg);
            bundle.model = model::apply_trainable(model::stable_params(bundle.model, &device), &cfg.trainable);
            let optim = checkpoint::restore_optimizer(optim::adamw(&cfg), restored.optimizer_bytes)?;
            build(cfg, bundle, optim, restored.state, device, &replicas)?
        }
        None => {
            if args.print_config {
                println!("{}", serde_json::to_string_pretty(&given)?);
                return Ok(());
            }
            let cfg = given;
            if cfg.out_dir.join("latest").exists() && !args.resume {
                anyhow::bail!(
                    "{} already holds a run: pass --resume to continue it, or choose another out_dir",
                    cfg.out_dir.display()
                );
            }
            let mut bundle = match &cfg.model.from {
                Some(dir) => {
                    let mut bundle = model::load(dir, &device)?;
                    if bundle.generation.is_none() && cfg.model.generation.unwrap_or(false) {
                        model::add_generation(&mut bundle, &cfg, &device)?;
                    }
                    model::resolve_sd_dir(&mut bundle, &cfg);
                    if let Some(g) = &mut bundle.generation {
                        // The run's edits decide how the tuned model answers them.
                        g.config.describe_edits = cfg.data.describe_edits;
                    }
                    bundle
                }
                None => {
                    let size = model::tiny_preset()["vision_config"]["image_size"].as_u64().unwrap_or(32) as usize;
                    let size = cfg
                        .model
                        .init
                        .as_ref()
                        .and_then(|v| v["vision_config"]["image_size"].as_u64())
                        .map_or(size, |s| s as usize);
                    let (sets, _) = data_sets(&cfg, size)?;
                    // A pretrained language model brings its tokenizer; else one is trained on the data.
                    let tokenizer = match &cfg.model.llm {
                        Some(dir) => {
                            let path = model::asset_path(dir).join("tokenizer.json");
                            genllava::tokenizer::TextTokenizer::from_bytes(&crate::files::read(&path)?)
                                .with_context(|| path.display().to_string())?
                        }
                        None => tokenize::train_tokenizer(tokenizer_corpus(&sets)?.into_iter())?,
                    };
                    model::fresh(&cfg, tokenizer, wants_generation(&cfg, &sets), &device)?
                }
            };
            if cfg.trainable.llm == config::LlmMode::Lora {
                model::attach_lora(&mut bundle, &cfg, None)?;
            }
            bundle.model = model::apply_trainable(model::stable_params(bundle.model, &device), &cfg.trainable);
            let state = TrainState {
                step: 0,
                sample_pos: 0,
                rng: cfg.seed,
                samples_seen: 0,
                tokens_seen: 0,
                skipped_no_target: 0,
                truncated: 0,
                elapsed_s: 0.0,
            };
            let optim = optim::adamw(&cfg);
            build(cfg, bundle, optim, state, device, &replicas)?
        }
    };
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&trainer.cfg)?);
        return Ok(());
    }
    trainer.run()?;
    let final_dir = checkpoint::save_final(&trainer.cfg, &trainer.bundle)?;
    let report = report::write(&trainer)?;
    eprintln!("done: model in {}, report in {}", final_dir.display(), report.display());
    Ok(())
}

fn build(
    cfg: TrainConfig,
    bundle: model::Bundle,
    optim: burn::optim::ModuleOptimizer,
    state: TrainState,
    device: burn::tensor::Device,
    replicas: &[burn::tensor::Device],
) -> anyhow::Result<trainer::Trainer> {
    std::fs::create_dir_all(&cfg.out_dir).with_context(|| cfg.out_dir.display().to_string())?;
    let (sets, eval_sets) = data_sets(&cfg, bundle.config.vision_config.image_size)?;
    let sampler = MixtureSampler::new(sets, &cfg.mixture, cfg.seed)?;
    let missing = sampler.missing(&cfg.mixture);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|k| k.name()).collect();
        eprintln!("note: no data for {} in the mixture: shares renormalised over the rest", names.join(", "));
    }
    let frozen_on = |device: &burn::tensor::Device| -> anyhow::Result<Option<loss::Frozen>> {
        match &bundle.generation {
            Some(g) => Ok(Some(loss::Frozen::load(&g.sd_dir, g.head_config.num_queries, device)?)),
            None => Ok(None),
        }
    };
    let frozen = frozen_on(&device)?;
    let replicas = replicas
        .iter()
        .map(|d| Ok(trainer::Replica { device: d.clone(), frozen: frozen_on(d)? }))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !replicas.is_empty() {
        let workers = (1 + replicas.len()) * cfg.parallel_micro_batches;
        let names: Vec<String> =
            std::iter::once(&device).chain(replicas.iter().map(|r| &r.device)).map(|d| format!("{d:?}")).collect();
        eprintln!(
            "data parallel over {} devices ({}): {} micro-batches per step, {workers} at a time",
            1 + replicas.len(),
            names.join(", "),
            cfg.accumulation()
        );
        if cfg.accumulation() < 1 + replicas.len() {
            log::warn!(
                "{} micro-batches per step leave some of the {} devices idle: raise global_batch / micro_batch",
                cfg.accumulation(),
                1 + replicas.len()
            );
        }
    }
    let (trainable, total) = model::count_params(&bundle.model);
    eprintln!(
        "model: {total} parameters, {trainable} trainable; {} steps of {} samples ({} × {})",
        cfg.steps,
        cfg.global_batch,
        cfg.accumulation(),
        cfg.micro_batch
    );
    Ok(trainer::Trainer { cfg, bundle, optim, state, sampler, eval_sets, device, evals: Vec::new(), frozen, replicas })
}
