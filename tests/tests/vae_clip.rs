//! Parity of the Stable Diffusion VAE and the CLIP text encoder with diffusers /
//! transformers (fixtures written by tests/reference/vae_clip.py).

use burn::tensor::{Int, Tensor, TensorData};
use genllava::clip_text::{ClipTextConfig, ClipTextModel};
use genllava::sd::vae::{AutoencoderKL, AutoencoderKLConfig};
use genllava::{Error, VarBuilder, WeightMap};
use genllava_tests::{assert_close, cpu, fixture, load, tensor};
use std::sync::Arc;

const TOL: f32 = 1e-4;

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).expect("fixture")
}

fn vae_weights() -> WeightMap {
    WeightMap::from_safetensors("vae-tiny", read("vae-tiny/diffusion_pytorch_model.safetensors")).expect("weights")
}

fn vae_config() -> AutoencoderKLConfig {
    AutoencoderKLConfig::from_json(&String::from_utf8(read("vae-tiny/config.json")).expect("utf8")).expect("config")
}

#[test]
fn vae_encode_and_decode_match_diffusers() {
    let device = cpu();
    let cfg = vae_config();
    assert_eq!(cfg.scaling_factor, 0.18215);
    let map = Arc::new(vae_weights());
    let vae = AutoencoderKL::load(&cfg, &VarBuilder::from_map(map.clone(), &device)).expect("load");
    assert!(map.unused().is_empty(), "unused tensors: {:?}", map.unused());

    let refs = load("vae-tiny/reference.safetensors");
    let dist = vae.encode(tensor(&refs, "image", &device)).expect("encode");
    assert_close("mean", dist.mode(), &refs["mean"], TOL);
    assert_close("logvar", dist.logvar.clone(), &refs["logvar"], TOL);
    assert_close("sample", dist.sample(tensor(&refs, "noise", &device)), &refs["sample"], TOL);

    let decoded = vae.decode(tensor(&refs, "latent", &device)).expect("decode");
    assert_close("decoded", decoded, &refs["decoded"], TOL);
}

#[test]
fn vae_rejects_wrong_input_channels() {
    let device = cpu();
    let vae =
        AutoencoderKL::load(&vae_config(), &VarBuilder::from_map(Arc::new(vae_weights()), &device)).expect("load");
    let err = vae.encode(Tensor::zeros([1, 4, 8, 8], &device)).expect_err("4-channel image");
    assert!(matches!(err, Error::Input { .. }), "{err}");
    let err = vae.decode(Tensor::zeros([1, 3, 8, 8], &device)).expect_err("3-channel latent");
    assert!(matches!(err, Error::Input { .. }), "{err}");
}

#[test]
fn vae_mismatched_config_names_tensor_and_shapes() {
    let device = cpu();
    let mut cfg = vae_config();
    cfg.block_out_channels = vec![16, 64];
    let err =
        AutoencoderKL::load(&cfg, &VarBuilder::from_map(Arc::new(vae_weights()), &device)).expect_err("wrong widths");
    match err {
        Error::ShapeMismatch { name, expected, found } => {
            assert_eq!(name, "encoder.down_blocks.1.resnets.0.conv1.weight");
            assert_eq!(expected, vec![64, 16, 3, 3]);
            assert_eq!(found, vec![32, 16, 3, 3]);
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    let bad = r#"{"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]}"#;
    let err = AutoencoderKLConfig::from_json(bad).expect_err("unsupported block");
    assert!(err.to_string().contains("CrossAttnDownBlock2D"), "{err}");
}

fn clip() -> (ClipTextConfig, Arc<WeightMap>) {
    let cfg = ClipTextConfig::from_json(&String::from_utf8(read("clip-text-tiny/config.json")).expect("utf8"))
        .expect("config");
    let mut map =
        WeightMap::from_safetensors("clip-text-tiny", read("clip-text-tiny/model.safetensors")).expect("weights");
    ClipTextModel::normalize_keys(&mut map);
    (cfg, Arc::new(map))
}

#[test]
fn clip_text_matches_transformers() {
    let device = cpu();
    let (cfg, map) = clip();
    assert_eq!((cfg.bos_token_id, cfg.eos_token_id), (998, 999));
    let model = ClipTextModel::load(&cfg, &VarBuilder::from_map(map.clone(), &device).pp("text_model")).expect("load");
    assert!(map.unused().is_empty(), "unused tensors: {:?}", map.unused());

    // Row 0: a prompt padded with eos; row 1: the empty prompt [bos, eos, eos...].
    let refs = load("clip-text-tiny/reference.safetensors");
    let raw = &refs["input_ids"];
    let ids: Vec<i64> = raw.to_f32().iter().map(|v| *v as i64).collect();
    let ids: Tensor<2, Int> = Tensor::from_data(TensorData::new(ids, [raw.shape[0], raw.shape[1]]), &device);
    let hidden = model.forward(ids).expect("forward");
    assert_close("last_hidden_state", hidden, &refs["last_hidden_state"], TOL);
}

#[test]
fn clip_text_rejects_too_long_prompt() {
    let device = cpu();
    let (cfg, map) = clip();
    let model = ClipTextModel::load(&cfg, &VarBuilder::from_map(map, &device).pp("text_model")).expect("load");
    let ids: Tensor<2, Int> = Tensor::zeros([1, cfg.max_position_embeddings + 1], &device);
    assert!(matches!(model.forward(ids), Err(Error::Input { .. })));
}

#[test]
fn clip_text_mismatched_config_names_tensor_and_shapes() {
    let device = cpu();
    let (mut cfg, map) = clip();
    cfg.intermediate_size = 128;
    let err =
        ClipTextModel::load(&cfg, &VarBuilder::from_map(map, &device).pp("text_model")).expect_err("wrong mlp width");
    match err {
        Error::ShapeMismatch { name, expected, found } => {
            assert_eq!(name, "text_model.encoder.layers.0.mlp.fc1.weight");
            assert_eq!(expected, vec![128, 32]);
            assert_eq!(found, vec![64, 32]);
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
}
