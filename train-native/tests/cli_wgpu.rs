//! `--device wgpu` against `--device cpu`: the same commands on the same
//! fixtures must agree. Built only with `--features wgpu` (tests/run.sh runs it
//! on Mesa's lavapipe, a CPU Vulkan driver, so CI needs no GPU).
#![cfg(feature = "wgpu")]

use genllava::safetensors::{self, RawTensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train-native")).args(args).output().expect("run train-native")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Greedy `chat --json` on a fixture: its ids and top-5 logprobs per step.
fn chat(model: &Path, device: &str) -> (Vec<u64>, Vec<Vec<(u64, f64)>>) {
    let prompt = std::fs::read_to_string(fixtures().join("llava-tiny/prompt.txt")).expect("prompt");
    let image = model.join("image.png");
    #[rustfmt::skip]
    let out = ok(run(&[
        "chat", "--model", model.to_str().unwrap(), "--image", image.to_str().unwrap(),
        "--prompt", &prompt, "--json", "--temperature", "0", "--logprobs", "5",
        "--max-new-tokens", "8", "--device", device,
    ]), device);
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("json line")).expect("json");
    let ids = json["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id")).collect();
    let logprobs = json["logprobs"]
        .as_array()
        .expect("logprobs")
        .iter()
        .map(|step| {
            step.as_array()
                .expect("step")
                .iter()
                .map(|pair| (pair[0].as_u64().expect("token"), pair[1].as_f64().expect("logprob")))
                .collect()
        })
        .collect();
    (ids, logprobs)
}

#[test]
fn chat_on_wgpu_matches_cpu() {
    for name in ["llava-tiny", "llava-tiny-legacy"] {
        let model = fixtures().join(name);
        let (cpu_ids, cpu_lp) = chat(&model, "cpu");
        let (gpu_ids, gpu_lp) = chat(&model, "wgpu");
        assert!(!cpu_ids.is_empty(), "{name}: no tokens");
        assert_eq!(gpu_ids, cpu_ids, "{name}: greedy ids");
        assert_eq!(gpu_lp.len(), cpu_lp.len(), "{name}: steps");
        for (step, (g, c)) in gpu_lp.iter().zip(&cpu_lp).enumerate() {
            assert_eq!(g.len(), 5, "{name} step {step}");
            // The top-1 token is the greedy one on both; lower ranks may swap on near ties,
            // so each token is compared with the same token's logprob on the other device.
            assert_eq!(g[0].0, c[0].0, "{name} step {step}: top token");
            for &(tok, lp) in g {
                if let Some(&(_, cl)) = c.iter().find(|(t, _)| *t == tok) {
                    assert!((lp - cl).abs() <= 1e-3, "{name} step {step} token {tok}: wgpu {lp} cpu {cl}");
                }
            }
            let common = g.iter().filter(|(t, _)| c.iter().any(|(u, _)| u == t)).count();
            assert!(common >= 4, "{name} step {step}: top-5 sets differ: {g:?} vs {c:?}");
        }
    }
}

