//! Parity of `UNet2DConditionModel` with diffusers (fixtures written by
//! `tests/reference/unet.py`): noise predictions of two tiny random UNets, one in
//! the SD 1.x layout and one InstructPix2Pix-style (8 input channels, linear
//! projections, per-block heads and transformer depths).

use burn::tensor::Tensor;
use genllava::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use genllava::{Error, VarBuilder, WeightMap};
use genllava_tests::{assert_close, cpu, fixture, load, tensor};
use std::sync::Arc;

const TOL: f32 = 1e-4;

fn read(dir: &str, file: &str) -> Vec<u8> {
    let path = fixture(&format!("{dir}/{file}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config(dir: &str) -> String {
    String::from_utf8(read(dir, "config.json")).expect("utf-8 config")
}

fn weights(dir: &str) -> Arc<WeightMap> {
    Arc::new(WeightMap::from_safetensors(dir, read(dir, "diffusion_pytorch_model.safetensors")).expect("weights"))
}

/// Load a fixture UNet, checking that every checkpoint tensor was used.
fn load_unet(dir: &str) -> UNet2DConditionModel {
    let cfg = UNet2DConditionConfig::from_json(&config(dir)).expect("config");
    let map = weights(dir);
    let unet = UNet2DConditionModel::load(&cfg, &VarBuilder::from_map(map.clone(), &cpu())).expect("load");
    assert!(map.unused().is_empty(), "unused tensors: {:?}", map.unused());
    unet
}

fn check(dir: &str) {
    let device = cpu();
    let unet = load_unet(dir);
    let refs = load(&format!("{dir}/reference.safetensors"));
    let sample: Tensor<4> = tensor(&refs, "sample", &device);
    let timesteps: Tensor<1> = tensor(&refs, "timesteps", &device);
    let states: Tensor<3> = tensor(&refs, "encoder_hidden_states", &device);

    let noise = unet.forward(sample.clone(), timesteps, states.clone()).expect("forward");
    assert_close(&format!("{dir}: noise, per-sample timesteps"), noise, &refs["noise"], TOL);

    let noise = unet.forward_at(sample, 500.0, states.clone()).expect("forward_at");
    assert_close(&format!("{dir}: noise, t = 500"), noise, &refs["noise_t500"], TOL);

    let odd: Tensor<4> = tensor(&refs, "sample_odd", &device);
    let noise = unet.forward_at(odd, 250.0, states.narrow(0, 0, 1)).expect("forward odd");
    assert_close(&format!("{dir}: noise, 7x5 latent"), noise, &refs["noise_odd_t250"], TOL);
}

#[test]
fn tiny_sd1_unet_matches_diffusers() {
    check("unet-tiny");
}

#[test]
fn tiny_instruct_pix2pix_unet_matches_diffusers() {
    check("unet-tiny-ip2p");
}

#[test]
fn config_defaults_follow_diffusers() {
    let cfg = UNet2DConditionConfig::from_json(r#"{"cross_attention_dim": 768, "some_future_field": [1, 2]}"#)
        .expect("config");
    assert_eq!(cfg.block_out_channels, vec![320, 640, 1280, 1280]);
    assert_eq!(cfg.heads().expect("heads"), vec![8; 4]);
    assert_eq!(cfg.time_embed_dim(), 1280);
    assert!(cfg.flip_sin_to_cos && !cfg.use_linear_projection);
}

#[test]
fn unsupported_config_is_rejected() {
    let json = config("unet-tiny").replace("\"DownBlock2D\"", "\"AttnDownBlock2D\"");
    let err = UNet2DConditionConfig::from_json(&json).expect_err("unsupported block type");
    assert!(err.to_string().contains("AttnDownBlock2D"), "{err}");
}

#[test]
fn mismatched_config_names_tensor_and_shapes() {
    let json = config("unet-tiny").replace("\"cross_attention_dim\": 32", "\"cross_attention_dim\": 16");
    let cfg = UNet2DConditionConfig::from_json(&json).expect("config");
    let err = UNet2DConditionModel::load(&cfg, &VarBuilder::from_map(weights("unet-tiny"), &cpu()))
        .expect_err("shape mismatch");
    match &err {
        Error::ShapeMismatch { name, expected, found } => {
            assert_eq!(name, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight");
            assert_eq!((expected.as_slice(), found.as_slice()), ([32, 16].as_slice(), [32, 32].as_slice()));
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("attn2.to_k.weight") && msg.contains("[32, 16]") && msg.contains("[32, 32]"), "{msg}");
}

#[test]
fn wrong_input_shapes_are_errors() {
    let device = cpu();
    let unet = load_unet("unet-tiny");
    let states = Tensor::<3>::zeros([1, 3, 32], &device);
    let err = unet.forward_at(Tensor::zeros([1, 8, 8, 8], &device), 1.0, states.clone()).expect_err("channels");
    assert!(err.to_string().contains("sample"), "{err}");
    let err = unet
        .forward_at(Tensor::zeros([1, 4, 8, 8], &device), 1.0, Tensor::zeros([1, 3, 16], &device))
        .expect_err("width");
    assert!(err.to_string().contains("encoder_hidden_states"), "{err}");
    let err =
        unet.forward(Tensor::zeros([1, 4, 8, 8], &device), Tensor::zeros([3], &device), states).expect_err("timesteps");
    assert!(err.to_string().contains("timesteps"), "{err}");
}

#[test]
fn fresh_initialisation_runs_through_the_same_constructor() {
    let device = cpu();
    let cfg = UNet2DConditionConfig::from_json(&config("unet-tiny-ip2p")).expect("config");
    let unet = UNet2DConditionModel::load(&cfg, &VarBuilder::init(0.02, &device)).expect("init");
    let noise =
        unet.forward_at(Tensor::ones([1, 8, 6, 6], &device), 10.0, Tensor::ones([1, 3, 32], &device)).expect("forward");
    assert_eq!(noise.dims(), [1, 4, 6, 6]);
}
