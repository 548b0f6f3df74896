//! Shared helpers of the parity tests: fixture paths, reference tensors, and
//! the relative-error comparison every test uses.

use burn::tensor::{Device, Tensor, TensorData};
use genllava::safetensors::{self, RawTensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Every tensor of a fixture safetensors file.
pub fn load(rel: &str) -> BTreeMap<String, RawTensor> {
    let path = fixture(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    safetensors::parse(&path.display().to_string(), bytes).unwrap_or_else(|e| panic!("{e}"))
}

/// A reference tensor as a Burn tensor on `device`.
pub fn tensor<const D: usize>(
    refs: &BTreeMap<String, RawTensor>,
    name: &str,
    device: &Device,
) -> Tensor<D> {
    let raw = refs
        .get(name)
        .unwrap_or_else(|| panic!("reference `{name}` missing"));
    let shape: [usize; D] = raw
        .shape
        .clone()
        .try_into()
        .unwrap_or_else(|_| panic!("`{name}` is not {D}-d"));
    Tensor::from_data(TensorData::new(raw.to_f32(), shape), device)
}

/// The CPU device the tests run on.
pub fn cpu() -> Device {
    Device::flex()
}

/// Max |a - b| / (max |b| + tiny), the relative error the 1e-4 bar means.
pub fn rel_err(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length differs");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = actual
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Assert a Burn tensor equals a reference within `tol` relative error.
pub fn assert_close<const D: usize>(what: &str, actual: Tensor<D>, expected: &RawTensor, tol: f32) {
    assert_eq!(actual.dims().to_vec(), expected.shape, "{what}: shape");
    let a: Vec<f32> = actual
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data");
    let e = expected.to_f32();
    let err = rel_err(&a, &e);
    assert!(err <= tol, "{what}: relative error {err:e} > {tol:e}");
}
