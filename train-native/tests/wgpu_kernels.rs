//! The WGSL kernels of `shaders/` (genllava::kernels) against their plain-Burn
//! references, on a native wgpu device (lavapipe in CI) and on the CPU backend.
//! Built only with `--features wgpu`.
#![cfg(feature = "wgpu")]

use burn::module::Param;
use burn::nn::GroupNorm;
use burn::tensor::{Device, Distribution, Tensor};
use genllava::kernels;
use std::sync::OnceLock;

/// One wgpu device per test process (the runtime is initialised once).
fn wgpu() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| Device::wgpu_options().init().expect("a wgpu adapter (lavapipe in CI)")).clone()
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let (a, b) = (a.into_data().try_to_vec::<f32>().expect("f32"), b.into_data().try_to_vec::<f32>().expect("f32"));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| if x.is_finite() && y.is_finite() { m.max((x - y).abs()) } else { f32::INFINITY })
}

fn norm(channels: usize, groups: usize, eps: f64, device: &Device) -> GroupNorm {
    let gamma = Tensor::<1>::random([channels], Distribution::Normal(1.0, 0.5), device);
    let beta = Tensor::<1>::random([channels], Distribution::Normal(0.0, 0.5), device);
    GroupNorm {
        gamma: Some(Param::from_tensor(gamma)),
        beta: Some(Param::from_tensor(beta)),
        num_groups: groups,
        num_channels: channels,
        epsilon: eps,
        affine: true,
    }
}

/// The same norm with its weights moved to `device`.
fn norm_on(n: &GroupNorm, device: &Device) -> GroupNorm {
    GroupNorm {
        gamma: n.gamma.as_ref().map(|g| Param::from_tensor(g.val().to_device(device))),
        beta: n.beta.as_ref().map(|b| Param::from_tensor(b.val().to_device(device))),
        ..n.clone()
    }
}

#[test]
fn the_kernels_run_on_wgpu_only() {
    assert!(kernels::wgsl_active(&wgpu()), "the wgpu device must take the WGSL path");
    assert!(!kernels::wgsl_active(&Device::flex()));
}

#[test]
fn group_norm_silu_matches_burn() {
    let gpu = wgpu();
    let cpu = Device::flex();
    // (shape, groups, eps): SD's 32 groups at 1e-5 (UNet) and 1e-6 (VAE), odd spatial sizes,
    // one channel per group, a slice shorter than the workgroup, and a non-SD group count.
    let cases: [([usize; 4], usize, f64); 6] = [
        ([2, 64, 8, 8], 32, 1e-5),
        ([1, 96, 13, 7], 32, 1e-6),
        ([2, 32, 5, 3], 32, 1e-5),
        ([3, 12, 1, 1], 4, 1e-5),
        ([1, 128, 33, 31], 32, 1e-6),
        ([2, 40, 9, 9], 8, 1e-5),
    ];
    for (shape, groups, eps) in cases {
        let n = norm(shape[1], groups, eps, &gpu);
        // Inputs off-centre and scaled, so mean and variance both matter.
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.7, 2.0), &gpu);
        for silu in [true, false] {
            let fused = kernels::group_norm_silu(&n, x.clone(), silu);
            let burn_gpu = kernels::group_norm_silu_reference(&n, x.clone(), silu);
            let burn_cpu = kernels::group_norm_silu_reference(&norm_on(&n, &cpu), x.clone().to_device(&cpu), silu);
            let what = format!("{shape:?} groups {groups} eps {eps} silu {silu}");
            let d = max_abs_diff(fused.clone(), burn_gpu);
            assert!(d <= 1e-4, "{what}: kernel vs burn on wgpu: {d:e}");
            let d = max_abs_diff(fused.to_device(&cpu), burn_cpu);
            assert!(d <= 1e-4, "{what}: kernel vs burn on cpu: {d:e}");
        }
    }
}

#[test]
fn group_norm_silu_reads_strided_inputs() {
    let gpu = wgpu();
    let n = norm(64, 32, 1e-5, &gpu);
    // [2, 6, 64, 5] → swap dims 1 and 2: a [2, 64, 6, 5] view that is not contiguous.
    let x = Tensor::<4>::random([2, 6, 64, 5], Distribution::Normal(0.0, 1.0), &gpu).swap_dims(1, 2);
    let fused = kernels::group_norm_silu(&n, x.clone(), true);
    let reference = kernels::group_norm_silu_reference(&n, x, true);
    let d = max_abs_diff(fused, reference);
    assert!(d <= 1e-4, "strided input: {d:e}");
}

