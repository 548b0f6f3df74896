//! The WGSL kernels of `shaders/` (`genllava::kernels`) in the browser: on the WebGPU device
//! the engine uses, each kernel against its plain-Burn reference on the same device and on the
//! CPU backend, read back with `into_data_async` (a page cannot block on the GPU). The native
//! twin is `train-native/tests/wgpu_kernels.rs` (lavapipe); these run in headless chromium
//! (wasm-bindgen-test, WebGPU on SwiftShader, tests/run.sh's last step).

use crate::backend::{Backend, pick};
use burn::module::Param;
use burn::nn::GroupNorm;
use burn::tensor::{Device, Tensor, TensorData};
use genllava::kernels;
use genllava::quant::{self, Quant};
use genllava::scheduler::{Ddim, PredictionType, Scheduler, SchedulerConfig};
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// The engine's WebGPU device (the test fails, saying why, when there is none).
async fn webgpu() -> Device {
    let (device, backend, why) = pick(true).await;
    assert_eq!(backend, Backend::WebGpu, "no WebGPU: {why}");
    device
}

/// `n` values with mean `mean` and spread about `std` (a fixed hash, the same on every run).
fn values(n: usize, seed: u32, mean: f32, std: f32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let mut h = i.wrapping_mul(0x9e37_79b9) ^ seed.wrapping_mul(0x85eb_ca6b);
            h ^= h >> 15;
            h = h.wrapping_mul(0x2c1b_3c6d);
            h ^= h >> 12;
            // Uniform in [-√3, √3): unit variance.
            let u = (h % 1_000_003) as f32 / 1_000_003.0;
            mean + std * (u * 2.0 - 1.0) * 3f32.sqrt()
        })
        .collect()
}

fn tensor<const D: usize>(v: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// Read a tensor back without blocking.
async fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data_async().await.expect("read back").convert::<f32>().try_to_vec::<f32>().expect("f32")
}

/// `max |a - b|`, infinite when either holds a non-finite value.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0f32, |m, (x, y)| if x.is_finite() && y.is_finite() { m.max((x - y).abs()) } else { f32::INFINITY })
}

/// `max |a - b| / max(1, max |b|)`.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    max_abs_diff(a, b) / b.iter().fold(1f32, |m, v| m.max(v.abs()))
}

#[wasm_bindgen_test]
async fn the_kernels_are_active_on_webgpu_only() {
    assert!(kernels::wgsl_active(&webgpu().await), "the WebGPU device must take the WGSL path");
    assert!(!kernels::wgsl_active(&Device::flex()));
}

fn group_norm(gamma: &[f32], beta: &[f32], groups: usize, eps: f64, device: &Device) -> GroupNorm {
    let c = gamma.len();
    GroupNorm {
        gamma: Some(Param::from_tensor(tensor(gamma, [c], device))),
        beta: Some(Param::from_tensor(tensor(beta, [c], device))),
        num_groups: groups,
        num_channels: c,
        epsilon: eps,
        affine: true,
    }
}

