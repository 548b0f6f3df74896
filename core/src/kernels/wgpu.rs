//! Launching the `shaders/*.wgsl` kernels on Burn's cubecl backend.
//!
//! `#[backend_extension(Cube)]` generates the routing from Burn's `Dispatch`
//! tensors to `CubeBackend` primitives (`CubeTensor`: a cubecl client, a buffer
//! handle, shape and strides). The kernels are raw WGSL handed to cubecl as
//! precompiled source (`KernelSource` with `lang() == "wgsl"`), so naga compiles
//! them as written; their pipeline layout comes from the shader, so each binding
//! declared there must be bound here, in order, and used by the shader.

use burn::backend::wgpu::{CubeBackend, CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{
    Backend, DispatchDevice, backend_extension,
    tensor::{FloatTensor, IntTensor, QuantizedTensor},
};
use burn::tensor::{DType, Device, Shape, Tensor};
use cubecl::prelude::{CubeCount, CubeDim, KernelId};
use cubecl::server::KernelArguments;

/// WebGPU's guaranteed limit on workgroups along one dispatch dimension.
pub const MAX_WORKGROUPS: usize = 65_535;

/// A wgpu device (not CUDA or another cubecl runtime, not autodiff).
pub fn is_wgpu(device: &Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Cube(cubecl::Device::Wgpu(_)))
}

/// The kernels, as operations of Burn's backend.
#[backend_extension(Cube)]
pub trait WgslKernels: Backend {
    /// See `shaders/group_norm_silu.wgsl`.
    fn group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> FloatTensor<Self>;

    /// See `shaders/ddim_step.wgsl`; `coefficients`: `[g, a0, b0, a1, b1, prev_x0, prev_eps, r]`.
    fn guided_ddim_step(
        pred: FloatTensor<Self>,
        sample: FloatTensor<Self>,
        guided: bool,
        clip: bool,
        coefficients: [f32; 8],
    ) -> FloatTensor<Self>;

    /// See `shaders/conv2d.wgsl`: `x` `[n, c_in, h, w]`, `weight` `[c_out, c_in, kh, kw]`,
    /// `bias` `[c_out]`; `geometry`: `[stride h, stride w, pad top, pad left, h_out, w_out]`.
    fn conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: [usize; 6],
    ) -> FloatTensor<Self>;

    /// See `shaders/im2col.wgsl`: `x` `[n, c_in, h, w]` → the patch matrix's columns
    /// `q0 .. q0 + nq`, `[c_in * kh * kw, nq]`; `geometry`: `[kh, kw, stride h, stride w,
    /// pad top, pad left, h_out, w_out]`.
    fn im2col(x: FloatTensor<Self>, geometry: [usize; 8], q0: usize, nq: usize) -> FloatTensor<Self>;

    /// See `shaders/winograd_weight.wgsl`: a `[c_out, c_in, 3, 3]` weight → `U`
    /// `[16, n_co, c_in]` for output channels `co0 .. co0 + n_co`.
    fn winograd_weight(weight: FloatTensor<Self>, co0: usize, n_co: usize) -> FloatTensor<Self>;

    /// See `shaders/winograd_input.wgsl`: `x` `[n, c_in, h, w]` → `V` `[16, c_in, nt]` for
    /// tiles `t0 .. t0 + nt`; `tiles`: `[tiles down, tiles across, pad top, pad left]`.
    fn winograd_input(x: FloatTensor<Self>, tiles: [usize; 4], t0: usize, nt: usize) -> FloatTensor<Self>;

    /// See `shaders/winograd_output.wgsl`: the products `M` `[16, n_co, nt]` of tiles
    /// `t0 ..` and output channels `co0 ..`, plus `bias` `[c_out]`, written into `y`
    /// `[n, c_out, h_out, w_out]` (in place where `y`'s buffer is its own), which is returned;
    /// `tiles`: `[tiles down, tiles across]`.
    fn winograd_output(
        m: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        y: FloatTensor<Self>,
        tiles: [usize; 2],
        t0: usize,
        co0: usize,
    ) -> FloatTensor<Self>;

    /// See `shaders/matmul.wgsl`: `a` `[.., m, k]` times `b` `[.., k, n]` (rank 2 to 4, each batch
    /// dim equal in both or 1 in one, any strides) → a contiguous `[.., m, n]`.
    fn matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;

    /// See `shaders/softmax.wgsl`: `softmax(scale · x)` along the last dim of `x`, in
    /// place when `x`'s buffer is its own.
    fn softmax_scaled(x: FloatTensor<Self>, scale: f32) -> FloatTensor<Self>;

    /// See `shaders/attention.wgsl`.
    fn attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self>;

    /// See `shaders/matmul_q8.wgsl` (`q4` false) and `shaders/matmul_q4.wgsl`:
    /// `x` `[m, k]`, `w` packed words `[n, k / 4 or 8]`, `scales` `[n, k / 32]` → `[m, n]`.
    fn matmul_quant(x: FloatTensor<Self>, w: IntTensor<Self>, scales: FloatTensor<Self>, q4: bool)
    -> FloatTensor<Self>;

    /// `x` `[m, k]` times the transpose of `w`, a `[n, k]` weight Burn keeps block-quantized:
    /// `shaders/matmul_q8.wgsl` / `matmul_q4.wgsl` reading Burn's own packed words and
    /// scales in place where `w` is Q8S / Q4S, `PackedU32`, blocks of 32 along `k`, f32 or
    /// f16 scales, stored row-major; Burn's dequantize + matmul otherwise (counted in
    /// [`quant_linear_fallbacks`]).
    fn matmul_burn_quant(x: FloatTensor<Self>, w: QuantizedTensor<Self>) -> FloatTensor<Self>;
}

