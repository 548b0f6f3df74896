//! End to end: `generate` and `edit` on a tiny GenLLaVA folder (the
//! genllava-tiny fixture with sd-tiny as its sd/), and their bad-input errors.

use genllava::shapes;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("dir").flatten() {
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// A temporary GenLLaVA folder.
fn model(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genllava-imagine-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixtures().join("genllava-tiny"), &dir);
    copy_dir(&fixtures().join("sd-tiny"), &dir.join("sd"));
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train-native")).args(args).output().expect("run")
}

#[test]
fn generate_and_edit_write_pngs() {
    let dir = model("ok");
    let m = dir.to_str().expect("utf8");
    let out = dir.join("gen.png");
    let o = run(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "a large red circle",
        "--steps",
        "3",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(&out).expect("png written");
    assert!(png.starts_with(b"\x89PNG"));

    let edited = dir.join("edit.png");
    let o = run(&[
        "edit",
        "--model",
        m,
        "--image",
        dir.join("image.png").to_str().expect("utf8"),
        "--prompt",
        "make the circle blue",
        "--steps",
        "3",
        "--strength",
        "0.5",
        "--out",
        edited.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&edited).expect("edited").starts_with(b"\x89PNG"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_get_one_clear_line() {
    let dir = model("bad");
    let m = dir.to_str().expect("utf8");
    let out = dir.join("x.png");
    let o = run(&[
        "edit",
        "--model",
        m,
        "--image",
        "/nonexistent/pic.png",
        "--prompt",
        "x",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("pic.png") && !err.contains("panicked"), "{err}");
    std::fs::remove_file(dir.join("sd/unet/config.json")).expect("rm");
    let o = run(&["generate", "--model", m, "--prompt", "x", "--out", out.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("unet/config.json") && err.trim().lines().count() == 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The model the main job trained, shipped in `assets/genllava-shapes`: `generate`
/// and `edit` run on it with no `--model`, and so does `chat` (it loads it as a LLaVA).
#[test]
fn the_shipped_default_model_generates_edits_and_answers() {
    let dir = std::env::temp_dir().join(format!("genllava-default-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = dir.join("gen.png");
    let prompt = "a large red circle in the center";
    let o = run(&["generate", "--prompt", prompt, "--out", out.to_str().expect("utf8"), "--check"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&out).expect("png").to_rgb8();
    assert_eq!(img.dimensions(), (32, 32));
    // --check: the evaluator's verdict on the PNG written, against the prompt's scene.
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    let verdict = match shapes::parse_image(img.as_raw(), 32, 32) {
        Err(_) => "no scene in the picture",
        Ok(got) if got == shapes::parse_caption(prompt).expect("caption") => "exact",
        Ok(_) => "differs",
    };
    assert!(said.contains(verdict), "{said}");
    assert!(verdict.starts_with("no") || said.contains("wanted: \"a large red circle in the center\""), "{said}");
    let edited = dir.join("edit.png");
    let o = run(&[
        "edit",
        "--image",
        out.to_str().expect("utf8"),
        "--prompt",
        "make the circle blue",
        "--out",
        edited.to_str().expect("utf8"),
        "--check",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    let after = image::open(&edited).expect("png").to_rgb8();
    // The verdict is the evaluator's on the edit of the drawing's scene.
    let want = shapes::parse_image(img.as_raw(), 32, 32)
        .and_then(|source| shapes::edit_target(&source, "make the circle blue"));
    let verdict = match (shapes::parse_image(after.as_raw(), 32, 32), want) {
        (Err(_), _) => "no scene in the picture",
        (Ok(_), Err(_)) => "nothing to compare with",
        (Ok(got), Ok(want)) if got == want => "exact",
        (Ok(_), Ok(_)) => "differs",
    };
    assert!(said.contains(verdict), "{said}");
    // `chat` with no `--model` answers with the shipped model too.
    let o = run(&[
        "chat",
        "--image",
        out.to_str().expect("utf8"),
        "--prompt",
        "[I2T]USER: <image>\nHow many shapes are there? ASSISTANT:",
        "--max-new-tokens",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let answer = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(!answer.is_empty());
    if let Ok(scene) = shapes::parse_image(img.as_raw(), 32, 32) {
        // The drawing's own count, read by the evaluator: the model reads it as well.
        assert!(answer.starts_with(&scene.shapes.len().to_string()), "{answer} for {scene:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eval`: the held-out evaluation of the training report, of the shipped model (no
/// `--model`), at a small size; the markdown on stdout and the JSON agree; a folder
/// that is not there is named in the error.
#[test]
fn eval_scores_the_shipped_model_on_the_held_out_sets() {
    let dir = std::env::temp_dir().join(format!("genllava-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let json = dir.join("eval.json");
    let answers = dir.join("answers.jsonl");
    let o = run(&[
        "eval",
        "--set",
        "eval_samples=4",
        "--set",
        "eval_images=1",
        "--json",
        json.to_str().expect("utf8"),
        "--answers",
        answers.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let sets = r["sets"].as_array().expect("sets");
    // Understanding, generation, editing and text, each on the test and the novel split.
    assert_eq!(sets.len(), 8, "{sets:?}");
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let (mut asked, mut right) = (0, 0);
    for s in sets {
        let (kind, correct, total) =
            (s["kind"].as_str().expect("kind"), s["correct"].as_u64().expect("n"), s["total"].as_u64().expect("n"));
        // eval_samples per understanding set, a quarter of it per text set, eval_images per image set.
        let want = if kind == "understanding" { 4 } else { 1 };
        assert_eq!(total, want, "{s}");
        assert!(correct <= total, "{s}");
        let row = format!("| {} | {correct} | {total} |", s["set"].as_str().expect("set"));
        assert!(stdout.contains(&row), "{row} not in\n{stdout}");
        if kind == "understanding" {
            asked += total;
            right += correct;
        }
    }
    assert_eq!(r["samples"].as_u64(), Some(asked));
    let accuracy = r["accuracy"].as_f64().expect("accuracy");
    assert!((accuracy - right as f64 / asked as f64).abs() < 1e-9, "{accuracy} vs {right}/{asked}");
    let categories: u64 = r["categories"].as_array().expect("categories").iter().map(|c| c[2].as_u64().unwrap()).sum();
    assert_eq!(categories, asked);
    // The same questions by shapes in the scene: every question counted once, its scene
    // holding one to three shapes, and the table printed.
    let by_shapes = r["by_shapes"].as_array().expect("by_shapes");
    assert_eq!(by_shapes.iter().map(|c| c[3].as_u64().unwrap()).sum::<u64>(), asked);
    assert!(by_shapes.iter().all(|c| (1..=3).contains(&c[1].as_u64().unwrap())), "{by_shapes:?}");
    assert!(stdout.contains("| by shapes in the scene"), "{stdout}");
    // The pictures (one per image set) by task and shapes in the scene, agreeing with the sets.
    let pictures = r["pictures_by_shapes"].as_array().expect("pictures_by_shapes");
    assert_eq!(pictures.iter().map(|c| c[3].as_u64().unwrap()).sum::<u64>(), 4, "{pictures:?}");
    let drawn_right: u64 = sets
        .iter()
        .filter(|s| s["kind"] == "editing" || s["kind"] == "generation")
        .map(|s| s["correct"].as_u64().unwrap())
        .sum();
    assert_eq!(pictures.iter().map(|c| c[2].as_u64().unwrap()).sum::<u64>(), drawn_right, "{pictures:?}");
    let rows = ["generation", "edit: recolour", "edit: resize", "edit: remove", "edit: add", "edit: move"];
    assert!(pictures.iter().all(|c| rows.contains(&c[0].as_str().unwrap())), "{pictures:?}");
    assert_eq!(pictures.iter().filter(|c| c[0] == "generation").map(|c| c[3].as_u64().unwrap()).sum::<u64>(), 2);
    assert!(stdout.contains("| pictures by shapes in the scene"), "{stdout}");
    // --answers: one line per question asked (understanding and text) and per edit described
    // (the shipped model describes its edits), agreeing with the counts.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&answers)
        .expect("answers written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let questioned: Vec<&serde_json::Value> =
        sets.iter().filter(|s| ["understanding", "text", "editing"].contains(&s["kind"].as_str().unwrap())).collect();
    assert_eq!(lines.len() as u64, questioned.iter().map(|s| s["total"].as_u64().expect("n")).sum::<u64>());
    let described = r["descriptions"].as_array().expect("descriptions");
    let edits_right = lines.iter().filter(|l| l["set"].as_str().unwrap().contains("editing") && l["correct"] == true);
    assert_eq!(edits_right.count() as u64, described.iter().map(|c| c[2].as_u64().unwrap()).sum::<u64>());
    for s in questioned {
        let mine: Vec<&serde_json::Value> = lines.iter().filter(|l| l["set"] == s["set"]).collect();
        assert_eq!(mine.len() as u64, s["total"].as_u64().expect("n"), "{s}");
        assert!(mine.iter().all(|l| l["question"].as_str().is_some_and(|q| !q.is_empty())));
        if s["kind"] == "editing" {
            // The instruction, the description the data writes (cell by cell) and the model's.
            assert!(mine.iter().all(|l| l["expected"].as_str().unwrap().contains("; ")), "{mine:?}");
            continue;
        }
        let ok = mine.iter().filter(|l| l["correct"] == true).count() as u64;
        assert_eq!(ok, s["correct"].as_u64().expect("n"), "{s}");
        // Understanding answers name their scene's size; text answers have no scene.
        let sized = s["kind"] == "understanding";
        assert!(mine.iter().all(|l| l["shapes"].as_u64().is_some() == sized), "{s}");
    }
    let o = run(&["eval", "--model", "/no/such/model"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/model"), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
