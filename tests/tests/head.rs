//! Parity of the generation head with a torch `nn.Transformer` mapper
//! (tests/reference/head.py).

use genllava::head::{GenHead, GenHeadConfig};
use genllava::{VarBuilder, WeightMap};
use genllava_tests::{assert_close, cpu, fixture, load, tensor};
use std::sync::Arc;

#[test]
fn head_matches_torch() {
    let dev = cpu();
    let cfg = GenHeadConfig::from_json(
        &std::fs::read_to_string(fixture("head-tiny/config.json")).expect("config"),
    )
    .expect("parse");
    assert_eq!(
        cfg,
        GenHeadConfig::tiny(),
        "tiny preset is the fixture's config"
    );
    let bytes = std::fs::read(fixture("head-tiny/model.safetensors")).expect("weights");
    let map = Arc::new(WeightMap::from_safetensors("head-tiny", bytes).expect("parse weights"));
    let head = GenHead::load(&cfg, &VarBuilder::from_map(map.clone(), &dev)).expect("load");
    assert!(
        map.unused().is_empty(),
        "unused weights: {:?}",
        map.unused()
    );
    let refs = load("head-tiny/reference.safetensors");
    let out = head.forward(tensor(&refs, "input", &dev));
    assert_close("head output", out, &refs["output"], 1e-4);
}

#[test]
fn full_preset_and_config_roundtrip() {
    let full = GenHeadConfig::full();
    assert_eq!(
        (
            full.d_model,
            full.heads,
            full.enc_layers,
            full.dec_layers,
            full.ffn
        ),
        (512, 4, 4, 4, 2048)
    );
    assert_eq!(
        (full.num_queries, full.out_dim, full.num_img_tokens),
        (77, 768, 16)
    );
    let json = serde_json::to_string(&full).expect("serialize");
    assert_eq!(GenHeadConfig::from_json(&json).expect("parse"), full);
}

#[test]
fn initialised_head_has_the_documented_shapes() {
    let dev = cpu();
    let cfg = GenHeadConfig::tiny();
    let head = GenHead::load(&cfg, &VarBuilder::init(0.02, &dev)).expect("init");
    let x = burn::tensor::Tensor::<3>::zeros([3, cfg.num_img_tokens, cfg.d_llm], &dev);
    assert_eq!(head.forward(x).dims(), [3, cfg.num_queries, cfg.out_dim]);
}