/// A shader of `shaders/` launched as written (no template values).
struct Wgsl {
    name: &'static str,
    source: &'static str,
}

const GROUP_NORM_SILU: Wgsl =
    Wgsl { name: "group_norm_silu", source: include_str!("../../../shaders/group_norm_silu.wgsl") };
const IM2COL: Wgsl = Wgsl { name: "im2col", source: include_str!("../../../shaders/im2col.wgsl") };
const SOFTMAX: Wgsl = Wgsl { name: "softmax", source: include_str!("../../../shaders/softmax.wgsl") };
const WINOGRAD_WEIGHT: Wgsl =
    Wgsl { name: "winograd_weight", source: include_str!("../../../shaders/winograd_weight.wgsl") };
const WINOGRAD_INPUT: Wgsl =
    Wgsl { name: "winograd_input", source: include_str!("../../../shaders/winograd_input.wgsl") };
const WINOGRAD_OUTPUT: Wgsl =
    Wgsl { name: "winograd_output", source: include_str!("../../../shaders/winograd_output.wgsl") };
const MATMUL: Wgsl = Wgsl { name: "matmul", source: include_str!("../../../shaders/matmul.wgsl") };
const DDIM_STEP: Wgsl = Wgsl { name: "ddim_step", source: include_str!("../../../shaders/ddim_step.wgsl") };

impl KernelSource for Wgsl {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(self.source)
    }
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(self.name)
    }
    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// `shaders/attention.wgsl` for one head dim.
struct Attention {
    head_dim: usize,
    keys_per_tile: usize,
}

impl Attention {
    fn new(head_dim: usize) -> Self {
        // Two tiles of `keys_per_tile * head_dim` floats within WebGPU's 16 KiB of workgroup memory.
        Self { head_dim, keys_per_tile: (2048 / head_dim).clamp(1, 32) }
    }
}

impl KernelSource for Attention {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(include_str!("../../../shaders/attention.wgsl"))
            .register("d", self.head_dim.to_string())
            .register("bc", self.keys_per_tile.to_string())
            .register("tile", (self.head_dim * self.keys_per_tile).to_string())
    }
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.head_dim, self.keys_per_tile))
    }
    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// `shaders/conv2d.wgsl` with `pixels` output pixels (`{{ px }}`) and `channels` output
/// channels (`{{ co }}`) per invocation.
struct Conv2dKernel {
    pixels: usize,
    channels: usize,
}

impl KernelSource for Conv2dKernel {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(include_str!("../../../shaders/conv2d.wgsl"))
            .register("px", self.pixels.to_string())
            .register("co", self.channels.to_string())
    }
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.pixels, self.channels))
    }
    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Query rows per workgroup of `shaders/attention.wgsl`.
const ATTENTION_ROWS: usize = 64;

/// `shaders/matmul_q8.wgsl` or `shaders/matmul_q4.wgsl` for `rows` rows of x per invocation.
struct MatmulQuant {
    q4: bool,
    rows: usize,
    /// Burn's Q4S nibbles (two's complement) rather than the web format's (q + 8).
    signed: bool,
    /// f16 scales (pairs in `u32` words) rather than f32.
    half_scales: bool,
}

impl KernelSource for MatmulQuant {
    fn source(&self) -> SourceTemplate {
        let wgsl = if self.q4 {
            include_str!("../../../shaders/matmul_q4.wgsl")
        } else {
            include_str!("../../../shaders/matmul_q8.wgsl")
        };
        SourceTemplate::new(wgsl)
            .register("rows", self.rows.to_string())
            .register("tile", (self.rows * 8).to_string())
            .register("signed", self.signed.to_string())
            .register("half_scales", self.half_scales.to_string())
            .register("scale_word", if self.half_scales { "u32" } else { "f32" })
    }
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.q4, self.rows, self.signed, self.half_scales))
    }
    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// A storage buffer of `u32` parameters.
fn params(x: &CubeTensor, words: &[u32]) -> cubecl::server::Handle {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    x.client.create_from_slice(&bytes)
}