#[test]
fn attention_matches_burn() {
    let gpu = wgpu();
    let cpu = Device::flex();
    // ([b, h, n_q, d], n_kv): SD 1.x self-attention (d 40/80/160) and cross-attention over 77
    // text tokens, row counts that are not multiples of the 64-row workgroup, tiles that do not
    // divide n_kv, one key, and a tiny head dim.
    let cases: [([usize; 4], usize); 6] = [
        ([2, 8, 64, 40], 64),
        ([2, 8, 100, 40], 77),
        ([1, 4, 70, 80], 77),
        ([1, 2, 33, 160], 130),
        ([2, 1, 5, 8], 1),
        ([1, 3, 129, 64], 200),
    ];
    for ([b, h, nq, d], nk) in cases {
        for spread in [1.0, 6.0] {
            // `spread` 6 makes the scores large, so the online softmax must rescale correctly.
            let q = Tensor::<4>::random([b, h, nq, d], Distribution::Normal(0.0, spread), &gpu);
            let k = Tensor::<4>::random([b, h, nk, d], Distribution::Normal(0.0, 1.0), &gpu);
            let v = Tensor::<4>::random([b, h, nk, d], Distribution::Normal(0.0, 1.0), &gpu);
            let fused = kernels::attention(q.clone(), k.clone(), v.clone());
            assert_eq!(fused.dims(), [b, h, nq, d]);
            let burn_gpu = kernels::attention_reference(q.clone(), k.clone(), v.clone());
            let burn_cpu = kernels::attention_reference(q.to_device(&cpu), k.to_device(&cpu), v.to_device(&cpu));
            let what = format!("q {:?} n_kv {nk} spread {spread}", [b, h, nq, d]);
            let diff = max_abs_diff(fused.clone(), burn_gpu);
            assert!(diff <= 1e-4, "{what}: kernel vs burn on wgpu: {diff:e}");
            let diff = max_abs_diff(fused.to_device(&cpu), burn_cpu);
            assert!(diff <= 1e-4, "{what}: kernel vs burn on cpu: {diff:e}");
        }
    }
}

/// `x` (on wgpu) through the softmax kernel, through Burn's softmax on wgpu and on the CPU,
/// each flattened.
fn softmax_three_ways<const D: usize>(x: Tensor<D>, scale: f32, cpu: &Device) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let kernel = kernels::softmax_scaled(x.clone(), scale).reshape([-1]);
    let burn_gpu = kernels::softmax_scaled_reference(x.clone(), scale).reshape([-1]);
    let burn_cpu = kernels::softmax_scaled_reference(x.to_device(cpu), scale).reshape([-1]);
    (kernel, burn_gpu, burn_cpu)
}

#[test]
fn softmax_scaled_matches_burn() {
    let gpu = wgpu();
    // Fixed inputs: unseeded, one fresh-clone CI run drew rows whose two wgpu softmaxes
    // differed by 1.007e-5, just over the bound below (these give 9.4e-6 on lavapipe: the
    // bound leaves little room for the 4096-key rows of spread 30).
    gpu.seed(0);
    let cpu = Device::flex();
    // Attention scores: SD self-attention rows (4096 keys), cross-attention over 77 tokens,
    // short rows, one column, a row count that is not a multiple of the 64-row workgroup,
    // and more rows than one dispatch dimension holds (4.3 M > 65,535 workgroups × 64).
    let cases: [(&[usize], f32); 6] = [
        (&[2, 8, 16, 4096], 1.0 / 40f32.sqrt()),
        (&[2, 8, 64, 77], 1.0 / 80f32.sqrt()),
        (&[3, 5, 300], 0.125),
        (&[7, 1], 1.0),
        (&[4_300_000, 2], 0.5),
        (&[4, 1000], 3.0),
    ];
    for (shape, scale) in cases {
        for spread in [1.0, 30.0] {
            // `spread` 30 makes exp overflow unless the row maximum is taken out first.
            let x = Tensor::<1>::random([shape.iter().product::<usize>()], Distribution::Normal(0.0, spread), &gpu);
            let what = format!("{shape:?} scale {scale} spread {spread}");
            let (kernel, burn_gpu, burn_cpu) = match *shape {
                [r, c] => softmax_three_ways(x.reshape([r, c]), scale, &cpu),
                [a, r, c] => softmax_three_ways(x.reshape([a, r, c]), scale, &cpu),
                [a, b, r, c] => softmax_three_ways(x.reshape([a, b, r, c]), scale, &cpu),
                _ => unreachable!("the cases are of rank 2 to 4"),
            };
            let diff = max_abs_diff(kernel.clone(), burn_gpu);
            assert!(diff <= 1e-5, "{what}: kernel vs burn on wgpu: {diff:e}");
            let diff = max_abs_diff(kernel.to_device(&cpu), burn_cpu);
            // Vulkan/WebGPU `exp` may be off by 3 + 2|x| ulp, so against the CPU the rows of
            // large scores differ by a few 1e-6.
            assert!(diff <= 5e-5, "{what}: kernel vs burn on cpu: {diff:e}");
        }
    }
}

