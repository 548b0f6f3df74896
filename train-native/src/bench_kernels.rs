//! `bench --kernels`: each WGSL kernel of `shaders/` against the plain-Burn
//! operations it replaces, on the same wgpu device and the same inputs, at the
//! shapes Stable Diffusion 1.x runs them (smaller ones with `--quick`).
//!
//! One warm-up run (for the whole diffusion step, one step at 8×8 latents: the same
//! kernels, minutes less on a CPU-emulated adapter), then the median of N timed runs;
//! each run ends with a device sync, so the clock stops only after the work has finished.

use crate::pretrain::vae::scalar;
use burn::module::Param;
use burn::nn::GroupNorm;
use burn::tensor::{Device, Distribution, Tensor};
use genllava::kernels;
use std::time::Instant;

/// One measured kernel: median seconds of the WGSL kernel and of Burn's ops.
struct KernelRow {
    kernel: &'static str,
    shape: String,
    wgsl: f64,
    burn: f64,
}

fn median_secs<const D: usize>(runs: usize, device: &Device, f: impl FnMut() -> Tensor<D>) -> anyhow::Result<f64> {
    Ok(median_secs_keep(runs, device, f)?.0)
}

/// [`median_secs`], also handing back the last timed run's output (so a caller that
/// checks the result need not run the work once more: a 64×64 step takes minutes on
/// a CPU-emulated adapter).
fn median_secs_keep<const D: usize>(
    runs: usize,
    device: &Device,
    mut f: impl FnMut() -> Tensor<D>,
) -> anyhow::Result<(f64, Tensor<D>)> {
    drop(f());
    device.sync().map_err(|e| anyhow::anyhow!("device sync: {e:?}"))?;
    median_secs_cold(runs, device, f)
}

/// [`median_secs_keep`] without its warm-up run: for work whose caller warms the device up
/// on a smaller input (a whole SD-1.4 step on a CPU-emulated adapter takes minutes).
fn median_secs_cold<const D: usize>(
    runs: usize,
    device: &Device,
    mut f: impl FnMut() -> Tensor<D>,
) -> anyhow::Result<(f64, Tensor<D>)> {
    let mut once = || -> anyhow::Result<(f64, Tensor<D>)> {
        let t = Instant::now();
        let out = f();
        device.sync().map_err(|e| anyhow::anyhow!("device sync: {e:?}"))?;
        Ok((t.elapsed().as_secs_f64(), out))
    };
    let mut times = Vec::with_capacity(runs.max(1));
    let mut last = None;
    for _ in 0..runs.max(1) {
        let (secs, out) = once()?;
        times.push(secs);
        last = Some(out);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], last.expect("at least one run")))
}

fn group_norm(channels: usize, device: &Device) -> GroupNorm {
    GroupNorm {
        gamma: Some(Param::from_tensor(Tensor::random([channels], Distribution::Normal(1.0, 0.1), device))),
        beta: Some(Param::from_tensor(Tensor::random([channels], Distribution::Normal(0.0, 0.1), device))),
        num_groups: 32,
        num_channels: channels,
        epsilon: 1e-5,
        affine: true,
    }
}

fn bench_group_norm_silu(quick: bool, runs: usize, device: &Device) -> anyhow::Result<Vec<KernelRow>> {
    // The UNet's ResnetBlock inputs at 512×512 (64×64 latents), batch 2 for guidance.
    let shapes: &[[usize; 4]] = if quick {
        &[[2, 64, 32, 32], [2, 128, 16, 16]]
    } else {
        &[[2, 320, 64, 64], [2, 640, 32, 32], [2, 1280, 16, 16], [2, 1280, 8, 8]]
    };
    let mut rows = Vec::new();
    for &shape in shapes {
        let norm = group_norm(shape[1], device);
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        let wgsl = median_secs(runs, device, || kernels::group_norm_silu(&norm, x.clone(), true))?;
        let burn = median_secs(runs, device, || kernels::group_norm_silu_reference(&norm, x.clone(), true))?;
        rows.push(KernelRow { kernel: "group_norm_silu", shape: format!("{shape:?}, 32 groups"), wgsl, burn });
    }
    Ok(rows)
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, device: &Device) -> burn::nn::conv::Conv2d {
    let p = k / 2;
    burn::nn::conv::Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(burn::nn::PaddingConfig2d::Explicit(p, p, p, p))
        .init(device)
}

