//! LoRA: a PEFT adapter (tests/reference/lora.py, the real `peft` classes) on the
//! llava-tiny fixture loads, merges and gives PEFT's logits; adapters written
//! back are the ones read; broken adapter folders get errors naming the problem.

use genllava::checkpoint::MemorySource;
use genllava::llava::LlavaCheckpoint;
use genllava::lora::{self, AdapterConfig};
use genllava_tests::{assert_close, cpu, load, memory_source, tensor};

/// llava-tiny with the adapter files of llava-tiny-lora beside its weights.
fn adapted() -> MemorySource {
    let mut src = memory_source("llava-tiny");
    let adapter = memory_source("llava-tiny-lora");
    for name in ["adapter_config.json", "adapter_model.safetensors"] {
        src.files.insert(name.into(), adapter.files[name].clone());
    }
    src
}

fn logits(
    ckpt: &LlavaCheckpoint,
    refs: &std::collections::BTreeMap<String, genllava::safetensors::RawTensor>,
) -> burn::tensor::Tensor<3> {
    let device = cpu();
    let cfg = &ckpt.config;
    let ids: Vec<u32> = refs["input_ids"].to_i64().into_iter().map(|v| v as u32).collect();
    let pixels = tensor::<4>(refs, "pixel_values", &device);
    let features = ckpt.model.image_features(cfg, pixels).expect("features");
    let embeds = ckpt.model.embed(cfg, &ids, Some(features), &device).expect("embed");
    let mut cache = ckpt.model.new_cache(cfg, &device);
    ckpt.model.language_model.logits(ckpt.model.language_model.forward_embeds(embeds, &mut cache))
}

#[test]
fn peft_adapter_merges_to_pefts_logits() {
    let refs = load("llava-tiny-lora/reference.safetensors");
    let ckpt = LlavaCheckpoint::load(&adapted(), &cpu()).expect("load with adapter");
    assert_close("adapted logits", logits(&ckpt, &refs), &refs["logits"], 1e-4);
    assert_close("merged logits", logits(&ckpt, &refs), &refs["merged_logits"], 1e-4);
    // Without the merge the base model's own logits come out (the adapter matters).
    let base = LlavaCheckpoint::load_base(&adapted(), &cpu()).expect("base");
    let plain = load("llava-tiny/reference.safetensors");
    assert_close("base logits", logits(&base, &refs), &plain["logits"], 1e-4);
}

#[test]
fn attached_adapters_export_as_read() {
    let src = adapted();
    let device = cpu();
    let (cfg, factors) = lora::load_folder(&src, &device).expect("read").expect("has an adapter");
    assert_eq!((cfg.r, cfg.scale()), (4, 2.0));
    assert_eq!(factors.len(), 14, "2 layers × 7 projections");
    let base = LlavaCheckpoint::load_base(&src, &device).expect("base");
    let targets: Vec<String> = lora::TARGETS.iter().map(|t| t.to_string()).collect();
    let (llama, n) = lora::attach(base.model.language_model, &cfg, &targets, Some(factors)).expect("attach");
    assert_eq!(n, 14);
    let written = lora::adapter_tensors(&llama);
    let file = load("llava-tiny-lora/adapter_model.safetensors");
    assert_eq!(written.len(), file.len());
    for t in &written {
        let want = file.get(&t.name).unwrap_or_else(|| panic!("{} is not in the PEFT file", t.name));
        assert_eq!(t.shape, want.shape, "{}", t.name);
        assert_eq!(t.data, want.to_f32(), "{}", t.name);
    }
    // Fresh adapters start as the identity: B is zero, the outputs are the base model's.
    let base = LlavaCheckpoint::load_base(&src, &device).expect("base");
    let before = base.model.language_model.clone();
    let (fresh, n) =
        lora::attach(base.model.language_model, &AdapterConfig::new(2, 4.0, &targets), &targets, None).expect("fresh");
    assert_eq!(n, 14);
    let ids = burn::tensor::Tensor::<2, burn::tensor::Int>::from_ints([[1, 5, 9, 12]], &device);
    let x = before.embed_tokens.forward(ids);
    let mut c1 = genllava::llama::KvCache::new(&base.config.text_config, &device);
    let mut c2 = genllava::llama::KvCache::new(&base.config.text_config, &device);
    let a = before.forward_embeds(x.clone(), &mut c1).into_data();
    let b = fresh.forward_embeds(x, &mut c2).into_data();
    assert_eq!(a, b);
}

#[test]
fn broken_adapters_are_refused_by_name() {
    let err = |src: &MemorySource| match LlavaCheckpoint::load(src, &cpu()) {
        Ok(_) => panic!("loaded a broken adapter"),
        Err(e) => e.to_string(),
    };
    let mut src = adapted();
    let mut cfg: serde_json::Value = serde_json::from_slice(&src.files["adapter_config.json"]).expect("json");
    cfg["r"] = 8.into();
    src.files.insert("adapter_config.json".into(), serde_json::to_vec(&cfg).expect("json"));
    let e = err(&src);
    assert!(e.contains("lora_A.weight") && e.contains("[8,"), "{e}");

    let mut src = adapted();
    cfg["r"] = 4.into();
    cfg["use_dora"] = true.into();
    src.files.insert("adapter_config.json".into(), serde_json::to_vec(&cfg).expect("json"));
    assert!(err(&src).contains("DoRA"), "{}", err(&src));

    let mut src = adapted();
    src.files.remove("adapter_model.safetensors");
    assert!(err(&src).contains("adapter_model.safetensors"), "{}", err(&src));
}