#[test]
fn softmax_scaled_leaves_shared_inputs_alone() {
    let gpu = wgpu();
    // The input is still held (and strided): the kernel must write a copy, not into it.
    let x = Tensor::<2>::random([40, 300], Distribution::Normal(0.0, 2.0), &gpu);
    let before = x.clone().into_data();
    let strided = x.clone().swap_dims(0, 1);
    let y = kernels::softmax_scaled(x.clone(), 0.5);
    let y_strided = kernels::softmax_scaled(strided.clone(), 0.5);
    assert_eq!(x.clone().into_data(), before, "the kernel wrote into a tensor that was still in use");
    assert!(max_abs_diff(y, kernels::softmax_scaled_reference(x, 0.5)) <= 1e-5);
    assert!(max_abs_diff(y_strided, kernels::softmax_scaled_reference(strided, 0.5)) <= 1e-5);
}

#[test]
fn attention_reads_strided_heads() {
    let gpu = wgpu();
    // As the UNet splits heads: [b, n, h, d] swapped to [b, h, n, d], not contiguous.
    let split = |n: usize| Tensor::<4>::random([2, n, 4, 40], Distribution::Normal(0.0, 1.0), &gpu).swap_dims(1, 2);
    let (q, k, v) = (split(50), split(77), split(77));
    let diff = max_abs_diff(kernels::attention(q.clone(), k.clone(), v.clone()), kernels::attention_reference(q, k, v));
    assert!(diff <= 1e-4, "strided heads: {diff:e}");
}

#[test]
fn guided_ddim_step_matches_the_scheduler() {
    use genllava::scheduler::{Ddim, PredictionType, Scheduler, SchedulerConfig};
    let gpu = wgpu();
    let cpu = Device::flex();
    for prediction in [PredictionType::Epsilon, PredictionType::VPrediction] {
        for clip in [false, true] {
            let cfg =
                SchedulerConfig { prediction_type: prediction, clip_sample: Some(clip), ..SchedulerConfig::sd_v1() };
            let mut on_gpu = Ddim::new(&cfg, 10).expect("ddim");
            let mut on_cpu = on_gpu.clone();
            let timesteps = on_gpu.timesteps().to_vec();
            for guidance in [Some(7.5f32), None] {
                let rows = if guidance.is_some() { 4 } else { 2 };
                // Latents scaled up so that clipping x0 at ±1 bites.
                let x = Tensor::<4>::random([2, 4, 9, 7], Distribution::Normal(0.0, 3.0), &gpu);
                let pred = Tensor::<4>::random([rows, 4, 9, 7], Distribution::Normal(0.0, 1.0), &gpu);
                for &t in [timesteps[0], timesteps[9]].iter() {
                    let what = format!("{prediction:?} clip {clip} guidance {guidance:?} t {t}");
                    let fused = on_gpu.step_guided(pred.clone(), guidance, t, x.clone()).expect("gpu step");
                    let coefficients = on_gpu.coefficients(t).expect("coefficients");
                    let burn_gpu = kernels::guided_ddim_step_reference(pred.clone(), guidance, x.clone(), coefficients)
                        .expect("ref");
                    // The scheduler's own CPU path: guidance combine, then `step`.
                    let scheduler_cpu = on_cpu
                        .step_guided(pred.clone().to_device(&cpu), guidance, t, x.clone().to_device(&cpu))
                        .expect("cpu");
                    let diff = max_abs_diff(fused.clone(), burn_gpu);
                    assert!(diff <= 1e-4, "{what}: kernel vs burn on wgpu: {diff:e}");
                    let diff = max_abs_diff(fused.to_device(&cpu), scheduler_cpu);
                    assert!(diff <= 1e-4, "{what}: kernel vs the scheduler on cpu: {diff:e}");
                }
            }
        }
    }
}

