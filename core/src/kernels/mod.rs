//! Hand-written WGSL kernels for Burn's wgpu backend, each beside the plain-Burn
//! reference it must match.
//!
//! The WGSL lives in the workspace's top-level `shaders/` folder, one kernel per
//! file. With the `wgpu-kernels` cargo feature the functions here launch them on
//! a wgpu device (native Vulkan/Metal/DX12, and browser WebGPU: `genllava-web` turns the
//! feature on for wasm32 and tests every kernel in chromium) through Burn 0.22.1's backend-extension mechanism
//! (`#[backend_extension(Cube)]` plus `burn-wgpu`'s `template` API, which takes a
//! raw WGSL `SourceTemplate`). On every other device, without the feature, and
//! for inputs a kernel does not cover, they run the reference, so callers never
//! need to ask which path ran; [`wgsl_active`] tells benchmarks and tests.

use crate::error::{Error, Result};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
#[cfg(feature = "wgpu-kernels")]
use burn::tensor::DType;
use burn::tensor::{Device, Tensor, activation};

mod qmatmul;
#[cfg(feature = "wgpu-kernels")]
mod wgpu;

pub use qmatmul::{QuantMatrix, quant_matmul, quant_matmul_reference};

/// The process-wide switch of [`set_enabled`].
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turn the WGSL kernels off (every call runs its plain-Burn reference) or back
/// on, for the whole process: how `bench --kernels` times one diffusion step
/// both ways on the same device.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Which matrix product [`matmul`] runs on a wgpu device (process-wide, [`set_matmul`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulChoice {
    /// By the adapter: `shaders/matmul.wgsl` on SwiftShader (the CPU WebGPU of headless
    /// chromium, where it is 4–8× faster than Burn's matmul: `bench --kernels --only
    /// matmul_f32`), Burn's matmul on every other adapter (lavapipe, GPUs: faster there).
    Auto,
    /// Always Burn's matmul.
    Burn,
    /// Always `shaders/matmul.wgsl` where it covers the shapes.
    Wgsl,
}

static MATMUL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Set which product [`matmul`] runs, for the whole process ([`MatmulChoice::Auto`] unless set).
pub fn set_matmul(choice: MatmulChoice) {
    let v = match choice {
        MatmulChoice::Auto => 0,
        MatmulChoice::Burn => 1,
        MatmulChoice::Wgsl => 2,
    };
    MATMUL.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// The product [`matmul`] runs now ([`set_matmul`]).
pub fn matmul_choice() -> MatmulChoice {
    match MATMUL.load(std::sync::atomic::Ordering::Relaxed) {
        1 => MatmulChoice::Burn,
        2 => MatmulChoice::Wgsl,
        _ => MatmulChoice::Auto,
    }
}

/// What the embedder knows of the adapter where wgpu's name for it is empty ([`set_adapter_description`]).
static ADAPTER_DESCRIPTION: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Describe the wgpu adapter for [`adapter_name`] where wgpu leaves its name empty: a browser
/// gives wgpu only `GPUAdapterInfo.description`, which chromium leaves empty, so the web
/// engine passes the info's vendor and architecture (`google swiftshader`) here.
pub fn set_adapter_description(description: &str) {
    let mut d = ADAPTER_DESCRIPTION.lock().unwrap_or_else(|e| e.into_inner());
    *d = description.trim().to_string();
}

/// The wgpu adapter behind `device` as it names itself (`llvmpipe (LLVM 15.0.6, 256 bits)`,
/// `SwiftShader Device (Subzero)`, a GPU's product name), or where that is empty (a browser)
/// the [`set_adapter_description`]; `None` off wgpu, without the `wgpu-kernels` feature, or
/// where neither says anything.
pub fn adapter_name(device: &Device) -> Option<String> {
    #[cfg(feature = "wgpu-kernels")]
    {
        let name = wgpu::adapter_name(device)?;
        if !name.trim().is_empty() {
            return Some(name);
        }
        let d = ADAPTER_DESCRIPTION.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (!d.is_empty()).then_some(d)
    }
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        let _ = device;
        None
    }
}

/// Whether [`matmul`] takes `shaders/matmul.wgsl` on `device` (see [`MatmulChoice`]).
pub fn wgsl_matmul_preferred(device: &Device) -> bool {
    wgsl_active(device)
        && match matmul_choice() {
            MatmulChoice::Burn => false,
            MatmulChoice::Wgsl => true,
            MatmulChoice::Auto => adapter_name(device).is_some_and(|n| n.to_lowercase().contains("swiftshader")),
        }
}

