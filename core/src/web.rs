//! The web format: a checkpoint cut into shards the browser can fetch, verify
//! and cache one at a time, with matmul weights quantized (see [`crate::quant`]).
//!
//! A web folder holds
//! - `manifest.json` ([`Manifest`]): every tensor's name, the weights file it
//!   came from (`model`, `gen_head/model`, `sd/unet/diffusion_pytorch_model`, …),
//!   its submodule, shape, storage dtype, block quantization and where its bytes
//!   lie (one or more parts in shards); every shard's size and sha256;
//! - the shards, `{component}-{NNN}.bin` (`vision`, `projector`, `llm`, `head`,
//!   `unet`, `vae`, `text_encoder`, …), each at most `shard_limit` bytes: raw
//!   tensor encodings, each starting at a multiple of 16 bytes; a tensor larger than
//!   the limit is split into parts over consecutive shards;
//! - the checkpoint's other files (configs, tokenizers) copied as they were, each
//!   listed in the manifest with its sha256.
//!
//! [`Exporter`] writes the format (bytes out through a callback, no file system);
//! [`WebLoader`] reads it back one shard at a time, verifying each hash, and puts
//! every tensor on the device before it takes the next shard, so memory holds the
//! model plus about one shard of raw bytes. [`WebFolder`] then serves the result
//! to the ordinary loaders (`GenLlava::load`, `LlavaCheckpoint::load`, …) as a
//! [`FileSource`] whose weights are already decoded.

use crate::checkpoint::FileSource;
use crate::error::{Error, Result};
use crate::quant::{self, BLOCK, Quant, Scales};
use crate::safetensors::{Dtype, RawTensor};
use crate::weights::WeightMap;
use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Device, Tensor, TensorData};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's `format` field.
pub const FORMAT: &str = "genllava-web";
/// The manifest version this crate writes and reads.
pub const VERSION: u32 = 1;
/// The default shard size limit (256 MiB).
pub const DEFAULT_SHARD_LIMIT: usize = 256 << 20;
/// Tensors start at multiples of this many bytes within a shard.
const ALIGN: usize = 16;
/// The one block quantization mode: `w = scale · q`.
const SYMMETRIC: &str = "symmetric";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// How matmul weights are stored.
    pub quant: Quant,
    /// Values per quantization block (along the input dimension).
    pub block_size: usize,
    /// The largest shard size the exporter allowed, in bytes.
    pub shard_limit: usize,
    /// Files copied from the checkpoint (configs, tokenizers), by relative path.
    pub files: Vec<FileEntry>,
    /// The shards, in the order a loader should fetch them.
    pub shards: Vec<ShardEntry>,
    /// Every tensor.
    pub tensors: Vec<TensorEntry>,
}

/// A copied checkpoint file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub bytes: usize,
    pub sha256: String,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardEntry {
    pub file: String,
    /// The submodule its tensors belong to.
    pub component: String,
    pub bytes: usize,
    pub sha256: String,
}

/// One tensor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TensorEntry {
    /// The name in the checkpoint's weights file.
    pub name: String,
    /// The weights file stem it came from, relative to the checkpoint root.
    pub weights: String,
    pub component: String,
    /// PyTorch shape (`[out, in]` for matmul weights).
    pub shape: Vec<usize>,
    /// `q8`, `q4`, `f16` or `f32`; integer tensors keep their safetensors dtype (`I64`, `I32`).
    pub dtype: String,
    /// Block quantization of `q8` / `q4` tensors.
    pub quantization: Option<BlockQuantization>,
    /// Encoded size in bytes (the sum of the parts).
    pub bytes: usize,
    /// Where the bytes lie, in order.
    pub parts: Vec<Part>,
}

/// How a `q8` / `q4` tensor is blocked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BlockQuantization {
    /// Values per block.
    pub block: usize,
    /// The blocked dimension (1: the input dimension of `[out, in]`).
    pub axis: usize,
    /// `symmetric`: `w = scale · q`.
    pub mode: String,
    /// The dtype of the scales (`f32`, or `f16` for half their bytes).
    pub scales: Scales,
    /// Byte offset of the scales within the tensor's encoding (they follow the values).
    pub scales_offset: usize,
}

/// A run of a tensor's bytes in a shard.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// Index into [`Manifest::shards`].
    pub shard: usize,
    pub offset: usize,
    pub bytes: usize,
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The submodule a tensor belongs to, from its weights file and name.
pub fn component(weights: &str, name: &str) -> String {
    let dir = weights.rsplit_once('/').map_or("", |(d, _)| d);
    let last = dir.rsplit('/').next().unwrap_or("");
    match last {
        "gen_head" => return "head".into(),
        "unet" | "vae" | "text_encoder" => return last.into(),
        _ => {}
    }
    let part = if name.contains("vision_tower") || name.contains("vision_model") {
        "vision"
    } else if name.contains("multi_modal_projector") {
        "projector"
    } else if name.contains("language_model") || name.starts_with("lm_head") || name.starts_with("model.layers") {
        "llm"
    } else {
        "other"
    };
    if dir.is_empty() { part.into() } else { format!("{}-{part}", dir.replace('/', "-")) }
}

