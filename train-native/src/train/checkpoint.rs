//! Checkpoints: one folder per saved step that is at the same time a Hugging
//! Face LLaVA folder (`config.json`, `model.safetensors`, `tokenizer.json`,
//! `processor_config.json`: `train-native chat --model` loads it) and the full
//! training state (`optimizer.bpk`, `train_state.json`, `train_config.json`).
//!
//! Writes are crash-safe: the folder is written under a temporary name, every
//! file and the folder are fsynced, the folder is renamed into place, and only
//! then is the `latest` pointer replaced (temp file, fsync, rename, fsync of the
//! parent). A run killed at any instant leaves `latest` naming a complete checkpoint.

use super::config::TrainConfig;
use super::model::{self, Bundle};
use anyhow::Context;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Everything besides weights and optimizer moments that a resumed run needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: usize,
    /// Position of the next sample in the mixture stream.
    pub sample_pos: u64,
    /// State of the run's random generator (re-seeds the backend every step).
    pub rng: u64,
    /// Samples trained on so far.
    pub samples_seen: u64,
    /// Target tokens trained on so far.
    pub tokens_seen: u64,
    /// Samples dropped because no assistant token survived encoding.
    pub skipped_no_target: u64,
    /// Samples cut at `max_seq_len`.
    pub truncated: u64,
    /// Seconds spent training before this checkpoint (across resumes).
    pub elapsed_s: f64,
}

/// The name of the folder of step `step`.
pub fn step_dir_name(step: usize) -> String {
    format!("step-{step:07}")
}

/// fsync a directory so a rename inside it is durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).with_context(|| format!("fsync {}", dir.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| path.display().to_string())
}

/// Replace a file atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::files::write_atomic(path, bytes)?;
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Write the HF model files of `bundle` into `dir` (which must exist); for a
/// GenLLaVA also `genllava.json`, `gen_head/` and the frozen decoder as `sd/`.
/// LoRA adapters are merged into the weights with `merge`, else written beside
/// the base weights in PEFT's layout (a step folder, from which a run resumes).
fn write_model_files(dir: &Path, bundle: &Bundle, cfg: &TrainConfig, merge: bool) -> anyhow::Result<()> {
    write_synced(&dir.join("config.json"), serde_json::to_string_pretty(&bundle.config_json)?.as_bytes())?;
    if !model::has_lora(&bundle.model) {
        write_synced(&dir.join("model.safetensors"), &model::export_safetensors(&bundle.model.llava)?)?;
    } else if merge {
        let merged = bundle.model.llava.clone().materialize();
        write_synced(&dir.join("model.safetensors"), &model::export_safetensors(&merged)?)?;
    } else {
        write_synced(&dir.join("model.safetensors"), &model::export_safetensors(&bundle.model.llava)?)?;
        let adapter = genllava::lora::adapter_tensors(&bundle.model.llava.language_model);
        let adapter_config = cfg.trainable.lora.adapter_config();
        write_synced(
            &dir.join(genllava::lora::CONFIG_FILE),
            serde_json::to_string_pretty(&adapter_config)?.as_bytes(),
        )?;
        write_synced(
            &dir.join(format!("{}.safetensors", genllava::lora::WEIGHTS_STEM)),
            &genllava::export::safetensors_bytes(&adapter, false),
        )?;
    }
    write_synced(&dir.join("tokenizer.json"), bundle.tokenizer.to_json()?.as_bytes())?;
    write_synced(&dir.join("processor_config.json"), serde_json::to_string_pretty(&bundle.processor_json)?.as_bytes())?;
    if let (Some(genr), Some(head)) = (&bundle.generation, &bundle.model.head) {
        write_synced(&dir.join("genllava.json"), serde_json::to_string_pretty(&genr.config)?.as_bytes())?;
        let head_dir = dir.join("gen_head");
        std::fs::create_dir_all(&head_dir).with_context(|| head_dir.display().to_string())?;
        write_synced(&head_dir.join("config.json"), serde_json::to_string_pretty(&genr.head_config)?.as_bytes())?;
        write_synced(&head_dir.join("model.safetensors"), &model::export_head(head))?;
        sync_dir(&head_dir)?;
        copy_tree(&genr.sd_dir, &dir.join("sd"))?;
    }
    Ok(())
}

/// Copy the files of folder `from` (recursively) into `to`, fsynced.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| to.display().to_string())?;
    for entry in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let entry = entry?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            write_synced(&target, &crate::files::read(&path)?)?;
        }
    }
    sync_dir(to)
}