/// `a.matmul(b)`: `shaders/matmul.wgsl` where [`wgsl_matmul_preferred`] and it covers the
/// shapes ([`matmul_wgsl`]), Burn's matmul otherwise. The UNet's and VAE's products
/// (attention, the im2col and Winograd convolutions) go through it.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    if wgsl_matmul_preferred(&a.device())
        && let Some(c) = matmul_wgsl(a.clone(), b.clone())
    {
        return c;
    }
    a.matmul(b)
}

/// `layer.forward(x)` for a `Linear` on `[.., d_in]`: a weight Burn keeps block-quantized
/// (`Residency::Quantized`) through `shaders/matmul_q8.wgsl` / `matmul_q4.wgsl` reading
/// Burn's packed words in place ([`quant_linear_takes_wgsl`]); an f32 one through
/// [`matmul`] where [`wgsl_matmul_preferred`]; `Linear::forward` otherwise. Plus the bias.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let y = if (2..=4).contains(&D) && quant_linear_takes_wgsl(layer, &x) {
        quant_linear_product(layer, x)
    } else if (2..=4).contains(&D) && wgsl_matmul_preferred(&x.device()) {
        matmul(x, layer.weight.val().unsqueeze::<D>())
    } else {
        return layer.forward(x);
    };
    match &layer.bias {
        Some(b) => y.add(b.val().unsqueeze::<D>()),
        None => y,
    }
}

/// Whether [`linear`] multiplies `x` by `layer`'s block-quantized weight with the WGSL
/// kernels: a wgpu device running them ([`wgsl_active`]), f32 `x`, a weight Burn holds as
/// Q8S or Q4S with f32 or f16 scales. Measured against Burn's own quantized product (`bench --kernels --only
/// matmul_q`, Mistral's 4096 × 4096 projection): the kernels win at 1, 16 and 64 rows on
/// SwiftShader (2.0–14×) and for Q4S on lavapipe (2.7–13×); Burn's Q8S wins on lavapipe
/// from 64 rows (0.32×), so Q8S takes the kernel there only below 64 rows.
pub fn quant_linear_takes_wgsl<const D: usize>(layer: &Linear, x: &Tensor<D>) -> bool {
    #[cfg(feature = "wgpu-kernels")]
    {
        use burn::tensor::quantization::{QuantValue, ScaleDtype};
        let DType::QFloat(scheme) = layer.weight.dtype() else { return false };
        let device = x.device();
        // f32 scales, or f16 ones (an f16-scale export on a `shader-f16` adapter), read as
        // pairs of halves with `unpack2x16float`.
        let scales = matches!(scheme.scale_dtype(), ScaleDtype::F32 | ScaleDtype::F16);
        if !wgsl_active(&device) || x.dtype() != DType::F32 || !scales {
            return false;
        }
        let rows = x.dims()[..D - 1].iter().product::<usize>();
        if rows == 0 || rows.div_ceil(4) > wgpu::MAX_WORKGROUPS {
            return false;
        }
        match scheme.value {
            QuantValue::Q4S => true,
            QuantValue::Q8S => rows < 64 || wgsl_matmul_preferred(&device),
            _ => false,
        }
    }
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        let _ = (layer, x);
        false
    }
}

/// `x · W` without the bias for [`linear`]'s Burn-quantized weight on the kernels: `x`
/// flattened to rows, multiplied, and shaped back.
fn quant_linear_product<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "wgpu-kernels")]
    {
        let mut dims = x.dims();
        let k = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let y = wgpu::burn_quant_linear(x.reshape([rows, k]), layer.weight.val());
        dims[D - 1] = layer.weight.dims()[1];
        y.reshape(dims)
    }
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        // Not reached (quant_linear_takes_wgsl is false without the kernels): Burn's product.
        x.matmul(layer.weight.val().unsqueeze::<D>())
    }
}

/// How many products [`linear`] sent to the WGSL kernels with a Burn-quantized weight in a
/// layout they do not read, so Burn's dequantize + matmul ran instead (0 where unused).
pub fn quant_linear_fallbacks() -> usize {
    #[cfg(feature = "wgpu-kernels")]
    {
        wgpu::quant_linear_fallbacks()
    }
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        0
    }
}

