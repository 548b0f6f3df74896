//! What Burn 0.22.1's own block quantization does on the devices we run: a
//! weight quantized with `QuantScheme` (symmetric q8 / q4, blocks of 32 along the
//! input dimension, f32 scales, and f16 scales where the device has f16) multiplied
//! by f32 activations, at one row (a decode step) and many rows (prefill), on flex
//! and on wgpu (lavapipe in CI).
//! Built only with `--features wgpu`. Findings are in the README (web format).
#![cfg(feature = "wgpu")]

use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Device, Distribution, Tensor};
use std::sync::OnceLock;

/// One wgpu device per test process (the runtime is initialised once).
fn wgpu() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| Device::wgpu_options().init().expect("a wgpu adapter (lavapipe in CI)")).clone()
}

/// Symmetric `value` blocks of 32 along the input dimension, packed in `u32` words, `scales` scales.
fn block_scheme(value: QuantValue, scales: ScaleDtype) -> QuantScheme {
    QuantScheme::default().with_value(value).with_store(QuantStore::PackedU32(0)).per_block([1, 32], scales)
}

/// (max |dequantized - w|, max |x · qWᵀ - x · dequant(qW)ᵀ|) for a `[n, k]` weight.
fn errors(device: &Device, value: QuantValue, rows: usize, k: usize, n: usize) -> (f32, f32) {
    let scheme = block_scheme(value, ScaleDtype::F32);
    let w = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), device);
    let x = Tensor::<2>::random([rows, k], Distribution::Normal(0.0, 1.0), device);
    let q = w.clone().quantize_dynamic(&scheme);
    let deq = q.clone().dequantize();
    let quant_err = (deq.clone() - w).abs().max().into_scalar::<f32>();
    let y = x.clone().matmul(q.transpose());
    let y_ref = x.matmul(deq.transpose());
    (quant_err, (y - y_ref).abs().max().into_scalar::<f32>())
}

#[test]
fn burn_block_quantized_matmul_works_at_one_and_many_rows() {
    for (name, device) in [("flex", Device::flex()), ("wgpu", wgpu())] {
        // |w| ~ N(0, 1): a block's step is about max|w| / 127 (q8) or / 7 (q4).
        for (value, step) in [(QuantValue::Q8S, 4.0 / 127.0), (QuantValue::Q4S, 4.0 / 7.0)] {
            for (rows, k, n) in [(1, 256, 96), (7, 256, 96), (64, 256, 96), (33, 4096, 64)] {
                let (quant_err, matmul_err) = errors(&device, value, rows, k, n);
                let what = format!("{name} {value:?} x [{rows}, {k}] · W [{n}, {k}]ᵀ");
                assert!(quant_err <= step, "{what}: dequantized weight off by {quant_err}");
                assert!(matmul_err <= 1e-3, "{what}: quantized matmul vs dequantize + matmul: {matmul_err}");
            }
        }
    }
}

#[test]
fn burn_linear_runs_a_block_quantized_weight() {
    use burn::module::Param;
    use burn::nn::Linear;
    for (name, device) in [("flex", Device::flex()), ("wgpu", wgpu())] {
        for value in [QuantValue::Q8S, QuantValue::Q4S] {
            let scheme = block_scheme(value, ScaleDtype::F32);
            // As the loaders build a linear: PyTorch's [out, in] weight, transposed to Burn's [in, out].
            let w = Tensor::<2>::random([48, 64], Distribution::Normal(0.0, 1.0), &device);
            let q = w.quantize_dynamic(&scheme);
            let plain = Linear { weight: Param::from_tensor(q.clone().dequantize().transpose()), bias: None };
            let quantized = Linear { weight: Param::from_tensor(q.transpose()), bias: None };
            for rows in [1, 9] {
                let x = Tensor::<3>::random([1, rows, 64], Distribution::Normal(0.0, 1.0), &device);
                let d = (quantized.forward(x.clone()) - plain.forward(x)).abs().max().into_scalar::<f32>();
                assert!(d <= 1e-3, "{name} {value:?} rows {rows}: {d}");
            }
        }
    }
}

/// f16 block scales (`ScaleDtype::F16`, what `Residency::Quantized` keeps for an export
/// with `--scales f16`) need f16 arithmetic: wgpu offers it where the adapter has
/// `shader-f16` (lavapipe does; chromium's SwiftShader does not), flex does not.
#[test]
fn burn_f16_scales_work_where_the_device_has_f16() {
    use burn::tensor::DType;
    for (name, device) in [("flex", Device::flex()), ("wgpu", wgpu())] {
        for value in [QuantValue::Q8S, QuantValue::Q4S] {
            let scheme = block_scheme(value, ScaleDtype::F16);
            let supported = device.supports_dtype(DType::QFloat(scheme));
            let adapter = genllava::kernels::adapter_name(&device).unwrap_or_default();
            eprintln!(
                "{name} ({adapter}) {value:?}: f16 scales {}",
                if supported { "supported" } else { "not supported" }
            );
            if name == "flex" || !supported {
                assert!(!adapter.contains("llvmpipe"), "lavapipe has shader-f16: f16 scales should be supported");
                continue;
            }
            let w = Tensor::<2>::random([48, 64], Distribution::Normal(0.0, 1.0), &device);
            let q = w.clone().quantize_dynamic(&scheme);
            assert!(matches!(q.dtype(), DType::QFloat(s) if s.scale_dtype() == ScaleDtype::F16), "{:?}", q.dtype());
            let step = if value == QuantValue::Q8S { 4.0 / 127.0 } else { 4.0 / 7.0 };
            let quant_err = (q.clone().dequantize() - w).abs().max().into_scalar::<f32>();
            assert!(quant_err <= step, "{name} {value:?}: dequantized weight off by {quant_err}");
            for rows in [1, 7, 33] {
                let x = Tensor::<2>::random([rows, 64], Distribution::Normal(0.0, 1.0), &device);
                let y = x.clone().matmul(q.clone().transpose());
                let r = x.matmul(q.clone().dequantize().transpose());
                let d = (y - r).abs().max().into_scalar::<f32>();
                assert!(d <= 1e-3, "{name} {value:?} rows {rows}: quantized matmul vs dequantize + matmul: {d}");
            }
        }
    }
}