fn bench_conv2d(quick: bool, runs: usize, device: &Device) -> anyhow::Result<Vec<KernelRow>> {
    // (input, c_out, kernel, stride): the UNet's resnet convs at 32×32 latents, its stride-2
    // downsampler, a 1×1 shortcut / attention projection, and conv_in; batch 2 for guidance.
    let shapes: &[([usize; 4], usize, usize, usize)] = if quick {
        &[([2, 32, 16, 16], 32, 3, 1), ([2, 32, 16, 16], 64, 1, 1)]
    } else {
        &[
            ([2, 320, 32, 32], 320, 3, 1),
            ([2, 640, 16, 16], 640, 3, 1),
            ([2, 1280, 8, 8], 1280, 3, 1),
            ([2, 1280, 4, 4], 1280, 3, 1),
            ([2, 320, 32, 32], 320, 3, 2),
            ([2, 320, 32, 32], 640, 1, 1),
            ([2, 4, 32, 32], 320, 3, 1),
        ]
    };
    let mut rows = Vec::new();
    for &(shape, c_out, k, stride) in shapes {
        let layer = conv(shape[1], c_out, k, stride, device);
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        let wgsl =
            median_secs(runs, device, || kernels::conv2d_wgsl(&layer, x.clone()).expect("the kernel covers it"))?;
        let burn = median_secs(runs, device, || kernels::conv2d_reference(&layer, x.clone()))?;
        let what = format!("{shape:?} → {c_out}, {k}×{k}, stride {stride}");
        rows.push(KernelRow { kernel: "conv2d", shape: what.clone(), wgsl, burn });
        let im2col =
            median_secs(runs, device, || kernels::conv2d_im2col(&layer, x.clone()).expect("im2col covers it"))?;
        rows.push(KernelRow { kernel: "conv2d via im2col + matmul", shape: what.clone(), wgsl: im2col, burn });
        if kernels::conv2d_winograd(&layer, x.clone()).is_some() {
            let winograd =
                median_secs(runs, device, || kernels::conv2d_winograd(&layer, x.clone()).expect("Winograd covers it"))?;
            rows.push(KernelRow { kernel: "conv2d via Winograd F(2×2, 3×3)", shape: what, wgsl: winograd, burn });
        }
    }
    Ok(rows)
}

fn bench_attention(quick: bool, runs: usize, device: &Device) -> anyhow::Result<Vec<KernelRow>> {
    // ([b, heads, n_q, d], n_kv): SD 1.x self-attention at 32×32 and 16×16 latent tokens and
    // cross-attention over 77 text tokens, batch 2 for guidance (8 heads).
    let shapes: &[([usize; 4], usize)] = if quick {
        &[([2, 8, 256, 40], 256), ([2, 8, 256, 40], 77)]
    } else {
        &[([2, 8, 1024, 40], 1024), ([2, 8, 1024, 40], 77), ([2, 8, 256, 80], 256), ([2, 8, 64, 160], 64)]
    };
    let mut rows = Vec::new();
    for &(q_shape, nk) in shapes {
        let [b, h, _, d] = q_shape;
        let q = Tensor::<4>::random(q_shape, Distribution::Normal(0.0, 1.0), device);
        let k = Tensor::<4>::random([b, h, nk, d], Distribution::Normal(0.0, 1.0), device);
        let v = Tensor::<4>::random([b, h, nk, d], Distribution::Normal(0.0, 1.0), device);
        let wgsl = median_secs(runs, device, || kernels::attention(q.clone(), k.clone(), v.clone()))?;
        let burn = median_secs(runs, device, || kernels::attention_reference(q.clone(), k.clone(), v.clone()))?;
        rows.push(KernelRow { kernel: "attention", shape: format!("q {q_shape:?}, {nk} keys"), wgsl, burn });
        // What the UNet runs on wgpu: Burn's two matmuls around the fused scaled softmax.
        let scale = 1.0 / (d as f32).sqrt();
        let k_t = k.clone().swap_dims(2, 3);
        let fused = median_secs(runs, device, || {
            kernels::softmax_scaled(q.clone().matmul(k_t.clone()), scale).matmul(v.clone())
        })?;
        rows.push(KernelRow {
            kernel: "attention via matmul + softmax.wgsl",
            shape: format!("q {q_shape:?}, {nk} keys"),
            wgsl: fused,
            burn,
        });
    }
    if !quick {
        // The UNet's self-attention at 64×64 latents (4096 tokens), as `sd::attention` runs it:
        // in query chunks whose scores fit 128 MiB, with the fused softmax and without.
        let shape = [2, 8, 4096, 40];
        let [q, k, v] = [0; 3].map(|_| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device));
        let mut attend = || genllava::sd::attention::scaled_dot_product_attention(q.clone(), k.clone(), v.clone());
        let wgsl = median_secs(runs, device, &mut attend)?;
        kernels::set_enabled(false);
        let burn = median_secs(runs, device, &mut attend);
        kernels::set_enabled(true);
        rows.push(KernelRow {
            kernel: "attention in query chunks (sd::attention)",
            shape: format!("q {shape:?}, 4096 keys"),
            wgsl,
            burn: burn?,
        });
    }
    Ok(rows)
}