/// An uninitialised contiguous f32 output shaped like `shape`, on `x`'s device.
fn empty_like(x: &CubeTensor, shape: Shape) -> CubeTensor {
    let handle = x.client.empty(shape.num_elements() * core::mem::size_of::<f32>());
    CubeTensor::new_contiguous(x.client.clone(), x.device.clone(), shape, handle, DType::F32)
}

/// `groups` (> 0) workgroups as a 2-D dispatch: at most [`MAX_WORKGROUPS`] along x, the
/// rest in rows along y; also returns the count along x, by which the shaders number them.
fn spread(groups: usize) -> ((u32, u32), usize) {
    let along_x = groups.min(MAX_WORKGROUPS);
    ((along_x as u32, groups.div_ceil(along_x) as u32), along_x)
}

/// Launch `kernel` with `threads` invocations per workgroup over `workgroups`, binding
/// `buffers` in order and then the `u32` parameters (the shaders' binding order).
fn launch(
    kernel: impl KernelSource + 'static,
    threads: u32,
    workgroups: (u32, u32),
    buffers: &[&CubeTensor],
    parameters: &[u32],
) {
    launch_3d(kernel, threads, (workgroups.0, workgroups.1, 1), buffers, parameters)
}

/// [`launch`] over a 3-D grid of workgroups.
fn launch_3d(
    kernel: impl KernelSource + 'static,
    threads: u32,
    workgroups: (u32, u32, u32),
    buffers: &[&CubeTensor],
    parameters: &[u32],
) {
    let client = &buffers[0].client;
    let p = params(buffers[0], parameters);
    let args = buffers
        .iter()
        .fold(KernelArguments::new(), |args, t| args.with_buffer(t.handle.clone().binding()))
        .with_buffer(p.binding());
    let kernel = SourceKernel::new(kernel, CubeDim::new_1d(threads));
    client.launch(Box::new(kernel), CubeCount::Static(workgroups.0, workgroups.1, workgroups.2), args);
}

