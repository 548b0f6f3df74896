//! Parity of the Mistral/Llama decoder with transformers (fixtures written by
//! tests/reference/llama.py): full-forward logits, greedy continuation with
//! top-5 log-probabilities, incremental decoding, and loading errors.

use burn::tensor::{Int, Tensor, TensorData};
use genllava::llama::{KvCache, Llama, LlamaConfig, Rope, generate};
use genllava::safetensors::RawTensor;
use genllava::sampling::SamplingConfig;
use genllava::{Error, VarBuilder, WeightMap};
use genllava_tests::{assert_close, cpu, fixture, load, rel_err};
use std::collections::BTreeMap;
use std::sync::Arc;

fn config_text(name: &str) -> String {
    let path = fixture(&format!("{name}/config.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn weights(name: &str) -> Arc<WeightMap> {
    let path = fixture(&format!("{name}/model.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Arc::new(WeightMap::from_safetensors(&path.display().to_string(), bytes).expect("safetensors"))
}

fn load_model(name: &str, config: &str) -> genllava::Result<(LlamaConfig, Llama, Arc<WeightMap>)> {
    let cfg = LlamaConfig::from_json(config)?;
    let map = weights(name);
    let root = VarBuilder::from_map(map.clone(), &cpu());
    let model = Llama::load(&cfg, &root.pp("model"), &root.pp("lm_head"))?;
    Ok((cfg, model, map))
}

fn ids_of(raw: &RawTensor) -> Vec<u32> {
    raw.to_f32().iter().map(|&v| v as u32).collect()
}

fn id_tensor(ids: &[u32], shape: [usize; 2]) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(data, shape), &cpu())
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

fn check(name: &str) {
    let (cfg, model, map) = load_model(name, &config_text(name)).expect("load");
    let unused: Vec<String> = map.unused();
    assert!(unused.is_empty(), "{name}: unused tensors {unused:?}");
    let refs: BTreeMap<String, RawTensor> = load(&format!("{name}/reference.safetensors"));
    let raw_ids = &refs["ids"];
    let [b, s]: [usize; 2] = raw_ids.shape.clone().try_into().expect("2-d ids");
    let ids = ids_of(raw_ids);

    // Full forward, without and with a cache.
    let embeds = model.embed_tokens(id_tensor(&ids, [b, s]));
    let hidden = model.forward(embeds.clone(), &mut Rope::for_config(&cfg, &cpu()));
    assert_close(
        &format!("{name} logits"),
        model.logits(hidden),
        &refs["logits"],
        1e-4,
    );
    let mut cache = KvCache::new(&cfg, &cpu());
    let cached = model.logits(model.forward_embeds(embeds, &mut cache));
    assert_close(
        &format!("{name} logits (cache)"),
        cached,
        &refs["logits"],
        1e-4,
    );

    // Greedy continuation of prompt 0 with top-5 log-probabilities.
    let prompt = &ids[..s];
    let want = ids_of(&refs["greedy"]);
    let sampling = SamplingConfig {
        max_new_tokens: want.len(),
        logprobs: 5,
        ..Default::default()
    };
    let mut cache = KvCache::new(&cfg, &cpu());
    let mut seen = 0;
    let out = generate(
        &model,
        &mut cache,
        model.embed_tokens(id_tensor(prompt, [1, s])),
        prompt,
        &[],
        &sampling,
        |_, so_far| {
            seen = so_far.len();
            true
        },
    )
    .expect("generate");
    assert_eq!(out.ids(), want, "{name}: greedy tokens");
    assert_eq!(seen, want.len());
    assert!(!out.hit_eos);
    assert_eq!(cache.len(), s + want.len() - 1);
    let top_ids = ids_of(&refs["top_ids"]);
    let top_lp = refs["top_logprobs"].to_f32();
    let got_ids: Vec<u32> = out
        .tokens
        .iter()
        .flat_map(|t| t.top_logprobs.iter().map(|p| p.0))
        .collect();
    let got_lp: Vec<f32> = out
        .tokens
        .iter()
        .flat_map(|t| t.top_logprobs.iter().map(|p| p.1))
        .collect();
    assert_eq!(got_ids, top_ids, "{name}: top-5 ids");
    let lp_diff = got_lp
        .iter()
        .zip(&top_lp)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(lp_diff <= 1e-4, "{name}: logprobs differ by {lp_diff:e}");

    // Incremental decoding equals the full forward over prompt + continuation.
    let all: Vec<u32> = prompt.iter().chain(&want).copied().collect();
    let n = all.len();
    let embeds = model.embed_tokens(id_tensor(&all, [1, n]));
    let full =
        values(model.logits(model.forward(embeds.clone(), &mut Rope::for_config(&cfg, &cpu()))));
    let mut cache = KvCache::new(&cfg, &cpu());
    let mut steps =
        values(model.logits(model.forward_embeds(embeds.clone().narrow(1, 0, s), &mut cache)));
    for t in s..n {
        steps.extend(values(model.logits(
            model.forward_embeds(embeds.clone().narrow(1, t, 1), &mut cache),
        )));
    }
    let err = rel_err(&steps, &full);
    assert!(
        err <= 1e-5,
        "{name}: incremental vs full relative error {err:e}"
    );
}

#[test]
fn mistral_gqa_sliding_window_parity() {
    check("llama-mistral");
}

#[test]
fn llama_tied_head_dim_rope_theta_parity() {
    check("llama-llama");
}

#[test]
fn generation_stops_on_eos_and_callback() {
    let name = "llama-mistral";
    let (cfg, model, _) = load_model(name, &config_text(name)).expect("load");
    let refs = load(&format!("{name}/reference.safetensors"));
    let ids = ids_of(&refs["ids"]);
    let want = ids_of(&refs["greedy"]);
    let prompt = &ids[..10];
    let sampling = SamplingConfig {
        max_new_tokens: 8,
        ..Default::default()
    };
    let embeds = || model.embed_tokens(id_tensor(prompt, [1, 10]));
    // EOS = the third greedy token: the run ends with it.
    let mut cache = KvCache::new(&cfg, &cpu());
    let out = generate(
        &model,
        &mut cache,
        embeds(),
        prompt,
        &[want[2]],
        &sampling,
        |_, _| true,
    )
    .expect("generate");
    assert_eq!(out.ids(), want[..3].to_vec());
    assert!(out.hit_eos);
    // The callback stops after two tokens.
    let mut cache = KvCache::new(&cfg, &cpu());
    let out = generate(
        &model,
        &mut cache,
        embeds(),
        prompt,
        &[],
        &sampling,
        |_, so_far| so_far.len() < 2,
    )
    .expect("generate");
    assert_eq!(out.ids(), want[..2].to_vec());
    // Seeded sampling is reproducible.
    let hot = SamplingConfig {
        temperature: 1.5,
        top_k: 20,
        top_p: 0.95,
        seed: 7,
        ..sampling
    };
    let run = || {
        let mut cache = KvCache::new(&cfg, &cpu());
        generate(&model, &mut cache, embeds(), prompt, &[], &hot, |_, _| true)
            .expect("generate")
            .ids()
    };
    assert_eq!(run(), run());
}

#[test]
fn wrong_config_names_the_tensor() {
    let name = "llama-mistral";
    let bad = config_text(name).replace("\"hidden_size\": 32", "\"hidden_size\": 48");
    match load_model(name, &bad) {
        Err(Error::ShapeMismatch {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "model.embed_tokens.weight");
            assert_eq!(expected, vec![100, 48]);
            assert_eq!(found, vec![100, 32]);
        }
        other => panic!("expected ShapeMismatch, got {:?}", other.map(|_| ())),
    }
    // The tied Llama fixture has no lm_head: untying it must name the missing tensor.
    let untied = config_text("llama-llama").replace(
        "\"tie_word_embeddings\": true",
        "\"tie_word_embeddings\": false",
    );
    match load_model("llama-llama", &untied) {
        Err(Error::MissingTensor { name, .. }) => assert_eq!(name, "lm_head.weight"),
        other => panic!("expected MissingTensor, got {:?}", other.map(|_| ())),
    }
}
