//! End to end: the `chat` command as a user runs it, on fixtures written by
//! transformers (tests/reference/llava.py), and its errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train-native")).args(args).output().expect("run train-native")
}

fn chat_json(model: &Path, image: &Path, extra: &[&str]) -> Output {
    let temperature = if extra.contains(&"--seed") { "0.9" } else { "0" };
    let prompt = std::fs::read_to_string(fixtures().join("llava-tiny/prompt.txt")).expect("prompt");
    let mut args = vec![
        "chat",
        "--model",
        model.to_str().expect("utf8"),
        "--image",
        image.to_str().expect("utf8"),
        "--prompt",
        &prompt,
        "--json",
        "--temperature",
        temperature,
        "--logprobs",
        "5",
        "--max-new-tokens",
        "8",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The greedy ids transformers produced, from the fixture's reference file.
fn reference_ids(model: &Path) -> Vec<u64> {
    let bytes = std::fs::read(model.join("reference.safetensors")).expect("reference");
    let refs = genllava::safetensors::parse("reference", bytes).expect("parse");
    refs["greedy_ids"].to_i64().into_iter().map(|v| v as u64).collect()
}

fn assert_clean_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "panic: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
}

#[test]
fn greedy_json_matches_transformers() {
    for name in ["llava-tiny", "llava-tiny-legacy"] {
        let model = fixtures().join(name);
        let out = chat_json(&model, &model.join("image.png"), &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf8");
        let json: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("json line")).expect("json");
        let ids: Vec<u64> = json["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id")).collect();
        assert_eq!(ids, reference_ids(&model), "{name}");
        let lp = json["logprobs"].as_array().expect("logprobs");
        assert_eq!(lp.len(), ids.len());
        assert!(lp.iter().all(|step| step.as_array().map(|a| a.len()) == Some(5)));
        assert!(stdout.starts_with(json["text"].as_str().expect("text")), "streamed text comes first");
    }
}

#[test]
fn bad_inputs_get_one_clear_line() {
    let model = fixtures().join("llava-tiny");
    let tmp = std::env::temp_dir().join(format!("genllava-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");

    // A wrong model path.
    assert_clean_error(&chat_json(&tmp.join("nope"), &model.join("image.png"), &[]), "nope");
    // An unreadable image: not an image at all, and a missing file.
    let not_image = tmp.join("notes.png");
    std::fs::write(&not_image, b"hello, I am text").expect("write");
    assert_clean_error(&chat_json(&model, &not_image, &[]), "notes.png");
    assert_clean_error(&chat_json(&model, &tmp.join("missing.png"), &[]), "missing.png");

    // A truncated safetensors file and a config that does not match the weights.
    let copy = tmp.join("model");
    std::fs::create_dir_all(&copy).expect("copy");
    for f in std::fs::read_dir(&model).expect("dir").flatten() {
        std::fs::copy(f.path(), copy.join(f.file_name())).expect("copy");
    }
    let w = std::fs::read(model.join("model.safetensors")).expect("weights");
    std::fs::write(copy.join("model.safetensors"), &w[..w.len() / 3]).expect("truncate");
    assert_clean_error(&chat_json(&copy, &model.join("image.png"), &[]), "model.safetensors");
    std::fs::write(copy.join("model.safetensors"), &w).expect("restore");
    let cfg = std::fs::read_to_string(model.join("config.json"))
        .expect("cfg")
        .replace("\"hidden_size\": 32", "\"hidden_size\": 40");
    std::fs::write(copy.join("config.json"), cfg).expect("cfg");
    assert_clean_error(&chat_json(&copy, &model.join("image.png"), &[]), "expected shape");
    std::fs::write(copy.join("config.json"), "{ not json").expect("cfg");
    assert_clean_error(&chat_json(&copy, &model.join("image.png"), &[]), "config.json");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn sampling_is_seeded() {
    let model = fixtures().join("llava-tiny");
    let a = chat_json(&model, &model.join("image.png"), &["--top-p", "0.9", "--seed", "7"]);
    let b = chat_json(&model, &model.join("image.png"), &["--top-p", "0.9", "--seed", "7"]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
}