#[test]
fn guided_ddim_step_rejects_mismatched_shapes() {
    use genllava::scheduler::{Ddim, SchedulerConfig};
    let gpu = wgpu();
    let ddim = Ddim::new(&SchedulerConfig::sd_v1(), 10).expect("ddim");
    let step = ddim.coefficients(1.0).expect("coefficients");
    let x = Tensor::<4>::zeros([2, 4, 8, 8], &gpu);
    // Guided needs [4, 4, 8, 8]; unguided [2, 4, 8, 8].
    for (rows, guidance) in [(2, Some(5.0)), (4, None)] {
        let pred = Tensor::<4>::zeros([rows, 4, 8, 8], &gpu);
        let err = kernels::guided_ddim_step(pred, guidance, x.clone(), step).expect_err("shape mismatch");
        assert!(err.to_string().contains("does not fit latents"), "{err}");
    }
}

/// `max |a - b| / max(1, max |b|)`.
fn rel_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
    max_abs_diff(a, b) / scale
}

#[test]
fn quant_matmul_matches_burn() {
    use genllava::quant::{self, Quant};
    let gpu = wgpu();
    let cpu = Device::flex();
    // (m, k, n): decode steps (one row) and prefills (row counts that are not multiples of the
    // kernel's 4 rows; columns that are not multiples of its 64), one block, and LLM-like widths.
    let cases = [(1, 32, 1), (1, 128, 96), (1, 256, 200), (3, 64, 70), (64, 128, 130), (33, 96, 64), (7, 512, 65)];
    for q in [Quant::Q8, Quant::Q4] {
        for (m, k, n) in cases {
            let what = format!("{} x [{m}, {k}] · W [{n}, {k}]ᵀ", q.name());
            let values: Vec<f32> = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), &cpu)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32");
            let w = kernels::QuantMatrix::quantize("w", &values, [n, k], q, &gpu).expect("quantize");
            let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &gpu);
            let fused = kernels::quant_matmul(x.clone(), &w).expect("kernel");
            assert_eq!(fused.dims(), [m, n], "{what}");
            let burn_gpu = kernels::quant_matmul_reference(x.clone(), &w).expect("reference");
            // Independent of Burn's integer ops: the CPU decoder of the web format, then f32 matmul on flex.
            let bytes = quant::encode(&values, k, q, quant::Scales::F32, "w").expect("encode");
            let decoded = quant::decode(&bytes, n * k, q, quant::Scales::F32, "w").expect("decode");
            let w_cpu = Tensor::<2>::from_data(burn::tensor::TensorData::new(decoded, [n, k]), &cpu);
            let plain_cpu = x.to_device(&cpu).matmul(w_cpu.transpose());
            let d = rel_diff(fused.clone(), burn_gpu);
            assert!(d <= 1e-5, "{what}: kernel vs burn on wgpu: {d:e}");
            let d = rel_diff(fused.to_device(&cpu), plain_cpu);
            assert!(d <= 1e-5, "{what}: kernel vs f32 matmul of the decoded weight on cpu: {d:e}");
        }
    }
}

#[test]
fn quant_matmul_rejects_mismatched_shapes() {
    let gpu = wgpu();
    let w = kernels::QuantMatrix::quantize("w", &[0.5; 64 * 8], [8, 64], genllava::quant::Quant::Q4, &gpu).expect("w");
    let err = kernels::quant_matmul(Tensor::<2>::zeros([2, 32], &gpu), &w).expect_err("k differs");
    assert!(err.to_string().contains("[2, 32]") && err.to_string().contains("[8, 64]"), "{err}");
}