/// Build a folder under a temporary name with `fill`, then move it to `target`
/// (replacing an older one of that name).
fn write_dir_atomic(target: &Path, fill: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let parent = target.parent().context("checkpoint path has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    let name = target.file_name().and_then(|n| n.to_str()).context("checkpoint name")?;
    let tmp = parent.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
    fill(&tmp)?;
    sync_dir(&tmp)?;
    if target.exists() {
        std::fs::remove_dir_all(target).with_context(|| target.display().to_string())?;
    }
    std::fs::rename(&tmp, target).with_context(|| format!("rename {} → {}", tmp.display(), target.display()))?;
    sync_dir(parent)
}

/// Save step checkpoint `state.step` into `cfg.out_dir`, point `latest` at it and
/// delete the step folders beyond `cfg.keep_checkpoints`. Returns its folder.
pub fn save(
    cfg: &TrainConfig,
    bundle: &Bundle,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> anyhow::Result<PathBuf> {
    let out = &cfg.out_dir;
    let name = step_dir_name(state.step);
    let dir = out.join(&name);
    let optim_bytes = optim.into_bytes().map_err(|e| anyhow::anyhow!("serialising the optimizer state: {e:?}"))?;
    write_dir_atomic(&dir, |tmp| {
        write_model_files(tmp, bundle, cfg, false)?;
        write_synced(&tmp.join("optimizer.bpk"), &optim_bytes)?;
        write_synced(&tmp.join("train_state.json"), serde_json::to_string_pretty(state)?.as_bytes())?;
        write_synced(&tmp.join("train_config.json"), serde_json::to_string_pretty(cfg)?.as_bytes())?;
        Ok(())
    })?;
    write_atomic(&out.join("latest"), name.as_bytes())?;
    prune(out, cfg.keep_checkpoints.max(1))?;
    Ok(dir)
}

/// Write the final model (HF files only, LoRA merged) to `out/model`.
pub fn save_final(cfg: &TrainConfig, bundle: &Bundle) -> anyhow::Result<PathBuf> {
    let dir = cfg.out_dir.join("model");
    write_dir_atomic(&dir, |tmp| write_model_files(tmp, bundle, cfg, true))?;
    Ok(dir)
}

/// Step folders in `out`, oldest first.
pub fn step_dirs(out: &Path) -> anyhow::Result<Vec<(usize, PathBuf)>> {
    let mut dirs = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else { return Ok(dirs) };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<usize>().ok()) {
            dirs.push((step, e.path()));
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn prune(out: &Path, keep: usize) -> anyhow::Result<()> {
    let latest = latest(out)?;
    let dirs = step_dirs(out)?;
    let excess = dirs.len().saturating_sub(keep);
    for (_, path) in dirs.into_iter().take(excess) {
        if Some(&path) != latest.as_ref() {
            std::fs::remove_dir_all(&path).with_context(|| path.display().to_string())?;
        }
    }
    Ok(())
}

/// The folder `out/latest` names, if any.
pub fn latest(out: &Path) -> anyhow::Result<Option<PathBuf>> {
    match std::fs::read_to_string(out.join("latest")) {
        Ok(name) => {
            let dir = out.join(name.trim());
            anyhow::ensure!(dir.is_dir(), "{}: `latest` names {} which does not exist", out.display(), dir.display());
            Ok(Some(dir))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", out.join("latest").display())),
    }
}

/// A checkpoint read back.
pub struct Restored {
    pub config: TrainConfig,
    pub bundle: Bundle,
    pub optimizer_bytes: Vec<u8>,
    pub state: TrainState,
}

/// Read the checkpoint folder `dir` (weights onto `device`).
pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Restored> {
    let read = |name: &str| crate::files::read(&dir.join(name));
    let config: TrainConfig = serde_json::from_slice(&read("train_config.json")?).context("train_config.json")?;
    let state: TrainState = serde_json::from_slice(&read("train_state.json")?).context("train_state.json")?;
    let bundle = if config.trainable.llm == super::config::LlmMode::Lora {
        // The base weights as saved, then the adapter's factors on them, exactly.
        let mut bundle = model::load_with(dir, device, false)?;
        let src = crate::files::DirSource::open(dir)?;
        let (_, factors) = genllava::lora::load_folder(&src, device)?
            .with_context(|| format!("{}: a LoRA run's checkpoint without adapter_config.json", dir.display()))?;
        model::attach_lora(&mut bundle, &config, Some(factors))?;
        bundle
    } else {
        model::load(dir, device)?
    };
    Ok(Restored { config, bundle, optimizer_bytes: read("optimizer.bpk")?, state })
}

/// Restore an optimizer's state from [`Restored::optimizer_bytes`].
pub fn restore_optimizer(optim: ModuleOptimizer, bytes: Vec<u8>) -> anyhow::Result<ModuleOptimizer> {
    optim.from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| anyhow::anyhow!("optimizer.bpk: {e:?}"))
}