impl WgslKernels for CubeBackend {
    fn group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> FloatTensor<Self> {
        let (x, gamma, beta) = (into_contiguous(x), into_contiguous(gamma), into_contiguous(beta));
        let shape = x.meta.shape().clone();
        let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3]);
        let out = empty_like(&x, shape);
        let p = [groups as u32, (c / groups) as u32, hw as u32, eps.to_bits(), silu as u32];
        launch(GROUP_NORM_SILU, 256, ((n * groups) as u32, 1), &[&x, &gamma, &beta, &out], &p);
        out
    }

    fn guided_ddim_step(
        pred: FloatTensor<Self>,
        sample: FloatTensor<Self>,
        guided: bool,
        clip: bool,
        coefficients: [f32; 8],
    ) -> FloatTensor<Self> {
        let (pred, sample) = (into_contiguous(pred), into_contiguous(sample));
        let shape = sample.meta.shape().clone();
        let n = shape.num_elements();
        let out = empty_like(&sample, shape);
        let mut words = vec![n as u32, guided as u32, clip as u32];
        words.extend(coefficients.iter().map(|c| c.to_bits()));
        launch(DDIM_STEP, 256, (n.div_ceil(256) as u32, 1), &[&pred, &sample, &out], &words);
        out
    }

    fn conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: [usize; 6],
    ) -> FloatTensor<Self> {
        let (x, weight, bias) = (into_contiguous(x), into_contiguous(weight), into_contiguous(bias));
        let (xs, ws) = (x.meta.shape().clone(), weight.meta.shape().clone());
        let [sh, sw, ph, pw, hout, wout] = geometry;
        let (n, cout) = (xs[0], ws[0]);
        let out = empty_like(&x, Shape::new([n, cout, hout, wout]));
        let p = [n, xs[1], xs[2], xs[3], cout, hout, wout, ws[2], ws[3], sh, sw, ph, pw].map(|v| v as u32);
        let (pixels, channels) = conv2d_blocking(n * hout * wout);
        let workgroups = ((n * hout * wout).div_ceil(64 * pixels) as u32, cout.div_ceil(channels) as u32);
        launch(Conv2dKernel { pixels, channels }, 64, workgroups, &[&x, &weight, &bias, &out], &p);
        out
    }

    fn im2col(x: FloatTensor<Self>, geometry: [usize; 8], q0: usize, nq: usize) -> FloatTensor<Self> {
        let x = into_contiguous(x);
        let xs = x.meta.shape().clone();
        let [kh, kw, sh, sw, ph, pw, hout, wout] = geometry;
        let cin = xs[1];
        let out = empty_like(&x, Shape::new([cin * kh * kw, nq]));
        let p = [cin, xs[2], xs[3], hout, wout, kh, kw, sh, sw, ph, pw, q0, nq].map(|v| v as u32);
        launch(IM2COL, 256, (nq.div_ceil(256) as u32, cin as u32), &[&x, &out], &p);
        out
    }

    fn winograd_weight(weight: FloatTensor<Self>, co0: usize, n_co: usize) -> FloatTensor<Self> {
        let weight = into_contiguous(weight);
        let cin = weight.meta.shape()[1];
        let out = empty_like(&weight, Shape::new([16, n_co, cin]));
        let (workgroups, along_x) = spread((n_co * cin).div_ceil(256));
        launch(WINOGRAD_WEIGHT, 256, workgroups, &[&weight, &out], &[cin, co0, n_co, along_x].map(|v| v as u32));
        out
    }

    fn winograd_input(x: FloatTensor<Self>, tiles: [usize; 4], t0: usize, nt: usize) -> FloatTensor<Self> {
        let x = into_contiguous(x);
        let xs = x.meta.shape().clone();
        let [th, tw, pt, pl] = tiles;
        let cin = xs[1];
        let out = empty_like(&x, Shape::new([16, cin, nt]));
        let p = [cin, xs[2], xs[3], th, tw, pt, pl, t0, nt].map(|v| v as u32);
        launch(WINOGRAD_INPUT, 256, (nt.div_ceil(256) as u32, cin as u32), &[&x, &out], &p);
        out
    }

    fn winograd_output(
        m: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        y: FloatTensor<Self>,
        tiles: [usize; 2],
        t0: usize,
        co0: usize,
    ) -> FloatTensor<Self> {
        let (m, bias) = (into_contiguous(m), into_contiguous(bias));
        // In place when nothing else holds the buffer (the output this conv allocated).
        let y = if y.can_mut() && y.is_contiguous_buffer() { y } else { into_contiguous(y).copy() };
        let (ms, ys) = (m.meta.shape().clone(), y.meta.shape().clone());
        let (n_co, nt) = (ms[1], ms[2]);
        let p = [ys[1], ys[2], ys[3], tiles[0], tiles[1], t0, nt, co0, n_co].map(|v| v as u32);
        launch(WINOGRAD_OUTPUT, 256, (nt.div_ceil(256) as u32, n_co as u32), &[&m, &bias, &y], &p);
        y
    }

    fn matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let (a_shape, b_shape) = (a.meta.shape().clone(), b.meta.shape().clone());
        let rank = a_shape.num_dims();
        let (m, k, n) = (a_shape[rank - 2], a_shape[rank - 1], b_shape[rank - 1]);
        let (a_batch, a_strides) = batch_view(&a);
        let (b_batch, b_strides) = batch_view(&b);
        let batch = [a_batch[0].max(b_batch[0]), a_batch[1].max(b_batch[1])];
        let mut dims: Vec<usize> = (0..rank - 2).map(|d| a_shape[d].max(b_shape[d])).collect();
        dims.extend([m, n]);
        let out = empty_like(&a, Shape::from(dims));
        let p = [[m, n, k, batch[1]], a_strides, b_strides].concat().iter().map(|&v| v as u32).collect::<Vec<_>>();
        let workgroups = (n.div_ceil(32) as u32, m.div_ceil(32) as u32, (batch[0] * batch[1]) as u32);
        launch_3d(MATMUL, 64, workgroups, &[&a, &b, &out], &p);
        out
    }

    fn softmax_scaled(x: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        let x = into_contiguous(x);
        let shape = x.meta.shape().clone();
        let cols = shape[shape.num_dims() - 1];
        let rows = shape.num_elements() / cols.max(1);
        // In place when nothing else holds the buffer (the scores a matmul just wrote).
        let data = if x.can_mut() && x.is_contiguous_buffer() { x } else { x.copy() };
        let (workgroups, along_x) = spread(rows.div_ceil(64));
        launch(SOFTMAX, 64, workgroups, &[&data], &[rows as u32, cols as u32, scale.to_bits(), along_x as u32]);
        data
    }

    fn attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
        let shape = q.meta.shape().clone();
        let (bh, nq, d) = (shape[0] * shape[1], shape[2], shape[3]);
        let nk = k.meta.shape()[2];
        let out = empty_like(&q, shape);
        let scale = 1.0 / (d as f32).sqrt();
        let workgroups = (nq.div_ceil(ATTENTION_ROWS) as u32, bh as u32);
        let p = [nq as u32, nk as u32, scale.to_bits()];
        launch(Attention::new(d), ATTENTION_ROWS as u32, workgroups, &[&q, &k, &v, &out], &p);
        out
    }

    fn matmul_quant(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
        q4: bool,
    ) -> FloatTensor<Self> {
        let (x, w, scales) = (into_contiguous(x), into_contiguous(w), into_contiguous(scales));
        let n = scales.meta.shape()[0];
        launch_quant(&x, &w, &scales, n, q4, false, false)
    }

    fn matmul_burn_quant(x: FloatTensor<Self>, w: QuantizedTensor<Self>) -> FloatTensor<Self> {
        use burn::backend::ops::{FloatTensorOps, QTensorOps};
        let x = into_contiguous(x);
        let (k, n) = (x.meta.shape()[1], w.meta.shape()[0]);
        if let Some((values, scales, q4, half_scales)) = burn_quant_parts(&w, n, k) {
            QUANT_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Burn's Q4S nibbles are two's complement.
            return launch_quant(&x, &values, &scales, n, q4, q4, half_scales);
        }
        QUANT_FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let w = <CubeBackend as QTensorOps<CubeBackend>>::dequantize(w, burn::tensor::FloatDType::F32);
        let wt = <CubeBackend as FloatTensorOps<CubeBackend>>::float_transpose(w);
        <CubeBackend as FloatTensorOps<CubeBackend>>::float_matmul(x, wt)
    }
}

