//! Loading an exported model (the web format of `train-native export-web`) one shard at a
//! time: the page hands the engine `manifest.json`, then each shard as it arrives, then the
//! copied files (configs, tokenizer); the wasm heap holds about one shard of raw bytes.

use burn::tensor::Device;
use genllava::checkpoint::MemorySource;
use genllava::quant::{Quant, Scales};
use genllava::web::{Residency, WebFolder, WebLoader};

/// A web-format model half loaded: the loader, and what the summary will say about it.
pub struct WebLoad {
    pub loader: WebLoader,
    pub label: String,
    pub residency: Residency,
    /// Shards pushed so far.
    pub pushed: usize,
}

/// `quantized` or `f32`, as the page and the summary name a residency.
pub fn residency_name(r: Residency) -> &'static str {
    match r {
        Residency::F32 => "f32",
        Residency::Quantized => "quantized",
    }
}

/// Parse the page's residency choice; `None` takes `default`.
pub fn parse_residency(choice: Option<&str>, default: Residency) -> Result<Residency, String> {
    match choice {
        None | Some("") => Ok(default),
        Some("quantized") => Ok(Residency::Quantized),
        Some("f32") => Ok(Residency::F32),
        Some(other) => Err(format!("residency `{other}` is not `quantized` or `f32`")),
    }
}

impl WebLoad {
    /// Check `manifest` (the bytes of `manifest.json`) and get ready for its shards.
    pub fn begin(label: &str, manifest: &[u8], device: &Device, residency: Residency) -> genllava::Result<Self> {
        let loader = WebLoader::new(label, manifest, device, residency)?;
        Ok(Self { loader, label: label.into(), residency, pushed: 0 })
    }

    /// What the page must fetch: the shards in order, then the copied files.
    pub fn plan(&self) -> serde_json::Value {
        let m = self.loader.manifest();
        let shards: Vec<_> = m
            .shards
            .iter()
            .map(|s| serde_json::json!({ "file": s.file, "bytes": s.bytes, "component": s.component }))
            .collect();
        let files: Vec<_> = m.files.iter().map(|f| serde_json::json!({ "path": f.path, "bytes": f.bytes })).collect();
        serde_json::json!({
            "quant": m.quant.name(),
            "shards": shards,
            "shard_bytes": m.shards.iter().map(|s| s.bytes).sum::<usize>(),
            "files": files,
        })
    }

    /// Whether any tensor of the manifest is block-quantized (q8 / q4).
    pub fn has_blocks(&self) -> bool {
        self.scales().is_some()
    }

    /// The scale dtype of the manifest's block-quantized tensors (`None`: there are none).
    pub fn scales(&self) -> Option<Scales> {
        self.loader
            .manifest()
            .tensors
            .iter()
            .find(|t| Quant::parse(&t.dtype).is_some_and(|q| q.is_block()))
            .map(|t| t.quantization.as_ref().map_or(Scales::F32, |b| b.scales))
    }

    /// What the summary says about where the weights live (once every shard is pushed).
    pub fn residency_note(&self) -> String {
        let quant = self.loader.manifest().quant.name();
        let Some(scales) = self.scales() else {
            return format!("{quant} export: no block-quantized tensors, every weight is f32 on the device");
        };
        match (self.residency, self.loader.device_scales()) {
            (Residency::Quantized, Some(kept)) => {
                let why = match (scales, kept) {
                    (Scales::F16, Scales::F32) => " (exported f16, widened: this adapter has no shader-f16)",
                    _ => "",
                };
                format!(
                    "linear weights stay {quant} on the device (Burn block quantization, blocks of 32, {} scales{why}); \
                     embeddings and the rest are f32",
                    kept.name()
                )
            }
            _ => format!("{quant} weights ({} scales) dequantized to f32 as the shards arrived", scales.name()),
        }
    }

