//! Reading checkpoint folders without touching the file system: the caller
//! hands in a [`FileSource`] (a directory natively, fetched bytes in the
//! browser) and this module finds the config and the weights, one file or
//! sharded with `model.safetensors.index.json`, and normalises key layouts.

use crate::error::{Error, Result};
use crate::weights::WeightMap;

/// Where the files of a checkpoint come from.
pub trait FileSource {
    /// The bytes of `name` (a path relative to the checkpoint root), or `None` if absent.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// A human-readable location for error messages (e.g. the directory path).
    fn describe(&self, name: &str) -> String;
    /// The weights stored under `stem` already decoded (a web-format folder,
    /// [`crate::web::WebFolder`]); `None` for ordinary folders, whose loaders
    /// read `{stem}.safetensors`.
    fn weights(&self, stem: &str) -> Result<Option<WeightMap>> {
        let _ = stem;
        Ok(None)
    }
}

/// A file that must exist.
pub fn read_required(src: &dyn FileSource, name: &str) -> Result<Vec<u8>> {
    src.read(name)?.ok_or_else(|| Error::config(src.describe(name), "file not found"))
}

/// A JSON file that must exist, parsed.
pub fn read_json(src: &dyn FileSource, name: &str) -> Result<serde_json::Value> {
    let bytes = read_required(src, name)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::config(src.describe(name), format!("invalid JSON: {e}")))
}

/// Load the weights stored under `stem` (e.g. `model` for `model.safetensors`,
/// `diffusion_pytorch_model` in diffusers folders), sharded or not.
pub fn load_weights(src: &dyn FileSource, stem: &str) -> Result<WeightMap> {
    if let Some(map) = src.weights(stem)? {
        return Ok(map);
    }
    let single = format!("{stem}.safetensors");
    if let Some(bytes) = src.read(&single)? {
        return WeightMap::from_safetensors(&src.describe(&single), bytes);
    }
    let index_name = format!("{stem}.safetensors.index.json");
    let Some(index) = src.read(&index_name)? else {
        return Err(Error::config(
            src.describe(&single),
            format!("no weights: neither {single} nor {index_name} exists"),
        ));
    };
    let index: serde_json::Value = serde_json::from_slice(&index)
        .map_err(|e| Error::config(src.describe(&index_name), format!("invalid JSON: {e}")))?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::config(src.describe(&index_name), "no `weight_map` object"))?;
    let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    let mut all = WeightMap::default();
    all.source = src.describe(&index_name);
    for shard in shards {
        let bytes = read_required(src, shard)?;
        all.extend(WeightMap::from_safetensors(&src.describe(shard), bytes)?);
    }
    for name in map.keys() {
        if !all.contains(name) {
            return Err(Error::config(
                src.describe(&index_name),
                format!("lists tensor `{name}` but its shard does not hold it"),
            ));
        }
    }
    Ok(all)
}

/// Bytes held in memory, by file name: the source the browser and tests use.
#[derive(Default, Clone)]
pub struct MemorySource {
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
    pub label: String,
}

impl FileSource for MemorySource {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.files.get(name).cloned())
    }
    fn describe(&self, name: &str) -> String {
        format!("{}/{name}", self.label)
    }
}

/// A sub-folder of another source (`unet/`, `vae/` of a diffusers pipeline).
pub struct SubSource<'a> {
    pub inner: &'a dyn FileSource,
    pub dir: String,
}

impl<'a> SubSource<'a> {
    pub fn new(inner: &'a dyn FileSource, dir: &str) -> Self {
        Self { inner, dir: dir.trim_end_matches('/').to_string() }
    }
}

impl FileSource for SubSource<'_> {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read(&format!("{}/{name}", self.dir))
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(&format!("{}/{name}", self.dir))
    }
    fn weights(&self, stem: &str) -> Result<Option<WeightMap>> {
        self.inner.weights(&format!("{}/{stem}", self.dir))
    }
}