/// Whether a tensor is an embedding table (`embed_tokens`, `token_embedding`,
/// `position_embedding`, …), looked up by index rather than multiplied; the
/// linears of SD's `time_embedding` are not tables.
pub fn is_embedding_table(name: &str) -> bool {
    name.ends_with("embed_tokens.weight") || name.ends_with("_embedding.weight") || name.ends_with("embedding")
}

/// Whether a tensor is a matmul weight that the export quantizes: 2-D, named
/// `…weight`, whole blocks per row, and not an embedding table (unless asked).
pub fn is_matmul_weight(name: &str, shape: &[usize], embeddings: bool) -> bool {
    name.ends_with("weight") && quant::blockable(shape) && (embeddings || !is_embedding_table(name))
}

/// What to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Storage of matmul weights; everything else stays f32.
    pub quant: Quant,
    /// The largest shard in bytes.
    pub shard_limit: usize,
    /// Quantize embedding tables too.
    pub embeddings: bool,
    /// The dtype of the block scales of `q8` / `q4` weights.
    pub scales: Scales,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { quant: Quant::Q8, shard_limit: DEFAULT_SHARD_LIMIT, embeddings: false, scales: Scales::F32 }
    }
}

/// Writes the web format: add weights files and copied files, then [`Exporter::finish`].
/// Shards go out through `write(file name, bytes)` as they fill.
pub struct Exporter<'w> {
    options: ExportOptions,
    manifest: Manifest,
    shard: Vec<u8>,
    counts: BTreeMap<String, usize>,
    write: &'w mut dyn FnMut(&str, &[u8]) -> Result<()>,
}

impl<'w> Exporter<'w> {
    pub fn new(options: ExportOptions, write: &'w mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<Self> {
        if options.shard_limit < 1024 {
            return Err(Error::input("shard limit", format!("{} bytes; use at least 1024", options.shard_limit)));
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            quant: options.quant,
            block_size: BLOCK,
            shard_limit: options.shard_limit,
            files: vec![],
            shards: vec![],
            tensors: vec![],
        };
        Ok(Self { options, manifest, shard: vec![], counts: BTreeMap::new(), write })
    }

    /// Record a copied file (the caller writes it).
    pub fn add_file(&mut self, path: &str, bytes: &[u8]) {
        self.manifest.files.push(FileEntry { path: path.into(), bytes: bytes.len(), sha256: sha256_hex(bytes) });
    }

    /// Add every tensor of the weights file `weights` (its stem relative to the
    /// checkpoint root, e.g. `sd/unet/diffusion_pytorch_model`), grouped by
    /// submodule, each group in natural name order (`layers.2` before `layers.10`).
    pub fn add_weights(&mut self, weights: &str, map: &WeightMap) -> Result<()> {
        let mut names: Vec<(String, &String)> = map.names().map(|n| (component(weights, n), n)).collect();
        names.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| natural_cmp(a.1, b.1)));
        for (component, name) in names {
            let raw = map.raw(name).ok_or_else(|| Error::input(name, "not raw checkpoint bytes"))?;
            self.add_tensor(weights, &component, name, raw)?;
        }
        Ok(())
    }

    fn add_tensor(&mut self, weights: &str, component: &str, name: &str, raw: &RawTensor) -> Result<()> {
        let float = matches!(raw.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64);
        let matmul = float && is_matmul_weight(name, &raw.shape, self.options.embeddings);
        let (dtype, bytes, quantization) = if !float {
            (raw.dtype.name().to_string(), raw.bytes().to_vec(), None)
        } else {
            let q = if matmul { self.options.quant } else { Quant::F32 };
            let cols = raw.shape.last().copied().unwrap_or(1).max(1);
            let scales = self.options.scales;
            let bytes = quant::encode(&raw.to_f32(), cols, q, scales, &format!("{weights}: {name}"))?;
            let quantization = q.is_block().then(|| BlockQuantization {
                block: BLOCK,
                axis: 1,
                mode: SYMMETRIC.into(),
                scales,
                scales_offset: q.value_bytes(raw.numel()),
            });
            (q.name().to_string(), bytes, quantization)
        };
        let parts = self.place(component, &bytes)?;
        self.manifest.tensors.push(TensorEntry {
            name: name.into(),
            weights: weights.into(),
            component: component.into(),
            shape: raw.shape.clone(),
            dtype,
            quantization,
            bytes: bytes.len(),
            parts,
        });
        Ok(())
    }

    /// Append `bytes` to the current shard of `component`, starting new shards
    /// when the component changes or the limit is reached.
    fn place(&mut self, component: &str, mut bytes: &[u8]) -> Result<Vec<Part>> {
        let limit = self.options.shard_limit;
        let same = self.manifest.shards.last().is_some_and(|s| s.component == component) && !self.shard.is_empty();
        if !same {
            self.flush()?;
        }
        let mut parts = vec![];
        loop {
            let start = self.shard.len().next_multiple_of(ALIGN);
            // A tensor that fits a fresh shard is never split; a larger one fills shards in turn.
            if !self.shard.is_empty() && (start >= limit || (bytes.len() <= limit && start + bytes.len() > limit)) {
                self.flush()?;
                continue;
            }
            if self.shard.is_empty() {
                let n = self.counts.entry(component.to_string()).or_default();
                self.manifest.shards.push(ShardEntry {
                    file: format!("{component}-{n:03}.bin"),
                    component: component.into(),
                    bytes: 0,
                    sha256: String::new(),
                });
                *n += 1;
            }
            self.shard.resize(start, 0);
            let take = bytes.len().min(limit - start);
            self.shard.extend_from_slice(&bytes[..take]);
            parts.push(Part { shard: self.manifest.shards.len() - 1, offset: start, bytes: take });
            bytes = &bytes[take..];
            if bytes.is_empty() {
                return Ok(parts);
            }
        }
    }

    /// Write the current shard out and record its size and hash.
    fn flush(&mut self) -> Result<()> {
        if self.shard.is_empty() {
            return Ok(());
        }
        let Some(entry) = self.manifest.shards.last_mut() else { return Ok(()) };
        entry.bytes = self.shard.len();
        entry.sha256 = sha256_hex(&self.shard);
        (self.write)(&entry.file, &self.shard)?;
        self.shard.clear();
        Ok(())
    }

    /// Write the last shard and return the manifest (the caller writes it as `manifest.json`).
    pub fn finish(mut self) -> Result<Manifest> {
        self.flush()?;
        Ok(self.manifest)
    }
}

