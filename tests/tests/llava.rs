//! Parity of the whole LLaVA path with transformers (tests/reference/llava.py):
//! tokenization with `<image>` expansion, preprocessing, logits with an image,
//! and the greedy continuation with log-probabilities, for both key layouts.

use burn::tensor::{Int, Tensor, TensorData};
use genllava::Error;
use genllava::checkpoint::{FileSource, MemorySource};
use genllava::image::RgbImage;
use genllava::llava::{LlavaCheckpoint, expand_image_tokens, load_image_processor};
use genllava::pipeline::{UnderstandRequest, understand};
use genllava::sampling::SamplingConfig;
use genllava::tokenizer::TextTokenizer;
use genllava_tests::{assert_close, cpu, load, memory_source, rel_err};

fn ids_of(refs: &std::collections::BTreeMap<String, genllava::safetensors::RawTensor>, name: &str) -> Vec<u32> {
    refs[name].to_i64().into_iter().map(|v| v as u32).collect()
}

fn check(name: &str) {
    let src = memory_source(name);
    let device = cpu();
    let refs = load(&format!("{name}/reference.safetensors"));
    let ckpt = LlavaCheckpoint::load(&src, &device).expect("load");
    // Only the SigLIP attention-pooling head is left: LLaVA never runs it.
    assert!(ckpt.unused.iter().all(|k| k.contains("vision_tower") && k.contains(".head.")), "{:?}", ckpt.unused);

    let tok = TextTokenizer::from_bytes(&src.files["tokenizer.json"]).expect("tokenizer");
    let prompt = String::from_utf8(src.files["prompt.txt"].clone()).expect("utf8");
    let cfg = &ckpt.config;
    let ids =
        expand_image_tokens(&tok.encode(&prompt, true).expect("encode"), cfg.image_token_index, cfg.image_seq_len());
    assert_eq!(ids, ids_of(&refs, "input_ids"), "{name}: input ids");

    let processor = load_image_processor(&src).expect("processor").expect("has a processor");
    let image = RgbImage::decode(&src.files["image.png"]).expect("png");
    let pixels = processor.preprocess(&image, false).expect("preprocess").to_tensor(&device);
    assert_close(&format!("{name} pixels"), pixels.clone(), &refs["pixel_values"], 1e-6);

    let features = ckpt.model.image_features(cfg, pixels).expect("features");
    let embeds = ckpt.model.embed(cfg, &ids, Some(features), &device).expect("embed");
    let mut cache = ckpt.model.new_cache(cfg, &device);
    let hidden = ckpt.model.language_model.forward_embeds(embeds, &mut cache);
    assert_close(&format!("{name} logits"), ckpt.model.language_model.logits(hidden), &refs["logits"], 1e-4);

    let sampling = SamplingConfig { max_new_tokens: 8, logprobs: 5, ..SamplingConfig::default() };
    let req = UnderstandRequest {
        prompt: &prompt,
        image: Some(&image),
        pad_to_square: false,
        sampling: &sampling,
        stop: &[],
        stop_ids: &[],
    };
    let mut streamed = String::new();
    let answer = understand(&ckpt, &tok, Some(&processor), &req, &device, &mut |d| {
        streamed.push_str(d);
        true
    })
    .expect("understand");
    let greedy = ids_of(&refs, "greedy_ids");
    assert_eq!(answer.ids(), greedy, "{name}: greedy ids");
    assert_eq!(streamed, answer.text);
    let top_ids = ids_of(&refs, "top5_ids");
    let top_lp = refs["top5_logprobs"].to_f32();
    for (step, tok) in answer.tokens.iter().enumerate() {
        let ids: Vec<u32> = tok.top_logprobs.iter().map(|p| p.0).collect();
        let lps: Vec<f32> = tok.top_logprobs.iter().map(|p| p.1).collect();
        assert_eq!(ids, top_ids[step * 5..step * 5 + 5], "{name}: top-5 ids at step {step}");
        let err = rel_err(&lps, &top_lp[step * 5..step * 5 + 5]);
        assert!(err < 1e-4, "{name}: log-probs at step {step}: relative error {err}");
    }
}

#[test]
fn current_layout_mistral_gqa_sliding_window() {
    check("llava-tiny");
}

#[test]
fn legacy_layout_llama_sharded() {
    check("llava-tiny-legacy");
}

/// `vision_feature_layer` as a list: the layers' states side by side per token, the
/// projector reading their concatenation (transformers' `LlavaForConditionalGeneration`).
#[test]
fn several_vision_feature_layers_concatenated() {
    check("llava-tiny-layers");
}

#[test]
fn half_precision_weights_load() {
    // An f16 and a bf16 copy of the fixture load and give logits close to f32.
    let src = memory_source("llava-tiny");
    let map = genllava::safetensors::parse("f32", src.files["model.safetensors"].clone()).expect("parse");
    for (dtype, tol) in [("F16", 2e-2f32), ("BF16", 1e-1)] {
        let bytes = reencode(&map, dtype);
        let mut half = src.clone();
        half.files.insert("model.safetensors".into(), bytes);
        let ckpt = LlavaCheckpoint::load(&half, &cpu()).expect("half load");
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 20, 30, 40], [1, 4]), &cpu());
        let h = ckpt.model.language_model.embed_tokens(ids);
        let full = LlavaCheckpoint::load(&src, &cpu()).expect("load");
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 20, 30, 40], [1, 4]), &cpu());
        let h32 = full.model.language_model.embed_tokens(ids);
        let a: Vec<f32> = h.into_data().try_to_vec().expect("f32");
        let b: Vec<f32> = h32.into_data().try_to_vec().expect("f32");
        assert!(rel_err(&a, &b) < tol, "{dtype}");
    }
}

/// Write every tensor of `map` in `dtype` (F16 or BF16).
fn reencode(map: &std::collections::BTreeMap<String, genllava::safetensors::RawTensor>, dtype: &str) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, t) in map {
        let start = data.len();
        for v in t.to_f32() {
            let bits =
                if dtype == "F16" { half::f16::from_f32(v).to_bits() } else { half::bf16::from_f32(v).to_bits() };
            data.extend_from_slice(&bits.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&header).expect("json");
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

#[test]
fn mismatched_config_names_the_tensor() {
    let mut src = memory_source("llava-tiny");
    let mut cfg: serde_json::Value = serde_json::from_slice(&src.files["config.json"]).expect("json");
    cfg["text_config"]["intermediate_size"] = serde_json::json!(80);
    src.files.insert("config.json".into(), serde_json::to_vec(&cfg).expect("json"));
    let err = LlavaCheckpoint::load(&src, &cpu()).err().expect("must fail");
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("model.language_model.layers.0.mlp") && msg.contains("80"), "{msg}");
}

#[test]
fn truncated_weights_name_the_file() {
    let mut src: MemorySource = memory_source("llava-tiny");
    let w = src.files.get_mut("model.safetensors").expect("weights");
    w.truncate(w.len() / 2);
    let err = LlavaCheckpoint::load(&src, &cpu()).err().expect("must fail").to_string();
    assert!(err.contains("model.safetensors") && err.contains("truncated"), "{err}");
    assert!(src.describe("x").ends_with("llava-tiny/x"));
}
