//! End-to-end tests of `train-native diffuse` and `generate-sd` on the tiny
//! Stable Diffusion fixture (tests/fixtures/sd-tiny, written by
//! tests/reference/sd_pipeline.py): latents against diffusers, and bad inputs
//! that must fail with one clear line and no panic.

use genllava::safetensors::{self, RawTensor, TensorOut};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sd-tiny")
}

fn reference() -> PathBuf {
    sd_dir().join("reference.safetensors")
}

fn read(path: &Path) -> BTreeMap<String, RawTensor> {
    safetensors::parse("test", std::fs::read(path).expect("read")).expect("parse")
}

/// A fresh scratch directory per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cli-diffuse-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train-native")).args(args).output().expect("spawn train-native")
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// A failed run: non-zero exit, one stderr line mentioning `needle`, no panic.
fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
}

#[test]
fn diffuse_writes_the_latents_diffusers_computes() {
    let dir = scratch("ok");
    let (img, lat) = (dir.join("img.png"), dir.join("latents.safetensors"));
    let r = reference();
    let r = r.to_str().unwrap();
    let sd = sd_dir();
    #[rustfmt::skip]
    let out = run(&[
        "diffuse", "--sd", sd.to_str().unwrap(), "--cond", r, "--uncond", r, "--noise", r,
        "--steps", "6", "--scheduler", "ddim", "--guidance", "5",
        "--out", img.to_str().unwrap(), "--out-latents", lat.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refs = read(&reference());
    let got = read(&lat);
    assert_eq!(got["latents"].shape, refs["ddim_latents"].shape);
    let err = rel_err(&got["latents"].to_f32(), &refs["ddim_latents"].to_f32());
    assert!(err <= 1e-4, "latents: relative error {err:e}");
    let png = genllava::image::RgbImage::decode(&std::fs::read(&img).expect("png")).expect("decode");
    assert_eq!((png.width, png.height), (16, 16));

    // Without --uncond the empty prompt comes from the folder's text encoder.
    let lat2 = dir.join("latents2.safetensors");
    #[rustfmt::skip]
    let out = run(&[
        "diffuse", "--sd", sd.to_str().unwrap(), "--cond", r, "--noise", r,
        "--steps", "6", "--scheduler", "euler", "--guidance", "5",
        "--out", img.to_str().unwrap(), "--out-latents", lat2.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = rel_err(&read(&lat2)["latents"].to_f32(), &refs["euler_latents"].to_f32());
    assert!(err <= 1e-3, "latents without --uncond: relative error {err:e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_sd_writes_a_png() {
    let dir = scratch("gen");
    let img = dir.join("gen.png");
    let sd = sd_dir();
    #[rustfmt::skip]
    let out = run(&[
        "generate-sd", "--sd", sd.to_str().unwrap(), "--prompt", "a horse on the moon",
        "--steps", "3", "--scheduler", "ddim", "--seed", "3", "--out", img.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = genllava::image::RgbImage::decode(&std::fs::read(&img).expect("png")).expect("decode");
    assert_eq!((png.width, png.height), (16, 16));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let dir = scratch("bad");
    let img = dir.join("img.png");
    let img = img.to_str().unwrap();
    let r = reference();
    let r = r.to_str().unwrap();
    let sd = sd_dir();
    let sd = sd.to_str().unwrap();
    let diffuse = |sd: &str, cond: &str, noise: &str| {
        run(&["diffuse", "--sd", sd, "--cond", cond, "--noise", noise, "--steps", "2", "--out", img])
    };

    let missing = dir.join("no-such-model");
    assert_clean_failure(&diffuse(missing.to_str().unwrap(), r, r), "no-such-model");

    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(r).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_failure(&diffuse(sd, truncated.to_str().unwrap(), r), "truncated.safetensors");

    // D = 16, where the UNet's cross_attention_dim is 32.
    let narrow = dir.join("narrow.safetensors");
    let data = vec![0.5f32; 77 * 16];
    std::fs::write(&narrow, safetensors::serialize(&[TensorOut { name: "cond", shape: vec![1, 77, 16], data: &data }]))
        .unwrap();
    assert_clean_failure(&diffuse(sd, narrow.to_str().unwrap(), r), "cond");

    // 3 noise channels for a 4-channel UNet.
    let noise = dir.join("noise3.safetensors");
    let data = vec![0.1f32; 3 * 64];
    std::fs::write(&noise, safetensors::serialize(&[TensorOut { name: "x", shape: vec![1, 3, 8, 8], data: &data }]))
        .unwrap();
    assert_clean_failure(&diffuse(sd, r, noise.to_str().unwrap()), "noise");

    let missing_file = dir.join("absent.safetensors");
    assert_clean_failure(&diffuse(sd, missing_file.to_str().unwrap(), r), "absent.safetensors");
    let _ = std::fs::remove_dir_all(&dir);
}
