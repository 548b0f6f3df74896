//! Writing modules back as checkpoints under the names the loaders read.
//!
//! Burn's module tree already follows the checkpoint keys (the modules were built by
//! the loaders through a [`crate::weights::VarBuilder`]), except for a few places
//! the loaders flatten: `to_out.0`, `net.0.proj` / `net.2`, `downsamplers.0` /
//! `upsamplers.0`, norm `gamma` / `beta`, enum variants, and Burn's `[in, out]`
//! linear weights. [`named_tensors`] walks the tree with a [`ModuleVisitor`] and undoes
//! exactly those; a loader round trip (see the smoke test) proves the names.

use crate::safetensors::{Dtype, TensorOut, serialize_as};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// One exported tensor: checkpoint name, PyTorch shape, f32 values (row-major).
#[derive(Debug, Clone)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// `(parent struct, field)` → the checkpoint path segment the loader reads it from.
const RENAMES: &[(&str, &str, &str)] = &[
    ("Struct:Attention", "to_out", "to_out.0"),
    ("Struct:SpatialAttention", "to_out", "to_out.0"),
    ("Struct:FeedForward", "proj_in", "net.0.proj"),
    ("Struct:FeedForward", "proj_out", "net.2"),
    ("Struct:DownBlock", "downsampler", "downsamplers.0"),
    ("Struct:UpBlock", "upsampler", "upsamplers.0"),
    ("Struct:LayerNorm", "gamma", "weight"),
    ("Struct:LayerNorm", "beta", "bias"),
    ("Struct:GroupNorm", "gamma", "weight"),
    ("Struct:GroupNorm", "beta", "bias"),
    // The generation head: torch's `nn.Transformer` keys (`encoder.layers.N`, the
    // feed-forward linears directly in the layer).
    ("Struct:Transformer", "encoder_layers", "encoder.layers"),
    ("Struct:Transformer", "encoder_norm", "encoder.norm"),
    ("Struct:Transformer", "decoder_layers", "decoder.layers"),
    ("Struct:Transformer", "decoder_norm", "decoder.norm"),
    ("Struct:EncoderLayer", "ff", ""),
    ("Struct:DecoderLayer", "ff", ""),
];

#[derive(Default)]
struct Collector {
    /// (segment, container type) of every module entered.
    stack: Vec<(String, String)>,
    out: Vec<NamedTensor>,
}

impl Collector {
    fn name(&self) -> String {
        self.stack
            .iter()
            .filter(|(_, kind)| !kind.starts_with("Enum:"))
            .map(|(seg, kind)| {
                RENAMES.iter().find(|(k, f, _)| k == kind && f == seg).map_or(seg.as_str(), |(_, _, to)| to)
            })
            .filter(|seg| !seg.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    }

    fn in_linear_weight(&self) -> bool {
        matches!(self.stack.last(), Some((seg, kind))
            if (seg == "weight" && kind == "Struct:Linear")
                // The head's packed attention projection, kept `[in, 3·out]` like a linear.
                || (seg == "in_proj_weight" && kind == "Struct:MultiheadAttention"))
    }
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut t = param.val();
        if D == 2 && self.in_linear_weight() {
            t = t.transpose();
        }
        let shape = t.dims().to_vec();
        let data = t.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        self.out.push(NamedTensor { name: self.name(), shape, data });
    }
}

/// Every float parameter of `module` under its checkpoint name, `prefix` prepended.
pub fn named_tensors<M: Module>(module: &M, prefix: &str) -> Vec<NamedTensor> {
    let mut c = Collector::default();
    module.visit(&mut c);
    for t in &mut c.out {
        t.name = format!("{prefix}{}", t.name);
    }
    c.out
}

/// Safetensors bytes of `tensors` (names sorted), stored as F16 or F32.
pub fn safetensors_bytes(tensors: &[NamedTensor], f16: bool) -> Vec<u8> {
    let out: Vec<TensorOut> =
        tensors.iter().map(|t| TensorOut { name: &t.name, shape: t.shape.clone(), data: &t.data }).collect();
    serialize_as(&out, if f16 { Dtype::F16 } else { Dtype::F32 })
}
