//! `bench`: throughput of the decoder (prefill and cached decode), the UNet and
//! the VAE decoder on fixture-sized and real-sized configs, optionally side by
//! side with PyTorch running the same configs (`tests/reference/bench_torch.py`).
//!
//! Every measurement is one warm-up run, then the median of N timed runs; each
//! run ends by reading a small result back to the host, so the clock stops only
//! after the device has finished.

use crate::device::DeviceArg;
use crate::files::{self, DirSource};
use anyhow::Context;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use genllava::llama::{KvCache, Llama, LlamaConfig};
use genllava::llava::LlavaCheckpoint;
use genllava::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use genllava::sd::vae::{AutoencoderKL, AutoencoderKLConfig};
use genllava::weights::{VarBuilder, WeightMap};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Skip the real-sized Stable Diffusion UNet and VAE (minutes on a small CPU); fewer runs.
    #[arg(long)]
    pub quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run the same configs in PyTorch (`tests/reference/bench_torch.py`) and compare.
    #[arg(long)]
    pub torch: bool,
    /// Only the models whose name contains this text (e.g. `tiny`, `small`, `sd`); with
    /// `--kernels`, only the kernels whose name contains it (e.g. `conv2d`, `whole`).
    #[arg(long)]
    pub only: Option<String>,
    /// `--kernels`: the latent sides of the whole-diffusion-step rows (SD-1.4 UNet; default 32 and 64).
    #[arg(long, value_delimiter = ',', requires = "kernels")]
    pub latents: Vec<usize>,
    /// Timed runs per measurement after the warm-up (default: 3 with `--quick`, else 5).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Threads PyTorch may use. Burn's CPU backend is built with rayon and uses every
    /// core, so the default (the cores available) compares like with like.
    #[arg(long, default_value_t = available_threads())]
    pub torch_threads: usize,
    /// Instead of the models, time each WGSL kernel against the Burn ops it replaces
    /// (needs `--device wgpu`).
    #[arg(long, conflicts_with_all = ["torch", "json"])]
    pub kernels: bool,
    /// Instead of the models, time the training step of a config (`--config`, `--set`;
    /// default: the main job's) under several pass layouts (`micro_batch`,
    /// `parallel_micro_batches`), side by side on the same samples.
    #[arg(long, conflicts_with_all = ["torch", "json", "kernels"])]
    pub train: bool,
    /// `--train`: steps per layout (the first 5 are left out of the timing).
    #[arg(long, default_value_t = 30, requires = "train")]
    pub steps: usize,
    /// `--train`: the training config and its overrides.
    #[command(flatten)]
    pub config: crate::train::ConfigArgs,
}

/// The cores this process may use.
fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Prompt lengths of the prefill measurements.
const PREFILL: [usize; 2] = [64, 256];
/// Cached decode steps, after a prompt of `PREFILL[0]` tokens.
const DECODE_STEPS: usize = 32;
/// Classifier-free guidance runs the UNet on a batch of two.
const UNET_BATCH: usize = 2;
/// CLIP text length, the cross-attention context of the UNet.
const CONTEXT_LEN: usize = 77;
/// Standard deviation of random weights.
const INIT_STD: f64 = 0.02;

/// What a model is and where its weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Llm,
    Unet,
    Vae,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Llm => "llm",
            Kind::Unet => "unet",
            Kind::Vae => "vae",
        }
    }
}

/// One benchmarked model: its config (`config.json` contents, the text config for
/// a LLaVA), the fixture folder holding its weights or `None` for random weights,
/// and the latent side for the diffusion models.
struct Case {
    name: &'static str,
    kind: Kind,
    config: Value,
    fixture: Option<PathBuf>,
    latent: usize,
    /// Real-sized: skipped by `--quick`.
    heavy: bool,
}