/// `shaders/matmul_q8.wgsl` / `matmul_q4.wgsl` on contiguous f32 `x` `[m, k]`, packed words
/// `w` and `scales` of an `[n, k]` weight → `[m, n]`; `signed`: Burn's Q4S nibbles,
/// `half_scales`: f16 scales in pairs per word.
fn launch_quant(
    x: &CubeTensor,
    w: &CubeTensor,
    scales: &CubeTensor,
    n: usize,
    q4: bool,
    signed: bool,
    half_scales: bool,
) -> CubeTensor {
    let (m, k) = (x.meta.shape()[0], x.meta.shape()[1]);
    let out = empty_like(x, Shape::new([m, n]));
    // One row per invocation for a decode step, four (each weight read serving four rows) for prefill.
    let rows = if m == 1 { 1 } else { 4 };
    let workgroups = (n.div_ceil(64) as u32, m.div_ceil(rows) as u32);
    let kernel = MatmulQuant { q4, rows, signed, half_scales };
    launch(kernel, 64, workgroups, &[x, w, scales, &out], &[m as u32, n as u32, k as u32]);
    out
}

/// Products of [`WgslKernels::matmul_burn_quant`] that took Burn's dequantize + matmul
/// because the weight was not in a layout the kernels read.
static QUANT_FALLBACKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Products of [`WgslKernels::matmul_burn_quant`] the kernels computed.
static QUANT_LAUNCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many products with a Burn-quantized weight fell back to Burn's dequantize + matmul.
pub fn quant_linear_fallbacks() -> usize {
    QUANT_FALLBACKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// How many products with a Burn-quantized weight the kernels computed.
pub fn quant_linear_launches() -> usize {
    QUANT_LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The packed words and scales of a `[n, k]` weight Burn keeps block-quantized, with
/// whether it is q4 and whether the scales are f16, where its layout is one
/// `shaders/matmul_q{8,4}.wgsl` read: Q8S or Q4S values packed in `u32` words along `k`
/// (`[n, k / 4 or 8]`, row-major, contiguous) and one f32 or f16 scale per block of 32 along
/// `k` (`[n, k / 32]`, contiguous).
fn burn_quant_parts(w: &CubeTensor, n: usize, k: usize) -> Option<(CubeTensor, CubeTensor, bool, bool)> {
    use burn::tensor::quantization::{QuantStore, QuantValue, ScaleDtype};
    let DType::QFloat(scheme) = w.dtype else { return None };
    let q4 = match scheme.value {
        QuantValue::Q8S => false,
        QuantValue::Q4S => true,
        _ => return None,
    };
    let per_word = if q4 { 8 } else { 4 };
    let blocked = scheme.tensor_scale().is_none()
        && scheme.block_size().is_some_and(|b| b.as_slice().last() == Some(&32) && b.num_elements() == 32);
    if scheme.store != QuantStore::PackedU32(0)
        || !blocked
        || !matches!(scheme.scale_dtype(), ScaleDtype::F32 | ScaleDtype::F16)
        || !k.is_multiple_of(32)
        || w.meta.shape().len() != 2
    {
        return None;
    }
    let (values, scales) = w.quantized_handles()?;
    let values_ok = values.meta.shape().as_slice() == [n, k / per_word] && values.is_contiguous();
    let half_scales = scales.dtype == DType::F16;
    let scales_ok = matches!(scales.dtype, DType::F32 | DType::F16)
        && scales.meta.shape().num_elements() == n * k / 32
        && scales.is_contiguous();
    (values_ok && scales_ok && n.div_ceil(64) <= MAX_WORKGROUPS).then_some((values, scales, q4, half_scales))
}

/// `x` `[m, k]` times `w_t` `[k, n]`, the transposed view of a `[n, k]` weight Burn keeps
/// block-quantized (a linear's weight under `Residency::Quantized`), through
/// [`WgslKernels::matmul_burn_quant`]; the caller checked that `x` is f32 and the sizes.
pub fn burn_quant_linear(x: Tensor<2>, w_t: Tensor<2>) -> Tensor<2> {
    let out =
        <burn::backend::Dispatch as WgslKernels>::matmul_burn_quant(x.into_dispatch(), w_t.transpose().into_dispatch());
    Tensor::from_dispatch(out)
}

/// The quantized matmul kernel on f32 `x` `[m, k]`; the caller checked shapes, dtypes and sizes.
pub fn quant_matmul(x: Tensor<2>, w: &super::QuantMatrix) -> Tensor<2> {
    let out = <burn::backend::Dispatch as WgslKernels>::matmul_quant(
        x.into_dispatch(),
        w.packed.clone().into_dispatch(),
        w.scales.clone().into_dispatch(),
        w.quant == crate::quant::Quant::Q4,
    );
    Tensor::from_dispatch(out)
}

/// Output pixels and output channels per invocation of `shaders/conv2d.wgsl` for `cols`
/// output pixels in all: more pixels per invocation reuse each weight read more, but
/// must leave the 64 invocations of a workgroup something to do.
fn conv2d_blocking(cols: usize) -> (usize, usize) {
    match cols {
        c if c >= 64 * 8 * 2 => (8, 8),
        c if c >= 64 * 4 => (4, 8),
        c if c >= 64 * 2 => (2, 16),
        _ => (1, 32),
    }
}

/// Fewer output pixels (batch included) than this and Burn's conv is faster than
/// `shaders/conv2d.wgsl` (`bench --kernels --only conv2d` on lavapipe: an 8×8 map of
/// batch 2 is about even, 4×4 3–4× slower), so [`super::conv2d`] leaves them to Burn.
pub const CONV2D_MIN_PIXELS: usize = 256;

/// Whether `shaders/conv2d.wgsl` covers an `[n, c_out, h_out, w_out]` output in one dispatch
/// with 32-bit indices.
pub fn conv2d_fits(x: [usize; 4], out: [usize; 4], weight: usize) -> bool {
    let [n, c, h, w] = out;
    let limit = u32::MAX as usize;
    let (pixels, channels) = conv2d_blocking(n * h * w);
    (n * h * w).div_ceil(64 * pixels) <= MAX_WORKGROUPS
        && c.div_ceil(channels) <= MAX_WORKGROUPS
        && x.iter().product::<usize>() < limit
        && out.iter().product::<usize>() < limit
        && weight < limit
}

/// The convolution kernel on f32 `x` `[n, c_in, h, w]`; the caller checked
/// [`conv2d_fits`], groups 1 and dilation 1.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, geometry: [usize; 6]) -> Tensor<4> {
    let out = <burn::backend::Dispatch as WgslKernels>::conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        geometry,
    );
    Tensor::from_dispatch(out)
}