    /// All shards pushed: the folder the ordinary loaders read, its copied files from `files`.
    pub fn finish(
        self,
        files: std::collections::BTreeMap<String, Vec<u8>>,
    ) -> genllava::Result<WebFolder<MemorySource>> {
        let weights = self.loader.finish()?;
        Ok(WebFolder { src: MemorySource { files, label: self.label }, weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Model;
    use genllava::checkpoint::{FileSource, load_weights};
    use genllava::image::RgbImage;
    use genllava::pipeline::{Prompt, prepare};
    use genllava::web::{ExportOptions, Exporter, MANIFEST};
    use std::collections::BTreeMap;

    #[test]
    fn residency_choices() {
        assert_eq!(parse_residency(None, Residency::Quantized), Ok(Residency::Quantized));
        assert_eq!(parse_residency(Some("f32"), Residency::Quantized), Ok(Residency::F32));
        assert_eq!(parse_residency(Some("quantized"), Residency::F32), Ok(Residency::Quantized));
        let e = parse_residency(Some("q4"), Residency::F32).unwrap_err();
        assert!(e.contains("`q4`") && e.contains("quantized"), "{e}");
        assert_eq!(residency_name(Residency::Quantized), "quantized");
    }

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/llava-tiny");
    const MODEL_FILES: [&str; 4] = ["config.json", "tokenizer.json", "processor_config.json", "model.safetensors"];

    fn fixture() -> MemorySource {
        let mut src = MemorySource { label: "llava-tiny".into(), ..Default::default() };
        for f in MODEL_FILES {
            src.files.insert(f.into(), std::fs::read(format!("{FIXTURE}/{f}")).expect("fixture file"));
        }
        src
    }

    /// Files by name.
    type Files = BTreeMap<String, Vec<u8>>;

    /// The fixture exported as `quant` with 64 KiB shards: (manifest bytes, shards by name, copied files).
    fn export(quant: Quant) -> (Vec<u8>, Files, Files) {
        export_with(quant, Scales::F32)
    }

    /// [`export`] with block scales as `scales`.
    fn export_with(quant: Quant, scales: Scales) -> (Vec<u8>, Files, Files) {
        let src = fixture();
        let mut shards = BTreeMap::new();
        let mut write = |name: &str, bytes: &[u8]| -> genllava::Result<()> {
            shards.insert(name.to_string(), bytes.to_vec());
            Ok(())
        };
        let options = ExportOptions { quant, shard_limit: 64 << 10, embeddings: false, scales };
        let mut ex = Exporter::new(options, &mut write).expect("exporter");
        let mut copied = BTreeMap::new();
        for f in &MODEL_FILES[..3] {
            ex.add_file(f, &src.files[*f]);
            copied.insert(f.to_string(), src.files[*f].clone());
        }
        ex.add_weights("model", &load_weights(&src, "model").expect("weights")).expect("add weights");
        let manifest = serde_json::to_vec(&ex.finish().expect("finish")).expect("json");
        (manifest, shards, copied)
    }

    /// Push every shard of the plan in order, as the worker does.
    fn load(quant: Quant, residency: Residency) -> Model {
        load_with(quant, Scales::F32, residency).0
    }

    /// [`load`] of an export with `scales`; also the summary's residency note.
    fn load_with(quant: Quant, scales: Scales, residency: Residency) -> (Model, String) {
        let (manifest, shards, copied) = export_with(quant, scales);
        let device = Device::flex();
        let mut load = WebLoad::begin("models/llava-tiny-web", &manifest, &device, residency).expect("begin");
        let plan = load.plan();
        let files: Vec<String> =
            plan["shards"].as_array().unwrap().iter().map(|s| s["file"].as_str().unwrap().to_string()).collect();
        assert!(files.len() > 1, "64 KiB shards: the fixture spans several");
        for f in files {
            load.loader.push_shard(&f, shards[&f].clone()).expect("push");
            load.pushed += 1;
        }
        let note = load.residency_note();
        let folder = load.finish(copied).expect("finish");
        (Model::load(&folder, &device).expect("model"), note)
    }

    fn logits(m: &Model) -> Vec<f32> {
        let device = Device::flex();
        let prompt = std::fs::read_to_string(format!("{FIXTURE}/prompt.txt")).expect("prompt");
        let image = RgbImage::decode(&std::fs::read(format!("{FIXTURE}/image.png")).expect("png")).expect("decode");
        let ckpt = m.ckpt();
        let Prompt { embeds, .. } =
            prepare(ckpt, m.tokenizer(), m.processor(), &prompt, Some(&image), false, &device).expect("prepare");
        let mut cache = ckpt.model.new_cache(&ckpt.config, &device);
        let hidden = ckpt.model.language_model.forward_embeds(embeds, &mut cache);
        genllava::llama::last_logits(&ckpt.model.language_model, hidden).expect("logits")
    }

    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn exported_model_loads_shard_by_shard() {
        let original = logits(&Model::load(&fixture(), &Device::flex()).expect("original"));
        let f32_export = logits(&load(Quant::F32, Residency::Quantized));
        assert_eq!(f32_export, original, "the f32 export must compute exactly the checkpoint's logits");
        for quant in [Quant::Q8, Quant::Q4] {
            let dequantized = logits(&load(quant, Residency::F32));
            let kept = logits(&load(quant, Residency::Quantized));
            let err = rel_err(&kept, &dequantized);
            assert!(err <= 1e-4, "{quant:?}: quantized residency vs dequantized: {err:e}");
            assert!(rel_err(&dequantized, &original) > 0.0, "{quant:?}: the export changed nothing");
        }
        // f16 scales: the CPU backend computes with them widened to f32, and says so.
        let (kept, note) = load_with(Quant::Q4, Scales::F16, Residency::Quantized);
        assert!(note.contains("f32 scales (exported f16, widened"), "{note}");
        let (dequantized, note) = load_with(Quant::Q4, Scales::F16, Residency::F32);
        assert!(note.contains("(f16 scales) dequantized"), "{note}");
        let err = rel_err(&logits(&kept), &logits(&dequantized));
        assert!(err <= 1e-4, "q4, f16 scales: quantized residency vs dequantized: {err:e}");
        let f32_scales = logits(&load(Quant::Q4, Residency::F32));
        assert_ne!(logits(&dequantized), f32_scales, "f16 scales are another rounding of the same weights");
    }

    #[test]
    fn a_corrupt_or_missing_shard_is_named() {
        let (manifest, shards, copied) = export(Quant::Q8);
        let device = Device::flex();
        let mut load = WebLoad::begin("models/x", &manifest, &device, Residency::Quantized).expect("begin");
        assert!(load.residency_note().contains("q8"), "{}", load.residency_note());
        let first = load.loader.shards()[0].file.clone();
        let mut bad = shards[&first].clone();
        bad[7] ^= 0x40;
        let e = load.loader.push_shard(&first, bad).unwrap_err().to_string();
        assert!(e.contains(&format!("models/x/{first}")) && e.contains("sha256"), "{e}");
        load.loader.push_shard(&first, shards[&first].clone()).expect("the good bytes");
        let second = load.loader.shards()[1].file.clone();
        let e = load.finish(copied).err().expect("a shard is missing").to_string();
        assert!(e.contains(&second) && e.contains("missing"), "{e}");
        let e = WebLoad::begin("models/x", b"{}", &device, Residency::F32).err().expect("not a manifest").to_string();
        assert!(e.contains(&format!("models/x/{MANIFEST}")), "{e}");
    }

    #[test]
    fn copied_files_are_checked() {
        let (manifest, shards, mut copied) = export(Quant::F16);
        let device = Device::flex();
        let mut load = WebLoad::begin("models/y", &manifest, &device, Residency::Quantized).expect("begin");
        assert!(load.residency_note().contains("no block-quantized"), "{}", load.residency_note());
        for s in load.loader.shards().to_vec() {
            load.loader.push_shard(&s.file, shards[&s.file].clone()).expect("push");
        }
        copied.get_mut("config.json").expect("config").push(b' ');
        let folder = load.finish(copied).expect("finish");
        let e = Model::load(&folder, &device).err().expect("a changed config.json").to_string();
        assert!(e.contains("config.json") && e.contains("sha256"), "{e}");
        assert!(folder.describe("config.json").contains("models/y"));
    }
}
