//! Parity of the SigLIP and CLIP vision towers and of the image preprocessing
//! against transformers (tests/reference/siglip.py).

use genllava::image::{ImageProcessorConfig, RgbImage};
use genllava::siglip::{SiglipVision, SiglipVisionConfig};
use genllava::{VarBuilder, WeightMap};
use genllava_tests::{assert_close, cpu, fixture, load, tensor};
use std::sync::Arc;

const TOL: f32 = 1e-4;

/// The tower of a fixture folder; `prefixed` moves every key under `vision_model.`
/// (the layout of transformers < 5 and of full SigLIP/CLIP checkpoints).
fn tower(name: &str, prefixed: bool) -> (SiglipVision, Arc<WeightMap>) {
    let dir = fixture(&format!("siglip/{name}"));
    let cfg =
        SiglipVisionConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let mut map = WeightMap::from_safetensors(name, bytes).unwrap();
    if prefixed {
        map.rename_prefix("", "vision_model.");
    }
    let map = Arc::new(map);
    let vb = VarBuilder::from_map(map.clone(), &cpu());
    (SiglipVision::load_checkpoint(&cfg, &vb).unwrap(), map)
}

fn check_tower(name: &str, prefixed: bool) {
    let refs = load("siglip/reference.safetensors");
    let (model, map) = tower(name, prefixed);
    let pixels = tensor::<4>(&refs, "pixels", &cpu());
    let all = model.hidden_states(pixels.clone()).unwrap();
    assert_eq!(all.len(), 4);
    for (i, h) in all.into_iter().enumerate() {
        assert_close(
            &format!("{name} hidden_states[{i}]"),
            h,
            &refs[&format!("{name}.hidden_states.{i}")],
            TOL,
        );
    }
    for (layer, index) in [(-2i64, 2), (-1, 3), (0, 0), (1, 1), (3, 3), (-4, 0)] {
        let f = model.features(pixels.clone(), layer).unwrap();
        assert_close(
            &format!("{name} features({layer})"),
            f,
            &refs[&format!("{name}.hidden_states.{index}")],
            TOL,
        );
    }
    let last = model.forward(pixels.clone()).unwrap();
    assert_close(
        &format!("{name} last_hidden_state"),
        last,
        &refs[&format!("{name}.last_hidden_state")],
        TOL,
    );
    assert!(model.features(pixels.clone(), 4).is_err());
    assert!(model.features(pixels.clone(), -5).is_err());
    assert!(
        model.forward(pixels.narrow(3, 0, 24)).is_err(),
        "wrong image size must be an error"
    );
    let unused = map.unused();
    assert!(
        unused.iter().all(|k| k.contains("head.")),
        "only SigLIP's pooling head stays unused: {unused:?}"
    );
}

#[test]
fn siglip_tower_matches_transformers() {
    check_tower("siglip", false);
    check_tower("siglip", true);
}

#[test]
fn clip_tower_matches_transformers() {
    check_tower("clip", true);
    check_tower("clip", false);
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let dir = fixture("siglip/siglip");
    let mut cfg =
        SiglipVisionConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap())
            .unwrap();
    cfg.intermediate_size = 48;
    let map = Arc::new(
        WeightMap::from_safetensors(
            "siglip",
            std::fs::read(dir.join("model.safetensors")).unwrap(),
        )
        .unwrap(),
    );
    let err = SiglipVision::load(&cfg, &VarBuilder::from_map(map, &cpu()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mlp.fc1.weight") && err.contains("48"),
        "{err}"
    );
}

fn preprocess(config: &str, pad: bool, reference: &str) {
    let refs = load("siglip/reference.safetensors");
    let json = std::fs::read_to_string(fixture(&format!("siglip/{config}"))).unwrap();
    let cfg = ImageProcessorConfig::from_json(&json).unwrap();
    let img = RgbImage::decode(&std::fs::read(fixture("siglip/test.png")).unwrap()).unwrap();
    assert_eq!((img.width, img.height), (40, 30));
    let pixels = cfg.preprocess(&img, pad).unwrap().to_tensor(&cpu());
    assert_close(reference, pixels, &refs[reference], TOL);
}

#[test]
fn siglip_processor_matches_transformers() {
    preprocess("siglip_preprocessor_config.json", false, "pre.siglip");
}

#[test]
fn clip_processor_matches_transformers() {
    preprocess("clip_preprocessor_config.json", false, "pre.clip");
}

#[test]
fn llava_pad_to_square_matches() {
    preprocess("clip_preprocessor_config.json", true, "pre.clip_pad");
}

#[test]
fn bilinear_upscale_matches() {
    preprocess(
        "bilinear_preprocessor_config.json",
        false,
        "pre.bilinear_up",
    );
}

#[test]
fn garbage_bytes_are_an_image_error() {
    let err = RgbImage::decode(b"definitely not a picture").unwrap_err();
    assert!(matches!(err, genllava::Error::Image(_)), "{err}");
}

#[test]
fn nearest_downscale_matches() {
    preprocess("nearest_preprocessor_config.json", false, "pre.nearest");
}

#[test]
fn lanczos_matches() {
    preprocess("lanczos_preprocessor_config.json", false, "pre.lanczos");
}
