// Winograd F(2×2, 3×3), step 1 of 3: the weight transform U = G g Gᵀ of every
// (output channel, input channel) pair of a 3×3 convolution weight g, for the output
// channels co0 .. co0 + n_co - 1, with
//   G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
// U is laid out as 16 matrices [n_co, C_in], one per position p = 4 i + j of the 4×4
// transform, so that step 2's products are one batched matmul U [16, n_co, C_in] ×
// V [16, C_in, tiles] (see winograd_input.wgsl, winograd_output.wgsl).
//
// Bindings (group 0):
//   0 weight : array<f32>, only read   g, [C_out, C_in, 3, 3] contiguous, f32
//   1 output : array<f32>, written      U, [16, n_co, C_in] contiguous
//   2 params : array<u32>, only read   [C_in, co0, n_co, workgroups along x]
// Dispatch: (min(ceil(n_co * C_in / 256), 65535), ceil(.. / 65535), 1) workgroups of 256;
// invocation i of workgroup (x, y) owns pair q = (y * params[3] + x) * 256 + i, that is
// output channel co0 + q / C_in and input channel q % C_in (pairs past the end return):
// it reads the pair's 9 taps and writes one value to each of the 16 matrices, so
// neighbouring invocations write neighbouring words.
// Every binding is declared read_write: cubecl sub-allocates tensors from shared wgpu
// buffers, and one buffer bound both read-only and read-write in a dispatch is a
// validation error.

@group(0) @binding(0) var<storage, read_write> weight: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cin = params[0];
    let co0 = params[1];
    let n_co = params[2];
    let pairs = n_co * cin;
    let q = (wid.y * params[3] + wid.x) * 256u + lid;
    if q >= pairs {
        return;
    }
    let base = (co0 * cin + q) * 9u;
    // The 3×3 taps, one row of g per vector (the fourth lane unused).
    let g0 = vec3<f32>(weight[base], weight[base + 1u], weight[base + 2u]);
    let g1 = vec3<f32>(weight[base + 3u], weight[base + 4u], weight[base + 5u]);
    let g2 = vec3<f32>(weight[base + 6u], weight[base + 7u], weight[base + 8u]);
    // G g: four rows of three.
    let r0 = g0;
    let r1 = 0.5 * (g0 + g1 + g2);
    let r2 = 0.5 * (g0 - g1 + g2);
    let r3 = g2;
    // (G g) Gᵀ: each row of three becomes four.
    var rows = array<vec3<f32>, 4>(r0, r1, r2, r3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = rows[i];
        let u = vec4<f32>(r.x, 0.5 * (r.x + r.y + r.z), 0.5 * (r.x - r.y + r.z), r.z);
        let p = 4u * i;
        output[p * pairs + q] = u.x;
        output[(p + 1u) * pairs + q] = u.y;
        output[(p + 2u) * pairs + q] = u.z;
        output[(p + 3u) * pairs + q] = u.w;
    }
}
