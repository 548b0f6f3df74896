//! Helpers shared by the end-to-end training tests: the CLI, scratch folders,
//! `--set` argument lists and the kill-after-a-checkpoint dance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `train-native` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_train-native"))
}

/// `train --set a --set b …`.
pub fn train_args(sets: &[String]) -> Vec<String> {
    let mut v = vec!["train".to_string()];
    for s in sets {
        v.push("--set".into());
        v.push(s.clone());
    }
    v
}

/// The `--set`s of a short run of the tiny LLaVA on the built-in colours set into `out`
/// (understanding only, fresh vision tower, 8 samples per step in 2 × 4); tests add
/// their checkpoint cadence and the rest.
pub fn colours_sets(out: &Path, steps: usize) -> Vec<String> {
    vec![
        format!("out_dir={}", out.display()),
        format!("steps={steps}"),
        "lr=3e-3".into(),
        "warmup_ratio=0.05".into(),
        "global_batch=8".into(),
        "micro_batch=4".into(),
        "eval_samples=8".into(),
        "data.source=colours".into(),
        "model.generation=false".into(),
        "model.init=null".into(),
        "model.vision=null".into(),
        "max_seq_len=2048".into(),
    ]
}

/// A fresh scratch folder, unique to this test process.
pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genllava-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Run to completion; panic with the output unless it succeeded. Returns stdout + stderr.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn train-native");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "train-native failed:\n{text}");
    text
}

/// The step of the run's newest checkpoint (`latest` names `step-N`).
pub fn latest_step(out: &Path) -> Option<usize> {
    let name = std::fs::read_to_string(out.join("latest")).ok()?;
    name.trim().strip_prefix("step-")?.parse().ok()
}

/// The run's `metrics.jsonl`, one value per step.
pub fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// Start a training run into `out`, SIGKILL it once a checkpoint of step ≥ `after`
/// exists (failing if none appears within `timeout`), and return that step, which
/// must lie before `steps`.
pub fn kill_after_checkpoint(args: &[String], out: &Path, after: usize, steps: usize, timeout: Duration) -> usize {
    let mut child = bin().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let start = Instant::now();
    loop {
        if latest_step(out).is_some_and(|s| s >= after) {
            break;
        }
        assert!(child.try_wait().expect("wait").is_none(), "the run ended before it could be killed");
        assert!(start.elapsed() < timeout, "no checkpoint after {} s", timeout.as_secs());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(child.try_wait().expect("wait").is_none(), "the run ended before it could be killed");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let killed_at = latest_step(out).expect("a checkpoint");
    assert!(killed_at < steps, "killed at step {killed_at}, after the end");
    killed_at
}
