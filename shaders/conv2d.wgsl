// 2-D convolution (groups 1, dilation 1), bias fused, as Stable Diffusion's UNet and VAE
// run their 3x3 (stride 1 or 2) and 1x1 convs:
//   y[n, co, oy, ox] = bias[co] + sum_{ci, ky, kx} w[co, ci, ky, kx] * x[n, ci, oy*sh + ky - ph, ox*sw + kx - pw]
// (taps outside the input read 0).
//
// Bindings (group 0):
//   0 input  : array<f32>, only read   x, [N, C_in, H, W] contiguous (NCHW), f32
//   1 weight : array<f32>, only read   w, [C_out, C_in, kh, kw] contiguous
//   2 bias   : array<f32>, only read   [C_out] (zeros for a conv without bias)
//   3 output : array<f32>, written      y, [N, C_out, H_out, W_out] contiguous
//   4 params : array<u32>, only read   [N, C_in, H, W, C_out, H_out, W_out, kh, kw,
//                                       stride h, stride w, pad top, pad left]
// Template constants: {{ px }} output pixels (PX) and {{ co }} output channels (CO) per
// invocation (the host picks them by size: 8 x 8 for large maps, fewer pixels and more
// channels for small ones).
// Dispatch: ceil(N * H_out * W_out / (64 PX)) workgroups along x, ceil(C_out / CO) along
// y, 64 threads each. Invocation i of workgroup (x, y) computes output pixels
// 64 PX x + i + 64p (p < PX; batch-major over N * H_out * W_out) at the output channels
// CO y .. CO y + CO - 1, accumulating in f32: an implicit GEMM (the im2col matrix is never
// stored) blocked PX x CO in registers. K runs tap by tap, then input channel by input
// channel, so the gathers need no integer division. Each input value read serves CO
// products and each weight read PX; the weight addresses are the same for every
// invocation of a workgroup (uniform), so a GPU broadcasts them from cache and a SIMD
// emulation (lavapipe, SwiftShader) loads them once per lane group instead of gathering.
// No workgroup memory, no barriers. At most 32 taps (kh * kw): one bit each marks the
// taps of a pixel that fall inside the input.
// Every binding is declared read_write: cubecl sub-allocates tensors from shared wgpu
// buffers, and one buffer bound both read-only and read-write in a dispatch is a
// validation error.

@group(0) @binding(0) var<storage, read_write> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: array<u32>;

const CO: u32 = {{ co }}u;
const PX: u32 = {{ px }}u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let batch = params[0];
    let cin = params[1];
    let h = params[2];
    let w = params[3];
    let cout = params[4];
    let hout = params[5];
    let wout = params[6];
    let kh = params[7];
    let kw = params[8];
    let sh = params[9];
    let sw = params[10];
    let ph = params[11];
    let pw = params[12];

    let khw = kh * kw;
    let kdim = cin * khw;
    let pix = hout * wout;
    let plane = h * w;
    let cols = batch * pix;
    let co0 = wid.y * CO;

    // The output pixels of this invocation: columns 64 PX x + lid + 64p (batch-major).
    var base: array<u32, PX>;
    var y0: array<i32, PX>;
    var x0: array<i32, PX>;
    for (var p = 0u; p < PX; p = p + 1u) {
        let c = min(wid.x * 64u * PX + lid + 64u * p, cols - 1u);
        let q = c % pix;
        base[p] = (c / pix) * cin * plane;
        y0[p] = i32((q / wout) * sh) - i32(ph);
        x0[p] = i32((q % wout) * sw) - i32(pw);
    }

    // Row offsets of the filters in w (clamped to the last filter past C_out: read, never stored).
    var rows: array<u32, CO>;
    for (var i = 0u; i < CO; i = i + 1u) {
        rows[i] = min(co0 + i, cout - 1u) * kdim;
    }

    var acc: array<array<f32, CO>, PX>;
    for (var tap = 0u; tap < khw; tap = tap + 1u) {
        let dy = i32(tap / kw);
        let dx = i32(tap % kw);
        var at: array<u32, PX>;
        var inside: array<bool, PX>;
        for (var p = 0u; p < PX; p = p + 1u) {
            let iy = y0[p] + dy;
            let ix = x0[p] + dx;
            inside[p] = iy >= 0 && iy < i32(h) && ix >= 0 && ix < i32(w);
            at[p] = select(0u, base[p] + u32(iy) * w + u32(ix), inside[p]);
        }
        var k = tap;
        for (var ci = 0u; ci < cin; ci = ci + 1u) {
            var wv: array<f32, CO>;
            for (var i = 0u; i < CO; i = i + 1u) {
                wv[i] = weight[rows[i] + k];
            }
            for (var p = 0u; p < PX; p = p + 1u) {
                let v = select(0.0, input[at[p]], inside[p]);
                for (var i = 0u; i < CO; i = i + 1u) {
                    acc[p][i] = acc[p][i] + v * wv[i];
                }
                at[p] = at[p] + plane;
            }
            k = k + khw;
        }
    }

    for (var p = 0u; p < PX; p = p + 1u) {
        let col = wid.x * 64u * PX + lid + 64u * p;
        if col < cols {
            let nb = col / pix;
            let q = col % pix;
            for (var i = 0u; i < CO; i = i + 1u) {
                let co = co0 + i;
                if co < cout {
                    output[(nb * cout + co) * pix + q] = acc[p][i] + bias[co];
                }
            }
        }
    }
}