/// How many products [`linear`] computed with the WGSL kernels from a Burn-quantized
/// weight (0 where unused).
pub fn quant_linear_launches() -> usize {
    #[cfg(feature = "wgpu-kernels")]
    {
        wgpu::quant_linear_launches()
    }
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        0
    }
}

/// `shaders/matmul.wgsl` itself: `a` `[.., m, k]` times `b` `[.., k, n]`, rank 2 to 4, any
/// strides (transposed views are read in place), batch dims equal or 1; `None` where it
/// does not run (not a wgpu device, the feature off, not f32, shapes it does not cover).
pub fn matmul_wgsl<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Option<Tensor<D>> {
    #[cfg(feature = "wgpu-kernels")]
    if wgsl_active(&a.device())
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && wgpu::matmul_fits(&a.dims(), &b.dims())
    {
        return Some(wgpu::matmul(a, b));
    }
    let _ = (a, b);
    None
}

/// Whether tensors on `device` run the WGSL kernels: the `wgpu-kernels`
/// feature is on, they are not switched off ([`set_enabled`]) and `device` is a
/// wgpu device without autodiff.
pub fn wgsl_active(device: &Device) -> bool {
    #[cfg(feature = "wgpu-kernels")]
    {
        ENABLED.load(std::sync::atomic::Ordering::Relaxed) && wgpu::is_wgpu(device)
    }
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        let _ = device;
        false
    }
}

/// `silu(norm(x))` (or `norm(x)` when `silu` is false) for an affine
/// `GroupNorm` on an `[N, C, H, W]` input: one fused kernel on wgpu
/// (`shaders/group_norm_silu.wgsl`), [`group_norm_silu_reference`] elsewhere.
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>, silu: bool) -> Tensor<4> {
    #[cfg(feature = "wgpu-kernels")]
    if wgsl_active(&x.device()) {
        if let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) {
            let [n, c, _, _] = x.dims();
            let groups = norm.num_groups;
            let f32s = [x.dtype(), gamma.val().dtype(), beta.val().dtype()].iter().all(|d| *d == DType::F32);
            if f32s && groups > 0 && c == norm.num_channels && c % groups == 0 && n * groups <= wgpu::MAX_WORKGROUPS {
                return wgpu::group_norm_silu(x, gamma.val(), beta.val(), groups, norm.epsilon as f32, silu);
            }
        }
    }
    group_norm_silu_reference(norm, x, silu)
}

/// `conv.forward(x)` for a 2-D convolution on `[N, C, H, W]`, for groups 1, dilation 1
/// and explicit or no padding on wgpu: 3×3 kernels at stride 1 (the UNet's and VAE's
/// resnet convs) by Winograd F(2×2, 3×3) ([`conv2d_winograd`]), the others as the patch matrix built by `shaders/im2col.wgsl`
/// times the weight on [`matmul`] ([`conv2d_im2col`]; 1.7–4.9× faster than Burn's conv
/// on every SD-1.4 shape on lavapipe, `bench --kernels --only conv2d`), or where that does
/// not cover it the implicit-GEMM kernel `shaders/conv2d.wgsl` (at least 256 output pixels,
/// batch included); [`conv2d_reference`] elsewhere.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "wgpu-kernels")]
    if winograd_pays(conv, x.dims())
        && let Some(y) = conv2d_winograd(conv, x.clone())
    {
        return y;
    }
    #[cfg(feature = "wgpu-kernels")]
    if let Some(y) = conv2d_im2col(conv, x.clone()) {
        return y;
    }
    #[cfg(feature = "wgpu-kernels")]
    if let Some(y) = conv2d_launch(conv, x.clone(), wgpu::CONV2D_MIN_PIXELS) {
        return y;
    }
    conv2d_reference(conv, x)
}

/// `shaders/conv2d.wgsl` itself, at any size: `None` where it does not run (not a
/// wgpu device, the feature off, a dtype, padding mode or size it does not cover).
/// [`conv2d`] calls it where [`conv2d_im2col`] does not run; the parity tests call it directly.
pub fn conv2d_wgsl(conv: &Conv2d, x: Tensor<4>) -> Option<Tensor<4>> {
    #[cfg(feature = "wgpu-kernels")]
    return conv2d_launch(conv, x, 0);
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        let _ = (conv, x);
        None
    }
}