/// Whether `shaders/im2col.wgsl` and the products after it cover an `[n, c_in, h, w]`
/// input with a `[c_out, c_in, kh, kw]` weight and an `[h_out, w_out]` output.
pub fn im2col_fits(x: [usize; 4], weight: [usize; 4], out: [usize; 2]) -> bool {
    let [n, c, h, w] = x;
    let rows = c * weight[2] * weight[3];
    let limit = u32::MAX as usize;
    let columns = n * out[0] * out[1];
    c <= MAX_WORKGROUPS
        && rows > 0
        && columns > 0
        && rows * 4 <= super::MAX_CHUNK_BYTES
        && weight[0] * 4 <= super::MAX_CHUNK_BYTES
        && n * c * h * w < limit
        && rows * columns < limit
        && weight[0] * columns < limit
}

/// A 2-D convolution as `shaders/im2col.wgsl` then [`super::matmul`], chunk by chunk of
/// output pixels so that no patch matrix or product exceeds [`super::MAX_CHUNK_BYTES`]; the
/// caller checked [`im2col_fits`], groups 1 and dilation 1. `geometry` as [`conv2d`]'s.
pub fn conv2d_im2col(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, geometry: [usize; 6]) -> Tensor<4> {
    let [n, _, _, _] = x.dims();
    let [c_out, c_in, kh, kw] = weight.dims();
    let [sh, sw, ph, pw, hout, wout] = geometry;
    let rows = c_in * kh * kw;
    let columns = n * hout * wout;
    let chunk = (super::MAX_CHUNK_BYTES / 4 / rows.max(c_out)).clamp(1, columns);
    let matrix = weight.reshape([c_out, rows]);
    let x = x.into_dispatch();
    let parts: Vec<Tensor<2>> = (0..columns)
        .step_by(chunk)
        .map(|q0| {
            let nq = chunk.min(columns - q0);
            let cols = <burn::backend::Dispatch as WgslKernels>::im2col(
                x.clone(),
                [kh, kw, sh, sw, ph, pw, hout, wout],
                q0,
                nq,
            );
            super::matmul(matrix.clone(), Tensor::from_dispatch(cols))
        })
        .collect();
    let y = if parts.len() == 1 { parts.into_iter().next().expect("one part") } else { Tensor::cat(parts, 1) };
    let y = match bias {
        Some(b) => y.add(b.reshape([c_out, 1])),
        None => y,
    };
    if n == 1 { y.reshape([1, c_out, hout, wout]) } else { y.reshape([c_out, n, hout, wout]).swap_dims(0, 1) }
}