/// A linear whose weight Burn keeps block-quantized (what `Residency::Quantized` loads),
/// run through `kernels::linear`: the WGSL kernels read Burn's own packed Q8S / Q4S words
/// and f32 (or, where the device has f16, f16) scales in place, and must compute what Burn's `Linear::forward` computes, at one row
/// and many, on 2-D and 3-D inputs, with and without a bias.
#[test]
fn burn_quantized_linears_take_the_wgsl_kernels() {
    use burn::nn::Linear;
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
    let gpu = wgpu();
    let before = kernels::quant_linear_fallbacks();
    let mut half = 0;
    for (value, scales) in [
        (QuantValue::Q8S, ScaleDtype::F32),
        (QuantValue::Q4S, ScaleDtype::F32),
        (QuantValue::Q8S, ScaleDtype::F16),
        (QuantValue::Q4S, ScaleDtype::F16),
    ] {
        let scheme =
            QuantScheme::default().with_value(value).with_store(QuantStore::PackedU32(0)).per_block([1, 32], scales);
        // f16 scales need f16 arithmetic on the device (lavapipe has it, SwiftShader not).
        if !gpu.supports_dtype(burn::tensor::DType::QFloat(scheme)) {
            continue;
        }
        half += usize::from(scales == ScaleDtype::F16);
        // n not a multiple of 64 (the workgroup width), k a few blocks.
        for (n, k, bias) in [(72, 96, true), (40, 256, false)] {
            // As the loaders build it: PyTorch's [out, in] weight quantized, then transposed.
            let w = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 0.5), &gpu).quantize_dynamic(&scheme);
            let layer = Linear {
                weight: Param::from_tensor(w.transpose()),
                bias: bias.then(|| Param::from_tensor(Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &gpu))),
            };
            for rows in [1, 7, 33, 64] {
                let what = format!("{value:?} {scales:?} scales [{n}, {k}] bias {bias}, {rows} rows");
                let x = Tensor::<2>::random([rows, k], Distribution::Normal(0.0, 1.0), &gpu);
                let takes = kernels::quant_linear_takes_wgsl(&layer, &x);
                // Q4S always; Q8S below 64 rows, or at any count on an adapter that prefers the WGSL products.
                let want = value == QuantValue::Q4S || rows < 64 || kernels::wgsl_matmul_preferred(&gpu);
                assert_eq!(takes, want, "{what}");
                let d = rel_diff(kernels::linear(&layer, x.clone()), layer.forward(x.clone()));
                assert!(d <= 1e-5, "{what}: kernel vs Burn's quantized Linear: {d:e}");
                let x3 = x.reshape([1, rows, k]);
                let d = max_abs_diff(kernels::linear(&layer, x3.clone()), layer.forward(x3));
                assert!(d <= 1e-4, "{what}, 3-D input: {d:e}");
            }
        }
    }
    assert_eq!(kernels::quant_linear_fallbacks(), before, "a weight was not in the layout the kernels read");
    let adapter = kernels::adapter_name(&gpu).unwrap_or_default();
    if adapter.contains("llvmpipe") {
        assert_eq!(half, 2, "lavapipe has shader-f16: the f16-scale cases must run");
    }
}

/// A conv with random weights (and bias unless `bias` is false) on `device`.
fn conv_layer(
    c: [usize; 2],
    k: [usize; 2],
    stride: [usize; 2],
    padding: (usize, usize, usize, usize),
    bias: bool,
    device: &Device,
) -> burn::nn::conv::Conv2d {
    let (t, l, b, r) = padding;
    burn::nn::conv::Conv2dConfig::new(c, k)
        .with_stride(stride)
        .with_padding(burn::nn::PaddingConfig2d::Explicit(t, l, b, r))
        .with_bias(bias)
        .init(device)
}

/// The same conv with its weights moved to `device`.
fn conv_on(c: &burn::nn::conv::Conv2d, device: &Device) -> burn::nn::conv::Conv2d {
    burn::nn::conv::Conv2d {
        weight: Param::from_tensor(c.weight.val().to_device(device)),
        bias: c.bias.as_ref().map(|b| Param::from_tensor(b.val().to_device(device))),
        ..c.clone()
    }
}

