//! Named weights and the builder that modules load themselves from.
//!
//! A [`WeightMap`] holds every tensor of a checkpoint (one or several safetensors
//! files) under normalised names; [`VarBuilder`] walks it with a prefix, checks
//! each shape against what the config asks for, and records what was used so
//! that leftovers can be reported. The same builder can instead *initialise*
//! fresh random weights, so a model has one constructor for loading and training.

use crate::error::{Error, Result};
use crate::safetensors::{self, RawTensor};
use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// One tensor of a [`WeightMap`].
#[derive(Debug, Clone)]
enum Stored {
    /// Bytes of a checkpoint file, converted when a module asks for them.
    Raw(RawTensor),
    /// Already decoded onto a device (the web format's loader), flat.
    Device { shape: Vec<usize>, tensor: Tensor<1> },
    /// A matrix on a device as a Burn block-quantized tensor (the web format's loader).
    Quantized { shape: Vec<usize>, tensor: Tensor<2> },
}

impl Stored {
    fn shape(&self) -> &[usize] {
        match self {
            Stored::Raw(raw) => &raw.shape,
            Stored::Device { shape, .. } | Stored::Quantized { shape, .. } => shape,
        }
    }
}

/// All tensors of a checkpoint, by name.
#[derive(Debug, Default, Clone)]
pub struct WeightMap {
    tensors: BTreeMap<String, Stored>,
    used: Arc<Mutex<BTreeSet<String>>>,
    /// A description of where the weights came from, for error messages.
    pub source: String,
}

impl WeightMap {
    /// Parse one safetensors blob.
    pub fn from_safetensors(source: &str, bytes: Vec<u8>) -> Result<Self> {
        Ok(Self {
            tensors: safetensors::parse(source, bytes)?.into_iter().map(|(k, v)| (k, Stored::Raw(v))).collect(),
            used: Default::default(),
            source: source.to_string(),
        })
    }

    /// Add the tensors of another map (e.g. the next shard).
    pub fn extend(&mut self, other: WeightMap) {
        self.tensors.extend(other.tensors);
        if self.source.is_empty() {
            self.source = other.source;
        }
    }

    /// Rename every key starting with `from` so that it starts with `to` instead.
    /// This is how checkpoint key layouts are normalised before loading.
    pub fn rename_prefix(&mut self, from: &str, to: &str) {
        let keys: Vec<String> = self.tensors.keys().filter(|k| k.starts_with(from)).cloned().collect();
        for k in keys {
            if let Some(t) = self.tensors.remove(&k) {
                self.tensors.insert(format!("{to}{}", &k[from.len()..]), t);
            }
        }
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The raw tensor of a name, if present and not yet on a device.
    pub fn raw(&self, name: &str) -> Option<&RawTensor> {
        match self.tensors.get(name)? {
            Stored::Raw(raw) => Some(raw),
            Stored::Device { .. } | Stored::Quantized { .. } => None,
        }
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(Stored::shape)
    }

    /// Add (or replace) a tensor of checkpoint bytes.
    pub fn insert_raw(&mut self, name: &str, raw: RawTensor) {
        self.tensors.insert(name.to_string(), Stored::Raw(raw));
    }

    /// Add (or replace) a matrix held as a Burn block-quantized tensor; modules
    /// get it as it is (on its own device), and Burn's ops dequantize it where used.
    pub fn insert_quantized(&mut self, name: &str, tensor: Tensor<2>) {
        self.tensors.insert(name.to_string(), Stored::Quantized { shape: tensor.dims().to_vec(), tensor });
    }

    /// Add (or replace) a tensor already on a device: its values flat, row-major, and its shape.
    pub fn insert_device(&mut self, name: &str, shape: Vec<usize>, tensor: Tensor<1>) {
        self.tensors.insert(name.to_string(), Stored::Device { shape, tensor });
    }

    /// Every name.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// Names that no module asked for, sorted.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        self.tensors.keys().filter(|k| !used.contains(*k)).cloned().collect()
    }