/// The convolution as `shaders/im2col.wgsl` (the patch matrix, in chunks of at most
/// 128 MiB) followed by [`matmul`] and the bias: `None` where it does not run (not a
/// wgpu device, the feature off, a dtype, padding mode or size it does not cover).
pub fn conv2d_im2col(conv: &Conv2d, x: Tensor<4>) -> Option<Tensor<4>> {
    #[cfg(feature = "wgpu-kernels")]
    {
        let geometry = conv2d_geometry(conv, x.dims())?;
        let (weight, bias) = f32_weights(conv, &x)?;
        if !wgsl_active(&x.device()) || !wgpu::im2col_fits(x.dims(), weight.dims(), [geometry[4], geometry[5]]) {
            return None;
        }
        Some(wgpu::conv2d_im2col(x, weight, bias, geometry))
    }
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        let _ = (conv, x);
        None
    }
}

/// The convolution by Winograd F(2×2, 3×3) for a 3×3 kernel at stride 1: the weight and
/// input transforms (`shaders/winograd_weight.wgsl`, `shaders/winograd_input.wgsl`), 16
/// products in one batched [`matmul`] (4 multiplies per output pixel and input channel
/// where [`conv2d_im2col`]'s product has 9), the output transform and bias
/// (`shaders/winograd_output.wgsl`), in chunks of at most 128 MiB: `None` where it does not
/// run (not a wgpu device, the feature off, another kernel size or stride, a dtype, padding
/// mode or size it does not cover).
pub fn conv2d_winograd(conv: &Conv2d, x: Tensor<4>) -> Option<Tensor<4>> {
    conv2d_winograd_in_chunks(conv, x, MAX_CHUNK_BYTES)
}

/// Whether [`conv2d`] takes Winograd over im2col for `conv` on an `x` shaped `x`: at least
/// [`WINOGRAD_MIN_PIXELS`] output pixels (batch included) and [`WINOGRAD_MIN_CHANNELS`]
/// input channels. Below them the transforms cost more than the multiplies they save
/// (`bench --kernels --only conv2d` on lavapipe, SD-1.4's shapes: 2.4× im2col's speed on
/// 32×32 and 16×16 maps, even on 8×8, 0.55× on 4×4 and on the 4-channel `conv_in`).
#[cfg_attr(not(feature = "wgpu-kernels"), allow(dead_code))]
fn winograd_pays(conv: &Conv2d, x: [usize; 4]) -> bool {
    let pixels = conv2d_geometry(conv, x).map_or(0, |g| x[0] * g[4] * g[5]);
    pixels >= WINOGRAD_MIN_PIXELS && x[1] >= WINOGRAD_MIN_CHANNELS
}

/// See [`winograd_pays`].
pub const WINOGRAD_MIN_PIXELS: usize = 512;
/// See [`winograd_pays`].
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// The largest buffer the im2col and Winograd paths build at once (a patch-matrix chunk, a
/// transform or a product): WebGPU's default `maxStorageBufferBindingSize` (128 MiB), so
/// every chunk binds on any adapter.
pub const MAX_CHUNK_BYTES: usize = 128 << 20;

/// [`conv2d_winograd`] with no transform or product chunk over `max_bytes` (at least 64
/// bytes per input channel): how the tests split small convolutions into many chunks.
pub fn conv2d_winograd_in_chunks(conv: &Conv2d, x: Tensor<4>, max_bytes: usize) -> Option<Tensor<4>> {
    #[cfg(feature = "wgpu-kernels")]
    {
        let geometry = conv2d_geometry(conv, x.dims())?;
        let (weight, bias) = f32_weights(conv, &x)?;
        let [c_out, _, kh, kw] = weight.dims();
        let shape = kh == 3 && kw == 3 && geometry[0] == 1 && geometry[1] == 1;
        if !shape
            || !wgsl_active(&x.device())
            || !wgpu::winograd_fits(x.dims(), c_out, [geometry[4], geometry[5]], max_bytes)
        {
            return None;
        }
        Some(wgpu::conv2d_winograd(x, weight, bias, geometry, max_bytes))
    }
    #[cfg(not(feature = "wgpu-kernels"))]
    {
        let _ = (conv, x, max_bytes);
        None
    }
}

/// `conv`'s weight and bias when they and `x` are f32 and the bias has one value per
/// output channel: what the im2col and Winograd paths take.
#[cfg(feature = "wgpu-kernels")]
fn f32_weights(conv: &Conv2d, x: &Tensor<4>) -> Option<(Tensor<4>, Option<Tensor<1>>)> {
    let weight = conv.weight.val();
    let bias = conv.bias.as_ref().map(|b| b.val());
    let f32s = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32 && b.dims() == [weight.dims()[0]]);
    f32s.then_some((weight, bias))
}