#[test]
fn conv2d_matches_burn() {
    let gpu = wgpu();
    let cpu = Device::flex();
    // (input, [c_in, c_out], kernel, stride, padding, bias): SD's 3×3 resnet convs, the
    // stride-2 downsampler, 1×1 shortcuts and projections, channel and pixel counts that do
    // not fill a 64 × 64 tile, K not a multiple of 16, the VAE's asymmetric downsampling pad,
    // a non-square kernel and a conv without bias.
    type Case = ([usize; 4], [usize; 2], [usize; 2], [usize; 2], (usize, usize, usize, usize), bool);
    let cases: [Case; 10] = [
        ([2, 32, 16, 16], [32, 64], [3, 3], [1, 1], (1, 1, 1, 1), true),
        ([3, 7, 9, 5], [7, 11], [3, 3], [1, 1], (0, 0, 1, 1), true),
        ([1, 2, 1, 6], [2, 3], [3, 3], [1, 1], (1, 2, 1, 0), false),
        ([1, 5, 13, 7], [5, 3], [3, 3], [1, 1], (1, 1, 1, 1), true),
        ([2, 16, 15, 15], [16, 70], [3, 3], [2, 2], (1, 1, 1, 1), true),
        ([2, 40, 9, 9], [40, 130], [1, 1], [1, 1], (0, 0, 0, 0), true),
        ([1, 4, 8, 8], [4, 20], [3, 3], [1, 1], (1, 1, 1, 1), false),
        ([1, 8, 10, 10], [8, 8], [3, 3], [2, 2], (0, 0, 1, 1), true),
        ([3, 6, 7, 11], [6, 9], [1, 3], [1, 2], (0, 1, 0, 1), true),
        ([1, 3, 3, 3], [3, 2], [3, 3], [1, 1], (0, 0, 0, 0), true),
    ];
    for (shape, c, k, stride, padding, bias) in cases {
        let layer = conv_layer(c, k, stride, padding, bias, &gpu);
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &gpu);
        let fused = kernels::conv2d_wgsl(&layer, x.clone()).expect("the kernel covers it");
        let burn_gpu = kernels::conv2d_reference(&layer, x.clone());
        let burn_cpu = kernels::conv2d_reference(&conv_on(&layer, &cpu), x.clone().to_device(&cpu));
        let what = format!("{shape:?} {c:?} k {k:?} stride {stride:?} pad {padding:?} bias {bias}");
        assert_eq!(fused.dims(), burn_gpu.dims(), "{what}: output shape");
        let d = max_abs_diff(fused.clone(), burn_gpu);
        assert!(d <= 1e-4, "{what}: kernel vs burn on wgpu: {d:e}");
        let d = max_abs_diff(fused.to_device(&cpu), burn_cpu.clone());
        assert!(d <= 1e-4, "{what}: kernel vs burn on cpu: {d:e}");
        let im2col = kernels::conv2d_im2col(&layer, x.clone()).expect("im2col covers it");
        assert_eq!(im2col.dims(), burn_cpu.dims(), "{what}: im2col output shape");
        let d = max_abs_diff(im2col.to_device(&cpu), burn_cpu.clone());
        assert!(d <= 1e-4, "{what}: im2col + matmul vs burn on cpu: {d:e}");
        // Winograd F(2×2, 3×3): exactly the 3×3 kernels at stride 1, odd sizes, partial
        // tiles and one-pixel outputs included.
        let winograd = kernels::conv2d_winograd(&layer, x.clone());
        assert_eq!(winograd.is_some(), k == [3, 3] && stride == [1, 1], "{what}: Winograd coverage");
        if let Some(winograd) = winograd {
            assert_eq!(winograd.dims(), burn_cpu.dims(), "{what}: Winograd output shape");
            let d = max_abs_diff(winograd.to_device(&cpu), burn_cpu);
            assert!(d <= 1e-4, "{what}: Winograd vs burn on cpu: {d:e}");
        }
    }
}

#[test]
fn conv2d_winograd_splits_into_chunks() {
    // A 40 KiB budget: the weight transform in output-channel chunks of 40 (40, 40, 20) and
    // the 2 × 5 × 5 = 50 tiles in chunks of 16 (16, 16, 16, 2): every chunk's output lands
    // in the same result.
    let gpu = wgpu();
    let cpu = Device::flex();
    let layer = conv_layer([16, 100], [3, 3], [1, 1], (1, 1, 1, 1), true, &gpu);
    let x = Tensor::<4>::random([2, 16, 9, 9], Distribution::Normal(0.0, 1.0), &gpu);
    let burn_cpu = kernels::conv2d_reference(&conv_on(&layer, &cpu), x.clone().to_device(&cpu));
    let chunked = kernels::conv2d_winograd_in_chunks(&layer, x.clone(), 40 * 1024).expect("Winograd covers it");
    let d = max_abs_diff(chunked.to_device(&cpu), burn_cpu.clone());
    assert!(d <= 1e-4, "chunked Winograd vs burn on cpu: {d:e}");
    let whole = kernels::conv2d_winograd(&layer, x.clone()).expect("Winograd covers it");
    let d = max_abs_diff(whole.to_device(&cpu), burn_cpu);
    assert!(d <= 1e-4, "Winograd in one chunk vs burn on cpu: {d:e}");
    // Below 64 bytes per input channel no chunk fits: not covered.
    assert!(kernels::conv2d_winograd_in_chunks(&layer, x, 16 * 63).is_none());
}

#[test]
fn conv2d_im2col_splits_large_patch_matrices() {
    // 4608 patch rows × 8192 columns is 144 MiB, over the 128 MiB chunk: two products.
    let gpu = wgpu();
    let cpu = Device::flex();
    let layer = conv_layer([512, 4], [3, 3], [1, 1], (1, 1, 1, 1), true, &gpu);
    let x = Tensor::<4>::random([2, 512, 64, 64], Distribution::Normal(0.0, 1.0), &gpu);
    let im2col = kernels::conv2d_im2col(&layer, x.clone()).expect("im2col covers it");
    let burn_cpu = kernels::conv2d_reference(&conv_on(&layer, &cpu), x.to_device(&cpu));
    let d = max_abs_diff(im2col.to_device(&cpu), burn_cpu);
    assert!(d <= 1e-3, "chunked im2col + matmul vs burn on cpu: {d:e}");
}