/// One row of the result table: the median seconds of one run of `work` units.
struct Row {
    model: &'static str,
    /// Stable key shared with the PyTorch script (`prefill-64`, `decode-32`, `unet-step`, `vae-decode`).
    key: String,
    /// What a run does, in words.
    what: String,
    seconds: f64,
    /// Tokens per run for the decoder rows (reported as tokens/s); `None`: report seconds.
    tokens: Option<usize>,
    torch_seconds: Option<f64>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    serde_json::from_slice(&files::read(path)?).with_context(|| path.display().to_string())
}

/// The benchmarked models, smallest first.
fn cases() -> anyhow::Result<Vec<Case>> {
    let fx = fixtures();
    let llava = fx.join("llava-tiny");
    let text_config = read_json(&llava.join("config.json"))?
        .get("text_config")
        .cloned()
        .context("llava-tiny/config.json has no text_config")?;
    let unet_cfg = read_json(&fx.join("unet-tiny/config.json"))?;
    let unet_latent = unet_cfg.get("sample_size").and_then(Value::as_u64).unwrap_or(8) as usize;
    let vae_cfg = read_json(&fx.join("vae-tiny/config.json"))?;
    let vae_latent = vae_latent_side(&vae_cfg);
    Ok(vec![
        Case {
            name: "llava-tiny",
            kind: Kind::Llm,
            config: text_config,
            fixture: Some(llava),
            latent: 0,
            heavy: false,
        },
        Case { name: "llm-small", kind: Kind::Llm, config: small_llm(), fixture: None, latent: 0, heavy: false },
        Case {
            name: "unet-tiny",
            kind: Kind::Unet,
            config: unet_cfg,
            fixture: Some(fx.join("unet-tiny")),
            latent: unet_latent,
            heavy: false,
        },
        Case {
            name: "vae-tiny",
            kind: Kind::Vae,
            config: vae_cfg,
            fixture: Some(fx.join("vae-tiny")),
            latent: vae_latent,
            heavy: false,
        },
        Case { name: "unet-sd14", kind: Kind::Unet, config: sd14_unet(), fixture: None, latent: 32, heavy: true },
        Case { name: "vae-sd14", kind: Kind::Vae, config: sd14_vae(), fixture: None, latent: 32, heavy: true },
    ])
}

/// Latent side at which the VAE decodes to its `sample_size`.
fn vae_latent_side(cfg: &Value) -> usize {
    let size = cfg.get("sample_size").and_then(Value::as_u64).unwrap_or(32) as usize;
    let levels = cfg.get("block_out_channels").and_then(Value::as_array).map_or(1, Vec::len);
    (size >> levels.saturating_sub(1)).max(1)
}

/// A mid-size Llama: ~50M parameters, Llama-2's vocabulary.
fn small_llm() -> Value {
    json!({
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1408,
        "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 2,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0
    })
}

/// `unet/config.json` of CompVis/stable-diffusion-v1-4 (~860M parameters).
pub(crate) fn sd14_unet() -> Value {
    json!({
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    })
}

/// `vae/config.json` of CompVis/stable-diffusion-v1-4 (~84M parameters).
fn sd14_vae() -> Value {
    json!({
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
        "sample_size": 512, "scaling_factor": 0.18215,
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
    })
}

/// Deterministic token ids, the same formula as the PyTorch script.
fn token_ids(n: usize, vocab: usize) -> Vec<i64> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as i64).collect()
}