/// `a` before `b` comparing runs of digits as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<(String, u64)> {
        let mut out = vec![];
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                let mut n = c.to_digit(10).unwrap_or(0) as u64;
                while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                    n = n.saturating_mul(10).saturating_add(d as u64);
                    chars.next();
                }
                out.push((std::mem::take(&mut text), n));
            } else {
                text.push(c);
            }
        }
        out.push((text, u64::MAX));
        out
    };
    key(a).cmp(&key(b))
}

/// The scales of a `q8` / `q4` tensor entry, once its blocking is one this
/// crate reads (blocks of [`BLOCK`] along axis 1, symmetric, scales right after the values).
fn check_blocking(entry: &TensorEntry, q: Quant) -> std::result::Result<Scales, String> {
    let n: usize = entry.shape.iter().product();
    let Some(b) = &entry.quantization else {
        return Err(format!("tensor `{}`: {} without its `quantization`", entry.name, entry.dtype));
    };
    if b.block != BLOCK || b.axis != 1 || b.mode != SYMMETRIC {
        return Err(format!(
            "tensor `{}`: quantization block {} axis {} mode `{}` (this build reads block {BLOCK} axis 1 `{SYMMETRIC}`)",
            entry.name, b.block, b.axis, b.mode
        ));
    }
    // Checked once the shape is known to fit the bytes (the caller's error names both).
    if b.scales_offset != q.value_bytes(n) && q.encoded_bytes(n, b.scales) == entry.bytes {
        return Err(format!(
            "tensor `{}`: scales at byte {}, after its {} bytes of values",
            entry.name,
            b.scales_offset,
            q.value_bytes(n)
        ));
    }
    Ok(b.scales)
}

/// Burn's block quantization of a `[out, in]` weight as `Residency::Quantized` keeps it:
/// symmetric `value`, blocks of [`BLOCK`] along `in`, packed in `u32` words, `scales` scales.
fn burn_scheme(value: QuantValue, scales: ScaleDtype) -> QuantScheme {
    QuantScheme::default().with_value(value).with_store(QuantStore::PackedU32(0)).per_block([1, BLOCK as u8], scales)
}

/// The scale dtype `Residency::Quantized` keeps on `device` for `value` weights
/// exported with `scales`: f16 where the export stored f16 and the device computes
/// with f16 (WebGPU's `shader-f16`: lavapipe has it, SwiftShader and the CPU backend
/// do not), f32 otherwise (f16 scales widen exactly).
pub fn device_scales(device: &Device, value: QuantValue, scales: Scales) -> Scales {
    let f16 = burn_scheme(value, ScaleDtype::F16);
    if scales == Scales::F16 && device.supports_dtype(burn::tensor::DType::QFloat(f16)) {
        Scales::F16
    } else {
        Scales::F32
    }
}

