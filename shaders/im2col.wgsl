// im2col for a 2-D convolution (groups 1, dilation 1): the columns of output pixels
// q0 .. q0 + nq - 1 (batch-major over N * H_out * W_out) of the patch matrix, so that
// the convolution is one matrix product y = W [C_out, C_in * kh * kw] x cols:
//   cols[ci * kh * kw + ky * kw + kx, j] = x[n, ci, oy*sh + ky - ph, ox*sw + kx - pw]
// where q0 + j = (n * H_out + oy) * W_out + ox (taps outside the input are 0).
// The row order is the weight's [C_out, C_in, kh, kw] layout flattened, so the weight
// needs no copy; the host splits a large matrix into column chunks that fit one buffer.
//
// Bindings (group 0):
//   0 input  : array<f32>, only read   x, [N, C_in, H, W] contiguous (NCHW), f32
//   1 output : array<f32>, written      cols, [C_in * kh * kw, nq] contiguous
//   2 params : array<u32>, only read   [C_in, H, W, H_out, W_out, kh, kw,
//                                       stride h, stride w, pad top, pad left, q0, nq]
// Dispatch: ceil(nq / 256) workgroups along x, C_in along y, 256 threads each.
// Invocation i of workgroup (x, y) writes column j = 256 x + i of the kh * kw rows of
// input channel y: consecutive invocations read neighbouring input pixels and write
// neighbouring columns.
// Every binding is declared read_write: cubecl sub-allocates tensors from shared wgpu
// buffers, and one buffer bound both read-only and read-write in a dispatch is a
// validation error.

@group(0) @binding(0) var<storage, read_write> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cin = params[0];
    let h = params[1];
    let w = params[2];
    let hout = params[3];
    let wout = params[4];
    let kh = params[5];
    let kw = params[6];
    let sh = params[7];
    let sw = params[8];
    let ph = params[9];
    let pw = params[10];
    let q0 = params[11];
    let nq = params[12];

    let j = wid.x * 256u + lid;
    if (j >= nq) {
        return;
    }
    let ci = wid.y;
    let q = q0 + j;
    let hw_out = hout * wout;
    let n = q / hw_out;
    let r = q % hw_out;
    let oy = r / wout;
    let ox = r % wout;
    let iy0 = i32(oy * sh) - i32(ph);
    let ix0 = i32(ox * sw) - i32(pw);
    let plane = (n * cin + ci) * h * w;
    var row = ci * kh * kw;
    for (var ky = 0u; ky < kh; ky = ky + 1u) {
        let iy = iy0 + i32(ky);
        let row_inside = iy >= 0 && iy < i32(h);
        for (var kx = 0u; kx < kw; kx = kx + 1u) {
            let ix = ix0 + i32(kx);
            var v = 0.0;
            if (row_inside && ix >= 0 && ix < i32(w)) {
                v = input[plane + u32(iy) * w + u32(ix)];
            }
            output[row * nq + j] = v;
            row = row + 1u;
        }
    }
}
