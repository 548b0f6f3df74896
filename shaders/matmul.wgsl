// Batched matrix product with strided operands, no workgroup memory and no barriers:
//   c[b0, b1, i, j] = sum_t a[b0, b1, i, t] * b[b0, b1, t, j]
// a is [B0, B1, m, k], b is [B0, B1, k, n], each read through its own element strides
// (a batch stride of 0 broadcasts that operand; a transposed view, such as attention's
// k^T, is read as it lies, never copied); c is [B0, B1, m, n] contiguous f32.
//
// Bindings (group 0):
//   0 a      : array<f32>, only read
//   1 b      : array<f32>, only read
//   2 c      : array<f32>, written
//   3 params : array<u32>, only read   [m, n, k, B1,
//                                       a stride b0, a stride b1, a stride i, a stride t,
//                                       b stride b0, b stride b1, b stride t, b stride j]
// Dispatch: (ceil(n / 32), ceil(m / 32), B0 * B1) workgroups of 64
// invocations, 8 across × 8 down: invocation (x, y) of workgroup (gx, gy, z) owns the
// 4 × 4 block of c at rows (gy * 8 + y) * 4 .., columns (gx * 8 + x) * 4 ..
// of batch z = b0 * B1 + b1.
// Each step along t reads 4 values of a and 4 of b and makes 16 multiply-adds
// in vec4 accumulators. Rows and columns past the edge read the last row / column
// (in bounds, never stored), so the loop has no branch. For the CPU-emulated WebGPU of
// SwiftShader, where a workgroup barrier is costly and Burn's tiled matmul (workgroup
// memory, a barrier per tile) runs far below this.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m = params[0];
    let n = params[1];
    let k = params[2];
    let row0 = (wid.y * 8u + lid / 8u) * 4u;
    let col0 = (wid.x * 8u + lid % 8u) * 4u;
    if row0 >= m || col0 >= n {
        return;
    }
    let z0 = wid.z / params[3];
    let z1 = wid.z % params[3];
    let a_i = params[6];
    let a_t = params[7];
    let b_t = params[10];
    let b_j = params[11];
    var a_at = vec4<u32>(row0, min(row0 + 1u, m - 1u), min(row0 + 2u, m - 1u), min(row0 + 3u, m - 1u)) * a_i
        + vec4<u32>(z0 * params[4] + z1 * params[5]);
    var b_at = vec4<u32>(col0, min(col0 + 1u, n - 1u), min(col0 + 2u, n - 1u), min(col0 + 3u, n - 1u)) * b_j
        + vec4<u32>(z0 * params[8] + z1 * params[9]);
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var t = 0u; t < k; t = t + 1u) {
        let bv = vec4<f32>(b[b_at.x], b[b_at.y], b[b_at.z], b[b_at.w]);
        c0 = c0 + a[a_at.x] * bv;
        c1 = c1 + a[a_at.y] * bv;
        c2 = c2 + a[a_at.z] * bv;
        c3 = c3 + a[a_at.w] * bv;
        a_at = a_at + vec4<u32>(a_t);
        b_at = b_at + vec4<u32>(b_t);
    }

    let out = wid.z * m * n + row0 * n + col0;
    let rows = min(m - row0, 4u);
    let cols = min(n - col0, 4u);
    for (var j = 0u; j < cols; j = j + 1u) {
        c[out + j] = c0[j];
        if rows > 1u {
            c[out + n + j] = c1[j];
        }
        if rows > 2u {
            c[out + 2u * n + j] = c2[j];
        }
        if rows > 3u {
            c[out + 3u * n + j] = c3[j];
        }
    }
}