fn bench_softmax(quick: bool, runs: usize, device: &Device) -> anyhow::Result<Vec<KernelRow>> {
    // Attention scores [b, heads, n_q, n_kv], batch 2 for guidance: self-attention at 32×32
    // latents, one 128 MiB query chunk of it at 64×64, cross-attention over 77 tokens.
    let shapes: &[[usize; 4]] = if quick {
        &[[2, 8, 256, 256], [2, 8, 256, 77]]
    } else {
        &[[2, 8, 1024, 1024], [2, 8, 512, 4096], [2, 8, 4096, 77]]
    };
    let mut rows = Vec::new();
    for &shape in shapes {
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        let scale = 1.0 / 40f32.sqrt();
        // The kernel works in place on a buffer of its own, so each run gets a fresh copy (both ways).
        let wgsl = median_secs(runs, device, || kernels::softmax_scaled(x.clone().add_scalar(0.0), scale))?;
        let burn = median_secs(runs, device, || kernels::softmax_scaled_reference(x.clone().add_scalar(0.0), scale))?;
        rows.push(KernelRow { kernel: "softmax (scaled)", shape: format!("{shape:?}"), wgsl, burn });
    }
    Ok(rows)
}

fn bench_ddim_step(quick: bool, runs: usize, device: &Device) -> anyhow::Result<Vec<KernelRow>> {
    use genllava::scheduler::{Ddim, Scheduler, SchedulerConfig};
    // SD 1.x latents (4 channels) at 512×512 and 768×768 for one and four images; the UNet
    // output holds twice as many rows (uncond and cond, guidance on).
    let shapes: &[[usize; 4]] =
        if quick { &[[1, 4, 32, 32]] } else { &[[1, 4, 64, 64], [1, 4, 96, 96], [4, 4, 64, 64]] };
    let mut rows = Vec::new();
    for &shape in shapes {
        let mut ddim = Ddim::new(&SchedulerConfig::sd_v1(), 50)?;
        let t = ddim.timesteps()[10];
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        let pred =
            Tensor::<4>::random([2 * shape[0], shape[1], shape[2], shape[3]], Distribution::Normal(0.0, 1.0), device);
        let mut reference = ddim.clone();
        let wgsl =
            median_secs(runs, device, || ddim.step_guided(pred.clone(), Some(7.5), t, x.clone()).expect("step"))?;
        // Burn's ops as the scheduler runs them off wgpu: the guidance combine, then `step`.
        let burn = median_secs(runs, device, || {
            let eps = genllava::scheduler::guide(pred.clone(), 7.5).expect("guide");
            reference.step(eps, t, x.clone()).expect("step")
        })?;
        rows.push(KernelRow { kernel: "ddim_step + guidance", shape: format!("latents {shape:?}"), wgsl, burn });
    }
    Ok(rows)
}

