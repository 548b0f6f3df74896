//! End to end on the shapes world with the whole GenLLaVA recipe (task tokens,
//! `[IMG]` tokens, generation head, cross-entropy + denoising + alignment losses
//! through the frozen shipped decoder): a run killed with SIGKILL after a
//! checkpoint and resumed ends with the same bytes of weights (LLaVA and head)
//! as an uninterrupted one, and micro-batches run side by side on threads give
//! the same bytes as one after the other; the checkpoint is a GenLLaVA folder that `generate`,
//! `edit` and `chat` load.

mod common;

use common::{bin, kill_after_checkpoint, metrics, run_ok, temp, train_args};
use std::path::Path;
use std::time::Duration;

const STEPS: usize = 8;

fn args(out: &Path) -> Vec<String> {
    let sets = [
        format!("out_dir={}", out.display()),
        format!("steps={STEPS}"),
        "lr=2e-3".into(),
        "global_batch=8".into(),
        "micro_batch=4".into(),
        "checkpoint_every=2".into(),
        "keep_checkpoints=1".into(),
        "eval_samples=4".into(),
        "eval_images=2".into(),
        "data.size=256".into(),
        // Images in every step, so each step exercises the generation losses.
        "mixture.generation=0.4".into(),
        "mixture.editing=0.2".into(),
    ];
    train_args(&sets)
}