#[wasm_bindgen_test]
async fn group_norm_silu_matches_burn() {
    let gpu = webgpu().await;
    let cpu = Device::flex();
    // SD's 32 groups at 1e-5 (UNet) and 1e-6 (VAE), odd spatial sizes, one channel per group,
    // a slice shorter than the workgroup, a non-SD group count.
    let cases: [([usize; 4], usize, f64); 5] = [
        ([2, 64, 8, 8], 32, 1e-5),
        ([1, 96, 13, 7], 32, 1e-6),
        ([2, 32, 5, 3], 32, 1e-5),
        ([3, 12, 1, 1], 4, 1e-5),
        ([2, 40, 9, 9], 8, 1e-5),
    ];
    for (i, (shape, groups, eps)) in cases.into_iter().enumerate() {
        let c = shape[1];
        let (gamma, beta) = (values(c, 10 + i as u32, 1.0, 0.5), values(c, 20 + i as u32, 0.0, 0.5));
        let x = values(shape.iter().product(), 30 + i as u32, 0.7, 2.0);
        let (n_gpu, n_cpu) =
            (group_norm(&gamma, &beta, groups, eps, &gpu), group_norm(&gamma, &beta, groups, eps, &cpu));
        for silu in [true, false] {
            let what = format!("{shape:?} groups {groups} eps {eps} silu {silu}");
            let fused = read(kernels::group_norm_silu(&n_gpu, tensor(&x, shape, &gpu), silu)).await;
            let burn_gpu = read(kernels::group_norm_silu_reference(&n_gpu, tensor(&x, shape, &gpu), silu)).await;
            let burn_cpu = read(kernels::group_norm_silu_reference(&n_cpu, tensor(&x, shape, &cpu), silu)).await;
            let d = max_abs_diff(&fused, &burn_gpu);
            assert!(d <= 1e-4, "{what}: kernel vs burn on WebGPU: {d:e}");
            let d = max_abs_diff(&fused, &burn_cpu);
            assert!(d <= 1e-4, "{what}: kernel vs burn on the CPU: {d:e}");
        }
    }
}

/// A conv with the given weights and bias on `device`.
fn conv(
    weight: &[f32],
    bias: Option<&[f32]>,
    w_shape: [usize; 4],
    stride: usize,
    padding: (usize, usize, usize, usize),
    device: &Device,
) -> burn::nn::conv::Conv2d {
    let (t, l, b, r) = padding;
    burn::nn::conv::Conv2d {
        weight: Param::from_tensor(tensor(weight, w_shape, device)),
        bias: bias.map(|b| Param::from_tensor(tensor(b, [w_shape[0]], device))),
        stride: [stride, stride],
        kernel_size: [w_shape[2], w_shape[3]],
        dilation: [1, 1],
        groups: 1,
        padding: burn::nn::PaddingConfig2d::Explicit(t, l, b, r),
    }
}

