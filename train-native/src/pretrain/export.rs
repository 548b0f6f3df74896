//! Writing trained modules back as checkpoints under the names core's loaders read.
//!
//! Burn's module tree already follows the checkpoint keys (the modules were built by
//! the loaders through a [`genllava::weights::VarBuilder`]), except for a few places
//! the loaders flatten: `to_out.0`, `net.0.proj` / `net.2`, `downsamplers.0` /
//! `upsamplers.0`, norm `gamma` / `beta`, enum variants, and Burn's `[in, out]`
//! linear weights. [`named_tensors`] walks the tree with a [`ModuleVisitor`] and undoes
//! exactly those; a loader round trip (see the smoke test) proves the names.

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
            .collect::<Vec<_>>()
            .join(".")
    }

    fn in_linear_weight(&self) -> bool {
        matches!(self.stack.last(), Some((seg, kind)) if seg == "weight" && kind == "Struct:Linear")
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

/// IEEE half precision bits of `x` (round to nearest even; overflow → ±inf).
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut h = m >> shift;
        if rest > half || (rest == half && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h as u16
}

/// Safetensors bytes of `tensors` (names sorted), stored as F16 or F32.
pub fn safetensors_bytes(tensors: &[NamedTensor], f16: bool) -> Vec<u8> {
    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let width = if f16 { 2 } else { 4 };
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in &sorted {
        let n = t.data.len() * width;
        let dtype = if f16 { "F16" } else { "F32" };
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut h = serde_json::to_vec(&header).unwrap_or_default();
    while !(h.len() + 8).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for t in &sorted {
        for &v in &t.data {
            if f16 {
                out.extend_from_slice(&f16_bits(v).to_le_bytes());
            } else {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{f16_bits, named_tensors, safetensors_bytes};
    use crate::pretrain::diffusion::{UnetSize, unet_config_json};
    use crate::pretrain::vae::{VaeSize, vae_config_json};
    use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
    use genllava::clip_text::{ClipTextConfig, ClipTextModel};
    use genllava::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
    use genllava::sd::vae::{AutoencoderKL, AutoencoderKLConfig};
    use genllava::weights::{VarBuilder, WeightMap};
    use std::sync::Arc;

    /// Export `module`, reload it with core's loader, and return the reloaded copy.
    fn round_trip<M: burn::module::Module, T>(
        module: &M,
        prefix: &str,
        load: impl FnOnce(&VarBuilder) -> genllava::Result<T>,
    ) -> T {
        let bytes = safetensors_bytes(&named_tensors(module, prefix), false);
        let map = Arc::new(WeightMap::from_safetensors("exported", bytes).expect("parse"));
        let out = load(&VarBuilder::from_map(map.clone(), &Device::flex())).expect("reload");
        assert!(map.unused().is_empty(), "unused: {:?}", map.unused());
        out
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        a.sub(b).abs().max().into_data().try_into_vec_as::<f32>().expect("f32")[0]
    }

    #[test]
    fn exported_modules_reload_with_core_loaders_to_the_same_function() {
        let device = Device::flex();
        let vb = VarBuilder::init(0.2, &device);
        let tcfg = ClipTextConfig::from_json(
            r#"{"vocab_size": 11, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
                "num_attention_heads": 2, "max_position_embeddings": 6}"#,
        )
        .expect("text config");
        let text = ClipTextModel::load(&tcfg, &vb).expect("text");
        let back = round_trip(&text, "text_model.", |vb| ClipTextModel::load(&tcfg, &vb.pp("text_model")));
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 3, 5, 1, 1, 1], [1, 6]), &device);
        let ctx = text.forward(ids.clone()).expect("fwd");
        assert!(max_diff(ctx.clone(), back.forward(ids).expect("fwd")) < 1e-5);

        let size = VaeSize { channels: vec![8, 16], groups: 4, latent_channels: 4, attention: true };
        let vcfg = AutoencoderKLConfig::from_json(&vae_config_json(&size, 16, 1.0).to_string()).expect("vae config");
        let vae = AutoencoderKL::load(&vcfg, &vb).expect("vae");
        let back = round_trip(&vae, "", |vb| AutoencoderKL::load(&vcfg, vb));
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (vae.encode(x.clone()).expect("enc").mean, back.encode(x).expect("enc").mean);
        assert!(max_diff(a.clone(), b) < 1e-4);
        assert!(max_diff(vae.decode(a.clone()).expect("dec"), back.decode(a).expect("dec")) < 1e-4);

        let size = UnetSize { channels: vec![8, 16], groups: 4, heads: 2, layers: 1 };
        let ucfg =
            UNet2DConditionConfig::from_json(&unet_config_json(&size, 4, 8, 8).to_string()).expect("unet config");
        let unet = UNet2DConditionModel::load(&ucfg, &vb).expect("unet");
        let back = round_trip(&unet, "", |vb| UNet2DConditionModel::load(&ucfg, vb));
        let z = Tensor::<4>::random([1, 4, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let a = unet.forward_at(z.clone(), 300.0, ctx.clone()).expect("unet");
        let b = back.forward_at(z, 300.0, ctx).expect("unet");
        assert!(max_diff(a, b) < 1e-4);
    }

    #[test]
    fn half_precision_rounding() {
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(-2.0), 0xc000);
        assert_eq!(f16_bits(65504.0), 0x7bff);
        assert_eq!(f16_bits(1e6), 0x7c00);
        assert_eq!(f16_bits(0.0), 0);
        assert_eq!(f16_bits(5.960_464_5e-8), 1); // smallest subnormal
        assert_eq!(f16_bits(0.333_333_34), 0x3555);
    }
}
