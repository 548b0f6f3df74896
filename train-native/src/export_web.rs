//! `export-web`: a checkpoint folder → the web format (`genllava::web`): shards per
//! submodule with quantized matmul weights, `manifest.json`, and the other files copied.

use crate::files::{DirSource, write_atomic};
use genllava::checkpoint::{FileSource, SubSource};
use genllava::quant::{Quant, Scales};
use genllava::web::{self, ExportOptions, Exporter};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ExportWebArgs {
    /// The checkpoint folder: GenLLaVA, LLaVA, a diffusers Stable Diffusion, …
    #[arg(long)]
    pub model: PathBuf,
    /// How matmul weights are stored: q4, q8, f16 or f32 (norms, biases and embeddings stay f32).
    #[arg(long, default_value = "q8", value_parser = parse_quant)]
    pub quant: Quant,
    /// The folder to write (created; existing files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// The largest shard in bytes.
    #[arg(long, default_value_t = web::DEFAULT_SHARD_LIMIT)]
    pub shard_limit: usize,
    /// Quantize embedding tables too.
    #[arg(long)]
    pub quantize_embeddings: bool,
    /// The dtype of q8 / q4 block scales: f32, or f16 (half their bytes; kept f16 on
    /// devices with f16 arithmetic, WebGPU's `shader-f16`, widened to f32 elsewhere).
    #[arg(long, default_value = "f32", value_parser = parse_scales)]
    pub scales: Scales,
}

fn parse_scales(s: &str) -> Result<Scales, String> {
    Scales::parse(s).ok_or_else(|| format!("`{s}` is not f32 or f16"))
}

fn parse_quant(s: &str) -> Result<Quant, String> {
    Quant::parse(s).ok_or_else(|| format!("`{s}` is not q4, q8, f16 or f32"))
}

/// Every file under `dir`, relative, sorted; hidden files and `skip` left out.
fn walk(dir: &Path, rel: &str, skip: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        if name.starts_with('.') || path == skip {
            continue;
        }
        let rel_name = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if path.is_dir() {
            walk(&path, &rel_name, skip, out)?;
        } else {
            out.push(rel_name);
        }
    }
    Ok(())
}

/// The weights stems of a folder's files (`unet/diffusion_pytorch_model` for
/// `unet/diffusion_pytorch_model.safetensors`, its `.fp16` variant or its shard
/// index) and every file that belongs to them (not copied).
fn weight_stems(files: &[String], root: &Path) -> anyhow::Result<(BTreeSet<String>, BTreeSet<String>)> {
    let (mut stems, mut owned) = (BTreeSet::new(), BTreeSet::new());
    for f in files {
        let Some(stem) =
            [".safetensors.index.json", ".safetensors.index.fp16.json"].iter().find_map(|s| f.strip_suffix(s))
        else {
            continue;
        };
        // The shards an index lists are read through it, not as stems of their own.
        let path = root.join(f);
        let index: serde_json::Value = serde_json::from_slice(&crate::files::read(&path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let dir = f.rsplit_once('/').map_or(String::new(), |(d, _)| format!("{d}/"));
        for shard in index["weight_map"].as_object().into_iter().flat_map(|m| m.values()) {
            owned.insert(format!("{dir}{}", shard.as_str().unwrap_or_default()));
        }
        owned.insert(f.clone());
        stems.insert(stem.to_string());
    }
    for f in files {
        if let Some(stem) = f.strip_suffix(".safetensors")
            && !owned.contains(f)
        {
            owned.insert(f.clone());
            stems.insert(stem.strip_suffix(".fp16").unwrap_or(stem).to_string());
        }
    }
    Ok((stems, owned))
}

pub fn run(args: ExportWebArgs) -> anyhow::Result<()> {
    let src = DirSource::open(&args.model)?;
    if args.out.canonicalize().ok() == args.model.canonicalize().ok() {
        anyhow::bail!("--out {} is the --model folder: write the web format elsewhere", args.out.display());
    }
    let mut files = vec![];
    walk(&args.model, "", &args.out, &mut files)?;
    let (stems, owned) = weight_stems(&files, &args.model)?;
    if stems.is_empty() {
        anyhow::bail!("{}: no safetensors weights found", args.model.display());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| anyhow::anyhow!("{}: {e}", args.out.display()))?;
    let options = ExportOptions {
        quant: args.quant,
        shard_limit: args.shard_limit,
        embeddings: args.quantize_embeddings,
        scales: args.scales,
    };
    let out = args.out.clone();
    let mut write = |name: &str, bytes: &[u8]| -> genllava::Result<()> {
        write_atomic(&out.join(name), bytes).map_err(|e| genllava::Error::config(name, e.to_string()))
    };
    let mut exporter = Exporter::new(options, &mut write)?;
    let mut source_bytes = 0u64;
    for f in &files {
        let path = args.model.join(f);
        if owned.contains(f) {
            source_bytes += std::fs::metadata(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?.len();
            continue;
        }
        let bytes = crate::files::read(&path)?;
        exporter.add_file(f, &bytes);
        write_atomic(&args.out.join(f), &bytes)?;
    }
    for stem in &stems {
        let (dir, base) = stem.rsplit_once('/').unwrap_or(("", stem));
        let sub = SubSource::new(&src, dir);
        let from: &dyn FileSource = if dir.is_empty() { &src } else { &sub };
        let map = genllava::sd::pipeline::component_weights(from, base)?;
        exporter.add_weights(stem, &map)?;
    }
    let manifest = exporter.finish()?;
    let json = serde_json::to_vec_pretty(&manifest)?;
    write_atomic(&args.out.join(web::MANIFEST), &json)?;
    let shard_bytes: usize = manifest.shards.iter().map(|s| s.bytes).sum();
    println!(
        "{}: {} tensors of {} weights files in {} shards, {:.2} MB as {}{} (from {:.2} MB of safetensors), {} files copied",
        args.out.display(),
        manifest.tensors.len(),
        stems.len(),
        manifest.shards.len(),
        shard_bytes as f64 / 1e6,
        args.quant.name(),
        if args.quant.is_block() { format!(" ({} scales)", args.scales.name()) } else { String::new() },
        source_bytes as f64 / 1e6,
        manifest.files.len(),
    );
    Ok(())
}
