//! End to end: `train-native train` with `trainable.llm = "lora"` on the built-in
//! colours set with the tiny model. Only the adapters (and the token rows, the
//! projector) learn; step folders hold the frozen base weights plus a PEFT
//! adapter, the final model has it merged, and both answer alike through `chat`.
//! A run killed with SIGKILL and resumed ends with the same bytes of weights.

mod common;

use common::{bin, colours_sets, kill_after_checkpoint, metrics, run_ok, temp, train_args};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const STEPS: usize = 100;

fn args(out: &Path) -> Vec<String> {
    let mut sets = colours_sets(out, STEPS);
    sets.extend(
        ["checkpoint_every=25", "keep_checkpoints=4", "trainable.llm=lora", "trainable.lora.rank=4"].map(String::from),
    );
    train_args(&sets)
}

fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let parsed = genllava::safetensors::parse(&path.display().to_string(), bytes).expect("safetensors");
    parsed.into_iter().map(|(k, v)| (k, v.to_f32())).collect()
}

fn ask(model: &Path, image: &Path) -> String {
    run_ok(
        bin()
            .args(["chat", "--model"])
            .arg(model)
            .arg("--image")
            .arg(image)
            .args(["--prompt", "USER: <image>\nWhat colour is the image? ASSISTANT:"]),
    )
}

#[test]
fn lora_run_trains_adapters_resumes_exactly_and_merges() {
    let a = temp("lora-a");
    let log = run_ok(bin().args(args(&a)));
    let counts: Vec<usize> = log
        .lines()
        .find(|l| l.starts_with("model: "))
        .expect("parameter line")
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .collect();
    assert!(counts[1] < counts[0] / 2, "LoRA must train a minority of the weights: {log}");

    // Step folders: the base weights never move; the adapter (2 layers × 7 projections × A, B) does.
    let (s25, s100) = (a.join("step-0000025"), a.join("step-0000100"));
    let (w25, w100) = (tensors(&s25.join("model.safetensors")), tensors(&s100.join("model.safetensors")));
    let layer_keys: Vec<&String> = w25.keys().filter(|k| k.contains(".layers.")).collect();
    assert!(!layer_keys.is_empty());
    for k in &layer_keys {
        assert_eq!(w25[*k], w100[*k], "frozen base weight {k} changed");
    }
    let (ad25, ad100) =
        (tensors(&s25.join("adapter_model.safetensors")), tensors(&s100.join("adapter_model.safetensors")));
    assert_eq!(ad100.len(), 28, "{:?}", ad100.keys());
    assert!(ad100.keys().all(|k| k.starts_with("base_model.model.model.language_model.layers.")));
    assert!(ad100.iter().any(|(k, v)| *v != ad25[k]), "the adapters did not train");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s100.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!((config["peft_type"].as_str(), config["r"].as_u64()), (Some("LORA"), Some(4)));
    // The final model is plain weights, adapter merged.
    assert!(!a.join("model/adapter_config.json").exists());
    let merged = tensors(&a.join("model/model.safetensors"));
    assert!(layer_keys.iter().any(|k| merged[*k] != w100[*k]), "the final model has no adapter merged");

    // Killed after the checkpoint of step ≥ 10 and resumed: the same bytes.
    let b = temp("lora-b");
    let killed_at = kill_after_checkpoint(&args(&b), &b, 10, STEPS, Duration::from_secs(120));
    let log = run_ok(bin().args(args(&b)).arg("--resume"));
    assert!(log.contains("resuming from"), "{log}");
    let wa = std::fs::read(a.join("model/model.safetensors")).expect("weights a");
    let wb = std::fs::read(b.join("model/model.safetensors")).expect("weights b");
    assert!(wa == wb, "resumed LoRA weights differ from the uninterrupted run (killed at step {killed_at})");

    // It learned; the step folder (base + adapter, merged on load) answers like the final model.
    let losses: Vec<f64> = metrics(&a).iter().map(|m| m["loss"].as_f64().expect("loss")).collect();
    let (first, last) = (losses[..5].iter().sum::<f64>() / 5.0, losses[losses.len() - 5..].iter().sum::<f64>() / 5.0);
    assert!(last < first / 5.0, "loss {first} → {last}");
    let image = a.join("blue.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([30, 60, 220])).save(&image).expect("png");
    let from_final = ask(&a.join("model"), &image);
    assert!(from_final.contains("The colour is blue."), "{from_final}");
    let from_step = ask(&s100, &image);
    assert!(from_step.contains("The colour is blue."), "{from_step}");

    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