/// One warm-up call, then the median seconds of `runs` timed calls. `run` gets a
/// fresh start each time and returns the seconds it measured itself (so it can
/// leave set-up work, such as a prompt before decoding, off the clock).
fn median_of(runs: usize, mut run: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<f64> {
    run()?;
    let mut times = (0..runs.max(1)).map(|_| run()).collect::<anyhow::Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Time `f` on the host clock.
fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Read a scalar back to the host: the device has finished everything it depends on.
fn sync_scalar(t: Tensor<1>) -> anyhow::Result<f32> {
    let data = t.into_data().convert::<f32>();
    let v = data.try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("read back: {e:?}"))?;
    v.first().copied().context("read back: empty tensor")
}

/// Greedy next token of the last position of `hidden` `[1, seq, hidden]`, read back.
fn next_token(model: &Llama, hidden: Tensor<3>) -> anyhow::Result<i64> {
    let seq = hidden.dims()[1];
    let logits = model.logits(hidden.narrow(1, seq - 1, 1)); // [1, 1, vocab]
    let id = logits.argmax(2).flatten::<1>(0, 2).into_data().convert::<i64>();
    let v = id.try_to_vec::<i64>().map_err(|e| anyhow::anyhow!("read back: {e:?}"))?;
    v.first().copied().context("read back: empty tensor")
}

fn ids_tensor(ids: &[i64], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device)
}

/// Load the decoder: the fixture's language model, or random weights.
fn load_llm(case: &Case, device: &Device) -> anyhow::Result<(Llama, LlamaConfig)> {
    let cfg = LlamaConfig::from_json(&case.config.to_string())?;
    let model = match &case.fixture {
        Some(dir) => LlavaCheckpoint::load(&DirSource::open(dir)?, device)?.model.language_model,
        None => {
            let vb = VarBuilder::init(INIT_STD, device);
            Llama::load(&cfg, &vb, &vb.pp("lm_head"))?
        }
    };
    Ok((model, cfg))
}

fn bench_llm(case: &Case, runs: usize, device: &Device) -> anyhow::Result<Vec<Row>> {
    let (model, cfg) = load_llm(case, device)?;
    let mut rows = Vec::new();
    for n in PREFILL {
        let ids = token_ids(n, cfg.vocab_size);
        let secs = median_of(runs, || {
            let mut cache = KvCache::new(&cfg, device);
            timed(|| {
                let hidden = model.forward_embeds(model.embed_tokens(ids_tensor(&ids, device)), &mut cache);
                next_token(&model, hidden).map(drop)
            })
        })?;
        rows.push(row(case, format!("prefill-{n}"), format!("prefill, {n}-token prompt"), secs, Some(n)));
    }
    let prompt = token_ids(PREFILL[0], cfg.vocab_size);
    let secs = median_of(runs, || {
        let mut cache = KvCache::new(&cfg, device);
        let hidden = model.forward_embeds(model.embed_tokens(ids_tensor(&prompt, device)), &mut cache);
        let mut id = next_token(&model, hidden)?;
        timed(|| {
            for _ in 0..DECODE_STEPS {
                let hidden = model.forward_embeds(model.embed_tokens(ids_tensor(&[id], device)), &mut cache);
                id = next_token(&model, hidden)?;
            }
            Ok(())
        })
    })?;
    let what = format!("decode, {DECODE_STEPS} steps after {} (KV cache)", PREFILL[0]);
    rows.push(row(case, format!("decode-{DECODE_STEPS}"), what, secs, Some(DECODE_STEPS)));
    Ok(rows)
}

/// Weights of a diffusers fixture folder, or random ones.
fn diffusers_vb(case: &Case, device: &Device) -> anyhow::Result<VarBuilder> {
    Ok(match &case.fixture {
        Some(dir) => {
            let path = dir.join("diffusion_pytorch_model.safetensors");
            let map = WeightMap::from_safetensors(&path.display().to_string(), files::read(&path)?)?;
            VarBuilder::from_map(Arc::new(map), device)
        }
        None => VarBuilder::init(INIT_STD, device),
    })
}

fn bench_unet(case: &Case, runs: usize, device: &Device) -> anyhow::Result<Vec<Row>> {
    let cfg = UNet2DConditionConfig::from_json(&case.config.to_string())?;
    let unet = UNet2DConditionModel::load(&cfg, &diffusers_vb(case, device)?)?;
    let l = case.latent;
    let normal = Distribution::Normal(0.0, 1.0);
    let sample = Tensor::<4>::random([UNET_BATCH, cfg.in_channels, l, l], normal, device);
    let context = Tensor::<3>::random([UNET_BATCH, CONTEXT_LEN, cfg.cross_attention_dim], normal, device);
    let secs = median_of(runs, || {
        timed(|| {
            let eps = unet.forward_at(sample.clone(), 500.0, context.clone())?;
            sync_scalar(eps.sum()).map(drop)
        })
    })?;
    let what = format!("step, batch {UNET_BATCH}, {l}×{l} latents");
    Ok(vec![row(case, "unet-step".into(), what, secs, None)])
}

