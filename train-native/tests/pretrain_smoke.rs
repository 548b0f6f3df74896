//! Smoke tests of the pre-training commands: `data` is deterministic and writes the
//! public layouts; `pretrain-sd` on the tiny preset writes a diffusers folder that
//! core's own loaders read back, every tensor used, and `eval-sd` runs on it;
//! `pretrain-vision` and `pretrain-llm` write transformers folders a run starts from.

use burn::tensor::{Device, Int, Tensor, TensorData};
use genllava::clip_text::{ClipTextConfig, ClipTextModel};
use genllava::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use genllava::sd::vae::{AutoencoderKL, AutoencoderKLConfig};
use genllava::weights::{VarBuilder, WeightMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

mod common;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_train-native"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genllava-pretrain-smoke-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run train-native");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` with its bytes, sorted by relative path.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").display().to_string();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn data_is_deterministic_and_in_the_public_layouts() {
    let (a, b) = (scratch("data-a"), scratch("data-b"));
    for dir in [&a, &b] {
        run(bin().args(["data", "--seed", "3", "--n", "10", "--size", "32", "--out"]).arg(dir));
    }
    let (ta, tb) = (tree(&a), tree(&b));
    assert!(ta == tb, "two runs with the same arguments differ");
    let names: Vec<&str> = ta.iter().map(|(n, _)| n.as_str()).collect();
    for split in ["train", "test", "novel"] {
        for task in ["understanding", "generation", "editing", "text"] {
            assert!(names.contains(&format!("{task}_{split}.json").as_str()), "{task}_{split}.json missing");
        }
    }
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(a.join(f)).expect("read")).expect("json")
    };
    let und = read("understanding_train.json");
    assert_eq!(und.as_array().expect("array").len(), 10);
    let first = &und[0];
    assert!(first["conversations"][0]["value"].as_str().expect("text").starts_with("<image>\n"));
    assert!(a.join("images").join(first["image"].as_str().expect("image")).is_file());
    let edit = &read("editing_test.json")[0];
    for key in ["input_image", "edited_image"] {
        let png = std::fs::read(a.join("images").join(edit[key].as_str().expect(key))).expect("png");
        let img = image::load_from_memory(&png).expect("decode").to_rgb8();
        assert_eq!(img.dimensions(), (32, 32));
    }
    assert!(edit["edit_prompt"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(read("text_novel.json").as_array().expect("array").len(), 1);
    let other = scratch("data-c");
    run(bin().args(["data", "--seed", "4", "--n", "10", "--size", "32", "--out"]).arg(&other));
    assert!(tree(&other) != ta, "the seed changes nothing");
    for d in [a, b, other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn weights(path: &Path) -> Arc<WeightMap> {
    let bytes = std::fs::read(path).expect("weights");
    Arc::new(WeightMap::from_safetensors(&path.display().to_string(), bytes).expect("safetensors"))
}

fn config(path: &Path) -> String {
    std::fs::read_to_string(path).expect("config")
}

/// `pretrain-sd` (tiny, two steps) continued from `dir` (its UNet, VAE and text encoder)
/// into `out`, with the `extra` flags.
fn continue_sd(dir: &Path, out: &Path, extra: &[&str]) {
    let mut cmd = bin();
    cmd.args(["pretrain-sd", "--preset", "tiny", "--steps", "2", "--batch", "4"]).args(extra).arg("--out").arg(out);
    for flag in ["--unet-from", "--vae-from", "--text-from"] {
        cmd.arg(flag).arg(dir);
    }
    let log = run(&mut cmd);
    assert!(log.contains("UNet steps"), "{log}");
}

/// Each of `files` is the same bytes under `a` and `b`.
fn same_files(a: &Path, b: &Path, files: &[&str]) {
    for file in files {
        assert!(std::fs::read(a.join(file)).expect(file) == std::fs::read(b.join(file)).expect(file), "{file} changed");
    }
}

/// Tensor `key` of the safetensors `file` has the same shape under `a` and `b` but other values.
fn moved(a: &Path, b: &Path, file: &str, key: &str, what: &str) {
    let (before, after) = (weights(&a.join(file)), weights(&b.join(file)));
    let (x, y) = (before.raw(key).expect(key), after.raw(key).expect(key));
    assert_eq!(x.shape, y.shape);
    assert!(x.bytes() != y.bytes(), "{key}: {what} left it unchanged");
}

#[test]
fn pretrain_sd_writes_a_folder_core_loads() {
    let dir = scratch("sd");
    let log = run(bin()
        .args(["pretrain-sd", "--preset", "tiny", "--steps", "2", "--batch", "4", "--vae-batch", "2", "--out"])
        .arg(&dir));
    assert!(log.contains("UNet steps"), "{log}");
    let device = Device::flex();

    // The text encoder under `text_model.`, the vocabulary from tokenizer.json.
    let tcfg = ClipTextConfig::from_json(&config(&dir.join("text_encoder/config.json"))).expect("text config");
    let map = weights(&dir.join("text_encoder/model.safetensors"));
    assert!(map.names().all(|n| n.starts_with("text_model.")));
    let text = ClipTextModel::load(&tcfg, &VarBuilder::from_map(map.clone(), &device).pp("text_model")).expect("text");
    assert!(map.unused().is_empty(), "unused: {:?}", map.unused());
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer/tokenizer.json")).expect("tokenizer");
    assert_eq!(tok.get_vocab_size(true), tcfg.vocab_size);
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(vec![0i64; tcfg.max_position_embeddings], [1, tcfg.max_position_embeddings]),
        &device,
    );
    let ctx = text.forward(ids).expect("text forward");

    let vcfg = AutoencoderKLConfig::from_json(&config(&dir.join("vae/config.json"))).expect("vae config");
    let map = weights(&dir.join("vae/diffusion_pytorch_model.safetensors"));
    let vae = AutoencoderKL::load(&vcfg, &VarBuilder::from_map(map.clone(), &device)).expect("vae");
    assert!(map.unused().is_empty(), "unused: {:?}", map.unused());
    assert!(vcfg.scaling_factor.is_finite() && vcfg.scaling_factor > 0.0);

    let ucfg = UNet2DConditionConfig::from_json(&config(&dir.join("unet/config.json"))).expect("unet config");
    let map = weights(&dir.join("unet/diffusion_pytorch_model.safetensors"));
    let unet = UNet2DConditionModel::load(&ucfg, &VarBuilder::from_map(map.clone(), &device)).expect("unet");
    assert!(map.unused().is_empty(), "unused: {:?}", map.unused());
    assert_eq!(ucfg.cross_attention_dim, tcfg.hidden_size);

    let side = vcfg.sample_size >> (vcfg.block_out_channels.len() - 1);
    let z = Tensor::<4>::zeros([1, vcfg.latent_channels, side, side], &device);
    let eps = unet.forward_at(z.clone(), 500.0, ctx).expect("unet forward");
    assert_eq!(eps.dims(), [1, vcfg.latent_channels, side, side]);
    let img = vae.decode(z).expect("decode");
    assert_eq!(img.dims(), [1, 3, vcfg.sample_size, vcfg.sample_size]);
    assert!(dir.join("scheduler/scheduler_config.json").is_file() && dir.join("model_index.json").is_file());

    let eval = run(bin().args(["eval-sd", "--n", "2", "--steps", "2", "--sd"]).arg(&dir));
    assert!(eval.contains("exact"), "{eval}");
    // The same pictures by shapes in the caption: "k: p % (right/asked)", the asked summing to n.
    let line = eval.lines().find(|l| l.starts_with("exact by shapes in the caption: ")).expect(&eval);
    let asked: usize = line
        .split('(')
        .skip(1)
        .map(|cell| cell.split(['/', ')']).nth(1).expect(line).parse::<usize>().expect(line))
        .sum();
    assert_eq!(asked, 2, "{line}");

    // Continued training: the UNet starts from the folder's and moves; the VAE and the
    // text encoder reused from it stay the same bytes.
    let more = scratch("sd-more");
    continue_sd(&dir, &more, &[]);
    same_files(&dir, &more, &["vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"]);
    moved(&dir, &more, "unet/diffusion_pytorch_model.safetensors", "conv_in.weight", "two steps from the loaded UNet");
    let _ = std::fs::remove_dir_all(&more);

    // `--tune-text`: the text encoder starts from the folder's and learns with the UNet (its
    // config and tokenizer kept); without `--text-from` the flag is refused.
    let tuned = scratch("sd-tuned");
    continue_sd(&dir, &tuned, &["--tune-text"]);
    same_files(
        &dir,
        &tuned,
        &["text_encoder/config.json", "tokenizer/tokenizer.json", "vae/diffusion_pytorch_model.safetensors"],
    );
    moved(
        &dir,
        &tuned,
        "text_encoder/model.safetensors",
        "text_model.embeddings.token_embedding.weight",
        "two steps with --tune-text",
    );
    let _ = std::fs::remove_dir_all(&tuned);

    // `--pix2pix`: the plain UNet becomes an InstructPix2Pix one (twice the latent channels
    // in); the first two steps from zero source weights move them, the rest of the folder is
    // kept, the result continues as it is, and `eval-sd --edits` scores its edits (a plain
    // UNet is refused there, naming what it lacks).
    let p2p = scratch("sd-p2p");
    continue_sd(&dir, &p2p, &["--pix2pix"]);
    same_files(&dir, &p2p, &["text_encoder/model.safetensors", "vae/diffusion_pytorch_model.safetensors"]);
    let pcfg = UNet2DConditionConfig::from_json(&config(&p2p.join("unet/config.json"))).expect("unet config");
    assert_eq!((pcfg.in_channels, pcfg.out_channels), (2 * ucfg.in_channels, ucfg.out_channels));
    let conv_in = weights(&p2p.join("unet/diffusion_pytorch_model.safetensors"));
    let w = conv_in.raw("conv_in.weight").expect("conv_in");
    assert_eq!(w.shape[1], 2 * ucfg.in_channels);
    let source_half: Vec<f32> = w
        .to_f32()
        .chunks(9)
        .enumerate()
        .filter(|(i, _)| i % w.shape[1] >= ucfg.in_channels)
        .flat_map(|(_, k)| k.to_vec())
        .collect();
    assert!(source_half.iter().any(|&x| x != 0.0), "the source weights did not train");
    let again = scratch("sd-p2p-again");
    continue_sd(&p2p, &again, &["--pix2pix"]);
    let _ = std::fs::remove_dir_all(&again);

    // `--edit-text instruction`: edits conditioned on the instruction (as InstructPix2Pix);
    // its words join the vocabulary with as many new embedding rows (the old rows kept,
    // the encoder frozen), the folder says so, and `eval-sd --edits` conditions on them.
    let ins = scratch("sd-p2p-instruction");
    continue_sd(&p2p, &ins, &["--pix2pix", "--edit-text", "instruction"]);
    let index = config(&ins.join("model_index.json"));
    assert!(index.contains("\"_genllava_edit_text\": \"instruction\""), "{index}");
    let (old_tok, new_tok) =
        (config(&p2p.join("tokenizer/tokenizer.json")), config(&ins.join("tokenizer/tokenizer.json")));
    assert!(!old_tok.contains("\"remove\"") && new_tok.contains("\"remove\"") && new_tok.contains("\"move\""));
    let (old_emb, new_emb) =
        (weights(&p2p.join("text_encoder/model.safetensors")), weights(&ins.join("text_encoder/model.safetensors")));
    let key = "text_model.embeddings.token_embedding.weight";
    let (a, b) = (old_emb.raw(key).expect(key), new_emb.raw(key).expect(key));
    let added = b.shape[0] - a.shape[0];
    assert!(added >= 5 && b.shape[1] == a.shape[1], "{:?} → {:?}", a.shape, b.shape);
    assert_eq!(a.to_f32(), b.to_f32()[..a.numel()], "the old rows changed");
    let text_cfg: serde_json::Value =
        serde_json::from_str(&config(&ins.join("text_encoder/config.json"))).expect("text config");
    assert_eq!(text_cfg["vocab_size"].as_u64(), Some(b.shape[0] as u64));
    let eval = run(bin().args(["eval-sd", "--edits", "--n", "2", "--steps", "2", "--sd"]).arg(&ins));
    assert!(eval.contains("2 Test edits"), "{eval}");
    let _ = std::fs::remove_dir_all(&ins);
    let out = bin()
        .args(["pretrain-sd", "--preset", "tiny", "--steps", "2", "--edit-text", "instruction", "--out"])
        .arg(scratch("sd-instruction-alone"))
        .output()
        .expect("pretrain-sd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--pix2pix"), "{err}");
    let eval = run(bin().args(["eval-sd", "--edits", "--n", "3", "--steps", "2", "--sd"]).arg(&p2p));
    let line = eval.lines().find(|l| l.starts_with("exact by kind and by shapes in the source: ")).expect(&eval);
    assert!(eval.contains("3 Test edits") && line.contains("shapes:"), "{eval}");
    let eval = run(bin().args(["eval-sd", "--n", "2", "--steps", "2", "--sd"]).arg(&p2p));
    assert!(eval.contains("2 Test captions"), "it draws from captions alone too: {eval}");
    let out = bin().args(["eval-sd", "--edits", "--n", "1", "--sd"]).arg(&dir).output().expect("eval-sd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("InstructPix2Pix"), "{err}");
    let _ = std::fs::remove_dir_all(&p2p);

    let out = bin()
        .args(["pretrain-sd", "--preset", "tiny", "--steps", "2", "--tune-text", "--out"])
        .arg(scratch("sd-tune-alone"))
        .output()
        .expect("pretrain-sd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--text-from"), "{err}");

    // A UNet of another preset is refused before anything trains, naming its config file.
    let out = bin()
        .args(["pretrain-sd", "--steps", "2", "--out"])
        .arg(scratch("sd-mismatch"))
        .arg("--unet-from")
        .arg(&dir)
        .output()
        .expect("pretrain-sd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unet/config.json") && err.contains("--preset"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pretrain_vision_writes_a_siglip_tower_that_a_run_starts_from_and_keeps_frozen() {
    let tower = scratch("siglip");
    let text = scratch("siglip-text");
    let log = run(bin()
        .args(["pretrain-vision", "--steps", "3", "--batch", "4", "--eval", "8", "--out"])
        .arg(&tower)
        .arg("--text-out")
        .arg(&text));
    assert!(log.contains("held-out retrieval") && log.contains("twin"), "{log}");

    // Its text tower conditions a Stable Diffusion stand-in and stays frozen there, as SD
    // keeps CLIP's: the folder's text encoder is the same bytes, the UNet attends to its width.
    let sd = scratch("sd-frozen-text");
    let log = run(bin()
        .args(["pretrain-sd", "--preset", "tiny", "--steps", "2", "--batch", "4", "--vae-batch", "2", "--out"])
        .arg(&sd)
        .arg("--text-from")
        .arg(&text));
    assert!(log.contains("UNet steps"), "{log}");
    for file in ["text_encoder/model.safetensors", "text_encoder/config.json", "tokenizer/tokenizer.json"] {
        let (a, b) = (std::fs::read(text.join(file)).expect(file), std::fs::read(sd.join(file)).expect(file));
        assert!(a == b, "{file} differs: the text encoder must be kept as it was");
    }
    let tcfg = ClipTextConfig::from_json(&config(&text.join("text_encoder/config.json"))).expect("text config");
    let ucfg = UNet2DConditionConfig::from_json(&config(&sd.join("unet/config.json"))).expect("unet config");
    assert_eq!(ucfg.cross_attention_dim, tcfg.hidden_size);
    let eval = run(bin().args(["eval-sd", "--n", "2", "--steps", "2", "--sd"]).arg(&sd));
    assert!(eval.contains("exact"), "{eval}");
    let _ = std::fs::remove_dir_all(&text);
    let _ = std::fs::remove_dir_all(&sd);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tower.join("config.json")).expect("config")).expect("json");
    assert_eq!(config["model_type"], "siglip_vision_model");
    // core's loader reads the folder as a transformers SiglipVisionModel, every tensor used.
    let cfg = genllava::siglip::SiglipVisionConfig::from_value(config.clone()).expect("vision config");
    let device = Device::flex();
    let bytes = std::fs::read(tower.join("model.safetensors")).expect("weights");
    let map = Arc::new(WeightMap::from_safetensors("model.safetensors", bytes).expect("safetensors"));
    genllava::siglip::SiglipVision::load_checkpoint(&cfg, &VarBuilder::from_map(map.clone(), &device)).expect("load");
    assert!(map.unused().is_empty(), "unused: {:?}", map.unused());

    // A run from it: its vision_config is the tower's, and after training the tower's
    // weights are the same bytes (frozen, as the paper keeps SigLIP).
    let out = scratch("siglip-run");
    let sets = [
        format!("out_dir={}", out.display()),
        format!("model.vision={}", tower.display()),
        "model.generation=false".into(),
        "steps=2".into(),
        "global_batch=4".into(),
        "micro_batch=4".into(),
        "eval_every=0".into(),
        "eval_samples=2".into(),
        "data.size=64".into(),
        "mixture.generation=0".into(),
        "mixture.editing=0".into(),
    ];
    let out_run = bin().args(common::train_args(&sets)).output().expect("train");
    assert!(out_run.status.success(), "{}", String::from_utf8_lossy(&out_run.stderr));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model/config.json")).expect("config")).expect("json");
    assert_eq!(saved["vision_config"]["hidden_size"], config["hidden_size"]);
    let trained =
        WeightMap::from_safetensors("trained", std::fs::read(out.join("model/model.safetensors")).expect("w"))
            .expect("safetensors");
    let key = "vision_model.encoder.layers.0.self_attn.q_proj.weight";
    let a = map.raw(key).expect("tower tensor");
    let b = trained.raw(&format!("model.vision_tower.{key}")).expect("trained tensor");
    assert_eq!(a.shape, b.shape);
    assert!(a.bytes() == b.bytes(), "{key} changed during training: the tower must stay frozen");
    let _ = std::fs::remove_dir_all(&tower);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn pretrain_llm_writes_a_causal_lm_that_a_run_starts_from() {
    let llm = scratch("llm");
    let log = run(bin().args(["pretrain-llm", "--steps", "3", "--batch", "4", "--eval", "8", "--out"]).arg(&llm));
    assert!(log.contains("held-out perplexity"), "{log}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(llm.join("config.json")).expect("config")).expect("json");
    assert_eq!(config["architectures"][0], "MistralForCausalLM");
    // core's loader reads it as a transformers causal LM (`model.*`, `lm_head.*`), every tensor used.
    let cfg = genllava::llama::LlamaConfig::from_json(&config.to_string()).expect("text config");
    let map = weights(&llm.join("model.safetensors"));
    let vb = VarBuilder::from_map(map.clone(), &Device::flex());
    genllava::llama::Llama::load(&cfg, &vb.pp("model"), &vb.pp("lm_head")).expect("load");
    assert!(map.unused().is_empty(), "unused: {:?}", map.unused());
    let tok = genllava::tokenizer::TextTokenizer::from_bytes(&std::fs::read(llm.join("tokenizer.json")).expect("tok"))
        .expect("tokenizer");
    assert_eq!(tok.token_id("<image>"), Some(4));

    // A run from it, decoder frozen: the layers are the LLM's bytes; the vocabulary
    // is the LLM's plus the 4 task and 16 [IMG] tokens.
    let out = scratch("llm-run");
    let sets = [
        format!("out_dir={}", out.display()),
        format!("model.llm={}", llm.display()),
        "trainable.llm=frozen".into(),
        "steps=1".into(),
        "global_batch=4".into(),
        "micro_batch=4".into(),
        "eval_every=0".into(),
        "eval_samples=2".into(),
        "data.size=64".into(),
    ];
    let out_run = bin().args(common::train_args(&sets)).output().expect("train");
    assert!(out_run.status.success(), "{}", String::from_utf8_lossy(&out_run.stderr));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model/config.json")).expect("config")).expect("json");
    assert_eq!(saved["text_config"]["vocab_size"].as_u64(), config["vocab_size"].as_u64().map(|v| v + 20));
    let trained = weights(&out.join("model/model.safetensors"));
    let key = "layers.1.mlp.down_proj.weight";
    let a = map.raw(&format!("model.{key}")).expect("llm tensor");
    let b = trained.raw(&format!("model.language_model.{key}")).expect("trained tensor");
    assert!(a.bytes() == b.bytes(), "{key}: the run did not start from the pretrained LLM");
    let _ = std::fs::remove_dir_all(&llm);
    let _ = std::fs::remove_dir_all(&out);
}