/// Whether the Winograd F(2×2, 3×3) path ([`conv2d_winograd`]) covers a stride-1 3×3
/// convolution of an `[n, c_in, h, w]` input into `c_out` channels and an `[h_out, w_out]`
/// output: every transform and product chunk within `max_bytes` (the weight's
/// transform is split by output channels, the tiles into chunks, so one input channel's
/// 16 values per output channel and tile, 64 bytes, must fit), 32-bit indices, the
/// dispatches within WebGPU's limits.
pub fn winograd_fits(x: [usize; 4], c_out: usize, out: [usize; 2], max_bytes: usize) -> bool {
    let [n, c, h, w] = x;
    let limit = u32::MAX as usize;
    let tiles = n * out[0].div_ceil(2) * out[1].div_ceil(2);
    c > 0
        && c_out > 0
        && tiles > 0
        && c <= MAX_WORKGROUPS
        && 16 * 4 * c <= max_bytes
        && n * c * h * w < limit
        && n * c_out * out[0] * out[1] < limit
        && c_out * c * 9 < limit
}

/// Output channels per chunk of the weight transform: `U` `[16, n_co, c_in]` within
/// `max_bytes`.
fn winograd_channels(c_in: usize, max_bytes: usize) -> usize {
    (max_bytes / (16 * 4 * c_in.max(1))).clamp(1, MAX_WORKGROUPS)
}

/// A stride-1 3×3 convolution by Winograd F(2×2, 3×3): the weight transform
/// (`shaders/winograd_weight.wgsl`), the input transform of a chunk of 2×2 output tiles
/// (`shaders/winograd_input.wgsl`), 16 products in one batched [`super::matmul`] (4 multiplies per
/// output pixel and input channel where im2col's product has 9), and the output transform
/// with the bias (`shaders/winograd_output.wgsl`), chunk by chunk so that no transform or
/// product exceeds `max_bytes`. The caller checked [`winograd_fits`], groups 1,
/// dilation 1, a `[c_out, c_in, 3, 3]` weight and stride 1; `geometry` as [`conv2d`]'s.
pub fn conv2d_winograd(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    geometry: [usize; 6],
    max_bytes: usize,
) -> Tensor<4> {
    type Ext = burn::backend::Dispatch;
    let [n, c_in, _, _] = x.dims();
    let c_out = weight.dims()[0];
    let [_, _, pt, pl, hout, wout] = geometry;
    let device = x.device();
    let (th, tw) = (hout.div_ceil(2), wout.div_ceil(2));
    let tiles = n * th * tw;
    let co_chunk = winograd_channels(c_in, max_bytes).min(c_out);
    let t_chunk = (max_bytes / (16 * 4 * c_in.max(co_chunk))).clamp(1, tiles);
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c_out], &device)).into_dispatch();
    let weight = weight.into_dispatch();
    let u: Vec<(usize, Tensor<3>)> = (0..c_out)
        .step_by(co_chunk)
        .map(|co0| {
            let n_co = co_chunk.min(c_out - co0);
            (co0, Tensor::from_dispatch(<Ext as WgslKernels>::winograd_weight(weight.clone(), co0, n_co)))
        })
        .collect();
    let x = x.into_dispatch();
    let mut y = Tensor::<4>::empty([n, c_out, hout, wout], &device).into_dispatch();
    for t0 in (0..tiles).step_by(t_chunk) {
        let nt = t_chunk.min(tiles - t0);
        let v: Tensor<3> =
            Tensor::from_dispatch(<Ext as WgslKernels>::winograd_input(x.clone(), [th, tw, pt, pl], t0, nt));
        for (co0, u) in &u {
            let m = super::matmul(u.clone(), v.clone());
            y = <Ext as WgslKernels>::winograd_output(m.into_dispatch(), bias.clone(), y, [th, tw], t0, *co0);
        }
    }
    Tensor::from_dispatch(y)
}

/// Whether `shaders/attention.wgsl` covers these `[batch, heads, n, d]` shapes.
pub fn attention_fits(q: [usize; 4], k: [usize; 4]) -> bool {
    let [b, h, nq, d] = q;
    let nk = k[2];
    (1..=MAX_HEAD_DIM).contains(&d)
        && nq > 0
        && nk > 0
        && b * h <= MAX_WORKGROUPS
        && nq.div_ceil(ATTENTION_ROWS) <= MAX_WORKGROUPS
}

/// A rank-2 to rank-4 operand of `shaders/matmul.wgsl` as two batch dims (leading 1s
/// added) and its element strides `[batch 0, batch 1, row, column]`, a batch dim of size 1
/// read with stride 0 (so it broadcasts).
fn batch_view(t: &CubeTensor) -> ([usize; 2], [usize; 4]) {
    let (shape, strides) = (t.meta.shape(), t.meta.strides());
    let rank = shape.num_dims();
    let dim = |d: usize| if d + rank >= 4 { shape[d + rank - 4] } else { 1 };
    let stride = |d: usize| if d + rank >= 4 && shape[d + rank - 4] > 1 { strides[d + rank - 4] } else { 0 };
    ([dim(0), dim(1)], [stride(0), stride(1), strides[rank - 2], strides[rank - 1]])
}