fn bench_vae(case: &Case, runs: usize, device: &Device) -> anyhow::Result<Vec<Row>> {
    let cfg = AutoencoderKLConfig::from_json(&case.config.to_string())?;
    let vae = AutoencoderKL::load(&cfg, &diffusers_vb(case, device)?)?;
    let l = case.latent;
    let side = l << (cfg.block_out_channels.len() - 1);
    let z = Tensor::<4>::random([1, cfg.latent_channels, l, l], Distribution::Normal(0.0, 1.0), device);
    let secs = median_of(runs, || timed(|| sync_scalar(vae.decode(z.clone())?.sum()).map(drop)))?;
    let what = format!("decode {l}×{l} → {side}×{side}");
    Ok(vec![row(case, "vae-decode".into(), what, secs, None)])
}

fn row(case: &Case, key: String, what: String, seconds: f64, tokens: Option<usize>) -> Row {
    Row { model: case.name, key, what, seconds, tokens, torch_seconds: None }
}

/// `train-native bench …`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !args.train && (args.config.config.is_some() || !args.config.overrides.is_empty()) {
        anyhow::bail!("--config and --set choose the training config of `bench --train`; add --train");
    }
    if args.train {
        // The trainer makes its own device.
        print!("{}", crate::bench_train::run(args.device, &args.config, args.steps)?);
        return Ok(());
    }
    let device = args.device.device()?;
    let runs = args.runs.unwrap_or(if args.quick { 3 } else { 5 });
    if args.kernels {
        print!("{}", crate::bench_kernels::run(&device, args.quick, runs, args.only.as_deref(), &args.latents)?);
        return Ok(());
    }
    let selected: Vec<Case> = cases()?
        .into_iter()
        .filter(|c| !(args.quick && c.heavy))
        .filter(|c| args.only.as_deref().is_none_or(|o| c.name.contains(o)))
        .collect();
    if selected.is_empty() {
        anyhow::bail!("no model matches --only {:?}", args.only.unwrap_or_default());
    }
    let mut rows = Vec::new();
    for case in &selected {
        eprintln!("bench: {} …", case.name);
        let started = Instant::now();
        rows.extend(match case.kind {
            Kind::Llm => bench_llm(case, runs, &device),
            Kind::Unet => bench_unet(case, runs, &device),
            Kind::Vae => bench_vae(case, runs, &device),
        }?);
        eprintln!("bench: {} done in {:.1} s", case.name, started.elapsed().as_secs_f64());
    }
    let torch = if args.torch { run_torch(&selected, runs, &args)? } else { None };
    if let Some(t) = &torch {
        for r in &mut rows {
            r.torch_seconds = t.results.iter().find(|(m, k, _)| m == r.model && *k == r.key).map(|(_, _, s)| *s);
        }
    }
    let device_name = format!("{:?}", args.device).to_lowercase();
    print!("{}", table(&rows, &device_name, torch.as_ref()));
    if let Some(path) = &args.json {
        let obj = json!({
            "device": device_name,
            "runs": runs,
            "torch_threads": torch.as_ref().map(|_| args.torch_threads),
            "torch_version": torch.as_ref().map(|t| t.version.clone()),
            "results": rows.iter().map(|r| json!({
                "model": r.model, "measurement": r.key, "description": r.what, "seconds": r.seconds,
                "tokens_per_second": r.tokens.map(|n| n as f64 / r.seconds), "torch_seconds": r.torch_seconds,
            })).collect::<Vec<_>>(),
        });
        files::write_atomic(path, serde_json::to_string_pretty(&obj)?.as_bytes())?;
    }
    Ok(())
}