#[test]
fn genllava_run_resumes_exactly_and_its_checkpoint_generates() {
    let a = temp("a");
    let log = run_ok(bin().args(args(&a)));
    assert!(log.contains("eval at step 8"), "{log}");
    let m = metrics(&a);
    assert_eq!(m.len(), STEPS);
    assert!(m.iter().all(|s| s["images"].as_u64().unwrap_or(0) > 0), "every step trains on images");
    assert!(m.iter().all(|s| s["diffusion"].as_f64().unwrap_or(0.0) > 0.0 && s["align"].as_f64().unwrap_or(0.0) > 0.0));
    let model = a.join("model");
    for f in ["genllava.json", "gen_head/config.json", "gen_head/model.safetensors", "sd/unet/config.json"] {
        assert!(model.join(f).exists(), "{f} missing from the checkpoint");
    }
    let report = std::fs::read_to_string(a.join("report.md")).expect("report");
    assert!(report.contains("shapes generation (novel"), "{report}");

    // The two micro-batches of each step ran side by side (`parallel_micro_batches`
    // defaults to 2); one after the other they give the same bytes.
    let c = temp("c");
    let mut sequential = args(&c);
    sequential.extend(["--set", "parallel_micro_batches=1"].map(String::from));
    run_ok(bin().args(&sequential));
    for f in ["model.safetensors", "gen_head/model.safetensors"] {
        let wa = std::fs::read(a.join("model").join(f)).expect("weights a");
        let wc = std::fs::read(c.join("model").join(f)).expect("weights c");
        assert!(wa == wc, "{f}: micro-batches run side by side and one after the other give different weights");
    }
    let _ = std::fs::remove_dir_all(&c);

    // Killed after the checkpoint of step ≥ 2, then resumed.
    let b = temp("b");
    let killed_at = kill_after_checkpoint(&args(&b), &b, 2, STEPS, Duration::from_secs(300));
    let log = run_ok(bin().args(args(&b)).arg("--resume"));
    assert!(log.contains("resuming from"), "{log}");
    for f in ["model.safetensors", "gen_head/model.safetensors"] {
        let wa = std::fs::read(a.join("model").join(f)).expect("weights a");
        let wb = std::fs::read(b.join("model").join(f)).expect("weights b");
        assert!(wa == wb, "{f}: resumed weights differ from the uninterrupted run (killed at step {killed_at})");
    }

    // The checkpoint runs through the generation CLI.
    let png = a.join("gen.png");
    run_ok(
        bin()
            .args(["generate", "--model"])
            .arg(&model)
            .args(["--prompt", "a large red circle in the center", "--steps", "3", "--out"])
            .arg(&png),
    );
    let img = image::open(&png).expect("generated png").to_rgb8();
    assert_eq!(img.dimensions(), (32, 32));
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn a_plain_llava_checkpoint_becomes_a_genllava_to_tune() {
    // The fixture transformers wrote: no task tokens, no head.
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llava-tiny");
    let out = temp("from");
    let log = run_ok(bin().args([
        "train",
        "--set",
        &format!("model.from={}", from.display()),
        "--set",
        "model.generation=true",
        "--set",
        &format!("out_dir={}", out.display()),
        "--set",
        "steps=2",
        "--set",
        "global_batch=4",
        "--set",
        "micro_batch=4",
        "--set",
        "eval_samples=0",
        "--set",
        "eval_images=1",
        "--set",
        "mixture.generation=0.5",
    ]));
    assert!(log.contains("done: model in"), "{log}");
    let model = out.join("model");
    let tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("tokenizer.json")).expect("tokenizer")).expect("json");
    let added = tok["added_tokens"].as_array().expect("added tokens");
    for t in ["[I2T]", "[T2I]", "[SOI]", "[EOI]", "[IMG0]", "[IMG15]"] {
        assert!(added.iter().any(|a| a["content"] == t), "{t} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("config.json")).expect("config")).expect("json");
    assert_eq!(cfg["text_config"]["vocab_size"], 160 + 20, "embedding rows grown by the 20 new tokens");
    let png = out.join("gen.png");
    run_ok(
        bin()
            .args(["generate", "--model"])
            .arg(&model)
            .args(["--prompt", "a small blue square", "--steps", "2", "--out"])
            .arg(&png),
    );
    assert!(png.exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn understanding_only_is_the_same_run_on_understanding_data_alone() {
    // The embedded config's ablation: every task but understanding off, beside the main run.
    let out = bin().args(["train", "--understanding-only", "--print-config"]).output().expect("spawn");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config JSON");
    let m = &cfg["mixture"];
    assert_eq!(
        (m["text"].as_f64(), m["generation"].as_f64(), m["editing"].as_f64()),
        (Some(0.0), Some(0.0), Some(0.0))
    );
    assert!(m["understanding"].as_f64().unwrap_or(0.0) > 0.0, "{m}");
    assert_eq!(cfg["out_dir"], "runs/train-understanding-only");
    assert_eq!(cfg["steps"], 4000);
    assert_eq!(cfg["model"]["init_std"], 0.05, "the ablation starts from the main job's initialisation");

    // A short run of it: the mixture's image shares of `args` are overruled, so no step
    // trains on an image target, and its report scores the same held-out sets.
    let u = temp("understanding-only");
    let mut sets = args(&u);
    sets.extend(["--understanding-only", "--set", "steps=2"].map(String::from));
    run_ok(bin().args(&sets));
    let m = metrics(&u);
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|s| s["images"].as_u64().unwrap_or(0) == 0), "{m:?}");
    let report = std::fs::read_to_string(u.join("report.md")).expect("report");
    assert!(report.contains("shapes understanding (novel"), "{report}");
    let _ = std::fs::remove_dir_all(&u);
}

/// On an InstructPix2Pix decoder (`pretrain-sd --pix2pix` from the shipped one) the same
/// recipe trains: its editing samples feed the source image to the frozen UNet beside the
/// noise, the checkpoint's `genllava.json` edits that way, and `edit` and `generate` run.
#[test]
fn a_pix2pix_decoder_trains_and_edits_from_the_source() {
    let sd = temp("p2p-sd");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sd-shapes");
    let mut cmd = bin();
    cmd.args(["pretrain-sd", "--pix2pix", "--steps", "1", "--batch", "2", "--pool", "4", "--out"]).arg(&sd);
    for flag in ["--unet-from", "--vae-from", "--text-from"] {
        cmd.arg(flag).arg(&shipped);
    }
    run_ok(&mut cmd);
    let p = temp("p2p");
    let mut sets = args(&p);
    // Its edits describe the edited scene before drawing it.
    sets.extend(["--set", "steps=2", "--set", "eval_every=0", "--set", "data.describe_edits=true"].map(String::from));
    sets.extend(["--set".to_string(), format!("model.sd={}", sd.display())]);
    run_ok(bin().args(&sets));
    let m = metrics(&p);
    assert!(m.iter().all(|s| s["diffusion"].as_f64().unwrap_or(0.0) > 0.0), "{m:?}");
    let model = p.join("model");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("genllava.json")).expect("genllava.json")).expect("json");
    assert_eq!(config["diffusion"]["edit"], serde_json::json!({"pix2pix": {"image_guidance": 1.5}}));
    assert_eq!(config["describe_edits"], true);
    // The final evaluation scores the descriptions against the edited scenes' captions.
    let report = std::fs::read_to_string(p.join("report.md")).expect("report");
    assert!(report.contains("edit descriptions right"), "{report}");
    let unet: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("sd/unet/config.json")).expect("unet")).expect("json");
    assert_eq!(unet["in_channels"], 16);

    let source = p.join("gen.png");
    run_ok(
        bin()
            .args(["generate", "--model"])
            .arg(&model)
            .args(["--prompt", "a small red circle", "--steps", "2", "--out"])
            .arg(&source),
    );
    let edited = p.join("edit.png");
    // `edit` of the drawn picture with `setting`.
    let edit = |setting: [&str; 2]| {
        let mut cmd = bin();
        cmd.args(["edit", "--model"]).arg(&model).arg("--image").arg(&source);
        cmd.args(["--prompt", "make the circle blue", "--steps", "2"]).args(setting).arg("--out").arg(&edited);
        cmd
    };
    let said = run_ok(&mut edit(["--image-guidance", "1.2"]));
    assert!(said.contains("description: "), "{said}");
    assert_eq!(image::open(&edited).expect("edited png").to_rgb8().dimensions(), (32, 32));
    // img2img's strength does not apply to it: refused, naming how it edits.
    let out = edit(["--strength", "0.5"]).output().expect("edit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("InstructPix2Pix") && err.contains("--image-guidance"), "{err}");
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_dir_all(&sd);
}