/// Where `q8` / `q4` weights end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residency {
    /// Dequantized to f32 as they arrive: what the model computes is exactly the
    /// f32 model of the dequantized weights, on every backend.
    #[default]
    F32,
    /// Linear weights (`….weight`, not embeddings) kept block-quantized on the
    /// device as Burn tensors (`Q8S` / `Q4S`, blocks of 32 along the input
    /// dimension, the same values and scales): a quarter / an eighth of the
    /// memory. Burn dequantizes each weight inside its matmul (works on flex and
    /// wgpu, `train-native/tests/burn_quant.rs`); other block tensors are f32.
    /// Scales stay f16 where the export wrote f16 and the device has f16
    /// ([`device_scales`]), else f32.
    Quantized,
}

/// Reads a web folder shard by shard: [`WebLoader::push_shard`] each shard of
/// [`WebLoader::shards`] (in any order; in order keeps memory lowest), then
/// [`WebLoader::finish`]. A pull-based [`load`] drives it from a [`FileSource`].
pub struct WebLoader {
    manifest: Manifest,
    label: String,
    device: Device,
    residency: Residency,
    received: Vec<bool>,
    /// Bytes of tensors split over shards, gathered until complete.
    pending: BTreeMap<usize, Vec<u8>>,
    /// For each shard, the (tensor, part) pairs it holds.
    contents: Vec<Vec<(usize, usize)>>,
    maps: BTreeMap<String, WeightMap>,
    /// The scale dtype of the block-quantized tensors put on the device so far.
    device_scales: Option<Scales>,
}

