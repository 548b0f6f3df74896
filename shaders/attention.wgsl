// Scaled dot-product attention, softmax(q kᵀ · scale) v, flash-style: the
// scores never reach memory. Each invocation owns one query row; the workgroup
// streams K and V through workgroup memory in tiles of BC keys and keeps, per
// row, a running max, a running softmax denominator and an f32 output
// accumulator, rescaled whenever the max grows (online softmax).
//
// Bindings (group 0):
//   0 q      : array<f32>, only read   [B*H, Nq, D] contiguous
//   1 k      : array<f32>, only read   [B*H, Nk, D] contiguous
//   2 v      : array<f32>, only read   [B*H, Nk, D] contiguous
//   3 output : array<f32>, written      [B*H, Nq, D] contiguous
//   4 params : array<u32>, only read   [Nq, Nk, scale as f32 bits]
// Template constants (filled in by the host, one compiled kernel per value):
//   {{ d }}  the head dim D;  {{ bc }}  keys per tile, so that 2 * BC * D floats
//   fit WebGPU's 16 KiB of workgroup memory.
// All bindings are read_write (cubecl may sub-allocate q, k, v and the output
// from one wgpu buffer; mixing read-only and read-write bindings of one buffer
// is a validation error); `params` is broadcast with workgroupUniformLoad so
// the key loop, which holds barriers, has a uniform bound.
// Dispatch: (ceil(Nq / 64), B*H, 1) workgroups of 64 invocations; workgroup
// (x, y) computes rows x*64 .. x*64+63 of head y.

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: array<u32>;

const D: u32 = {{ d }}u;
const BC: u32 = {{ bc }}u;
const BR: u32 = 64u;

var<workgroup> k_tile: array<f32, {{ tile }}>;
var<workgroup> v_tile: array<f32, {{ tile }}>;
var<workgroup> shared_params: array<u32, 3>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if lid < 3u {
        shared_params[lid] = params[lid];
    }
    let p = workgroupUniformLoad(&shared_params);
    let nq = p[0];
    let nk = p[1];
    let scale = bitcast<f32>(p[2]);

    let head = wid.y;
    let row = wid.x * BR + lid;
    // Rows past the end compute a copy of the last row and write nothing: every
    // invocation must reach the barriers.
    let q_base = (head * nq + min(row, nq - 1u)) * D;
    let kv_base = head * nk * D;

    var q_row: array<f32, D>;
    var acc: array<f32, D>;
    for (var d = 0u; d < D; d = d + 1u) {
        q_row[d] = q[q_base + d] * scale;
        acc[d] = 0.0;
    }
    var m = -3.0e38;
    var l = 0.0;
    var s: array<f32, BC>;

    for (var t0 = 0u; t0 < nk; t0 = t0 + BC) {
        let tile = min(BC, nk - t0);
        for (var i = lid; i < tile * D; i = i + BR) {
            k_tile[i] = k[kv_base + t0 * D + i];
            v_tile[i] = v[kv_base + t0 * D + i];
        }
        workgroupBarrier();

        var m_new = m;
        for (var j = 0u; j < tile; j = j + 1u) {
            var dot = 0.0;
            for (var d = 0u; d < D; d = d + 1u) {
                dot = dot + q_row[d] * k_tile[j * D + d];
            }
            s[j] = dot;
            m_new = max(m_new, dot);
        }
        let correction = exp(m - m_new);
        l = l * correction;
        for (var d = 0u; d < D; d = d + 1u) {
            acc[d] = acc[d] * correction;
        }
        for (var j = 0u; j < tile; j = j + 1u) {
            let p = exp(s[j] - m_new);
            l = l + p;
            for (var d = 0u; d < D; d = d + 1u) {
                acc[d] = acc[d] + p * v_tile[j * D + d];
            }
        }
        m = m_new;
        workgroupBarrier();
    }

    if row < nq {
        let o_base = (head * nq + row) * D;
        for (var d = 0u; d < D; d = d + 1u) {
            output[o_base + d] = acc[d] / l;
        }
    }
}