#[test]
fn conv2d_reads_strided_inputs() {
    let gpu = wgpu();
    let layer = conv_layer([12, 24], [3, 3], [1, 1], (1, 1, 1, 1), true, &gpu);
    // An NHWC tensor viewed as NCHW: not contiguous in the layout the kernel indexes.
    let x = Tensor::<4>::random([2, 9, 10, 12], Distribution::Normal(0.0, 1.0), &gpu).permute([0, 3, 1, 2]);
    let fused = kernels::conv2d_wgsl(&layer, x.clone()).expect("the kernel covers it");
    let d = max_abs_diff(fused, kernels::conv2d_reference(&layer, x.clone()));
    assert!(d <= 1e-4, "permuted input: {d:e}");
    let im2col = kernels::conv2d_im2col(&layer, x.clone()).expect("im2col covers it");
    let d = max_abs_diff(im2col, kernels::conv2d_reference(&layer, x.clone()));
    assert!(d <= 1e-4, "permuted input, im2col: {d:e}");
    let winograd = kernels::conv2d_winograd(&layer, x.clone()).expect("Winograd covers it");
    let d = max_abs_diff(winograd, kernels::conv2d_reference(&layer, x));
    assert!(d <= 1e-4, "permuted input, Winograd: {d:e}");
}

#[test]
fn conv2d_takes_winograd_or_im2col_on_wgpu() {
    let gpu = wgpu();
    let layer = conv_layer([16, 8], [3, 3], [1, 1], (1, 1, 1, 1), true, &gpu);
    // The dispatching call runs Winograd for a 3×3 kernel at stride 1 with enough output
    // pixels and input channels (same bits as calling it directly), im2col + matmul for the
    // others.
    let x = Tensor::<4>::random([2, 16, 16, 16], Distribution::Normal(0.0, 1.0), &gpu);
    const { assert!(2 * 16 * 16 >= kernels::WINOGRAD_MIN_PIXELS && 16 >= kernels::WINOGRAD_MIN_CHANNELS) };
    let winograd = kernels::conv2d_winograd(&layer, x.clone()).expect("Winograd covers it");
    assert_eq!(max_abs_diff(kernels::conv2d(&layer, x.clone()), winograd), 0.0);
    let down = conv_layer([16, 8], [3, 3], [2, 2], (1, 1, 1, 1), true, &gpu);
    assert!(kernels::conv2d_winograd(&down, x.clone()).is_none());
    let im2col = kernels::conv2d_im2col(&down, x.clone()).expect("im2col covers it");
    assert_eq!(max_abs_diff(kernels::conv2d(&down, x), im2col), 0.0);
    // A small map or few input channels: im2col, where the transforms would cost more.
    for (small, shape) in
        [(&layer, [2, 16, 8, 8]), (&conv_layer([8, 8], [3, 3], [1, 1], (1, 1, 1, 1), true, &gpu), [2, 8, 16, 16])]
    {
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &gpu);
        let im2col = kernels::conv2d_im2col(small, x.clone()).expect("im2col covers it");
        assert_eq!(max_abs_diff(kernels::conv2d(small, x), im2col), 0.0, "{shape:?}");
    }
    // 49 taps: past the implicit-GEMM kernel's 32, still im2col + matmul.
    let wide = conv_layer([3, 5], [7, 7], [1, 1], (3, 3, 3, 3), true, &gpu);
    let x = Tensor::<4>::random([1, 3, 12, 12], Distribution::Normal(0.0, 1.0), &gpu);
    assert!(kernels::conv2d_wgsl(&wide, x.clone()).is_none());
    let im2col = kernels::conv2d_im2col(&wide, x.clone()).expect("im2col has no tap limit");
    let d = max_abs_diff(im2col, kernels::conv2d_reference(&wide, x));
    assert!(d <= 1e-4, "7×7 conv through im2col: {d:e}");
    // A same-padded conv is not covered: the reference runs.
    let mut same = layer.clone();
    same.padding = burn::nn::PaddingConfig2d::Same;
    let x = Tensor::<4>::random([1, 8, 16, 16], Distribution::Normal(0.0, 1.0), &gpu);
    assert!(kernels::conv2d_wgsl(&same, x.clone()).is_none());
    assert!(kernels::conv2d_im2col(&same, x.clone()).is_none());
    assert!(kernels::conv2d_winograd(&same, x.clone()).is_none());
    // Not on wgpu: no kernel.
    let cpu = conv_on(&layer, &Device::flex());
    assert!(kernels::conv2d_wgsl(&cpu, x.clone().to_device(&Device::flex())).is_none());
    assert!(kernels::conv2d_im2col(&cpu, x.clone().to_device(&Device::flex())).is_none());
    assert!(kernels::conv2d_winograd(&cpu, x.to_device(&Device::flex())).is_none());
}

