// Winograd F(2×2, 3×3), step 3 of 3: the output transform Y = Aᵀ M A of each tile's
// 4×4 products M (summed over input channels by the batched matmul U × V of steps 1
// and 2), plus the bias, written into the convolution's output, with
//   Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]].
// M holds the tiles t0 .. t0 + nt - 1 (numbered as in winograd_input.wgsl) for the
// output channels co0 .. co0 + n_co - 1, as 16 matrices [n_co, nt]; this writes those
// tiles' pixels of those channels into y in place (the host runs it once per chunk).
//
// Bindings (group 0):
//   0 products : array<f32>, only read   M, [16, n_co, nt] contiguous, f32
//   1 bias     : array<f32>, only read   [C_out]
//   2 output   : array<f32>, written      y, [N, C_out, H_out, W_out] contiguous
//   3 params   : array<u32>, only read   [C_out, H_out, W_out, TH, TW, t0, nt, co0, n_co]
// Dispatch: ceil(nt / 256) workgroups along x, n_co along y, 256 threads each.
// Invocation i of workgroup (x, y) writes tile t0 + 256 x + i of output channel co0 + y
// (its 2×2 pixels, those inside H_out × W_out): neighbouring invocations read
// neighbouring words of M.
// Every binding is declared read_write (see winograd_weight.wgsl).

@group(0) @binding(0) var<storage, read_write> products: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cout = params[0];
    let hout = params[1];
    let wout = params[2];
    let th = params[3];
    let tw = params[4];
    let t0 = params[5];
    let nt = params[6];
    let co0 = params[7];
    let n_co = params[8];

    let j = wid.x * 256u + lid;
    if j >= nt {
        return;
    }
    let c = wid.y;
    let stride = n_co * nt;
    let at = c * nt + j;
    var m: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let p = 4u * i;
        m[i] = vec4<f32>(
            products[p * stride + at],
            products[(p + 1u) * stride + at],
            products[(p + 2u) * stride + at],
            products[(p + 3u) * stride + at],
        );
    }
    // Aᵀ M: two rows of four; then (Aᵀ M) A: two of each.
    let s0 = m[0] + m[1] + m[2];
    let s1 = m[1] - m[2] - m[3];
    let co = co0 + c;
    let b = bias[co];
    let y00 = s0.x + s0.y + s0.z + b;
    let y01 = s0.y - s0.z - s0.w + b;
    let y10 = s1.x + s1.y + s1.z + b;
    let y11 = s1.y - s1.z - s1.w + b;

    let t = t0 + j;
    let tiles = th * tw;
    let n = t / tiles;
    let r = t % tiles;
    let oy = 2u * (r / tw);
    let ox = 2u * (r % tw);
    let base = ((n * cout + co) * hout + oy) * wout + ox;
    let right = ox + 1u < wout;
    output[base] = y00;
    if right {
        output[base + 1u] = y01;
    }
    if oy + 1u < hout {
        output[base + wout] = y10;
        if right {
            output[base + wout + 1u] = y11;
        }
    }
}
