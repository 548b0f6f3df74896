//! A small, strict reader and writer of the safetensors format: an 8-byte
//! little-endian header length, a JSON header, then the raw tensor bytes.
//! Every malformed input becomes an [`Error::Safetensors`] naming the file.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Element types this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F64" => Dtype::F64,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            _ => return None,
        })
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
        }
    }
    /// The name the safetensors header uses.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
        }
    }
}

/// One tensor of a safetensors file: a view into the shared file bytes.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    bytes: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl RawTensor {
    /// A tensor owning its little-endian bytes (which must hold `shape` of `dtype`).
    pub fn owned(dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        Self { dtype, shape, bytes: Arc::new(bytes), start: 0, end }
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values converted to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        let b = self.bytes();
        match self.dtype {
            Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::F64 => {
                b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()
            }
            Dtype::I64 => {
                b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()
            }
            Dtype::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
        }
    }

    /// The values converted to i64 (integer tensors such as token ids).
    pub fn to_i64(&self) -> Vec<i64> {
        let b = self.bytes();
        match self.dtype {
            Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
            Dtype::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            _ => self.to_f32().into_iter().map(|v| v as i64).collect(),
        }
    }
}

/// Parse a safetensors blob. `source_name` (usually the file path) is used in errors.
pub fn parse(source_name: &str, bytes: Vec<u8>) -> Result<BTreeMap<String, RawTensor>> {
    let err = |reason: String| Error::Safetensors { source_name: source_name.to_string(), reason };
    if bytes.len() < 8 {
        return Err(err(format!("file is {} bytes, shorter than the 8-byte header length", bytes.len())));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| err("bad header".into()))?) as usize;
    if n > bytes.len() - 8 {
        return Err(err(format!("header length {n} exceeds the file size {} (truncated?)", bytes.len())));
    }
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| err(format!("header is not valid JSON: {e}")))?;
    let data_start = 8 + n;
    let data_len = bytes.len() - data_start;
    let bytes = Arc::new(bytes);
    let mut out = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype_s =
            info.get("dtype").and_then(|v| v.as_str()).ok_or_else(|| err(format!("tensor `{name}` has no dtype")))?;
        let dtype =
            Dtype::parse(dtype_s).ok_or_else(|| Error::Dtype { name: name.clone(), dtype: dtype_s.to_string() })?;
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(|v| v.as_array())
            .ok_or_else(|| err(format!("tensor `{name}` has no shape")))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| err(format!("tensor `{name}` has a non-integer shape")))?;
        let offs = info
            .get("data_offsets")
            .and_then(|v| v.as_array())
            .and_then(|a| Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize)))
            .ok_or_else(|| err(format!("tensor `{name}` has no valid data_offsets")))?;
        let (s, e) = offs;
        if s > e || e > data_len {
            return Err(err(format!(
                "tensor `{name}` spans bytes {s}..{e} but the data section has {data_len} bytes (truncated?)"
            )));
        }
        let want = shape.iter().product::<usize>() * dtype.size();
        if e - s != want {
            return Err(err(format!("tensor `{name}` has {} bytes, its shape {shape:?} needs {want}", e - s)));
        }
        out.insert(name, RawTensor { dtype, shape, bytes: bytes.clone(), start: data_start + s, end: data_start + e });
    }
    Ok(out)
}

/// A tensor to write: name, shape and f32 values.
pub struct TensorOut<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// Serialise f32 tensors to safetensors bytes (names sorted, as the reference writer does).
pub fn serialize(tensors: &[TensorOut<'_>]) -> Vec<u8> {
    serialize_as(tensors, Dtype::F32)
}

/// The same, storing the values as `dtype` (F32, F16 or BF16; others store F32).
pub fn serialize_as(tensors: &[TensorOut<'_>], dtype: Dtype) -> Vec<u8> {
    let dtype = if matches!(dtype, Dtype::F16 | Dtype::BF16) { dtype } else { Dtype::F32 };
    let mut sorted: Vec<&TensorOut> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in &sorted {
        let n = t.data.len() * dtype.size();
        header.insert(
            t.name.to_string(),
            serde_json::json!({"dtype": dtype.name(), "shape": t.shape, "data_offsets": [offset, offset + n]}),
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
        for &v in t.data {
            match dtype {
                Dtype::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                Dtype::BF16 => out.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                _ => out.extend_from_slice(&v.to_le_bytes()),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bytes = serialize(&[TensorOut { name: "a", shape: vec![2, 3], data: &a }]);
        let m = parse("mem", bytes).unwrap();
        assert_eq!(m["a"].shape, vec![2, 3]);
        assert_eq!(m["a"].to_f32(), a.to_vec());
    }

    #[test]
    fn truncated_is_an_error() {
        let a = [1.0f32; 16];
        let mut bytes = serialize(&[TensorOut { name: "w", shape: vec![16], data: &a }]);
        bytes.truncate(bytes.len() - 4);
        let e = parse("x.safetensors", bytes).unwrap_err().to_string();
        assert!(e.contains("x.safetensors") && e.contains("`w`"), "{e}");
        let e = parse("y", vec![1, 2, 3]).unwrap_err().to_string();
        assert!(e.contains("shorter"), "{e}");
    }
}