#[wasm_bindgen_test]
async fn conv2d_matches_burn() {
    let gpu = webgpu().await;
    let cpu = Device::flex();
    // (input, weight [c_out, c_in, kh, kw], stride, padding, bias): SD's 3×3 resnet conv, the
    // stride-2 downsampler, a 1×1 projection, tiles left partly empty, the VAE's asymmetric
    // pad, a conv without bias.
    type Case = ([usize; 4], [usize; 4], usize, (usize, usize, usize, usize), bool);
    let cases: [Case; 5] = [
        ([2, 32, 16, 16], [64, 32, 3, 3], 1, (1, 1, 1, 1), true),
        ([1, 5, 13, 7], [3, 5, 3, 3], 2, (1, 1, 1, 1), true),
        ([2, 40, 9, 9], [130, 40, 1, 1], 1, (0, 0, 0, 0), true),
        ([1, 8, 10, 10], [8, 8, 3, 3], 2, (0, 0, 1, 1), true),
        ([1, 4, 8, 8], [20, 4, 3, 3], 1, (1, 1, 1, 1), false),
    ];
    for (i, (shape, w_shape, stride, padding, with_bias)) in cases.into_iter().enumerate() {
        let x = values(shape.iter().product(), 40 + i as u32, 0.0, 1.0);
        let w = values(w_shape.iter().product(), 50 + i as u32, 0.0, 0.2);
        let b = values(w_shape[0], 60 + i as u32, 0.0, 0.5);
        let b = with_bias.then_some(b.as_slice());
        let (c_gpu, c_cpu) = (conv(&w, b, w_shape, stride, padding, &gpu), conv(&w, b, w_shape, stride, padding, &cpu));
        let what = format!("{shape:?} weight {w_shape:?} stride {stride} pad {padding:?} bias {with_bias}");
        let fused = read(kernels::conv2d_wgsl(&c_gpu, tensor(&x, shape, &gpu)).expect("the kernel covers it")).await;
        let burn_gpu = read(kernels::conv2d_reference(&c_gpu, tensor(&x, shape, &gpu))).await;
        let burn_cpu = read(kernels::conv2d_reference(&c_cpu, tensor(&x, shape, &cpu))).await;
        let d = max_abs_diff(&fused, &burn_gpu);
        assert!(d <= 1e-4, "{what}: kernel vs burn on WebGPU: {d:e}");
        let d = max_abs_diff(&fused, &burn_cpu);
        assert!(d <= 1e-4, "{what}: kernel vs burn on the CPU: {d:e}");
        let im2col = kernels::conv2d_im2col(&c_gpu, tensor(&x, shape, &gpu)).expect("im2col covers it");
        let d = max_abs_diff(&read(im2col).await, &burn_cpu);
        assert!(d <= 1e-4, "{what}: im2col + matmul on WebGPU vs burn on the CPU: {d:e}");
        // Winograd F(2×2, 3×3): the 3×3 kernels at stride 1, whole and in small chunks (a
        // budget of a third of the output channels per weight-transform chunk, which also
        // splits the tiles).
        let winograd = kernels::conv2d_winograd(&c_gpu, tensor(&x, shape, &gpu));
        assert_eq!(winograd.is_some(), w_shape[2..] == [3, 3] && stride == 1, "{what}: Winograd coverage");
        if let Some(winograd) = winograd {
            let d = max_abs_diff(&read(winograd).await, &burn_cpu);
            assert!(d <= 1e-4, "{what}: Winograd on WebGPU vs burn on the CPU: {d:e}");
            let budget = 64 * w_shape[1] * w_shape[0].div_ceil(3);
            let chunked = kernels::conv2d_winograd_in_chunks(&c_gpu, tensor(&x, shape, &gpu), budget)
                .expect("Winograd covers it in chunks");
            let d = max_abs_diff(&read(chunked).await, &burn_cpu);
            assert!(d <= 1e-4, "{what}: chunked Winograd on WebGPU vs burn on the CPU: {d:e}");
        }
    }
}

#[wasm_bindgen_test]
async fn attention_matches_burn() {
    let gpu = webgpu().await;
    let cpu = Device::flex();
    // SD 1.x head dims (40, 80, 160), cross-attention over 77 text tokens, row counts that are
    // not multiples of the 64-row workgroup, tiles that do not divide n_kv, one key.
    let cases: [([usize; 4], usize); 5] =
        [([2, 8, 64, 40], 64), ([1, 4, 70, 80], 77), ([1, 2, 33, 160], 130), ([2, 1, 5, 8], 1), ([1, 3, 129, 64], 200)];
    for (i, ([b, h, nq, d], nk)) in cases.into_iter().enumerate() {
        // Spread 6 makes the scores large, so the online softmax must rescale correctly.
        for spread in [1.0, 6.0] {
            let s = 100 + 3 * i as u32;
            let q = values(b * h * nq * d, s, 0.0, spread);
            let (k, v) = (values(b * h * nk * d, s + 1, 0.0, 1.0), values(b * h * nk * d, s + 2, 0.0, 1.0));
            let (qs, ks) = ([b, h, nq, d], [b, h, nk, d]);
            let run = |f: fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>, dev: &Device| {
                f(tensor(&q, qs, dev), tensor(&k, ks, dev), tensor(&v, ks, dev))
            };
            let what = format!("q {qs:?} n_kv {nk} spread {spread}");
            let fused = run(kernels::attention, &gpu);
            assert_eq!(fused.dims(), qs, "{what}");
            let fused = read(fused).await;
            let burn_gpu = read(run(kernels::attention_reference, &gpu)).await;
            let burn_cpu = read(run(kernels::attention_reference, &cpu)).await;
            let diff = max_abs_diff(&fused, &burn_gpu);
            assert!(diff <= 1e-4, "{what}: kernel vs burn on WebGPU: {diff:e}");
            let diff = max_abs_diff(&fused, &burn_cpu);
            assert!(diff <= 1e-4, "{what}: kernel vs burn on the CPU: {diff:e}");
        }
    }
}