    fn mark(&self, name: &str) {
        if let Ok(mut u) = self.used.lock() {
            u.insert(name.to_string());
        }
    }
}

/// Where a [`VarBuilder`] takes its tensors from.
#[derive(Clone)]
enum Source {
    Map(Arc<WeightMap>),
    /// Fresh weights: normal with this standard deviation (norm weights are ones, biases zeros).
    Init {
        std: f64,
    },
}

/// A prefix into a weight source plus the device to create tensors on.
#[derive(Clone)]
pub struct VarBuilder {
    source: Source,
    prefix: String,
    device: Device,
}

impl VarBuilder {
    /// Load from a weight map.
    pub fn from_map(map: Arc<WeightMap>, device: &Device) -> Self {
        Self { source: Source::Map(map), prefix: String::new(), device: device.clone() }
    }

    /// Initialise fresh random weights (normal, `std`), ones for norm scales, zeros for biases.
    pub fn init(std: f64, device: &Device) -> Self {
        Self { source: Source::Init { std }, prefix: String::new(), device: device.clone() }
    }

    /// Descend into a sub-module.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Self { source: self.source.clone(), prefix, device: self.device.clone() }
    }

    /// The device tensors are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The full name of a tensor under this prefix.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    /// Whether the source has this tensor (always true when initialising).
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Map(m) => m.contains(&self.path(name)),
            Source::Init { .. } => true,
        }
    }

    /// Whether this builder initialises rather than loads.
    pub fn is_init(&self) -> bool {
        matches!(self.source, Source::Init { .. })
    }

    /// A tensor of exactly `shape`; random normal when initialising.
    pub fn get<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        self.get_with(name, shape, Fill::Normal)
    }

    /// A tensor initialised to ones when not loading (norm scales).
    pub fn get_ones<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        self.get_with(name, shape, Fill::Ones)
    }

    /// A tensor initialised to zeros when not loading (biases).
    pub fn get_zeros<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        self.get_with(name, shape, Fill::Zeros)
    }

    /// The same, wrapped as a trainable parameter.
    pub fn param<const D: usize>(&self, name: &str, shape: [usize; D], fill: Fill) -> Result<Param<Tensor<D>>> {
        Ok(Param::from_tensor(self.get_with(name, shape, fill)?))
    }

    /// A tensor with its initial fill given explicitly.
    pub fn get_with<const D: usize>(&self, name: &str, shape: [usize; D], fill: Fill) -> Result<Tensor<D>> {
        let full = self.path(name);
        match &self.source {
            Source::Init { std } => Ok(match fill {
                Fill::Normal => Tensor::random(shape, Distribution::Normal(0.0, *std), &self.device),
                Fill::Ones => Tensor::ones(shape, &self.device),
                Fill::Zeros => Tensor::zeros(shape, &self.device),
            }),
            Source::Map(map) => {
                let stored = map.tensors.get(&full).ok_or_else(|| Error::MissingTensor {
                    name: full.clone(),
                    expected: shape.to_vec(),
                    source_name: map.source.clone(),
                })?;
                if stored.shape() != shape {
                    return Err(Error::ShapeMismatch {
                        name: full,
                        expected: shape.to_vec(),
                        found: stored.shape().to_vec(),
                    });
                }
                map.mark(&full);
                Ok(match stored {
                    Stored::Raw(raw) => Tensor::from_data(TensorData::new(raw.to_f32(), shape), &self.device),
                    Stored::Device { tensor, .. } => tensor.clone().reshape(shape).to_device(&self.device),
                    Stored::Quantized { tensor, .. } => tensor.clone().reshape(shape),
                })
            }
        }
    }
}

/// How a tensor is filled when a builder initialises instead of loading.
#[derive(Debug, Clone, Copy)]
pub enum Fill {
    Normal,
    Ones,
    Zeros,
}
