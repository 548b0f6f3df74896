// Scaled row softmax, in place, as attention normalises its scores:
//   y[r, j] = exp(s * x[r, j] - m_r) / sum_j' exp(s * x[r, j'] - m_r),  m_r = max_j s * x[r, j]
// with s > 0 (attention's 1/sqrt(d)), so the scale folds into the exponent and the
// scores matmul needs no scaled copy of q.
//
// Bindings (group 0):
//   0 data   : array<f32>, read and written   x → y, [rows, cols] contiguous f32
//   1 params : array<u32>, only read          [rows, cols, s as f32 bits, workgroups along x]
// Dispatch: (min(ceil(rows / 64), 65535), ceil(ceil(rows / 64) / 65535), 1) workgroups of
// 64 invocations; invocation i of workgroup (x, y) owns row (y * params[3] + x) * 64 + i
// (rows past the end return at once).
// One invocation per row, no workgroup memory and no barriers: attention has thousands
// of rows, and on CPU-emulated adapters (lavapipe, SwiftShader) a barrier costs more than
// the arithmetic of a short row (a 256-invocation tree per row was 20× slower than Burn on
// 77-key rows). Two passes over the row instead of the five of max / subtract / exp / sum /
// divide: an online (max, sum of exp relative to it) pair in f32, then one pass writes y.

@group(0) @binding(0) var<storage, read_write> data: array<f32>;
@group(0) @binding(1) var<storage, read_write> params: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rows = params[0];
    let cols = params[1];
    let s = bitcast<f32>(params[2]);
    let row = (wid.y * params[3] + wid.x) * 64u + lid;
    if row >= rows {
        return;
    }
    let base = row * cols;

    var m = -3.0e38;
    var l = 0.0;
    for (var j = 0u; j < cols; j = j + 1u) {
        let v = s * data[base + j];
        if v > m {
            l = l * exp(m - v) + 1.0;
            m = v;
        } else {
            l = l + exp(v - m);
        }
    }
    let inv = 1.0 / l;
    for (var j = 0u; j < cols; j = j + 1u) {
        data[base + j] = exp(s * data[base + j] - m) * inv;
    }
}