#[wasm_bindgen_test]
async fn softmax_scaled_matches_burn() {
    let gpu = webgpu().await;
    let cpu = Device::flex();
    // ([rows, cols], scale, spread): self-attention rows of 4096 keys, cross-attention's 77,
    // rows shorter than the workgroup, and scores large enough to overflow exp unshifted.
    let cases: [([usize; 2], f32, f32); 4] =
        [([32, 4096], 0.158, 1.0), ([96, 77], 0.112, 1.0), ([5, 3], 1.0, 1.0), ([40, 300], 0.5, 30.0)];
    for (i, ([rows, cols], scale, spread)) in cases.into_iter().enumerate() {
        let x = values(rows * cols, 40 + i as u32, 0.0, spread);
        let kernel = read(kernels::softmax_scaled(tensor(&x, [rows, cols], &gpu), scale)).await;
        let burn_gpu = read(kernels::softmax_scaled_reference(tensor(&x, [rows, cols], &gpu), scale)).await;
        let burn_cpu = read(kernels::softmax_scaled_reference(tensor(&x, [rows, cols], &cpu), scale)).await;
        let what = format!("[{rows}, {cols}] scale {scale} spread {spread}");
        let diff = max_abs_diff(&kernel, &burn_gpu);
        assert!(diff <= 1e-5, "{what}: kernel vs burn on WebGPU: {diff:e}");
        let diff = max_abs_diff(&kernel, &burn_cpu);
        // WebGPU `exp` may be off by 3 + 2|x| ulp: rows of large scores differ from the CPU by a few 1e-6.
        assert!(diff <= 5e-5, "{what}: kernel vs burn on cpu: {diff:e}");
    }
}

#[wasm_bindgen_test]
async fn guided_ddim_step_matches_the_scheduler() {
    let gpu = webgpu().await;
    let cpu = Device::flex();
    let shape = [2, 4, 9, 7];
    let n: usize = shape.iter().product();
    for prediction in [PredictionType::Epsilon, PredictionType::VPrediction] {
        for clip in [false, true] {
            let cfg =
                SchedulerConfig { prediction_type: prediction, clip_sample: Some(clip), ..SchedulerConfig::sd_v1() };
            let ddim = Ddim::new(&cfg, 10).expect("ddim");
            let timesteps = ddim.timesteps().to_vec();
            for guidance in [Some(7.5f32), None] {
                let rows = if guidance.is_some() { 4 } else { 2 };
                // Latents scaled up so that clipping x0 at ±1 bites.
                let x = values(n, 7, 0.0, 3.0);
                let pred = values(rows * n / 2, 8, 0.0, 1.0);
                let pshape = [rows, 4, 9, 7];
                for t in [timesteps[0], timesteps[9]] {
                    let what = format!("{prediction:?} clip {clip} guidance {guidance:?} t {t}");
                    let step = ddim.coefficients(t).expect("coefficients");
                    let fused =
                        kernels::guided_ddim_step(tensor(&pred, pshape, &gpu), guidance, tensor(&x, shape, &gpu), step)
                            .expect("kernel");
                    let burn_gpu = kernels::guided_ddim_step_reference(
                        tensor(&pred, pshape, &gpu),
                        guidance,
                        tensor(&x, shape, &gpu),
                        step,
                    )
                    .expect("reference");
                    // The scheduler's own path on the CPU: guidance combine, then `step`.
                    let scheduler_cpu = ddim
                        .clone()
                        .step_guided(tensor(&pred, pshape, &cpu), guidance, t, tensor(&x, shape, &cpu))
                        .expect("cpu step");
                    let fused = read(fused).await;
                    let diff = max_abs_diff(&fused, &read(burn_gpu).await);
                    assert!(diff <= 1e-4, "{what}: kernel vs burn on WebGPU: {diff:e}");
                    let diff = max_abs_diff(&fused, &read(scheduler_cpu).await);
                    assert!(diff <= 1e-4, "{what}: kernel vs the scheduler on the CPU: {diff:e}");
                }
            }
        }
    }
}