/// The conv kernel on `x` when it covers it and the output has at least
/// `min_pixels` pixels (batch included).
#[cfg(feature = "wgpu-kernels")]
fn conv2d_launch(conv: &Conv2d, x: Tensor<4>, min_pixels: usize) -> Option<Tensor<4>> {
    let geometry = conv2d_geometry(conv, x.dims())?;
    let [n, c, h, w] = x.dims();
    if n * geometry[4] * geometry[5] < min_pixels || !wgsl_active(&x.device()) {
        return None;
    }
    let weight = conv.weight.val();
    let [c_out, _, kh, kw] = weight.dims();
    // One bit per tap marks the taps inside the input.
    if kh * kw > 32 {
        return None;
    }
    let bias = match &conv.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([c_out], &x.device()),
    };
    let out = [n, c_out, geometry[4], geometry[5]];
    let f32s = [x.dtype(), weight.dtype(), bias.dtype()].iter().all(|d| *d == DType::F32);
    if f32s && bias.dims() == [c_out] && wgpu::conv2d_fits([n, c, h, w], out, weight.shape().num_elements()) {
        return Some(wgpu::conv2d(x, weight, bias, geometry));
    }
    None
}

/// `[stride h, stride w, pad top, pad left, h_out, w_out]` of `conv` on an `x`
/// shaped `[n, c, h, w]`, when the kernels cover it (groups 1, dilation 1, the
/// weight's input channels equal to `c`, explicit or no padding, a non-empty output).
#[cfg_attr(not(feature = "wgpu-kernels"), allow(dead_code))]
fn conv2d_geometry(conv: &Conv2d, x: [usize; 4]) -> Option<[usize; 6]> {
    let [_, c, h, w] = x;
    let [_, c_in, kh, kw] = conv.weight.dims();
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Same => return None,
    };
    let [sh, sw] = conv.stride;
    if conv.groups != 1 || conv.dilation != [1, 1] || c_in != c || sh == 0 || sw == 0 {
        return None;
    }
    let (hp, wp) = (h + top + bottom, w + left + right);
    if hp < kh || wp < kw || kh == 0 || kw == 0 {
        return None;
    }
    Some([sh, sw, top, left, (hp - kh) / sh + 1, (wp - kw) / sw + 1])
}

/// The plain-Burn convolution: `Conv2d::forward`.
pub fn conv2d_reference(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv.forward(x)
}

/// `softmax(scale · x)` along the last dim (attention's scores, `scale` = 1/√d > 0): one
/// two-pass kernel on wgpu (`shaders/softmax.wgsl`, in place where the buffer is the
/// tensor's own), [`softmax_scaled_reference`] elsewhere.
pub fn softmax_scaled<const D: usize>(x: Tensor<D>, scale: f32) -> Tensor<D> {
    #[cfg(feature = "wgpu-kernels")]
    if wgsl_active(&x.device()) && x.dtype() == DType::F32 && scale > 0.0 && wgpu::softmax_fits(&x.dims()) {
        return wgpu::softmax_scaled(x, scale);
    }
    softmax_scaled_reference(x, scale)
}

/// Burn's `softmax(scale · x)` along the last dim.
pub fn softmax_scaled_reference<const D: usize>(x: Tensor<D>, scale: f32) -> Tensor<D> {
    activation::softmax(x.mul_scalar(scale), D - 1)
}

/// Scaled dot-product attention `softmax(q kᵀ / √d) v` on `q` `[batch, heads, n_q, d]`,
/// `k`, `v` `[batch, heads, n_kv, d]` → `[batch, heads, n_q, d]`: one flash-style
/// kernel on wgpu (`shaders/attention.wgsl`, the scores never stored),
/// [`attention_reference`] elsewhere.
///
/// Not called by the UNet: on lavapipe it is 2–7× slower than Burn's ops (README,
/// `bench --kernels`), so `sd::attention` runs Burn's two matmuls around
/// [`softmax_scaled`] instead.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "wgpu-kernels")]
    if wgsl_active(&q.device())
        && [q.dtype(), k.dtype(), v.dtype()].iter().all(|d| *d == DType::F32)
        && k.dims() == v.dims()
        && k.dims()[3] == q.dims()[3]
        && wgpu::attention_fits(q.dims(), k.dims())
    {
        return wgpu::attention(q, k, v);
    }
    attention_reference(q, k, v)
}

