// y = x · Wᵀ for a weight W [N, K] stored as q4 blocks (genllava::quant): blocks
// of 32 values along K, each an f32 scale s and 32 4-bit q in [-7, 7], w = s · q,
// two per byte (element 2i in the low nibble of byte i, 2i + 1 in the high
// nibble), each stored as q + 8. Same scheme as matmul_q8.wgsl: each invocation
// owns one output column and ROWS rows of x staged per block in workgroup memory.
//
// Bindings (group 0):
//   0 x      : array<vec4<f32>>, only read  [M, K] contiguous, K a multiple of 32
//   1 w      : array<u32>, only read        [N, K / 8]: element 8i + j in bits
//                                           4j .. 4j+3 of word i of its row
//   2 scales : array<f32 or u32>, only read [N, K / 32] f32, or f16 in pairs per u32 word
//                                           (element 2i in the low half) with HALF_SCALES
//   3 output : array<f32>, written          [M, N] contiguous
//   4 params : array<u32>, only read        [M, N, K]
// Template constants: {{ rows }} rows of x per invocation (1 for a decode step,
// 4 for prefill); {{ tile }} = rows · 8 vec4s of staged x; {{ signed }}: false for
// the web format's nibbles (q + 8), true for Burn's Q4S words (PackedU32: the same
// order, each nibble a 4-bit two's complement q), read in place from a weight
// Burn keeps quantized; {{ half_scales }}: the scales are f16 pairs in u32 words
// ({{ scale_word }} u32) rather than f32.
// All bindings are read_write (cubecl may sub-allocate several from one wgpu
// buffer); params are broadcast with workgroupUniformLoad so the block loop,
// which holds barriers, has a uniform bound.
// Dispatch: (ceil(N / 64), ceil(M / ROWS), 1) workgroups of 64 invocations;
// workgroup (i, j) computes columns i*64 .. i*64+63 of rows j*ROWS .. j*ROWS+ROWS-1.

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<{{ scale_word }}>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: array<u32>;

const ROWS: u32 = {{ rows }}u;

var<workgroup> x_tile: array<vec4<f32>, {{ tile }}>;
var<workgroup> shared_params: array<u32, 3>;

const SIGNED: bool = {{ signed }};

// Nibbles 0..3 (shift 0) or 4..7 (shift 16) of a word, as q values.
fn unpack_q4(word: u32, shift: u32) -> vec4<f32> {
    let nib = (vec4<u32>(word) >> (vec4<u32>(0u, 4u, 8u, 12u) + vec4<u32>(shift))) & vec4<u32>(15u);
    if SIGNED {
        // Sign-extend: the nibble to the top of an i32, then an arithmetic shift back.
        return vec4<f32>(bitcast<vec4<i32>>(nib << vec4<u32>(28u)) >> vec4<u32>(28u));
    }
    return vec4<f32>(nib) - vec4<f32>(8.0);
}

const HALF_SCALES: bool = {{ half_scales }};

// Scale i: an f32, or one half of a word of two f16 (unpack2x16float needs no shader-f16).
fn scale_at(i: u32) -> f32 {
    if HALF_SCALES {
        return unpack2x16float(bitcast<u32>(scales[i / 2u]))[i % 2u];
    }
    return f32(scales[i]);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if lid < 3u {
        shared_params[lid] = params[lid];
    }
    let p = workgroupUniformLoad(&shared_params);
    let m = p[0];
    let n = p[1];
    let k = p[2];
    let blocks = k / 32u;

    // Columns past the end compute column n - 1 and write nothing: every
    // invocation must reach the barriers.
    let col = wid.x * 64u + lid;
    let c = min(col, n - 1u);
    let row0 = wid.y * ROWS;
    var acc: array<f32, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        acc[r] = 0.0;
    }

    for (var b = 0u; b < blocks; b = b + 1u) {
        // Stage 8 vec4s (32 values) of each of the ROWS rows; rows past M read row M - 1.
        if lid < ROWS * 8u {
            let r = min(row0 + lid / 8u, m - 1u);
            x_tile[lid] = x[r * (k / 4u) + b * 8u + lid % 8u];
        }
        workgroupBarrier();
        let s = scale_at(c * blocks + b);
        let w_base = c * (k / 8u) + b * 4u;
        var sums: array<f32, ROWS>;
        for (var r = 0u; r < ROWS; r = r + 1u) {
            sums[r] = 0.0;
        }
        for (var i = 0u; i < 4u; i = i + 1u) {
            let word = w[w_base + i];
            let lo = unpack_q4(word, 0u);
            let hi = unpack_q4(word, 16u);
            for (var r = 0u; r < ROWS; r = r + 1u) {
                sums[r] = sums[r] + dot(x_tile[r * 8u + 2u * i], lo) + dot(x_tile[r * 8u + 2u * i + 1u], hi);
            }
        }
        for (var r = 0u; r < ROWS; r = r + 1u) {
            acc[r] = acc[r] + s * sums[r];
        }
        workgroupBarrier();
    }

    if col < n {
        for (var r = 0u; r < ROWS; r = r + 1u) {
            if row0 + r < m {
                output[(row0 + r) * n + col] = acc[r];
            }
        }
    }
}