#[wasm_bindgen_test]
async fn quant_matmul_matches_burn() {
    let gpu = webgpu().await;
    let cpu = Device::flex();
    // (m, k, n): decode steps (one row), prefills of 7 and 64 rows (the kernel takes four per
    // invocation), columns that are not multiples of its 64, one block, LLM-like widths.
    let cases = [(1, 32, 1), (1, 128, 96), (1, 256, 200), (7, 512, 65), (7, 64, 70), (64, 128, 130), (64, 96, 64)];
    for q in [Quant::Q8, Quant::Q4] {
        for (i, (m, k, n)) in cases.into_iter().enumerate() {
            let what = format!("{} x [{m}, {k}] · W [{n}, {k}]ᵀ", q.name());
            let w_values = values(n * k, 200 + i as u32, 0.0, 1.0);
            let x = values(m * k, 300 + i as u32, 0.0, 1.0);
            let w = kernels::QuantMatrix::quantize("w", &w_values, [n, k], q, &gpu).expect("quantize");
            let fused = kernels::quant_matmul(tensor(&x, [m, k], &gpu), &w).expect("kernel");
            assert_eq!(fused.dims(), [m, n], "{what}");
            let fused = read(fused).await;
            let burn_gpu =
                read(kernels::quant_matmul_reference(tensor(&x, [m, k], &gpu), &w).expect("reference")).await;
            // Independent of Burn's integer ops: the CPU decoder of the web format, then an f32 matmul.
            let bytes = quant::encode(&w_values, k, q, quant::Scales::F32, "w").expect("encode");
            let decoded = quant::decode(&bytes, n * k, q, quant::Scales::F32, "w").expect("decode");
            let plain_cpu = read(tensor(&x, [m, k], &cpu).matmul(tensor(&decoded, [n, k], &cpu).transpose())).await;
            let d = rel_diff(&fused, &burn_gpu);
            assert!(d <= 1e-5, "{what}: kernel vs burn on WebGPU: {d:e}");
            let d = rel_diff(&fused, &plain_cpu);
            assert!(d <= 1e-5, "{what}: kernel vs f32 matmul of the decoded weight on the CPU: {d:e}");
        }
    }
}

/// A linear whose weight Burn keeps block-quantized (the page's `Residency::Quantized`)
/// takes `shaders/matmul_q8.wgsl` / `matmul_q4.wgsl` through `kernels::linear`, reading
/// Burn's packed words in place, and computes what Burn's `Linear::forward` computes.
#[wasm_bindgen_test]
async fn burn_quantized_linears_take_the_wgsl_kernels() {
    use burn::module::Param;
    use burn::nn::Linear;
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
    let gpu = webgpu().await;
    let before = kernels::quant_linear_fallbacks();
    for (v, value) in [QuantValue::Q8S, QuantValue::Q4S].into_iter().enumerate() {
        let scheme = QuantScheme::default()
            .with_value(value)
            .with_store(QuantStore::PackedU32(0))
            .per_block([1, 32], ScaleDtype::F32);
        let (n, k) = (72, 96);
        let w = tensor(&values(n * k, 400 + v as u32, 0.0, 0.5), [n, k], &gpu).quantize_dynamic(&scheme);
        let bias = tensor(&values(n, 500 + v as u32, 0.0, 1.0), [n], &gpu);
        let layer = Linear { weight: Param::from_tensor(w.transpose()), bias: Some(Param::from_tensor(bias)) };
        for rows in [1, 7, 64] {
            let what = format!("{value:?} [{n}, {k}], {rows} rows");
            let x = tensor(&values(rows * k, 600 + rows as u32, 0.0, 1.0), [rows, k], &gpu);
            // Q4S always; Q8S below 64 rows, or at any count where the WGSL products are preferred (SwiftShader).
            let want = value == QuantValue::Q4S || rows < 64 || kernels::wgsl_matmul_preferred(&gpu);
            assert_eq!(kernels::quant_linear_takes_wgsl(&layer, &x), want, "{what}");
            let fused = read(kernels::linear(&layer, x.clone())).await;
            let burn = read(layer.forward(x)).await;
            let d = rel_diff(&fused, &burn);
            assert!(d <= 1e-5, "{what}: kernel vs Burn's quantized Linear on WebGPU: {d:e}");
        }
    }
    assert_eq!(kernels::quant_linear_fallbacks(), before, "a weight was not in the layout the kernels read");
}