/// The plain-Burn attention: a scores matmul, softmax, a values matmul (what
/// `sd::attention::scaled_dot_product_attention` runs).
pub fn attention_reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let d = q.dims()[3];
    let scores = q.mul_scalar(1.0 / (d as f64).sqrt()).matmul(k.swap_dims(2, 3));
    activation::softmax(scores, 3).matmul(v)
}

/// One DDIM step (eta 0) as a linear map of the sample `x` and the guided model
/// output `m`: `x0 = clip(x0_sample·x + x0_output·m)`, `eps = eps_sample·x + eps_output·m`,
/// `out = prev_x0·x0 + prev_eps·eps` (see `shaders/ddim_step.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimCoefficients {
    pub x0_sample: f32,
    pub x0_output: f32,
    pub eps_sample: f32,
    pub eps_output: f32,
    /// `sqrt(ᾱ_prev)`.
    pub prev_x0: f32,
    /// `sqrt(1 - ᾱ_prev)`.
    pub prev_eps: f32,
    /// Clamp `x0` to `[-r, r]`.
    pub clip: Option<f32>,
}

/// Check the UNet output against the latents: `[2b, …]` (`[uncond; cond]`) when
/// guided, `[b, …]` otherwise, with the same `[c, h, w]`.
fn check_step_shapes(pred: &Tensor<4>, guided: bool, sample: &Tensor<4>) -> Result<()> {
    let ([pb, pc, ph, pw], [b, c, h, w]) = (pred.dims(), sample.dims());
    let want = if guided { 2 * b } else { b };
    if (pb, pc, ph, pw) != (want, c, h, w) {
        return Err(Error::input(
            "model output",
            format!(
                "shape {:?} does not fit latents {:?} (expected [{want}, {c}, {h}, {w}])",
                pred.dims(),
                sample.dims()
            ),
        ));
    }
    Ok(())
}

/// A DDIM step fused with the classifier-free guidance combine: `pred` is the
/// UNet output for `[uncond; cond]` when `guidance` is `Some(g)` (`m = u + g(c - u)`),
/// the plain output otherwise. One elementwise kernel on wgpu
/// (`shaders/ddim_step.wgsl`), [`guided_ddim_step_reference`] elsewhere.
pub fn guided_ddim_step(
    pred: Tensor<4>,
    guidance: Option<f32>,
    sample: Tensor<4>,
    step: DdimCoefficients,
) -> Result<Tensor<4>> {
    check_step_shapes(&pred, guidance.is_some(), &sample)?;
    #[cfg(feature = "wgpu-kernels")]
    if wgsl_active(&sample.device())
        && pred.dtype() == DType::F32
        && sample.dtype() == DType::F32
        && sample.shape().num_elements() <= wgpu::MAX_WORKGROUPS * 256
    {
        return Ok(wgpu::guided_ddim_step(pred, guidance, sample, step));
    }
    guided_ddim_step_reference(pred, guidance, sample, step)
}

/// The plain-Burn guidance combine and DDIM update.
pub fn guided_ddim_step_reference(
    pred: Tensor<4>,
    guidance: Option<f32>,
    sample: Tensor<4>,
    step: DdimCoefficients,
) -> Result<Tensor<4>> {
    check_step_shapes(&pred, guidance.is_some(), &sample)?;
    let m = match guidance {
        Some(g) => {
            let b = sample.dims()[0];
            let (uncond, cond) = (pred.clone().narrow(0, 0, b), pred.narrow(0, b, b));
            uncond.clone().add(cond.sub(uncond).mul_scalar(g))
        }
        None => pred,
    };
    let x0 = sample.clone().mul_scalar(step.x0_sample).add(m.clone().mul_scalar(step.x0_output));
    let x0 = match step.clip {
        Some(r) => x0.clamp(-r, r),
        None => x0,
    };
    let eps = sample.mul_scalar(step.eps_sample).add(m.mul_scalar(step.eps_output));
    Ok(x0.mul_scalar(step.prev_x0).add(eps.mul_scalar(step.prev_eps)))
}

/// The plain-Burn path the kernel replaces: `GroupNorm::forward`, then `silu`.
pub fn group_norm_silu_reference(norm: &GroupNorm, x: Tensor<4>, silu: bool) -> Tensor<4> {
    let y = norm.forward(x);
    if silu { activation::silu(y) } else { y }
}