/// `shaders/matmul.wgsl` against Burn's matmul on the CPU, at one call's rank `D`.
fn matmul_case<const D: usize>(a: &[usize], b: &[usize], transposed: bool) {
    let (gpu, cpu) = (wgpu(), Device::flex());
    let normal = Distribution::Normal(0.0, 1.0);
    let a_cpu = Tensor::<D>::random(a.to_vec(), normal, &cpu);
    let b_cpu = Tensor::<D>::random(b.to_vec(), normal, &cpu);
    // A transposed b is a view of the moved tensor, so the kernel reads it with strides.
    let b_gpu = b_cpu.clone().to_device(&gpu);
    let (b_cpu, b_gpu) =
        if transposed { (b_cpu.swap_dims(D - 2, D - 1), b_gpu.swap_dims(D - 2, D - 1)) } else { (b_cpu, b_gpu) };
    let want = a_cpu.clone().matmul(b_cpu);
    let got =
        kernels::matmul_wgsl(a_cpu.to_device(&gpu), b_gpu).unwrap_or_else(|| panic!("the kernel covers {a:?} × {b:?}"));
    assert_eq!(got.dims(), want.dims(), "{a:?} × {b:?}");
    let k = a[D - 1] as f32;
    let diff = max_abs_diff(got.to_device(&cpu), want);
    assert!(diff <= 1e-5 * k.sqrt() * 8.0, "{a:?} × {b:?} (transposed {transposed}): max |diff| {diff}");
}

#[test]
fn matmul_matches_burn() {
    // Blocks of 4×4 per invocation and 32×32 per workgroup: full and partial blocks, one
    // row (a decode step), one column, k = 1, a Winograd-shaped batch, attention's kᵀ read in
    // place, a linear layer's weight broadcast over the batch (batch dim 1 in b), and a
    // batch dim 1 in a broadcast against b's.
    matmul_case::<2>(&[64, 96], &[96, 128], false);
    matmul_case::<2>(&[37, 13], &[13, 29], false);
    matmul_case::<2>(&[1, 70], &[70, 33], false);
    matmul_case::<2>(&[9, 5], &[5, 1], false);
    matmul_case::<2>(&[6, 1], &[1, 7], false);
    matmul_case::<3>(&[16, 24, 40], &[16, 40, 50], false);
    matmul_case::<4>(&[2, 3, 33, 8], &[2, 3, 17, 8], true);
    matmul_case::<3>(&[2, 45, 20], &[1, 20, 36], false);
    matmul_case::<4>(&[1, 3, 10, 6], &[2, 3, 6, 11], false);
}

#[test]
fn matmul_refuses_what_it_does_not_cover() {
    let gpu = wgpu();
    let a = Tensor::<2>::zeros([4, 5], &gpu);
    let b = Tensor::<2>::zeros([6, 3], &gpu);
    assert!(kernels::matmul_wgsl(a, b).is_none(), "inner dims 5 and 6 differ");
    let a = Tensor::<3>::zeros([2, 4, 5], &gpu);
    let b = Tensor::<3>::zeros([3, 5, 3], &gpu);
    assert!(kernels::matmul_wgsl(a, b).is_none(), "batch 2 against 3");
    let cpu = Tensor::<2>::zeros([4, 5], &Device::flex());
    assert!(kernels::matmul_wgsl(cpu.clone(), cpu.transpose()).is_none(), "not a wgpu device");
}

#[test]
fn matmul_choice_follows_the_adapter() {
    let gpu = wgpu();
    let name = kernels::adapter_name(&gpu).expect("a wgpu adapter has a name");
    assert!(!name.is_empty());
    assert_eq!(kernels::adapter_name(&Device::flex()), None);
    // The process-wide choice is Auto (nothing here sets it): SwiftShader takes the WGSL product.
    let swiftshader = name.to_lowercase().contains("swiftshader");
    assert_eq!(kernels::matmul_choice(), kernels::MatmulChoice::Auto);
    assert_eq!(kernels::wgsl_matmul_preferred(&gpu), swiftshader, "adapter {name:?}");
    assert!(!kernels::wgsl_matmul_preferred(&Device::flex()));
}