fn read(path: &Path) -> BTreeMap<String, RawTensor> {
    safetensors::parse("test", std::fs::read(path).expect("read")).expect("parse")
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn diffuse_on_wgpu_matches_cpu() {
    let sd = fixtures().join("sd-tiny");
    let r = sd.join("reference.safetensors");
    let dir = std::env::temp_dir().join(format!("cli-wgpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let mut latents = Vec::new();
    for device in ["cpu", "wgpu"] {
        let (img, lat) = (dir.join(format!("{device}.png")), dir.join(format!("{device}.safetensors")));
        #[rustfmt::skip]
        ok(run(&[
            "diffuse", "--sd", sd.to_str().unwrap(), "--cond", r.to_str().unwrap(),
            "--uncond", r.to_str().unwrap(), "--noise", r.to_str().unwrap(),
            "--steps", "6", "--scheduler", "ddim", "--guidance", "5",
            "--out", img.to_str().unwrap(), "--out-latents", lat.to_str().unwrap(), "--device", device,
        ]), device);
        latents.push(read(&lat)["latents"].clone());
    }
    assert_eq!(latents[1].shape, latents[0].shape);
    let err = rel_err(&latents[1].to_f32(), &latents[0].to_f32());
    assert!(err <= 1e-3, "wgpu latents vs cpu: relative error {err:e}");
    // And both are diffusers' latents.
    let err = rel_err(&latents[1].to_f32(), &read(&r)["ddim_latents"].to_f32());
    assert!(err <= 1e-3, "wgpu latents vs diffusers: relative error {err:e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kernel_bench_prints_one_row_per_kernel_and_shape() {
    let out = ok(run(&["bench", "--kernels", "--quick", "--runs", "1", "--device", "wgpu"]), "bench --kernels");
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    // The first line names the adapter and the product the kernels' path takes on it: on
    // lavapipe (llvmpipe) Burn's matmul, which is faster there than shaders/matmul.wgsl.
    let first = stdout.lines().next().unwrap_or("");
    assert!(first.starts_with("adapter: ") && first.ends_with("(Auto)"), "first line: {first}");
    if first.contains("llvmpipe") {
        assert!(first.contains("Burn's matmul"), "lavapipe takes Burn's matmul: {first}");
    }
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| kernel")).collect();
    let kernels: Vec<&str> = rows.iter().map(|r| r.split('|').nth(1).unwrap_or("").trim()).collect();
    assert_eq!(
        kernels,
        [
            "group_norm_silu",
            "group_norm_silu",
            "conv2d",
            "conv2d via im2col + matmul",
            // 3×3 at stride 1 only.
            "conv2d via Winograd F(2×2, 3×3)",
            "conv2d",
            "conv2d via im2col + matmul",
            "attention",
            "attention via matmul + softmax.wgsl",
            "attention",
            "attention via matmul + softmax.wgsl",
            "softmax (scaled)",
            "softmax (scaled)",
            "ddim_step + guidance",
            "matmul (f32)",
            "matmul_q8 vs f32 matmul",
            "matmul_q8 vs Burn's Q8S matmul",
            "matmul_q4 vs f32 matmul",
            "matmul_q4 vs Burn's Q4S matmul",
            "matmul_q8 vs f32 matmul",
            "matmul_q8 vs Burn's Q8S matmul",
            "matmul_q4 vs f32 matmul",
            "matmul_q4 vs Burn's Q4S matmul",
            // Present only when the step with the kernels computed what Burn's ops do.
            "whole diffusion step"
        ],
        "{stdout}"
    );
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let ratio: f64 = cells[5].parse().expect("ratio");
        assert!(cells[3].ends_with(" ms") && cells[4].ends_with(" ms") && ratio > 0.0, "{row}");
    }
}

#[test]
fn kernel_bench_runs_only_the_kernels_asked_for() {
    let out = ok(
        run(&["bench", "--kernels", "--quick", "--runs", "1", "--device", "wgpu", "--only", "conv2d"]),
        "bench --kernels --only conv2d",
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| kernel")).collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    assert!(rows.iter().all(|r| r.starts_with("| conv2d")), "{stdout}");
    let out = run(&["bench", "--kernels", "--quick", "--device", "wgpu", "--only", "no-such-kernel"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no kernel benchmark is named like \"no-such-kernel\"") && stderr.contains("conv2d"),
        "{stderr}"
    );
}

/// Data-parallel training (`train --devices`): two wgpu devices on one adapter (`default`
/// and `cpu` both land on lavapipe, each with its own queue) take one micro-batch of each
/// step apiece, the frozen decoder copied to both, the gradients summed on the first. The
/// weights must match the same GenLLaVA run on one device, micro-batches one after the
/// other; bad device lists are refused by name.
#[test]
fn data_parallel_training_on_two_devices_matches_one_device() {
    let base = std::env::temp_dir().join(format!("genllava-ddp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let train = |name: &str, extra: &[&str]| -> PathBuf {
        let out = base.join(name);
        let mut args: Vec<String> = vec!["train".into(), "--device".into(), "wgpu".into()];
        let sets = [
            format!("out_dir={}", out.display()),
            "steps=3".into(),
            "lr=2e-3".into(),
            "global_batch=8".into(),
            "micro_batch=4".into(),
            "eval_samples=0".into(),
            "eval_images=0".into(),
            "data.size=64".into(),
            "mixture.generation=0.4".into(),
            "mixture.editing=0.2".into(),
        ];
        for s in sets {
            args.extend(["--set".to_string(), s]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        // One lavapipe thread: Burn's float scatter-add adds atomically where the adapter
        // can, and with several threads the order of two adds to one address follows the
        // scheduler (beside this file's other tests, 2 runs in 4 put a gen-head weight
        // 1.5e-4 apart; with one thread, 5 in 5 were bit-identical).
        let out_ = Command::new(env!("CARGO_BIN_EXE_train-native"))
            .args(&args)
            .env("LP_NUM_THREADS", "1")
            .output()
            .expect("run train-native");
        let log = String::from_utf8_lossy(&out_.stderr).to_string();
        assert!(out_.status.success(), "{name}: {log}");
        if name == "two" {
            assert!(log.contains("data parallel over 2 devices"), "{log}");
        }
        out
    };
    let one = train("one", &["--set", "parallel_micro_batches=1"]);
    let two = train("two", &["--devices", "default,cpu", "--set", "parallel_micro_batches=1"]);
    for f in ["model/model.safetensors", "model/gen_head/model.safetensors"] {
        let (a, b) = (read(&one.join(f)), read(&two.join(f)));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{f}");
        let mut worst = 0f32;
        for (name, t) in &a {
            let (x, y) = (t.to_f32(), b[name].to_f32());
            worst = worst.max(rel_err(&x, &y));
        }
        // The same kernels on the same adapter: equal up to the devices' own kernel choices.
        assert!(worst < 1e-5, "{f}: one device vs two differ by {worst:.3e}");
    }
    // Images trained on both devices: every step had image rows.
    let metrics = std::fs::read_to_string(two.join("metrics.jsonl")).expect("metrics");
    assert!(metrics.lines().all(|l| l.contains("\"images\":") && !l.contains("\"images\":0")), "{metrics}");

    for (list, device, says) in [
        ("0,1", "cpu", "the CPU backend is one device"),
        ("default,default", "wgpu", "default is named twice"),
        ("default,gpu", "wgpu", "\"gpu\" is not a wgpu device"),
        ("default,", "wgpu", "an empty device name"),
    ] {
        let out = run(&["train", "--device", device, "--devices", list, "--set", "steps=1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "--devices {list}: {err}");
    }
    let _ = std::fs::remove_dir_all(&base);
}