fn bench_matmul(quick: bool, runs: usize, device: &Device) -> anyhow::Result<Vec<KernelRow>> {
    // (a, b, b transposed): the UNet's products at 32×32 latents, batch 2 for guidance:
    // Winograd's 16 products of a 320-channel resnet conv, a 1×1 conv as im2col's product,
    // attention's scores (k read transposed, in place) and values, a linear projection (its
    // weight broadcast over the batch).
    type Case = (&'static str, Vec<usize>, Vec<usize>, bool);
    let cases: Vec<Case> = if quick {
        vec![("Winograd product", vec![16, 32, 32], vec![16, 32, 128], false)]
    } else {
        vec![
            ("Winograd product", vec![16, 320, 320], vec![16, 320, 512], false),
            ("1×1 conv (im2col product)", vec![640, 320], vec![320, 2048], false),
            ("attention scores, kᵀ in place", vec![2, 8, 1024, 40], vec![2, 8, 1024, 40], true),
            ("attention values", vec![2, 8, 1024, 1024], vec![2, 8, 1024, 40], false),
            ("linear", vec![2, 1024, 320], vec![1, 320, 1280], false),
        ]
    };
    fn time<const D: usize>(
        runs: usize,
        device: &Device,
        a: &[usize],
        b: &[usize],
        transposed: bool,
    ) -> anyhow::Result<(f64, f64)> {
        let normal = Distribution::Normal(0.0, 1.0);
        let a = Tensor::<D>::random(a.to_vec(), normal, device);
        let b = Tensor::<D>::random(b.to_vec(), normal, device);
        let b = if transposed { b.swap_dims(D - 2, D - 1) } else { b };
        let wgsl =
            median_secs(runs, device, || kernels::matmul_wgsl(a.clone(), b.clone()).expect("the kernel covers it"))?;
        let burn = median_secs(runs, device, || a.clone().matmul(b.clone()))?;
        Ok((wgsl, burn))
    }
    let mut rows = Vec::new();
    for (what, a, b, transposed) in cases {
        let (wgsl, burn) = match a.len() {
            2 => time::<2>(runs, device, &a, &b, transposed)?,
            3 => time::<3>(runs, device, &a, &b, transposed)?,
            _ => time::<4>(runs, device, &a, &b, transposed)?,
        };
        let b_shape = if transposed { format!("{b:?}ᵀ") } else { format!("{b:?}") };
        rows.push(KernelRow { kernel: "matmul (f32)", shape: format!("{what}: {a:?} × {b_shape}"), wgsl, burn });
    }
    Ok(rows)
}

fn bench_quant_matmul(quick: bool, runs: usize, device: &Device) -> anyhow::Result<Vec<KernelRow>> {
    use burn::tensor::TensorData;
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
    use genllava::quant::Quant;
    // (rows, k, n): Mistral-7B's attention projection (4096 → 4096) at a decode step (one
    // row) and at prefills of 16 and 64 rows; smaller with --quick. (Its 4096 → 14336 MLP
    // matrix in f32, 235 MB, is over lavapipe's buffer limit.)
    let shapes: &[(usize, usize, usize)] = if quick {
        &[(1, 1024, 1024), (32, 1024, 1024)]
    } else {
        &[(1, 4096, 4096), (16, 4096, 4096), (64, 4096, 4096)]
    };
    let mut rows = Vec::new();
    for &(m, k, n) in shapes {
        let w = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 0.02), device);
        let values = w.to_data().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("weight read-back: {e:?}"))?;
        let wt = w.transpose();
        let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
        // Burn's f32 matmul is the baseline both kernels are measured against.
        let burn = median_secs(runs, device, || x.clone().matmul(wt.clone()))?;
        for quant in [Quant::Q8, Quant::Q4] {
            let q = kernels::QuantMatrix::quantize("bench", &values, [n, k], quant, device)?;
            let wgsl = median_secs(runs, device, || kernels::quant_matmul(x.clone(), &q).expect("shapes checked"))?;
            let shape = format!("x [{m}, {k}], W [{n}, {k}]");
            let kernel = if quant == Quant::Q8 { "matmul_q8 vs f32 matmul" } else { "matmul_q4 vs f32 matmul" };
            rows.push(KernelRow { kernel, shape: shape.clone(), wgsl, burn });
            // Burn's own block-quantized product of the same weight (what `Residency::Quantized`
            // runs in the model's linears): Q8S / Q4S, blocks of 32 along k, f32 scales.
            let value = if quant == Quant::Q8 { QuantValue::Q8S } else { QuantValue::Q4S };
            let scheme = QuantScheme::default()
                .with_value(value)
                .with_store(QuantStore::PackedU32(0))
                .per_block([1, 32], ScaleDtype::F32);
            let burn_q =
                Tensor::<2>::from_data(TensorData::new(values.clone(), [n, k]), device).quantize_dynamic(&scheme);
            let burn_qt = burn_q.transpose();
            let burn_quant = median_secs(runs, device, || x.clone().matmul(burn_qt.clone()))?;
            let kernel =
                if quant == Quant::Q8 { "matmul_q8 vs Burn's Q8S matmul" } else { "matmul_q4 vs Burn's Q4S matmul" };
            rows.push(KernelRow { kernel, shape, wgsl, burn: burn_quant });
        }
    }
    Ok(rows)
}

