// Winograd F(2×2, 3×3), step 2 of 3: the input transform V = Bᵀ d B of the 4×4 input
// patch d under every 2×2 output tile, for a 3×3 convolution with stride 1 (groups 1,
// dilation 1), with
//   Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
// Output tile t = (n * TH + ty) * TW + tx (TH = ceil(H_out / 2), TW = ceil(W_out / 2))
// covers output pixels (2 ty .. 2 ty + 1, 2 tx .. 2 tx + 1) of sample n; its patch starts
// at input row 2 ty - pad top and column 2 tx - pad left, and taps outside the input are 0.
// This writes the tiles t0 .. t0 + nt - 1 (the host splits a large transform into chunks
// that fit one buffer) as 16 matrices [C_in, nt], one per position p = 4 i + j:
//   V[p, ci, t - t0] = (Bᵀ d(t, ci) B)[i][j].
//
// Bindings (group 0):
//   0 input  : array<f32>, only read   x, [N, C_in, H, W] contiguous (NCHW), f32
//   1 output : array<f32>, written      V, [16, C_in, nt] contiguous
//   2 params : array<u32>, only read   [C_in, H, W, TH, TW, pad top, pad left, t0, nt]
// Dispatch: ceil(nt / 256) workgroups along x, C_in along y, 256 threads each.
// Invocation i of workgroup (x, y) transforms tile t0 + 256 x + i of input channel y:
// neighbouring invocations read neighbouring patches and write neighbouring words.
// Every binding is declared read_write (see winograd_weight.wgsl).

@group(0) @binding(0) var<storage, read_write> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<u32>;

// Row r of the patch (4 taps from column ix0), zeros outside the input.
fn patch_row(plane: u32, iy: i32, ix0: i32, h: u32, w: u32) -> vec4<f32> {
    var row = vec4<f32>(0.0);
    if iy < 0 || iy >= i32(h) {
        return row;
    }
    let start = plane + u32(iy) * w;
    for (var k = 0; k < 4; k = k + 1) {
        let ix = ix0 + k;
        if ix >= 0 && ix < i32(w) {
            row[k] = input[start + u32(ix)];
        }
    }
    return row;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cin = params[0];
    let h = params[1];
    let w = params[2];
    let th = params[3];
    let tw = params[4];
    let pt = params[5];
    let pl = params[6];
    let t0 = params[7];
    let nt = params[8];

    let j = wid.x * 256u + lid;
    if j >= nt {
        return;
    }
    let ci = wid.y;
    let t = t0 + j;
    let tiles = th * tw;
    let n = t / tiles;
    let r = t % tiles;
    let iy0 = i32(2u * (r / tw)) - i32(pt);
    let ix0 = i32(2u * (r % tw)) - i32(pl);
    let plane = (n * cin + ci) * h * w;
    let d0 = patch_row(plane, iy0, ix0, h, w);
    let d1 = patch_row(plane, iy0 + 1, ix0, h, w);
    let d2 = patch_row(plane, iy0 + 2, ix0, h, w);
    let d3 = patch_row(plane, iy0 + 3, ix0, h, w);
    // Bᵀ d: four rows.
    var rows = array<vec4<f32>, 4>(d0 - d2, d1 + d2, d2 - d1, d1 - d3);
    let stride = cin * nt;
    let at = ci * nt + j;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let b = rows[i];
        // (Bᵀ d) B: the same combination along the row.
        let v = vec4<f32>(b.x - b.z, b.y + b.z, b.z - b.y, b.y - b.w);
        let p = 4u * i;
        output[p * stride + at] = v.x;
        output[(p + 1u) * stride + at] = v.y;
        output[(p + 2u) * stride + at] = v.z;
        output[(p + 3u) * stride + at] = v.w;
    }
}