/// Whether `shaders/matmul.wgsl` covers `a` `[.., m, k]` times `b` `[.., k, n]` (rank 2 to 4):
/// matching inner dims, batch dims equal or 1, a non-empty product, the output within
/// [`super::MAX_CHUNK_BYTES`], 32-bit indices and the dispatch within WebGPU's limits.
pub fn matmul_fits(a: &[usize], b: &[usize]) -> bool {
    let rank = a.len();
    if !(2..=4).contains(&rank) || b.len() != rank {
        return false;
    }
    let (m, k, n) = (a[rank - 2], a[rank - 1], b[rank - 1]);
    let batch_ok = (0..rank - 2).all(|d| a[d] == b[d] || a[d] == 1 || b[d] == 1);
    let batch: usize = (0..rank - 2).map(|d| a[d].max(b[d])).product();
    let limit = u32::MAX as usize;
    batch_ok
        && b[rank - 2] == k
        && m * k * n > 0
        && batch * m * n * 4 <= super::MAX_CHUNK_BYTES
        && a.iter().product::<usize>() < limit
        && b.iter().product::<usize>() < limit
        && batch <= MAX_WORKGROUPS
        && m.div_ceil(32) <= MAX_WORKGROUPS
        && n.div_ceil(32) <= MAX_WORKGROUPS
}

/// `a.matmul(b)` by `shaders/matmul.wgsl`; the caller checked [`matmul_fits`] and f32.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as WgslKernels>::matmul(a.into_dispatch(), b.into_dispatch()))
}

/// The wgpu adapter behind `device` as it names itself (`llvmpipe (LLVM 15.0.6, 256 bits)`,
/// `SwiftShader Device (Subzero)`, a GPU's product name; in a browser, the adapter info's
/// description), `None` off wgpu.
pub fn adapter_name(device: &Device) -> Option<String> {
    match device.as_dispatch() {
        DispatchDevice::Cube(cubecl::Device::Wgpu(d)) => Some(
            <cubecl::wgpu::WgpuRuntime as cubecl_server::runtime::Runtime>::client(d)
                .properties()
                .identity
                .name
                .clone(),
        ),
        _ => None,
    }
}

/// Whether `shaders/softmax.wgsl` covers an f32 tensor of `shape`: 32-bit indices, a
/// non-empty last dim, the rows within one 2-D dispatch.
pub fn softmax_fits(shape: &[usize]) -> bool {
    let elements: usize = shape.iter().product();
    let cols = shape.last().copied().unwrap_or(0);
    cols > 0
        && elements > 0
        && elements < u32::MAX as usize
        && (elements / cols).div_ceil(64).div_ceil(MAX_WORKGROUPS) <= MAX_WORKGROUPS
}

/// `softmax(scale · x)` along the last dim by `shaders/softmax.wgsl`; the caller
/// checked [`softmax_fits`] and `scale > 0`.
pub fn softmax_scaled<const D: usize>(x: Tensor<D>, scale: f32) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as WgslKernels>::softmax_scaled(x.into_dispatch(), scale))
}

/// The largest head dim the attention kernel is built for (SD 1.x: 40 to 160).
pub const MAX_HEAD_DIM: usize = 256;

/// The attention kernel on f32 `q` `[b, h, nq, d]`, `k`, `v` `[b, h, nk, d]`;
/// the caller checked [`attention_fits`].
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let out =
        <burn::backend::Dispatch as WgslKernels>::attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch());
    Tensor::from_dispatch(out)
}

/// The fused guidance + DDIM step kernel; the caller checked shapes, dtypes and size.
pub fn guided_ddim_step(
    pred: Tensor<4>,
    guidance: Option<f32>,
    sample: Tensor<4>,
    step: super::DdimCoefficients,
) -> Tensor<4> {
    let coefficients = [
        guidance.unwrap_or(1.0),
        step.x0_sample,
        step.x0_output,
        step.eps_sample,
        step.eps_output,
        step.prev_x0,
        step.prev_eps,
        step.clip.unwrap_or(0.0),
    ];
    let out = <burn::backend::Dispatch as WgslKernels>::guided_ddim_step(
        pred.into_dispatch(),
        sample.into_dispatch(),
        guidance.is_some(),
        step.clip.is_some(),
        coefficients,
    );
    Tensor::from_dispatch(out)
}

/// The fused GroupNorm (+ SiLU) kernel on f32 `[N, C, H, W]` `x`; the caller
/// checked that `x` is on wgpu, `C % groups == 0` and `N * groups` fits one
/// dispatch dimension.
pub fn group_norm_silu(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Tensor<4> {
    let out = <burn::backend::Dispatch as WgslKernels>::group_norm_silu(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        groups,
        eps,
        silu,
    );
    Tensor::from_dispatch(out)
}
