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
/// and `edit` run on it with no `--model`, and `chat` loads it as a LLaVA.
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
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/genllava-shapes");
    let o = run(&[
        "chat",
        "--model",
        shipped.to_str().expect("utf8"),
        "--image",
        out.to_str().expect("utf8"),
        "--prompt",
        "[I2T]USER: <image>\nHow many shapes are there? ASSISTANT:",
        "--max-new-tokens",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