#[wasm_bindgen_test]
async fn matmul_matches_burn() {
    let gpu = webgpu().await;
    let cpu = Device::flex();
    // Partial 4×4 blocks, a Winograd-shaped batch, attention's kᵀ read in place, a linear
    // weight broadcast over the batch.
    let (a, b) = (values(37 * 13, 1, 0.0, 1.0), values(13 * 29, 2, 0.0, 1.0));
    let want = read(tensor(&a, [37, 13], &cpu).matmul(tensor(&b, [13, 29], &cpu))).await;
    let got = kernels::matmul_wgsl(tensor(&a, [37, 13], &gpu), tensor(&b, [13, 29], &gpu)).expect("covered");
    assert!(max_abs_diff(&read(got).await, &want) < 1e-4);

    let (a, b) = (values(16 * 24 * 40, 3, 0.0, 1.0), values(16 * 40 * 50, 4, 0.0, 1.0));
    let want = read(tensor(&a, [16, 24, 40], &cpu).matmul(tensor(&b, [16, 40, 50], &cpu))).await;
    let got = kernels::matmul_wgsl(tensor(&a, [16, 24, 40], &gpu), tensor(&b, [16, 40, 50], &gpu)).expect("covered");
    assert!(max_abs_diff(&read(got).await, &want) < 1e-4);

    let (q, k) = (values(2 * 3 * 33 * 8, 5, 0.0, 1.0), values(2 * 3 * 17 * 8, 6, 0.0, 1.0));
    let want = read(tensor(&q, [2, 3, 33, 8], &cpu).matmul(tensor(&k, [2, 3, 17, 8], &cpu).swap_dims(2, 3))).await;
    let k_t = tensor(&k, [2, 3, 17, 8], &gpu).swap_dims(2, 3);
    let got = kernels::matmul_wgsl(tensor(&q, [2, 3, 33, 8], &gpu), k_t).expect("covered");
    assert!(max_abs_diff(&read(got).await, &want) < 1e-4);

    let (x, w) = (values(2 * 45 * 20, 7, 0.0, 1.0), values(20 * 36, 8, 0.0, 1.0));
    let want = read(tensor(&x, [2, 45, 20], &cpu).matmul(tensor(&w, [1, 20, 36], &cpu))).await;
    let got = kernels::matmul_wgsl(tensor(&x, [2, 45, 20], &gpu), tensor(&w, [1, 20, 36], &gpu)).expect("covered");
    assert!(max_abs_diff(&read(got).await, &want) < 1e-4);
}

#[wasm_bindgen_test]
async fn matmul_choice_follows_the_adapter() {
    let gpu = webgpu().await;
    let name = kernels::adapter_name(&gpu).expect("a WebGPU adapter");
    // Headless chromium here runs WebGPU on SwiftShader, where Burn's matmul is slowest.
    assert!(name.to_lowercase().contains("swiftshader"), "adapter {name:?}");
    assert!(kernels::wgsl_matmul_preferred(&gpu));
}