impl WebLoader {
    /// Parse and check `manifest.json`; `label` (the folder or URL) names it in errors.
    pub fn new(label: &str, manifest: &[u8], device: &Device, residency: Residency) -> Result<Self> {
        let file = format!("{label}/{MANIFEST}");
        let manifest: Manifest =
            serde_json::from_slice(manifest).map_err(|e| Error::config(&file, format!("invalid manifest: {e}")))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(Error::config(
                &file,
                format!(
                    "format `{}` version {} (this build reads `{FORMAT}` version {VERSION})",
                    manifest.format, manifest.version
                ),
            ));
        }
        let mut contents = vec![vec![]; manifest.shards.len()];
        for (t, entry) in manifest.tensors.iter().enumerate() {
            let n: usize = entry.shape.iter().product();
            let want = match Quant::parse(&entry.dtype) {
                Some(q) if q.is_block() && !quant::blockable(&entry.shape) => {
                    return Err(Error::config(
                        &file,
                        format!(
                            "tensor `{}`: shape {:?} is not [rows, k·{BLOCK}] for {}",
                            entry.name, entry.shape, entry.dtype
                        ),
                    ));
                }
                Some(q) if q.is_block() => {
                    let scales = check_blocking(entry, q).map_err(|e| Error::config(&file, e))?;
                    q.encoded_bytes(n, scales)
                }
                Some(q) => q.encoded_bytes(n, Scales::F32),
                None => match entry.dtype.as_str() {
                    "I64" => 8 * n,
                    "I32" => 4 * n,
                    other => return Err(Error::Dtype { name: entry.name.clone(), dtype: other.into() }),
                },
            };
            let sum: usize = entry.parts.iter().map(|p| p.bytes).sum();
            if entry.bytes != want || sum != want {
                return Err(Error::config(
                    &file,
                    format!(
                        "tensor `{}`: shape {:?} as {} needs {want} bytes, the manifest gives {} in parts of {sum}",
                        entry.name, entry.shape, entry.dtype, entry.bytes
                    ),
                ));
            }
            for (p, part) in entry.parts.iter().enumerate() {
                let shard = manifest.shards.get(part.shard).ok_or_else(|| {
                    Error::config(
                        &file,
                        format!("tensor `{}` lies in shard {} of {}", entry.name, part.shard, manifest.shards.len()),
                    )
                })?;
                if part.offset + part.bytes > shard.bytes {
                    return Err(Error::config(
                        &file,
                        format!(
                            "tensor `{}` spans bytes {}..{} of {}, which has {}",
                            entry.name,
                            part.offset,
                            part.offset + part.bytes,
                            shard.file,
                            shard.bytes
                        ),
                    ));
                }
                contents[part.shard].push((t, p));
            }
        }
        Ok(Self {
            received: vec![false; manifest.shards.len()],
            manifest,
            label: label.into(),
            device: device.clone(),
            residency,
            pending: BTreeMap::new(),
            contents,
            maps: BTreeMap::new(),
            device_scales: None,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The shards to push, in order.
    pub fn shards(&self) -> &[ShardEntry] {
        &self.manifest.shards
    }

    /// Verify one shard's size and sha256 and put its tensors on the device.
    pub fn push_shard(&mut self, file: &str, bytes: Vec<u8>) -> Result<()> {
        let where_ = format!("{}/{file}", self.label);
        let s = self
            .manifest
            .shards
            .iter()
            .position(|s| s.file == file)
            .ok_or_else(|| Error::config(&where_, "not a shard of this manifest"))?;
        let entry = &self.manifest.shards[s];
        if bytes.len() != entry.bytes {
            return Err(Error::config(&where_, format!("{} bytes, the manifest says {}", bytes.len(), entry.bytes)));
        }
        let hash = sha256_hex(&bytes);
        if hash != entry.sha256 {
            return Err(Error::config(
                &where_,
                format!("sha256 {hash} does not match the manifest's {} (corrupt or stale download)", entry.sha256),
            ));
        }
        for (t, p) in self.contents[s].clone() {
            let entry = &self.manifest.tensors[t];
            let part = entry.parts[p];
            let piece = &bytes[part.offset..part.offset + part.bytes];
            if entry.parts.len() == 1 {
                self.decode(t, piece)?;
                continue;
            }
            let buf = self.pending.entry(t).or_insert_with(|| vec![0; entry.bytes]);
            let start: usize = entry.parts[..p].iter().map(|q| q.bytes).sum();
            buf[start..start + part.bytes].copy_from_slice(piece);
            let last_shard = entry.parts.iter().all(|q| q.shard == s || self.received[q.shard]);
            if last_shard && let Some(buf) = self.pending.remove(&t) {
                self.decode(t, &buf)?;
            }
        }
        self.received[s] = true;
        Ok(())
    }

    /// Put one tensor's complete encoding on the device, in its weights file's map.
    fn decode(&mut self, t: usize, bytes: &[u8]) -> Result<()> {
        let entry = &self.manifest.tensors[t];
        let n: usize = entry.shape.iter().product();
        let map = self.maps.entry(entry.weights.clone()).or_insert_with(|| {
            let mut m = WeightMap::default();
            m.source = format!("{}/{} ({})", self.label, entry.weights, MANIFEST);
            m
        });
        match Quant::parse(&entry.dtype) {
            Some(q) => {
                let scales = entry.quantization.as_ref().map_or(Scales::F32, |b| b.scales);
                let values = quant::decode(bytes, n, q, scales, &entry.name)?;
                let linear = entry.name.ends_with(".weight") && !is_embedding_table(&entry.name);
                if self.residency == Residency::Quantized && q.is_block() && linear {
                    let value = if q == Quant::Q4 { QuantValue::Q4S } else { QuantValue::Q8S };
                    let kept = device_scales(&self.device, value, scales);
                    let scale_dtype = if kept == Scales::F16 { ScaleDtype::F16 } else { ScaleDtype::F32 };
                    let scheme = burn_scheme(value, scale_dtype);
                    let shape = [entry.shape[0], entry.shape[1]];
                    let matrix = Tensor::<2>::from_data(TensorData::new(values, shape), &self.device);
                    // The values are `s · q` already, each block's largest |q| at the range's end:
                    // the min-max calibration finds the same scales (in f16, the same f16 scales).
                    let tensor = matrix.quantize_dynamic(&scheme);
                    if let burn::tensor::DType::QFloat(s) = tensor.dtype() {
                        let on_device = if s.scale_dtype() == ScaleDtype::F16 { Scales::F16 } else { Scales::F32 };
                        // One f32 tensor makes the model's scales f32 (no mix is expected: one export, one device).
                        self.device_scales =
                            Some(if self.device_scales == Some(Scales::F32) { Scales::F32 } else { on_device });
                    }
                    map.insert_quantized(&entry.name, tensor);
                } else {
                    let tensor = Tensor::<1>::from_data(TensorData::new(values, [n]), &self.device);
                    map.insert_device(&entry.name, entry.shape.clone(), tensor);
                }
            }
            None => {
                let dtype = if entry.dtype == "I64" { Dtype::I64 } else { Dtype::I32 };
                map.insert_raw(&entry.name, RawTensor::owned(dtype, entry.shape.clone(), bytes.to_vec()));
            }
        }
        Ok(())
    }

    /// Every tensor, by weights file; an error names the first shard never pushed.
    pub fn finish(self) -> Result<WebWeights> {
        if let Some(s) = self.received.iter().position(|r| !r) {
            return Err(Error::config(
                format!("{}/{}", self.label, self.manifest.shards[s].file),
                "shard missing: it was never loaded",
            ));
        }
        Ok(WebWeights { maps: self.maps, files: self.manifest.files, device_scales: self.device_scales })
    }

    /// The scale dtype of the block-quantized weights put on the device so far
    /// (`None`: none kept quantized).
    pub fn device_scales(&self) -> Option<Scales> {
        self.device_scales
    }
}

/// The decoded weights of a web folder.
pub struct WebWeights {
    maps: BTreeMap<String, WeightMap>,
    files: Vec<FileEntry>,
    device_scales: Option<Scales>,
}

impl WebWeights {
    /// The scale dtype of the weights kept block-quantized on the device (`None`:
    /// none kept quantized; see [`Residency::Quantized`]).
    pub fn device_scales(&self) -> Option<Scales> {
        self.device_scales
    }

    /// The weights file stems present (`model`, `gen_head/model`, …).
    pub fn stems(&self) -> impl Iterator<Item = &String> {
        self.maps.keys()
    }
}

/// Load a web folder from `src`: the manifest, then each shard in order.
pub fn load(src: &dyn FileSource, device: &Device, residency: Residency) -> Result<WebWeights> {
    let manifest = crate::checkpoint::read_required(src, MANIFEST)?;
    let label = src.describe("");
    let mut loader = WebLoader::new(label.trim_end_matches('/'), &manifest, device, residency)?;
    let files: Vec<String> = loader.shards().iter().map(|s| s.file.clone()).collect();
    for file in files {
        let bytes =
            src.read(&file)?.ok_or_else(|| Error::config(src.describe(&file), "shard missing: file not found"))?;
        loader.push_shard(&file, bytes)?;
    }
    loader.finish()
}

/// A web folder as a checkpoint: its copied files (sha256-checked) and its
/// decoded weights, for the ordinary loaders.
pub struct WebFolder<S: FileSource> {
    pub src: S,
    pub weights: WebWeights,
}

impl<S: FileSource> WebFolder<S> {
    /// Load the web folder `src` (see [`load`]).
    pub fn load(src: S, device: &Device, residency: Residency) -> Result<Self> {
        let weights = load(&src, device, residency)?;
        Ok(Self { src, weights })
    }
}

/// Whether `src` is a web folder (it has a `manifest.json`).
pub fn is_web_folder(src: &dyn FileSource) -> Result<bool> {
    Ok(src.read(MANIFEST)?.is_some())
}

impl<S: FileSource> FileSource for WebFolder<S> {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.src.read(name)? else { return Ok(None) };
        if let Some(entry) = self.weights.files.iter().find(|f| f.path == name) {
            let hash = sha256_hex(&bytes);
            if hash != entry.sha256 {
                return Err(Error::config(
                    self.src.describe(name),
                    format!("sha256 {hash} does not match the manifest's {}", entry.sha256),
                ));
            }
        }
        Ok(Some(bytes))
    }

    fn describe(&self, name: &str) -> String {
        self.src.describe(name)
    }

    fn weights(&self, stem: &str) -> Result<Option<WeightMap>> {
        Ok(self.weights.maps.get(stem).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{MemorySource, load_weights};
    use crate::safetensors::{TensorOut, serialize};
    use crate::weights::VarBuilder;
    use std::sync::Arc;

    /// A checkpoint with a matmul weight, an embedding, a norm and an integer tensor.
    fn checkpoint() -> (MemorySource, Vec<f32>) {
        let w: Vec<f32> = (0..96 * 64).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let emb: Vec<f32> = (0..10 * 64).map(|i| i as f32 / 640.0).collect();
        let norm = vec![1.5f32; 64];
        let st = serialize(&[
            TensorOut { name: "model.language_model.layers.0.mlp.up_proj.weight", shape: vec![96, 64], data: &w },
            TensorOut { name: "model.language_model.embed_tokens.weight", shape: vec![10, 64], data: &emb },
            TensorOut { name: "model.language_model.norm.weight", shape: vec![64], data: &norm },
        ]);
        let head = serialize(&[TensorOut { name: "queries", shape: vec![4, 8], data: &[0.25; 32] }]);
        let mut src = MemorySource { label: "ckpt".into(), ..Default::default() };
        src.files.insert("model.safetensors".into(), st);
        src.files.insert("gen_head/model.safetensors".into(), head);
        (src, w)
    }

    /// Export `src` into a new in-memory web folder.
    fn export(src: &MemorySource, quant: Quant, limit: usize) -> MemorySource {
        export_with(src, quant, Scales::F32, limit)
    }

    fn export_with(src: &MemorySource, quant: Quant, scales: Scales, limit: usize) -> MemorySource {
        let mut out = MemorySource { label: "web".into(), ..Default::default() };
        let mut shards = BTreeMap::new();
        let mut write = |name: &str, bytes: &[u8]| -> Result<()> {
            shards.insert(name.to_string(), bytes.to_vec());
            Ok(())
        };
        let options = ExportOptions { quant, shard_limit: limit, embeddings: false, scales };
        let mut ex = Exporter::new(options, &mut write).unwrap();
        for stem in ["model", "gen_head/model"] {
            let (dir, base) = stem.rsplit_once('/').unwrap_or(("", stem));
            let map = if dir.is_empty() {
                load_weights(src, base).unwrap()
            } else {
                load_weights(&crate::checkpoint::SubSource::new(src, dir), base).unwrap()
            };
            ex.add_weights(stem, &map).unwrap();
        }
        ex.add_file("config.json", b"{}");
        let manifest = ex.finish().unwrap();
        out.files.extend(shards);
        out.files.insert("config.json".into(), b"{}".to_vec());
        out.files.insert(MANIFEST.into(), serde_json::to_vec(&manifest).unwrap());
        out
    }

    fn manifest(web: &MemorySource) -> Manifest {
        serde_json::from_slice(&web.files[MANIFEST]).unwrap()
    }

    #[test]
    fn round_trip_through_small_shards() {
        let (src, w) = checkpoint();
        let device = Device::flex();
        for quant in [Quant::Q8, Quant::Q4, Quant::F16, Quant::F32] {
            let web = export(&src, quant, 1024);
            let m = manifest(&web);
            assert!(m.shards.iter().all(|s| s.bytes <= 1024), "{quant:?}: a shard over the limit");
            let up = m.tensors.iter().find(|t| t.name.ends_with("up_proj.weight")).unwrap();
            assert_eq!((up.dtype.as_str(), up.component.as_str()), (quant.name(), "llm"));
            assert!(up.parts.len() > 1, "{quant:?}: the weight must span shards at this limit");
            let emb = m.tensors.iter().find(|t| t.name.contains("embed_tokens")).unwrap();
            assert_eq!(emb.dtype, "f32", "embeddings stay f32 unless asked");
            assert_eq!(m.tensors.iter().find(|t| t.name == "queries").unwrap().component, "head");

            let folder = WebFolder::load(web.clone(), &device, Residency::F32).unwrap();
            let map = Arc::new(load_weights(&folder, "model").unwrap());
            let vb = VarBuilder::from_map(map, &device).pp("model.language_model");
            let got = vb.get("layers.0.mlp.up_proj.weight", [96, 64]).unwrap().into_data().try_to_vec::<f32>().unwrap();
            let err = got.iter().zip(&w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let bound = match quant {
                Quant::Q8 => 1.0 / 127.0 / 2.0,
                Quant::Q4 => 1.0 / 7.0 / 2.0,
                Quant::F16 => 1e-3,
                Quant::F32 => 0.0,
            };
            assert!(err <= bound + 1e-6, "{quant:?}: max error {err}");
            let norm = vb.get("norm.weight", [64]).unwrap().into_data().try_to_vec::<f32>().unwrap();
            assert!(norm.iter().all(|v| *v == 1.5));
            let head = load_weights(&crate::checkpoint::SubSource::new(&folder, "gen_head"), "model").unwrap();
            assert_eq!(head.shape("queries"), Some(&[4usize, 8][..]));
        }
    }

    #[test]
    fn f16_scales_halve_the_scale_bytes_and_widen_where_the_device_has_no_f16() {
        let (src, w) = checkpoint();
        let device = Device::flex();
        for quant in [Quant::Q8, Quant::Q4] {
            let (web32, web16) = (export(&src, quant, 1 << 20), export_with(&src, quant, Scales::F16, 1 << 20));
            let up = |m: &Manifest| m.tensors.iter().find(|t| t.name.ends_with("up_proj.weight")).unwrap().clone();
            let (up32, up16) = (up(&manifest(&web32)), up(&manifest(&web16)));
            // 96 × 2 scales of 4 bytes, or of 2.
            assert_eq!(up32.bytes - up16.bytes, 96 * 2 * 2, "{quant:?}");
            let b = up16.quantization.as_ref().unwrap();
            assert_eq!((b.scales, b.scales_offset), (Scales::F16, quant.value_bytes(96 * 64)));
            assert!(String::from_utf8_lossy(&web16.files[MANIFEST]).contains("\"scales\":\"f16\""));
            let step = if quant == Quant::Q8 { 1.0 / 127.0 } else { 1.0 / 7.0 };
            for residency in [Residency::F32, Residency::Quantized] {
                let folder = WebFolder::load(web16.clone(), &device, residency).unwrap();
                // The CPU backend has no f16 arithmetic: kept scales widen to f32.
                let want = (residency == Residency::Quantized).then_some(Scales::F32);
                assert_eq!(folder.weights.device_scales(), want, "{quant:?} {residency:?}");
                let map = Arc::new(load_weights(&folder, "model").unwrap());
                let vb = VarBuilder::from_map(map, &device).pp("model.language_model.layers.0.mlp.up_proj");
                // The linear as the model runs it (Burn's quantized matmul where kept): I · Wᵀ.
                let up = crate::nn::linear(&vb, 64, 96, false).unwrap();
                let got = up.forward(Tensor::<2>::eye(64, &device)).transpose();
                let got = got.into_data().try_to_vec::<f32>().unwrap();
                let err = got.iter().zip(&w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(err <= step * 0.5 * (1.0 + 1.0 / 2048.0) + 1e-6, "{quant:?} {residency:?}: max error {err}");
            }
            assert_eq!(device_scales(&device, QuantValue::Q4S, Scales::F32), Scales::F32);
        }
    }

    #[test]
    fn errors_name_the_shard_or_tensor() {
        let (src, _) = checkpoint();
        let device = Device::flex();
        let web = export(&src, Quant::Q4, 1024);
        let m = manifest(&web);
        let first = m.shards[0].file.clone();

        let mut bad = web.clone();
        bad.files.get_mut(&first).unwrap()[3] ^= 1;
        let e = WebFolder::load(bad, &device, Residency::F32).err().unwrap().to_string();
        assert!(e.contains(&first) && e.contains("sha256"), "{e}");

        let mut missing = web.clone();
        missing.files.remove(&first);
        let e = WebFolder::load(missing, &device, Residency::F32).err().unwrap().to_string();
        assert!(e.contains(&first) && e.contains("missing"), "{e}");

        let mut loader = WebLoader::new("web", &web.files[MANIFEST], &device, Residency::F32).unwrap();
        loader.push_shard(&first, web.files[&first].clone()).unwrap();
        let e = loader.finish().err().unwrap().to_string();
        assert!(e.contains("missing") && e.contains(&m.shards[1].file), "{e}");

        // The loader's error for the manifest with the up-projection's entry edited.
        let rejected = |edit: &dyn Fn(&mut TensorEntry)| {
            let mut bad = m.clone();
            edit(bad.tensors.iter_mut().find(|t| t.name.ends_with("up_proj.weight")).unwrap());
            WebLoader::new("web", &serde_json::to_vec(&bad).unwrap(), &device, Residency::F32)
                .err()
                .unwrap()
                .to_string()
        };
        let e = rejected(&|t| t.shape = vec![96, 32]);
        assert!(e.contains("up_proj.weight") && e.contains("[96, 32]"), "{e}");

        // Scales said to be f16 where the bytes hold f32 ones; a blocking this build does not read.
        let e = rejected(&|t| t.quantization.as_mut().unwrap().scales = Scales::F16);
        assert!(e.contains("up_proj.weight") && e.contains("needs"), "{e}");
        let e = rejected(&|t| t.quantization.as_mut().unwrap().block = 64);
        assert!(e.contains("up_proj.weight") && e.contains("block 64"), "{e}");
        let e = rejected(&|t| t.quantization = None);
        assert!(e.contains("up_proj.weight") && e.contains("without its `quantization`"), "{e}");
        let text = String::from_utf8_lossy(&web.files[MANIFEST]).replace("\"scales\":\"f32\"", "\"scales\":\"f8\"");
        let e = WebLoader::new("web", text.as_bytes(), &device, Residency::F32).err().unwrap().to_string();
        assert!(e.contains("manifest.json") && e.contains("f8"), "{e}");

        // A config asking for another shape gets the loaders' usual shape error.
        let folder = WebFolder::load(web.clone(), &device, Residency::F32).unwrap();
        let vb = VarBuilder::from_map(Arc::new(load_weights(&folder, "model").unwrap()), &device);
        let e = vb.get("model.language_model.norm.weight", [65]).err().unwrap().to_string();
        assert!(e.contains("norm.weight") && e.contains("[65]") && e.contains("[64]"), "{e}");

        let mut copied = web.clone();
        copied.files.insert("config.json".into(), b"{ }".to_vec());
        let folder = WebFolder::load(copied, &device, Residency::F32).unwrap();
        let e = folder.read("config.json").err().unwrap().to_string();
        assert!(e.contains("config.json") && e.contains("sha256"), "{e}");
    }

    #[test]
    fn natural_order_and_components() {
        let mut v = vec!["layers.10.w", "layers.2.w", "layers.1.w"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["layers.1.w", "layers.2.w", "layers.10.w"]);
        assert_eq!(component("model", "model.vision_tower.x"), "vision");
        assert_eq!(component("model", "multi_modal_projector.linear_1.weight"), "projector");
        assert_eq!(component("model", "language_model.lm_head.weight"), "llm");
        assert_eq!(component("sd/unet/diffusion_pytorch_model", "conv_in.weight"), "unet");
        assert_eq!(component("sd/text_encoder/model", "x"), "text_encoder");
        for table in ["model.embed_tokens.weight", "text_model.embeddings.token_embedding.weight", "class_embedding"] {
            assert!(is_embedding_table(table), "{table}");
        }
        assert!(!is_embedding_table("time_embedding.linear_1.weight"));
        assert!(is_matmul_weight("time_embedding.linear_1.weight", &[1280, 320], false));
        assert!(!is_matmul_weight("model.embed_tokens.weight", &[32000, 4096], false));
        assert!(is_matmul_weight("model.embed_tokens.weight", &[32000, 4096], true));
        assert!(!is_matmul_weight("proj_in.weight", &[320, 320, 1, 1], false));
    }
}