/// What the PyTorch script reported: `(model, key, seconds)` per measurement.
struct TorchResults {
    /// `torch 2.x (cpu, 1 thread)`.
    version: String,
    results: Vec<(String, String, f64)>,
}

/// The reference interpreter: `$GENLLAVA_PYTHON`, else the project's venv.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GENLLAVA_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from("/root/.cache/pyref/bin/python");
    venv.exists().then_some(venv)
}

/// Run `bench_torch.py` on the same cases; `None` (with a note) when no Python is set up.
fn run_torch(cases: &[Case], runs: usize, args: &BenchArgs) -> anyhow::Result<Option<TorchResults>> {
    let Some(python) = python() else {
        eprintln!("bench: --torch skipped: set GENLLAVA_PYTHON to a Python with torch, transformers, diffusers");
        return Ok(None);
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/bench_torch.py");
    let spec = json!({
        "device": format!("{:?}", args.device).to_lowercase(),
        "threads": args.torch_threads,
        "runs": runs,
        "prefill": PREFILL,
        "decode_steps": DECODE_STEPS,
        "unet_batch": UNET_BATCH,
        "context_len": CONTEXT_LEN,
        "init_std": INIT_STD,
        "cases": cases.iter().map(|c| json!({
            "name": c.name, "kind": c.kind.name(), "config": c.config,
            "fixture": c.fixture.as_ref().map(|p| p.display().to_string()), "latent": c.latent,
        })).collect::<Vec<_>>(),
    });
    let spec_path = std::env::temp_dir().join(format!("genllava-bench-{}.json", std::process::id()));
    files::write_atomic(&spec_path, spec.to_string().as_bytes())?;
    eprintln!("bench: running {} …", script.display());
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&spec_path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", python.display()));
    let _ = std::fs::remove_file(&spec_path);
    let out = out?;
    if !out.status.success() {
        anyhow::bail!("{} failed ({})", script.display(), out.status);
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("bench_torch.py output is not JSON")?;
    let results = v
        .get("results")
        .and_then(Value::as_array)
        .context("bench_torch.py output has no `results`")?
        .iter()
        .filter_map(|r| {
            Some((
                r.get("model")?.as_str()?.to_string(),
                r.get("measurement")?.as_str()?.to_string(),
                r.get("seconds")?.as_f64()?,
            ))
        })
        .collect();
    let field = |k: &str| v.get(k).map(|x| x.to_string().trim_matches('"').to_string()).unwrap_or_default();
    let version = format!("torch {} ({}, threads={})", field("torch"), field("device"), field("threads"));
    Ok(Some(TorchResults { version, results }))
}

/// Throughput for decoder rows, seconds per run otherwise.
fn rate(secs: f64, tokens: Option<usize>) -> String {
    match tokens {
        Some(n) => format!("{:.1} tok/s", n as f64 / secs),
        None if secs < 1.0 => format!("{:.2} ms", secs * 1e3),
        None => format!("{secs:.2} s"),
    }
}

/// The markdown table.
fn table(rows: &[Row], device: &str, torch: Option<&TorchResults>) -> String {
    let mut s = match torch {
        Some(t) => format!(
            "| model | measurement | burn ({device}) | {} | burn/torch time |\n|---|---|---|---|---|\n",
            t.version
        ),
        None => format!("| model | measurement | burn ({device}) |\n|---|---|---|\n"),
    };
    for r in rows {
        s += &format!("| {} | {} | {}", r.model, r.what, rate(r.seconds, r.tokens));
        if torch.is_some() {
            match r.torch_seconds {
                Some(t) => s += &format!(" | {} | {:.2}", rate(t, r.tokens), r.seconds / t),
                None => s += " | – | –",
            }
        }
        s += " |\n";
    }
    s
}