fn ms(secs: f64) -> String {
    format!("{:.3} ms", secs * 1e3)
}

/// The markdown table, with Burn's time over the kernel's (above 1: the kernel is faster).
fn table(rows: &[KernelRow]) -> String {
    let mut s = String::from("| kernel | input | WGSL kernel | Burn ops | Burn / kernel |\n|---|---|---|---|---|\n");
    for r in rows {
        s += &format!("| {} | {} | {} | {} | {:.2} |\n", r.kernel, r.shape, ms(r.wgsl), ms(r.burn), r.burn / r.wgsl);
    }
    s
}

/// One whole guided diffusion step, as the pipeline runs it: the UNet on the
/// uncond/cond batch of two, then the guided DDIM update; with the kernels
/// (GroupNorm + SiLU in every resnet and output norm, the fused step) and with
/// Burn's ops only ([`kernels::set_enabled`]), on the same device, model and inputs.
/// SD 1.4's UNet (random weights) at `latents` sides (default 32×32 and 64×64); the tiny
/// test UNet at its own size with `--quick`.
fn bench_diffusion_step(
    quick: bool,
    runs: usize,
    latents: &[usize],
    device: &Device,
) -> anyhow::Result<Vec<KernelRow>> {
    use genllava::scheduler::{Ddim, Scheduler, SchedulerConfig};
    use genllava::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
    let (config, latents, label) = if quick {
        if !latents.is_empty() {
            anyhow::bail!("--latents sets the SD-1.4 UNet's latent sides; --quick times the tiny UNet at its own size");
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/unet-tiny/config.json");
        let json: serde_json::Value = serde_json::from_slice(&crate::files::read(&path)?)?;
        let side = json["sample_size"].as_u64().unwrap_or(8) as usize;
        (json, vec![side], "tiny UNet")
    } else {
        let sides = if latents.is_empty() { vec![32, 64] } else { latents.to_vec() };
        if let Some(bad) = sides.iter().find(|&&l| l == 0 || l % 8 != 0) {
            anyhow::bail!("--latents {bad}: SD-1.4's UNet takes latent sides that are positive multiples of 8");
        }
        (crate::bench::sd14_unet(), sides, "SD-1.4 UNet")
    };
    let cfg = UNet2DConditionConfig::from_json(&config.to_string())?;
    let unet = UNet2DConditionModel::load(&cfg, &genllava::VarBuilder::init(0.02, device))?;
    let normal = Distribution::Normal(0.0, 1.0);
    let context = Tensor::<3>::random([2, 77, cfg.cross_attention_dim], normal, device);
    let mut ddim = Ddim::new(&SchedulerConfig::sd_v1(), 50)?;
    let t = ddim.timesteps()[10];
    let mut step = |sample: &Tensor<4>| {
        let batch = Tensor::cat(vec![sample.clone(), sample.clone()], 0);
        let eps = unet.forward_at(batch, t as f32, context.clone()).expect("unet");
        ddim.step_guided(eps, Some(7.5), t, sample.clone()).expect("step")
    };
    // The warm-up (shader compilation, first allocations) runs one step at the smallest
    // latents, every kernel of the step at the same channel counts: one warm-up step at 64×64
    // would cost as much as the timed one.
    let smallest = Tensor::<4>::random([1, cfg.in_channels, 8, 8], normal, device);
    let mut rows = Vec::new();
    for l in latents {
        let sample = Tensor::<4>::random([1, cfg.in_channels, l, l], normal, device);
        let mut timed = |on: bool| -> anyhow::Result<(f64, Tensor<4>)> {
            kernels::set_enabled(on);
            drop(step(&smallest));
            device.sync().map_err(|e| anyhow::anyhow!("device sync: {e:?}"))?;
            let result = median_secs_cold(runs, device, || step(&sample));
            kernels::set_enabled(true);
            result
        };
        let (wgsl, with) = timed(true)?;
        let (burn, without) = timed(false)?;
        // Both ways must compute the same step (a timing of work the device skipped, e.g. a
        // buffer over its limits, would otherwise pass for a fast one).
        let scale = scalar(without.clone().abs().max());
        let diff = scalar(with.sub(without).abs().max());
        if !(scale.is_finite() && scale > 0.0 && diff <= 1e-3 * scale) {
            eprintln!(
                "whole diffusion step at {l}×{l} latents: left out of the table, the output with the kernels differs \
                 from Burn's by {diff:e} (max |x| {scale:e}): the device did not compute it (see the log above)"
            );
            continue;
        }
        rows.push(KernelRow {
            kernel: "whole diffusion step",
            shape: format!("{label}, {l}×{l} latents, guidance (batch 2)"),
            wgsl,
            burn,
        });
    }
    Ok(rows)
}

type Bench<'a> = &'a dyn Fn() -> anyhow::Result<Vec<KernelRow>>;

/// Run every kernel benchmark on `device`, which must take the WGSL path; `only`
/// keeps the kernels whose name contains it; `latents`, the whole step's latent sides.
pub fn run(device: &Device, quick: bool, runs: usize, only: Option<&str>, latents: &[usize]) -> anyhow::Result<String> {
    if !kernels::wgsl_active(device) {
        anyhow::bail!("bench --kernels compares the WGSL kernels with Burn on one wgpu device: pass --device wgpu");
    }
    let benches: [(&str, Bench); 8] = [
        ("group_norm_silu", &|| bench_group_norm_silu(quick, runs, device)),
        ("conv2d", &|| bench_conv2d(quick, runs, device)),
        ("attention", &|| bench_attention(quick, runs, device)),
        ("softmax", &|| bench_softmax(quick, runs, device)),
        ("ddim_step", &|| bench_ddim_step(quick, runs, device)),
        ("matmul_f32", &|| bench_matmul(quick, runs, device)),
        ("matmul_q8, matmul_q4", &|| bench_quant_matmul(quick, runs, device)),
        ("whole diffusion step", &|| bench_diffusion_step(quick, runs, latents, device)),
    ];
    let mut rows = Vec::new();
    for (name, bench) in benches {
        if only.is_none_or(|o| name.contains(o)) {
            rows.extend(bench()?);
        }
    }
    if rows.is_empty() {
        let names: Vec<&str> = benches.iter().map(|(name, _)| *name).collect();
        anyhow::bail!("no kernel benchmark is named like {:?}: {}", only.unwrap_or(""), names.join(", "));
    }
    let adapter = kernels::adapter_name(device).unwrap_or_else(|| "unnamed".into());
    let product = if kernels::wgsl_matmul_preferred(device) { "shaders/matmul.wgsl" } else { "Burn's matmul" };
    Ok(format!(
        "adapter: {adapter}; the UNet's and VAE's products with the kernels on: {product} ({:?})\n\n{}",
        kernels::matmul_choice(),
        table(&rows)
    ))
}
