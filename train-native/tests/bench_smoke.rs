//! `train-native bench` end to end on the fixture-sized models only: the table
//! and the JSON have one row per measurement. Nothing about the timings is asserted.

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train-native")).arg("bench").args(args).output().expect("run train-native")
}

#[test]
fn tiny_models_table_and_json() {
    let json = std::env::temp_dir().join(format!("genllava-bench-smoke-{}.json", std::process::id()));
    let out = bench(&["--quick", "--only", "tiny", "--runs", "1", "--json", json.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));

    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| model")).collect();
    let expected = [
        ("llava-tiny", "prefill, 64-token prompt", "tok/s"),
        ("llava-tiny", "prefill, 256-token prompt", "tok/s"),
        ("llava-tiny", "decode, 32 steps", "tok/s"),
        ("unet-tiny", "step, batch 2, 8×8 latents", "ms"),
        ("vae-tiny", "decode 16×16 → 32×32", "ms"),
    ];
    assert_eq!(rows.len(), expected.len(), "table:\n{stdout}");
    for (row, (model, what, unit)) in rows.iter().zip(expected) {
        assert!(
            row.starts_with(&format!("| {model} | {what}")) && row.contains(unit),
            "row `{row}`, expected {model} {what}"
        );
    }
    // The real-sized models are skipped by --quick and filtered out by --only anyway.
    assert!(!stdout.contains("sd14") && !stdout.contains("llm-small"));

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let _ = std::fs::remove_file(&json);
    let results = v["results"].as_array().expect("results");
    let keys: Vec<(&str, &str)> =
        results.iter().map(|r| (r["model"].as_str().unwrap_or(""), r["measurement"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        keys,
        [
            ("llava-tiny", "prefill-64"),
            ("llava-tiny", "prefill-256"),
            ("llava-tiny", "decode-32"),
            ("unet-tiny", "unet-step"),
            ("vae-tiny", "vae-decode")
        ]
    );
    assert!(results.iter().all(|r| r["seconds"].as_f64().is_some_and(|s| s > 0.0)));
}

#[test]
fn unknown_model_filter_is_an_error() {
    let out = bench(&["--only", "no-such-model"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model matches"));
}

#[test]
fn kernel_bench_needs_a_wgpu_device() {
    let out = bench(&["--kernels", "--quick"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--device wgpu") && !stderr.contains("panicked"), "{stderr}");
}

/// `bench --train` on a tiny understanding config (8 samples per step): one row per
/// layout that divides the batch, the config's own first at 1.00×; nothing about the
/// timings is asserted. `--set` without `--train` is refused.
#[test]
fn train_step_layouts_table() {
    let sets = [
        "global_batch=8",
        "micro_batch=4",
        "parallel_micro_batches=2",
        "data.source=colours",
        "model.generation=false",
        "model.init=null",
        "model.vision=null",
        "max_seq_len=2048",
    ];
    let mut args = vec!["--train", "--steps", "7"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench --train failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| samples")).collect();
    // The config's (4 per pass, 2 at once), then 8 × 4 at once and 4 × 8 at once (32 and 16 do not divide 8).
    assert_eq!(rows.len(), 3, "table:\n{stdout}");
    assert!(rows[0].starts_with("| 4 (the config's) | 2 | 2 |") && rows[0].ends_with("| 1.00× |"), "{}", rows[0]);
    assert!(rows[1].starts_with("| 8 | 1 | 4 |") && rows[2].starts_with("| 4 | 2 | 8 |"), "table:\n{stdout}");

    let refused = bench(&["--set", "steps=3"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add --train"));
}
